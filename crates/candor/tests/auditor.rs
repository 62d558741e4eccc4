//! `candor auditor` as a running process against real `candor dev` services:
//!
//! * two auditors cosign every epoch; one is killed with SIGKILL and restarted
//!   and resumes where it was;
//! * `equivocation`: two services with the same keys diverge (a split view); the
//!   auditor following both detects it and writes evidence `candor verify
//!   evidence` accepts;
//! * a broken SMT promise (an SMT signed with the service's key whose deadline
//!   passes without its version) is detected with verifiable evidence.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candor_client::Client;
use candor_core::signed::{MutationTimestamp, PublicConfig, SigningKeyPair};

mod common;
use common::{BIN, Proc, free_port, sdk};

async fn start_dev(data: &Path, log: &Path, auditor_keys: &[String]) -> (Proc, String) {
    let keys: Vec<String> = auditor_keys.iter().map(|k| format!("\"{k}\"")).collect();
    let env = [("CANDOR_API__AUDITOR_KEYS", format!("[{}]", keys.join(",")))];
    common::start_dev(data, log, &env).await
}

/// An auditor key file with a fixed seed; returns its public key (hex).
fn auditor_key(path: &Path, seed: u8) -> String {
    std::fs::write(path, hex::encode([seed; 32])).unwrap();
    hex::encode(SigningKeyPair::from_seed(&[seed; 32]).public_key().0)
}

/// Starts `candor auditor`; returns it and its first stdout line.
fn start_auditor(dir: &Path, name: &str, data: &Path, args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .arg("auditor")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--key-file")
        .arg(dir.join(format!("{name}.key")))
        .arg("--audit-dir")
        .arg(dir.join(name))
        .args(["--poll", "200ms"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("{name}.stderr.log"))).unwrap())
        .spawn()
        .expect("spawn candor auditor");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().unwrap().unwrap();
    // Keep draining stdout so the auditor never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), first)
}

/// The auditors (hex keys) that cosigned `epoch`.
async fn cosigners(c: &Client, epoch: u64) -> Vec<String> {
    c.cosignatures(epoch)
        .await
        .map(|v| v.iter().map(|x| hex::encode(x.auditor_key.0)).collect())
        .unwrap_or_default()
}

async fn wait_cosigned(c: &Client, who: &[&str], after: u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let latest = c.latest_head().await.unwrap().head.epoch;
        for e in (after + 1..=latest).rev() {
            let got = cosigners(c, e).await;
            if who.iter().all(|w| got.iter().any(|g| g == w)) {
                return e;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no epoch after {after} cosigned by {who:?} within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_cosign_every_epoch_and_resume_after_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let (k1, k2) = (
        auditor_key(&dir.join("a1.key"), 21),
        auditor_key(&dir.join("a2.key"), 22),
    );
    let (_dev, url) = start_dev(&data, &dir.join("dev"), &[k1.clone(), k2.clone()]).await;
    let c = sdk(&data, &url).await;
    let p = c.publish(b"alice", b"k1").await.unwrap();
    c.wait_merged(b"alice", &p.smt, Duration::from_millis(50))
        .await
        .unwrap();
    let http_port = free_port("127.0.0.1");
    let grpc_port = free_port("127.0.0.1");
    let (a1, first) = start_auditor(dir, "a1", &data, &["--target", &url]);
    assert!(first.contains("starting at epoch 1"), "{first}");
    // The second also serves gRPC and acts as a C2SP witness for this deployment.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--target", &url, "--data-dir"])
            .arg(&data)
            .arg("--state-dir")
            .arg(dir.join("cli-state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "candor {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let log_vkey = cli(&["checkpoint", "--vkey"]).trim().to_string();
    let (_a2, _) = start_auditor(
        dir,
        "a2",
        &data,
        &[
            "--target",
            &url,
            "--listen",
            &format!("127.0.0.1:{http_port}"),
            "--grpc-listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--witness-name",
            "auditor.example/a2",
            "--witness-log",
            &log_vkey,
        ],
    );
    let e1 = wait_cosigned(&c, &[&k1, &k2], 0).await;
    // Every epoch up to it carries both cosignatures.
    for e in 1..=e1 {
        let got = cosigners(&c, e).await;
        assert!(got.contains(&k1) && got.contains(&k2), "epoch {e}: {got:?}");
    }

    // SIGKILL one; the other goes on; the restarted one resumes.
    drop(a1);
    let e2 = wait_cosigned(&c, &[&k2], e1).await;
    let (_a1, first) = start_auditor(dir, "a1", &data, &["--target", &url]);
    let next: u64 = first
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a resume line: {first}"));
    assert!(first.contains("resumed"), "{first}");
    assert!(next > e1, "resumed at epoch {next}, had cosigned {e1}");
    let e3 = wait_cosigned(&c, &[&k1, &k2], e2).await;
    for e in 1..=e3 {
        assert!(cosigners(&c, e).await.contains(&k1), "epoch {e}");
    }

    // A client that reads only at heads both auditors cosigned.
    let key_of =
        |h: &str| candor_core::signed::PublicKey(hex::decode(h).unwrap().try_into().unwrap());
    let policy = candor_client::CosignerPolicy {
        keys: vec![key_of(&k1), key_of(&k2)],
        threshold: 2,
        max_lag_epochs: 64,
    };
    let h = c.latest_cosigned_head(&policy).await.unwrap();
    assert!(h.head.epoch >= e3, "{} < {e3}", h.head.epoch);
    let l = c.lookup_cosigned(b"alice", &policy).await.unwrap();
    assert_eq!(l.head.head.epoch, h.head.epoch);
    let stranger = candor_client::CosignerPolicy {
        keys: vec![SigningKeyPair::from_seed(&[99; 32]).public_key()],
        threshold: 1,
        max_lag_epochs: 8,
    };
    assert!(matches!(
        c.latest_cosigned_head(&stranger).await,
        Err(candor_client::ClientError::NotCosigned { .. })
    ));

    // The auditor serves what it cosigned.
    let body = reqwest::get(format!("http://127.0.0.1:{http_port}/cosigned"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let epoch = v["epoch"].as_u64().unwrap();
    assert!(epoch >= e1, "{body}");
    let head = c.head(epoch).await.unwrap();
    assert_eq!(
        v["signed_head"].as_str().unwrap(),
        hex::encode(head.encode())
    );
    candor_client::verify::cosignature(
        &head.head,
        &hex::decode(v["cosignature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    // The same over gRPC.
    let mut g = candor_proto::candor::v1::auditor_client::AuditorClient::connect(format!(
        "http://127.0.0.1:{grpc_port}"
    ))
    .await
    .unwrap();
    let got = g
        .get_cosigned(candor_proto::candor::v1::GetCosignedRequest { epoch })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hex::encode(&got.signed_head),
        v["signed_head"].as_str().unwrap()
    );
    let missing = g
        .get_cosigned(candor_proto::candor::v1::GetCosignedRequest { epoch: 1 << 40 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // The auditor as a C2SP witness of the deployment's checkpoints.
    let wvkey = candor_core::checkpoint::verifier_key(
        "auditor.example/a2",
        candor_core::checkpoint::ALG_COSIGNATURE_V1,
        &key_of(&k2),
    );
    let out = cli(&[
        "checkpoint",
        "--witness",
        &format!("http://127.0.0.1:{http_port}"),
        "--witness-vkey",
        &wvkey,
    ]);
    assert!(out.contains("\u{2014} auditor.example/a2 "), "{out}");
    // Gossip: a fresh client takes the auditor's head into its view.
    let fresh = sdk(&data, &url).await;
    fresh
        .gossip(
            &hex::decode(v["signed_head"].as_str().unwrap()).unwrap(),
            &hex::decode(v["cosignature"].as_str().unwrap()).unwrap(),
            &[key_of(&k2)],
        )
        .await
        .unwrap();
    // Or straight from the auditor's gRPC port.
    let consulted = fresh
        .consult_auditor(&format!("http://127.0.0.1:{grpc_port}"), &key_of(&k2))
        .await
        .unwrap();
    assert!(consulted.head.epoch >= epoch);
    assert!(
        fresh
            .consult_auditor(&format!("http://127.0.0.1:{grpc_port}"), &key_of(&k1))
            .await
            .is_err()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Waits for the auditor to exit; its exit code and stderr.
fn wait_exit(p: &mut Proc, stderr: &Path, within: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(s) = p.0.try_wait().unwrap() {
            return (
                s.code(),
                std::fs::read_to_string(stderr).unwrap_or_default(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the auditor did not stop within {within:?}\n{}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
}

fn evidence_files(audit_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(audit_dir.join("evidence"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn verify_evidence(data: &Path, file: &Path) -> String {
    let out = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(data)
        .arg("evidence")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "candor verify evidence: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_between_two_services_is_detected_with_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data_a, data_b) = (dir.join("a"), dir.join("b"));
    let (dev_a, url_a) = start_dev(&data_a, &dir.join("dev-a"), &[]).await;
    // The same keys (and settings), a second history: a service that shows
    // different heads to different parties.
    copy_dir(&data_a.join("keys"), &data_b.join("keys"));
    let (_dev_b, url_b) = start_dev(&data_b, &dir.join("dev-b"), &[]).await;
    assert_eq!(
        std::fs::read(data_a.join("config.bin")).unwrap(),
        std::fs::read(data_b.join("config.bin")).unwrap(),
        "one configuration"
    );
    let ca = sdk(&data_a, &url_a).await;
    let p = ca.publish(b"only-on-a", b"v").await.unwrap();
    ca.wait_merged(b"only-on-a", &p.smt, Duration::from_millis(50))
        .await
        .unwrap();
    let (mut au, _) = start_auditor(
        dir,
        "au",
        &data_a,
        &[
            "--target",
            &url_a,
            "--endpoint",
            &url_b,
            "--fail-fast",
            "--no-submit",
        ],
    );
    let (code, stderr) = wait_exit(&mut au, &dir.join("au.stderr.log"), Duration::from_secs(60));
    assert_eq!(code, Some(3), "exit code 3 on the alarm\n{stderr}");
    assert!(stderr.contains("AUDIT ALARM"), "{stderr}");
    let files = evidence_files(&dir.join("au"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("equivocation"));
    let out = verify_evidence(&data_a, &files[0]);
    assert!(out.contains("equivocated"), "{out}");
    // Gossip catches it too: a client of B given a head of A cosigned by an
    // auditor that follows A.
    let cb = sdk(&data_b, &url_b).await;
    let seen_b = cb.latest_head().await.unwrap();
    let auditor = SigningKeyPair::from_seed(&[31; 32]);
    let mut head_a = ca.latest_head().await.unwrap();
    while head_a.head.epoch < seen_b.head.epoch {
        tokio::time::sleep(Duration::from_millis(100)).await;
        head_a = ca.latest_head().await.unwrap();
    }
    let cosig = candor_core::signed::Cosignature::create(&head_a.head, &auditor, 1);
    let e = cb
        .gossip(&head_a.encode(), &cosig.encode(), &[auditor.public_key()])
        .await
        .unwrap_err();
    assert!(e.is_security_event(), "{e}");
    drop(dev_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_smt_promise_is_detected_with_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let (_dev, url) = start_dev(&data, &dir.join("dev"), &[]).await;
    let c = sdk(&data, &url).await;
    let p = c.publish(b"someone", b"v").await.unwrap();
    c.wait_merged(b"someone", &p.smt, Duration::from_millis(50))
        .await
        .unwrap();
    let http_port = free_port("127.0.0.1");
    let (mut au, _) = start_auditor(
        dir,
        "au",
        &data,
        &[
            "--target",
            &url,
            "--fail-fast",
            "--no-submit",
            "--listen",
            &format!("127.0.0.1:{http_port}"),
        ],
    );
    // A promise the service signs and never keeps: an SMT for "mallory", signed
    // with the service's SMT key, whose deadline is already behind the latest
    // epoch, for a version that is not in any epoch.
    let config = PublicConfig::decode(&std::fs::read(data.join("config.bin")).unwrap()).unwrap();
    let seed: [u8; 32] = hex::decode(
        std::fs::read_to_string(data.join("keys/smt.key"))
            .unwrap()
            .trim(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    let smt_key = SigningKeyPair::from_seed(&seed);
    let index = c.lookup(b"mallory", None).await.unwrap().index;
    let latest = c.latest_head().await.unwrap();
    let deadline = latest.head.timestamp_ms - 1;
    let smt = MutationTimestamp {
        namespace: config.namespace.clone(),
        index,
        version: 1,
        leaf_hash: [0x5a; 32],
        shard: candor_core::map::shard_of(&index, config.shard_bits),
        timestamp_ms: deadline - config.max_merge_delay_ms,
        merge_deadline_ms: deadline,
    }
    .sign(&smt_key);
    let http = reqwest::Client::new();
    let mut accepted = false;
    for _ in 0..100 {
        if let Ok(r) = http
            .post(format!("http://127.0.0.1:{http_port}/smt"))
            .body(
                serde_json::json!({"smt": hex::encode(smt.encode()), "label": "mallory"})
                    .to_string(),
            )
            .send()
            .await
        {
            assert_eq!(r.status().as_u16(), 202);
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "the auditor's HTTP listener never answered");
    let (code, stderr) = wait_exit(&mut au, &dir.join("au.stderr.log"), Duration::from_secs(60));
    assert_eq!(code, Some(3), "exit code 3 on the alarm\n{stderr}");
    let files = evidence_files(&dir.join("au"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("broken_promise"));
    let out = verify_evidence(&data, &files[0]);
    assert!(out.contains("broke a promise"), "{out}");
}

/// `candor monitor`: the owner records what it publishes; a version someone else
/// publishes under its label is an alarm (exit 3), raised once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_alarms_on_a_version_the_owner_did_not_publish() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let (_dev, url) = start_dev(&data, &dir.join("dev"), &[]).await;
    let state = dir.join("owner.monitor");
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--target", &url, "--data-dir"])
            .arg(&data)
            .arg("--state-dir")
            .arg(dir.join("cli-state"))
            .output()
            .unwrap()
    };
    let s = state.to_str().unwrap();
    let out = cli(&[
        "publish",
        "--wait",
        "--monitor-state",
        s,
        "alice",
        "owner-key-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["monitor", "--monitor-state", s, "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Someone else (the provider, or an attacker with its credentials) publishes.
    let c = sdk(&data, &url).await;
    let p = c.publish(b"alice", b"attacker-key").await.unwrap();
    c.wait_merged(b"alice", &p.smt, Duration::from_millis(50))
        .await
        .unwrap();
    let out = cli(&["monitor", "--monitor-state", s, "--once"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ALARM alice: version 2"), "{stdout}");

    // Raised once; the owner's next version is its own.
    let out = cli(&[
        "publish",
        "--wait",
        "--monitor-state",
        s,
        "alice",
        "owner-key-3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["monitor", "--monitor-state", s, "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The public audit export: `candor export` writes static files; `candor auditor
/// --from-dir` / `--from-url` audits them against the pin without the API, and a
/// tampered file is an alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_export_is_audited_without_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let (_dev, url) = start_dev(&data, &dir.join("dev"), &[]).await;
    let c = sdk(&data, &url).await;
    for l in ["a", "b", "c"] {
        let p = c.publish(l.as_bytes(), b"v").await.unwrap();
        c.wait_merged(l.as_bytes(), &p.smt, Duration::from_millis(50))
            .await
            .unwrap();
    }
    let export = dir.join("export");
    let out = Command::new(BIN)
        .args(["export", "--target", &url, "--data-dir"])
        .arg(&data)
        .arg("--state-dir")
        .arg(dir.join("cli-state"))
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(export.join("audit/001").is_file() && export.join("config").is_file());
    assert!(
        std::fs::read_to_string(export.join("checkpoint"))
            .unwrap()
            .contains("\n\n\u{2014} ")
    );
    let epochs = std::fs::read_dir(export.join("audit")).unwrap().count();
    assert!(epochs >= 3, "{epochs} epochs exported");

    let audit = |name: &str, from: &[&str]| audit_once(dir, &data, name, from);
    let (code, stdout, stderr) = audit("offline", &["--from-dir", export.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("up to epoch {epochs}")),
        "{stdout}"
    );

    // Over HTTP, from a plain static file server.
    let root = export.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::get(move |axum::extract::Path(p): axum::extract::Path<String>| {
            let root = root.clone();
            async move {
                match std::fs::read(root.join(p)) {
                    Ok(b) => (axum::http::StatusCode::OK, b),
                    Err(_) => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let (data2, dir2) = (data.clone(), dir.to_path_buf());
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        audit_once(&dir2, &data2, "web", &["--from-url", &base])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("up to epoch {epochs}")),
        "{stdout}"
    );

    // A tampered proof file: an alarm, exit 3.
    let bad = dir.join("bad-export");
    copy_tree(&export, &bad);
    let f = bad.join("audit/002");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    let (code, stdout, stderr) = audit("tampered", &["--from-dir", bad.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
}

/// `candor auditor FROM.. --once --fail-fast` pinned to DATA/config.bin, with
/// its key and state under `dir/name`: exit code, stdout, stderr.
fn audit_once(dir: &Path, data: &Path, name: &str, from: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("auditor")
        .args(from)
        .arg("--data-dir")
        .arg(data)
        .arg("--key-file")
        .arg(dir.join(format!("{name}.key")))
        .arg("--audit-dir")
        .arg(dir.join(name))
        .args(["--once", "--fail-fast", "--poll", "100ms"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
