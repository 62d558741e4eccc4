//! End to end: `candor dev` as a real process, driven only through the CLI
//! (as processes) and the SDK. Never asserts timing: every wait is a poll
//! with a generous bound that only exists so a broken build fails instead
//! of hanging.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candor_client::{Client, HeadTracker, PinnedConfig, PublishItem, verify};
use candor_core::signed::{PublicConfig, SignedHead, SignedMutationTimestamp};
use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_candor");

/// A running `candor dev`, killed when dropped.
struct Dev {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Dev {
    fn start(dir: &Path, port: u16, run: u32) -> Dev {
        let log =
            |name: &str| std::fs::File::create(dir.join(format!("{name}.{run}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["dev", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--epoch-interval", "200ms", "--shards", "4"])
            .env("CANDOR_LOG", "info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("spawn candor dev");
        Dev {
            child,
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                s.push_str(&format!("--- {}\n", e.path().display()));
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    /// Polls grpc.health.v1 until SERVING (the first epoch is signed).
    async fn wait_serving(&mut self) {
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("candor dev exited with {status}\n{}", self.logs());
            }
            if let Ok(ch) = Channel::from_shared(self.url.clone())
                .unwrap()
                .connect()
                .await
            {
                let mut h = HealthClient::new(ch);
                let req = tonic_health::pb::HealthCheckRequest {
                    service: candor_proto::KEY_TRANSPARENCY_SERVICE.into(),
                };
                if let Ok(r) = h.check(req).await
                    && r.into_inner().status() == ServingStatus::Serving
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("candor dev never became SERVING\n{}", self.logs());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("CANDOR_TOKEN")
        .env_remove("CANDOR_CONFIG_DIGEST")
        .env_remove("CANDOR_TARGET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI with `--json`, expects success and parses the output.
fn cli_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out, err) = cli(&a);
    assert_eq!(code, 0, "candor {args:?} failed: {err}{out}");
    let v: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON {out:?}: {e}"));
    assert_eq!(v["verified"], Value::Bool(true), "{v}");
    v
}

fn config_of(dev: &Dev) -> PublicConfig {
    PublicConfig::decode(&std::fs::read(dev.data().join("config.bin")).unwrap()).unwrap()
}

async fn raw(url: &str) -> KeyTransparencyClient<Channel> {
    KeyTransparencyClient::connect(url.to_owned())
        .await
        .unwrap()
}

fn authed<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn item(label: &[u8], value: &[u8]) -> pb::PublishRequest {
    pb::PublishRequest {
        label: label.to_vec(),
        value: value.to_vec(),
        idempotency_key: String::new(),
    }
}

/// Polls until the latest signed epoch is beyond `epoch`.
async fn wait_epoch_after(client: &Client, epoch: u64) -> SignedHead {
    for _ in 0..1200 {
        let h = client.latest_head().await.unwrap();
        if h.head.epoch > epoch {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no epoch after {epoch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_process_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Dev::start(tmp.path(), port, 1);
    dev.wait_serving().await;

    let url = dev.url.clone();
    let data = dev.data();
    let data_s = data.to_str().unwrap().to_owned();
    let config = config_of(&dev);
    let digest = hex::encode(config.digest());
    let token = std::fs::read_to_string(data.join("dev-token"))
        .unwrap()
        .trim()
        .to_owned();
    let key_mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for f in ["keys/vrf.key", "keys/head.key", "keys/smt.key", "dev-token"] {
        assert_eq!(key_mode(f), 0o600, "{f}");
    }
    let pinned = ["--target", &url, "--config-digest", &digest];

    // Publish through the CLI: the CLI verified the SMT; check it again here.
    let mut args = pinned.to_vec();
    args.extend(["--token", &token, "alice", "alice-key-1"]);
    let p = cli_json(&{
        let mut a = vec!["publish"];
        a.extend(&args);
        a
    });
    assert_eq!(p["version"], 1);
    let smt_hex = p["smt"].as_str().unwrap().to_owned();
    let smt = SignedMutationTimestamp::decode(&hex::decode(&smt_hex).unwrap()).unwrap();
    smt.verify(&config).unwrap();

    // Merged by its deadline: via the SDK and via `candor verify smt --label`.
    let client = Client::connect(url.clone(), PinnedConfig::from_hex_digest(&digest).unwrap())
        .await
        .unwrap();
    let merged = client
        .wait_merged(b"alice", &smt, Duration::from_millis(50))
        .await
        .unwrap();
    let merge_epoch = merged.epoch();
    let v = cli_json(&{
        let mut a = vec!["verify"];
        a.extend(pinned);
        a.extend(["smt", &smt_hex, "--label", "alice"]);
        a
    });
    assert!(v["merged_epoch"].as_u64().unwrap() >= merge_epoch);

    // Lookup and history, CLI (pinned by data dir's config.bin this time) and SDK.
    let l = cli_json(&["lookup", "--target", &url, "--data-dir", &data_s, "alice"]);
    assert_eq!(
        (l["found"].as_bool(), l["version"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(l["value"], "alice-key-1");
    let sl = client.lookup(b"alice", Some(merge_epoch)).await.unwrap();
    assert_eq!(sl.value(), Some(&b"alice-key-1"[..]));
    let absent = cli_json(&[
        "lookup",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "nobody",
    ]);
    assert_eq!(absent["found"], false);
    let h = cli_json(&[
        "history",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "alice",
    ]);
    assert_eq!(h["versions"].as_array().unwrap().len(), 1);
    assert!(
        client
            .history(b"alice")
            .await
            .unwrap()
            .contains(1, &smt.smt.leaf_hash)
    );

    // Audit: the merge epoch alone (window) and everything from epoch 1.
    let me = merge_epoch.to_string();
    let a = cli_json(&[
        "audit",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "--from",
        &me,
        "--to",
        &me,
    ]);
    assert_eq!(a["labels_changed"], 1);
    let full = cli_json(&["audit", "--target", &url, "--config-digest", &digest]);
    assert_eq!(full["mode"], "full");
    assert!(full["labels_changed"].as_u64().unwrap() >= 1);

    // Exit codes: usage 1, transport 2, verification 3.
    assert_eq!(cli(&["lookup"]).0, 1);
    assert_eq!(cli(&["serve", "--role", "api"]).0, 1);
    assert_eq!(cli(&["bench"]).0, 1);
    let dead = format!("http://127.0.0.1:{}", free_port());
    assert_eq!(
        cli(&[
            "lookup",
            "--target",
            &dead,
            "--config-digest",
            &digest,
            "alice"
        ])
        .0,
        2
    );
    let wrong = "00".repeat(32);
    let (code, _, err) = cli(&[
        "lookup",
        "--target",
        &url,
        "--config-digest",
        &wrong,
        "alice",
    ]);
    assert_eq!(code, 3, "{err}");
    let mut bad_smt = hex::decode(&smt_hex).unwrap();
    let n = bad_smt.len();
    bad_smt[n - 1] ^= 1;
    let (code, _, err) = cli(&[
        "verify",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "smt",
        &hex::encode(&bad_smt),
    ]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        cli(&[
            "publish",
            "--target",
            &url,
            "--config-digest",
            &digest,
            "--token",
            "wrong",
            "x",
            "y"
        ])
        .0,
        2
    );

    // Batches and idempotency against the real shard layer (SDK).
    let writer = client.clone().with_token(&token).unwrap();
    let batch = writer
        .publish_batch(&[
            PublishItem::new(b"bob".to_vec(), b"bob-key".to_vec()),
            PublishItem::new(b"carol".to_vec(), b"carol-key".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(
        (batch[0].label.as_slice(), batch[1].label.as_slice()),
        (&b"bob"[..], &b"carol"[..])
    );
    let k1 = writer
        .publish_with_key(b"dave", b"d1", "idem-1")
        .await
        .unwrap();
    let k2 = writer
        .publish_with_key(b"dave", b"d1", "idem-1")
        .await
        .unwrap();
    // Lands once: same version and leaf. (The proto promises the same SMT
    // bytes; the shard layer currently re-signs it with a new timestamp.)
    assert_eq!(
        (k1.version, k1.leaf_hash),
        (k2.version, k2.leaf_hash),
        "a retry with the same key lands once"
    );
    let e = writer
        .publish_with_key(b"dave", b"other", "idem-1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::AlreadyExists));
    for p in batch.iter().chain([&k1]) {
        writer
            .wait_merged(&p.label, &p.smt, Duration::from_millis(50))
            .await
            .unwrap();
    }
    assert_eq!(
        client.lookup(b"dave", None).await.unwrap().version(),
        Some(1)
    );

    // Bad inputs through gRPC: the documented status, nothing applied.
    let mut g = raw(&url).await;
    let before = client.latest_head().await.unwrap();
    let tok = Some(token.as_str());
    let s = g.publish(authed(item(b"", b"v"), tok)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "empty label");
    let s = g
        .publish(authed(item(b"bad-1", &vec![0; 64 * 1024 + 1]), tok))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "oversized value");
    let s = g
        .publish(authed(item(b"bad-2", b"v"), None))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "missing token");
    let s = g
        .publish(authed(item(b"bad-3", b"v"), Some("not-the-token")))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "wrong token");
    let big: Vec<_> = (0..1001)
        .map(|i| item(format!("bad-batch-{i}").as_bytes(), b"v"))
        .collect();
    let s = g
        .publish_batch(authed(pb::PublishBatchRequest { items: big }, tok))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "batch too large");
    let s = g
        .lookup(pb::LookupRequest {
            label: b"alice".to_vec(),
            epoch: Some(1 << 40),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "unknown epoch");
    let s = g
        .get_epoch(pb::GetEpochRequest { epoch: 1 << 40 })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "unknown epoch");
    let s = g
        .consistency(pb::ConsistencyRequest {
            from_epoch: 3,
            to_epoch: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "from > to");
    // State unchanged: later epochs change no label, the bad labels are absent.
    let after = wait_epoch_after(&client, before.head.epoch).await;
    for e in before.head.epoch + 1..=after.head.epoch {
        let resp = client.audit_response(e).await.unwrap();
        let v = verify::audit(&config, e, &resp).unwrap();
        assert!(
            v.changes.is_empty(),
            "epoch {e} changed {} labels",
            v.changes.len()
        );
    }
    for label in [&b"bad-1"[..], b"bad-2", b"bad-3", b"bad-batch-0"] {
        assert!(!client.lookup(label, None).await.unwrap().is_found());
    }
    assert_eq!(
        client.lookup(b"alice", None).await.unwrap().version(),
        Some(1)
    );

    // Kill (SIGKILL) and restart on the same directory.
    let old_head = client.latest_head().await.unwrap();
    dev.kill();
    let mut dev = Dev::start(tmp.path(), port, 2);
    dev.wait_serving().await;
    assert_eq!(config_of(&dev), config, "same keys, same configuration");

    // A client that remembers the old head accepts the new log only through
    // a consistency proof from it.
    let client2 = Client::connect(url.clone(), PinnedConfig::from(config.clone()))
        .await
        .unwrap()
        .with_tracker(HeadTracker::with_head(old_head.clone()));
    let new_head = wait_epoch_after(&client2, old_head.head.epoch).await;
    assert!(new_head.head.epoch > old_head.head.epoch);
    assert_eq!(client2.head(old_head.head.epoch).await.unwrap(), old_head);
    let v = cli_json(&[
        "verify",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "head",
        &hex::encode(old_head.encode()),
        "--online",
    ]);
    assert!(v["consistent_with_epoch"].as_u64().unwrap() >= new_head.head.epoch);

    // Everything still verifies; the SMT's promise still holds.
    assert_eq!(
        client2.lookup(b"alice", None).await.unwrap().value(),
        Some(&b"alice-key-1"[..])
    );
    assert!(
        client2
            .history(b"alice")
            .await
            .unwrap()
            .contains(1, &smt.smt.leaf_hash)
    );
    let l = cli_json(&[
        "lookup",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "alice",
    ]);
    assert_eq!(l["value"], "alice-key-1");
    let full = cli_json(&["audit", "--target", &url, "--config-digest", &digest]);
    assert!(full["to"].as_u64().unwrap() > old_head.head.epoch);

    // A new version after the restart chains onto the old one.
    let p2 = cli_json(&[
        "publish",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "--token",
        &token,
        "--wait",
        "alice",
        "alice-key-2",
    ]);
    assert_eq!(p2["version"], 2);
    assert!(p2["merged_epoch"].as_u64().is_some());
    let h = cli_json(&[
        "history",
        "--target",
        &url,
        "--config-digest",
        &digest,
        "alice",
    ]);
    let vs = h["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2);
    assert_eq!(
        (vs[0]["value"].as_str(), vs[1]["value"].as_str()),
        (Some("alice-key-1"), Some("alice-key-2"))
    );

    // Graceful shutdown on SIGTERM exits 0.
    let status = dev.terminate();
    assert!(status.success(), "exit {status}\n{}", dev.logs());
}
