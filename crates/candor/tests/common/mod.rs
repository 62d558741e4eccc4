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
