//! TLS end to end with real processes: `candor tls gen-dev-certs` makes a CA and node
//! certificates; three `candor serve --role all` members run mutual TLS on the cluster
//! port (`tls.cluster`) and TLS on the API (`tls.api`), configured through the
//! `CANDOR_TLS__*` environment; a `--role api` front door serves TLS and reaches the
//! members over TLS. Publishes and lookups verify through the SDK over TLS (members
//! and front door); `candor cluster status` works with the admin certificate and fails
//! without it; plaintext clients are refused on both ports. No timing is asserted.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candor_client::tls::{Certificate, ClientTlsConfig};
use candor_client::{Client, PinnedConfig};
use candor_proto::raft::v1 as rpb;
use candor_proto::raft::v1::raft_transport_client::RaftTransportClient;
use tonic_health::pb::health_check_response::ServingStatus;

mod common;

use common::{BIN, free_port, health, health_tls, keygen};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Member {
    id: u64,
    ip: String,
    api_port: u16,
    raft_port: u16,
}

impl Member {
    fn url(&self) -> String {
        format!("https://{}:{}", self.ip, self.api_port)
    }
    fn raft_addr(&self) -> String {
        format!("{}:{}", self.ip, self.raft_port)
    }
}

fn logs(dir: &Path) -> String {
    common::tail_logs(dir, 30)
}

/// `command` with the `[tls]` settings of identity `name` (`node-1`, ...) in the env.
fn with_tls(command: &mut Command, certs: &Path, name: &str, cluster: bool) {
    command
        .env("CANDOR_TLS__CERT", certs.join(format!("{name}.crt")))
        .env("CANDOR_TLS__KEY", certs.join(format!("{name}.key")))
        .env("CANDOR_TLS__CA", certs.join("ca.crt"))
        .env(
            "CANDOR_TLS__CLUSTER",
            if cluster { "true" } else { "false" },
        )
        .env("CANDOR_TLS__API", "true");
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).unwrap()
}

fn cluster_status(certs: &Path, admin: &str, tls: bool) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(["cluster", "status", "--json", "--admin", admin])
        .env_remove("CANDOR_TLS_CA")
        .env_remove("CANDOR_TLS_CERT")
        .env_remove("CANDOR_TLS_KEY");
    if tls {
        c.arg("--tls-ca")
            .arg(certs.join("ca.crt"))
            .arg("--tls-cert")
            .arg(certs.join("admin.crt"))
            .arg("--tls-key")
            .arg(certs.join("admin.key"));
    }
    c.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keygen(&dir.join("keys"));
    let certs = dir.join("tls");
    let out = Command::new(BIN)
        .args(["tls", "gen-dev-certs", "--dir"])
        .arg(&certs)
        .args(["--nodes", "1,2,3,4"])
        .args(["--host", "localhost"])
        .args((1..=4).flat_map(|i| ["--host".to_string(), format!("127.0.0.{i}")]))
        .output()
        .unwrap();
    assert!(out.status.success(), "gen-dev-certs: {out:?}");
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();

    let members: Vec<Member> = (1..=3u64)
        .map(|id| {
            let ip = format!("127.0.0.{id}");
            Member {
                id,
                api_port: free_port(&ip),
                raft_port: free_port(&ip),
                ip,
            }
        })
        .collect();
    let mut procs = Vec::new();
    for m in &members {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--role", "all", "--dev-token", "--data-dir"])
            .arg(dir.join(format!("data{}", m.id)))
            .arg("--keys-dir")
            .arg(dir.join("keys"))
            .args(["--node-id", &m.id.to_string()])
            .args(["--listen", &format!("{}:{}", m.ip, m.api_port)])
            .args(["--raft-listen", &m.raft_addr()])
            .args(["--epoch-interval", "300ms", "--shards", "2"])
            .env("CANDOR_LOG", "info,openraft=warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file(dir, &format!("member{}.stdout", m.id)))
            .stderr(log_file(dir, &format!("member{}.stderr", m.id)));
        for o in &members {
            cmd.args(["--member", &format!("{}={}", o.id, o.raft_addr())]);
        }
        if m.id == 1 {
            cmd.arg("--bootstrap");
        }
        with_tls(&mut cmd, &certs, &format!("node-{}", m.id), true);
        procs.push(Proc(cmd.spawn().expect("spawn candor serve")));
    }
    for (i, m) in members.iter().enumerate() {
        let mut serving = false;
        for _ in 0..1200 {
            if let Some(status) = procs[i].0.try_wait().unwrap() {
                panic!("member {} exited with {status}\n{}", m.id, logs(dir));
            }
            if health_tls(&m.url(), &ca).await == Some(ServingStatus::Serving) {
                serving = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(serving, "member {} never SERVING\n{}", m.id, logs(dir));
    }

    // Plaintext is refused on both ports.
    let plain_api = format!("http://{}:{}", members[0].ip, members[0].api_port);
    assert_eq!(health(&plain_api).await, None, "plaintext API served");
    let plain_raft =
        match RaftTransportClient::connect(format!("http://{}", members[0].raft_addr())).await {
            Ok(mut c) => c.status(rpb::StatusRequest {}).await.is_ok(),
            Err(_) => false,
        };
    assert!(!plain_raft, "plaintext Raft status served");

    // The SDK over TLS, against a member.
    let config = std::fs::read(dir.join("data1").join("config.bin")).unwrap();
    let token = std::fs::read_to_string(dir.join("keys").join("dev-token")).unwrap();
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    let pinned = PinnedConfig::from_config_bytes(&config).unwrap();
    let client = Client::connect_tls(members[1].url(), tls.clone(), pinned.clone())
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}\n{}", logs(dir)))
        .with_token(token.trim())
        .unwrap();
    let published = client
        .publish(b"alice", b"alice-key-1")
        .await
        .unwrap_or_else(|e| panic!("publish over TLS: {e}\n{}", logs(dir)));
    tokio::time::timeout(
        Duration::from_secs(120),
        client.wait_merged(b"alice", &published.smt, Duration::from_millis(100)),
    )
    .await
    .expect("merged in time")
    .expect("merged");
    let found = client.lookup(b"alice", None).await.expect("lookup");
    assert_eq!(found.value(), Some(&b"alice-key-1"[..]));

    // The stateless front door: TLS outside, TLS to the members.
    let proxy_port = free_port("127.0.0.4");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--role",
        "api",
        "--listen",
        &format!("127.0.0.4:{proxy_port}"),
    ])
    .env("CANDOR_LOG", "info")
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(log_file(dir, "proxy.stdout"))
    .stderr(log_file(dir, "proxy.stderr"));
    for m in &members {
        cmd.args(["--upstream", &format!("{}:{}", m.ip, m.api_port)]);
    }
    with_tls(&mut cmd, &certs, "node-4", false);
    let _proxy = Proc(cmd.spawn().expect("spawn candor serve --role api"));
    let proxy_url = format!("https://127.0.0.4:{proxy_port}");
    let mut via_proxy = None;
    for _ in 0..600 {
        if let Ok(c) = Client::connect_tls(proxy_url.clone(), tls.clone(), pinned.clone()).await {
            via_proxy = Some(c.with_token(token.trim()).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let via_proxy = via_proxy.unwrap_or_else(|| panic!("front door never answered\n{}", logs(dir)));
    let found = via_proxy
        .lookup(b"alice", None)
        .await
        .expect("lookup via proxy");
    assert_eq!(found.value(), Some(&b"alice-key-1"[..]));
    let p2 = via_proxy
        .publish(b"bob", b"bob-key-1")
        .await
        .expect("publish via proxy");
    tokio::time::timeout(
        Duration::from_secs(120),
        via_proxy.wait_merged(b"bob", &p2.smt, Duration::from_millis(100)),
    )
    .await
    .expect("merged in time")
    .expect("merged");
    let history = via_proxy.history(b"bob").await.expect("history");
    assert_eq!(history.latest_version(), 1);

    // The client commands over TLS (`--tls-ca`), pinned by digest.
    let digest = hex::encode(pinned.digest());
    let out = Command::new(BIN)
        .args([
            "lookup",
            "--target",
            &proxy_url,
            "--config-digest",
            &digest,
            "--json",
        ])
        .arg("--tls-ca")
        .arg(certs.join("ca.crt"))
        .arg("bob")
        .env_remove("CANDOR_TLS_CA")
        .output()
        .expect("candor lookup");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("bob-key-1"),
        "candor lookup over TLS: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The load generator over TLS.
    let out = Command::new(BIN)
        .args(["bench", "--target", &proxy_url, "--config-digest", &digest])
        .args([
            "--mix",
            "new=50,lookup=50",
            "--ops",
            "40",
            "--concurrency",
            "4",
            "--quiet",
        ])
        .args(["--token", token.trim()])
        .arg("--tls-ca")
        .arg(certs.join("ca.crt"))
        .env_remove("CANDOR_TLS_CA")
        .output()
        .expect("candor bench");
    assert!(
        out.status.success(),
        "candor bench over TLS: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An https:// target without a CA is a usage error (exit 1), not a hang.
    let out = Command::new(BIN)
        .args([
            "lookup",
            "--target",
            &proxy_url,
            "--config-digest",
            &digest,
            "bob",
        ])
        .env_remove("CANDOR_TLS_CA")
        .output()
        .expect("candor lookup");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The admin CLI over mTLS; refused without the client certificate settings.
    let admin = members[2].raft_addr();
    let out = cluster_status(&certs, &admin, true);
    assert!(
        out.status.success(),
        "cluster status over mTLS: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs(dir)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups = status["groups"].as_array().expect("groups");
    assert!(!groups.is_empty());
    for g in groups {
        assert_eq!(g["voters"].as_array().map(Vec::len), Some(3), "{g}");
    }
    assert_eq!(status["unreachable"].as_array().map(Vec::len), Some(0));
    let out = cluster_status(&certs, &admin, false);
    assert_eq!(out.status.code(), Some(2), "plaintext admin: {out:?}");
}
