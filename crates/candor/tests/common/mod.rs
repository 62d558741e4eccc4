//! Helpers shared by the process-level tests (`candor` run as real processes).

#![allow(dead_code)] // each test binary uses a subset

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::Command;

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_candor");

/// Raft group id of the sequencer.
pub const SEQUENCER_GROUP: u64 = 1 << 32;

/// A port free on `ip` right now (bind to 0 and release).
pub fn free_port(ip: &str) -> u16 {
    StdListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `candor keygen --dir DIR`, which must succeed.
pub fn keygen(dir: &Path) {
    let out = Command::new(BIN)
        .args(["keygen", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "keygen: {out:?}");
}

/// The KeyTransparency service's health at `url`, `None` if it does not answer.
pub async fn health(url: &str) -> Option<ServingStatus> {
    let ch = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .ok()?;
    let req = tonic_health::pb::HealthCheckRequest {
        service: candor_proto::KEY_TRANSPARENCY_SERVICE.into(),
    };
    let r = HealthClient::new(ch).check(req).await.ok()?;
    Some(r.into_inner().status())
}

/// As [`health`], over TLS to an `https://` `url`, trusting the CA bundle `ca_pem`.
pub async fn health_tls(url: &str, ca_pem: &[u8]) -> Option<ServingStatus> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
    let ch = Channel::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .ok()?
        .connect()
        .await
        .ok()?;
    let req = tonic_health::pb::HealthCheckRequest {
        service: candor_proto::KEY_TRANSPARENCY_SERVICE.into(),
    };
    let r = HealthClient::new(ch).check(req).await.ok()?;
    Some(r.into_inner().status())
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `candor dev --data-dir DATA` on a free loopback port (200 ms epochs, 2
/// shards, `env` added), logging to `LOG.stdout.log` / `LOG.stderr.log`, and
/// waits until it is SERVING. Returns the process and its URL.
pub async fn start_dev(data: &Path, log: &Path, env: &[(&str, String)]) -> (Proc, String) {
    let port = free_port("127.0.0.1");
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args(["dev", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--epoch-interval", "200ms", "--shards", "2"])
        .env("CANDOR_LOG", "info")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("stdout.log")).unwrap())
        .stderr(std::fs::File::create(log.with_extension("stderr.log")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc(cmd.spawn().expect("spawn candor dev"));
    for _ in 0..1200 {
        if health(&url).await == Some(ServingStatus::Serving) {
            return (p, url);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("candor dev never became SERVING");
}

/// An SDK client of the `candor dev` whose data directory is `data`: pinned to its
/// `config.bin`, with its dev token.
pub async fn sdk(data: &Path, url: &str) -> candor_client::Client {
    let config = std::fs::read(data.join("config.bin")).unwrap();
    let token = std::fs::read_to_string(data.join("dev-token")).unwrap();
    candor_client::Client::connect(
        url.to_string(),
        candor_client::PinnedConfig::from_config_bytes(&config).unwrap(),
    )
    .await
    .unwrap()
    .with_token(token.trim())
    .unwrap()
}

/// The last `lines` lines of every `*.log` file in `dir` (sorted by name), each
/// under a `--- path` header: what a failing multi-process test prints.
pub fn tail_logs(dir: &Path, lines: usize) -> String {
    let mut s = String::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        s.push_str(&format!("--- {} (last lines)\n", p.display()));
        for l in tail.into_iter().rev() {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}
