//! Hardening regressions (issue #16), each over gRPC or the CLI against a real
//! `candor dev` process: tenant isolation, per-method request limits,
//! authentication before the body, malformed messages, far-future epochs,
//! reflection, per-tenant rates, idle connections and the connection cap.
//!
//! No test asserts a duration: every wait is a poll with a generous bound that only
//! exists so a broken build fails instead of hanging.

use std::io::Read;
use std::net::{TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut};
use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_candor");
/// Tenant `b`'s bearer token (configured by hash).
const TOKEN_B: &str = "tenant-b-secret-token-0123456789abcdef";

struct Dev {
    child: Child,
    dir: PathBuf,
    url: String,
    port: u16,
}

impl Dev {
    /// `candor dev` with tenant `b` beside the dev tenant and `limits` (TOML lines
    /// of `[api.limits]`).
    fn start(dir: &Path, limits: &str, epoch_interval: &str) -> Dev {
        Dev::start_with(dir, "", limits, epoch_interval, free_port())
    }

    /// As [`Dev::start`], with top-level TOML lines `top` and a given port.
    fn start_with(dir: &Path, top: &str, limits: &str, epoch_interval: &str, port: u16) -> Dev {
        let config = dir.join("candor.toml");
        std::fs::write(
            &config,
            format!(
                "{top}\n[api.limits]\n{limits}\n[[api.tenants]]\nname = \"b\"\ntoken_hash = \"{}\"\n",
                hex::encode(candor_api::hash_token(TOKEN_B))
            ),
        )
        .unwrap();
        let log = |name: &str| std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["dev", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--epoch-interval", epoch_interval, "--shards", "4"])
            .env("CANDOR_LOG", "debug")
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
            port,
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for n in ["stdout", "stderr"] {
            s.push_str(
                &std::fs::read_to_string(self.dir.join(format!("{n}.log"))).unwrap_or_default(),
            );
        }
        s
    }

    fn dev_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/dev-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

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

    async fn client(&self) -> KeyTransparencyClient<Channel> {
        KeyTransparencyClient::connect(self.url.clone())
            .await
            .unwrap()
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// Sends raw bytes as a request message and returns the raw answer.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEnc;
struct RawDec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut v = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

async fn raw_call(url: &str, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let ch = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_over_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(
        tmp.path(),
        "max_batch_items = 10\ntenant_items_per_second = 1\ntenant_burst_items = 10\n",
        // Long enough that the old catch-up hold (two intervals) outlasts the
        // 1 s deadline of check 6.
        "1s",
    );
    dev.wait_serving().await;
    let dev_token = dev.dev_token();
    let mut c = dev.client().await;

    // 1. Labels belong to the tenant that first published them.
    c.publish(authed(item(b"alice", b"a-key-1"), Some(&dev_token)))
        .await
        .expect("first publish by the dev tenant");
    let s = c
        .publish(authed(item(b"alice", b"evil"), Some(TOKEN_B)))
        .await
        .expect_err("another tenant's write");
    assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
    // Tenant b has labels of its own.
    c.publish(authed(item(b"bob", b"b-key-1"), Some(TOKEN_B)))
        .await
        .expect("tenant b's own label");

    // 2. A lookup request is tiny: a 100 KiB one is refused for its size.
    let s = c
        .lookup(pb::LookupRequest {
            label: vec![b'x'; 100 << 10],
            epoch: None,
        })
        .await
        .expect_err("oversized lookup");
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());

    // 3. Writes are authenticated before their body is read: a 70 MB unauthenticated
    //    publish is UNAUTHENTICATED (not read, not "message too large").
    let s = c
        .publish(authed(item(b"carol", &vec![0u8; 70 << 20]), None))
        .await
        .expect_err("unauthenticated huge publish");
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());

    // 4. A batch body beyond limits.max_batch_request_bytes (8 MiB) is refused for its
    //    size, however many items it claims.
    let big: Vec<_> = (0..140u32)
        .map(|i| item(format!("big-{i}").as_bytes(), &vec![1u8; 64 << 10]))
        .collect();
    let s = c
        .publish_batch(authed(
            pb::PublishBatchRequest { items: big },
            Some(&dev_token),
        ))
        .await
        .expect_err("oversized batch");
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());

    // 5. A message that does not parse is the caller's fault.
    let s = raw_call(
        &dev.url,
        "/candor.v1.KeyTransparency/Lookup",
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    )
    .await
    .expect_err("garbage");
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());

    // 6. An epoch far beyond the latest is NOT_FOUND at once, not held for two epoch
    //    intervals: with a 1 s server-side deadline (grpc-timeout) the old hold ended
    //    in CANCELLED.
    let mut req = tonic::Request::new(pb::LookupRequest {
        label: b"alice".to_vec(),
        epoch: Some(u64::MAX),
    });
    req.set_timeout(Duration::from_secs(1));
    let s = tokio::time::timeout(Duration::from_secs(30), c.lookup(req))
        .await
        .expect("answered")
        .expect_err("epoch 2^64-1");
    assert_eq!(s.code(), Code::NotFound, "{}", s.message());

    // 7. Per-tenant publish rate (1 item/s, burst 10): publishing at full speed is
    //    soon RESOURCE_EXHAUSTED with a retry delay, after the burst passed; another
    //    tenant is unaffected. (A loop, not "the 11th": no assumption on call time.)
    let mut refused = None;
    for i in 0..40u32 {
        let r = c
            .publish(authed(
                item(format!("rate-{i}").as_bytes(), b"v"),
                Some(&dev_token),
            ))
            .await;
        if let Err(s) = r {
            refused = Some((i, s));
            break;
        }
    }
    let (passed, s) = refused.expect("40 publishes at full speed never hit 1 item/s");
    assert!(
        passed >= 5,
        "only {passed} publishes passed: the burst is 10"
    );
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    let retry: u64 = s
        .metadata()
        .get("retry-after-ms")
        .expect("retry-after-ms")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(s.metadata().get("grpc-retry-pushback-ms").is_some());
    c.publish(authed(item(b"bob", b"b-key-2"), Some(TOKEN_B)))
        .await
        .expect("tenant b has its own allowance");

    // 8. Reflection: v1 and v1alpha both answer, and list only what this port serves.
    for v1alpha in [false, true] {
        let names = list_services(&dev.url, v1alpha).await;
        assert!(
            names
                .iter()
                .any(|n| n == candor_proto::KEY_TRANSPARENCY_SERVICE),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
        assert!(
            !names
                .iter()
                .any(|n| n.contains("raft") || n.contains("admin")),
            "reflection lists internal services: {names:?}"
        );
    }

    // 9. Nothing secret reaches the logs (debug level, after every call above).
    let logs = dev.logs();
    assert!(!logs.contains(TOKEN_B), "tenant b's token in the logs");
    assert!(!logs.contains(&dev_token), "the dev token in the logs");
    for f in std::fs::read_dir(tmp.path().join("data/keys"))
        .unwrap()
        .flatten()
    {
        let secret = std::fs::read_to_string(f.path()).unwrap_or_default();
        let secret = secret.trim();
        if secret.len() >= 32 {
            assert!(
                !logs.contains(secret),
                "key file {} in the logs",
                f.path().display()
            );
        }
    }

    // The service is still whole: alice is the dev tenant's.
    let r = c
        .lookup(pb::LookupRequest {
            label: b"alice".to_vec(),
            epoch: None,
        })
        .await
        .expect("lookup")
        .into_inner();
    if r.found {
        assert_eq!(r.value, b"a-key-1", "another tenant changed alice");
    }
}

async fn list_services(url: &str, v1alpha: bool) -> Vec<String> {
    let ch = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    if v1alpha {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut c = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut s = c
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        match s.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut c = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut s = c
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("v1 reflection")
            .into_inner();
        match s.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Idle connections are closed, and the connection cap refuses one more at accept
/// while the API keeps answering once slots free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_idle_connections_and_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(
        tmp.path(),
        "max_connections = 8\nidle_timeout_ms = 1000\n",
        "200ms",
    );
    dev.wait_serving().await;
    // The health probe's connection closes by itself once idle; wait until every
    // slot is free again (a fresh connection survives the accept).
    let addr = format!("127.0.0.1:{}", dev.port);
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Give the server a moment to accept the eight before the ninth.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Each idle socket is closed by the server (EOF), never left open.
    let closed = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for mut s in idle {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut b = [0u8; 64];
            // The server may send nothing (no HTTP/2 preface from us) and then close.
            loop {
                match s.read(&mut b) {
                    Ok(0) => {
                        closed += 1;
                        break;
                    }
                    Ok(_) => continue,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        break;
                    }
                    Err(_) => {
                        closed += 1;
                        break;
                    }
                }
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(closed, 8, "idle connections left open\n{}", dev.logs());
    // Slots are free again: the API answers.
    let mut c = dev.client().await;
    c.get_latest_epoch(pb::GetLatestEpochRequest {})
        .await
        .expect("API reachable after idle connections were closed");

    // The cap: hold 8 connections busy with traffic-free sockets, then a 9th is
    // closed at accept, and a WARN line says why.
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ninth = TcpStream::connect(&addr).unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut b = [0u8; 16];
    let r = ninth.read(&mut b);
    assert!(
        matches!(r, Ok(0))
            || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection over the cap was not closed at once: {r:?}"
    );
    drop(held);
    let mut logged = false;
    for _ in 0..100 {
        if dev.logs().contains("limits.max_connections reached") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged, "no log line when the cap bit\n{}", dev.logs());
}

/// `candor bench` backs off while the server is down and exits non-zero when errors
/// pass `--max-error-ratio`. (Before: no pause between failed calls, millions of
/// errors, exit 0.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_bench_backs_off_and_fails_on_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(tmp.path(), "", "200ms");
    dev.wait_serving().await;
    let json = tmp.path().join("bench.json");
    let mut bench = Command::new(BIN)
        .args(["bench", "--target", &dev.url, "--pin"])
        .arg(tmp.path().join("data/config.bin"))
        .args(["--token", &dev.dev_token()])
        .args([
            "--mix",
            "lookup=100",
            "--concurrency",
            "4",
            "--duration",
            "6s",
        ])
        .args(["--preload", "0", "--merge-sample", "0", "--quiet", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it run against a live server, then take the server away for the rest.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = dev.child.kill();
    let status = tokio::task::spawn_blocking(move || bench.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(2), "bench with errors must fail");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let errors: u64 = report["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    // 4 workers backing off up to 1 s for ~5 s make a few dozen failed calls; without
    // backoff a refused connection fails in microseconds, thousands of times.
    assert!(errors > 0, "{report}");
    assert!(errors < 1000, "no backoff: {errors} errors\n{report}");
}

/// `candor serve` defaults: a plaintext public API on a non-loopback address is
/// refused unless `--insecure` (and nothing is created); a member accepts the dev
/// token only with `--dev-token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_serve_safe_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys = dir.join("keys");
    let out = Command::new(BIN)
        .args(["keygen", "--dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dev_token = std::fs::read_to_string(keys.join("dev-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (port, raft) = (free_port(), free_port());
    let serve = |listen: String, extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--role", "all", "--node-id", "1", "--bootstrap"])
            .arg("--keys-dir")
            .arg(&keys)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", &listen])
            .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
            .args(["--member", &format!("1=127.0.0.1:{raft}")])
            .args(["--epoch-interval", "300ms", "--shards", "4"])
            .args(extra)
            .env("CANDOR_LOG", "info,openraft=warn")
            .env_remove("RUST_LOG")
            .env_remove("CANDOR_API__DEV_TOKEN")
            .env_remove("CANDOR_API__INSECURE")
            .stdin(Stdio::null());
        cmd
    };

    // 1. Every interface, no TLS, no --insecure: refused at start, usage exit 1.
    let out = serve(format!("0.0.0.0:{port}"), &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );
    assert!(!dir.join("data").exists(), "a refused start created state");

    // 2. With --insecure it serves; without --dev-token the dev token is refused.
    let log = |name: &str| std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = serve(format!("0.0.0.0:{port}"), &["--insecure"])
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .spawn()
        .unwrap();
    let mut member = Dev {
        child,
        dir: dir.to_path_buf(),
        url: format!("http://127.0.0.1:{port}"),
        port,
    };
    member.wait_serving().await;
    let mut c = member.client().await;
    let e = c
        .publish(authed(item(b"alice", b"k"), Some(&dev_token)))
        .await
        .expect_err("the dev token was accepted without --dev-token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let logs = member.logs();
    assert!(!logs.contains(&dev_token), "the dev token in the logs");
}

/// Single node past a restart: mutations acknowledged but not yet sealed when the
/// process died are all merged in the first epoch the restarted process signs. The
/// sealer is slowed to once a minute so that nothing is sealed before the kill,
/// and after the restart only the epoch ticker's seal-on-leadership can merge them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_single_node_restart_merges_pending_in_first_epoch() {
    use candor_client::{Client, PinnedConfig, PublishItem};
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let top = "seal_interval_ms = 60000\nmax_merge_delay_ms = 120000";
    let mut dev = Dev::start_with(tmp.path(), top, "", "500ms", port);
    dev.wait_serving().await;
    let config = std::fs::read(tmp.path().join("data/config.bin")).unwrap();
    let connect = || async {
        Client::connect(
            dev_url(port),
            PinnedConfig::from_config_bytes(&config).unwrap(),
        )
        .await
        .unwrap()
    };
    let token = dev.dev_token();
    let c = connect().await.with_token(&token).unwrap();
    let items: Vec<PublishItem> = (0..40u32)
        .map(|i| PublishItem::new(format!("restart-{i}"), format!("key-{i}")))
        .collect();
    let acked = c.publish_batch(&items).await.expect("acknowledged");
    let before = c.latest_head().await.unwrap().head.epoch;

    // Power off: SIGKILL, nothing flushed beyond what was acknowledged.
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    drop(dev);
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut dev = Dev::start_with(tmp.path(), top, "", "500ms", port);
    dev.wait_serving().await;
    let c = connect().await;

    // The first head signed after the restart (timestamp at or after it).
    let mut first = None;
    for _ in 0..600 {
        let latest = c.latest_head().await.unwrap().head.epoch;
        for e in before + 1..=latest {
            let h = c.head(e).await.unwrap();
            if h.head.timestamp_ms >= restarted_at {
                println!(
                    "restart: killed, started again, epoch {e} signed {} ms after the restart",
                    h.head.timestamp_ms - restarted_at
                );
                first = Some(e);
                break;
            }
        }
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first.expect("an epoch signed after the restart");
    for (item, p) in items.iter().zip(&acked) {
        let l = c.lookup(&item.label, Some(first)).await.unwrap();
        let entry = l.entry.unwrap_or_else(|| {
            panic!(
                "{} (acknowledged before the kill) is not in epoch {first}, the first after \
                 the restart\n{}",
                String::from_utf8_lossy(&item.label),
                dev.logs()
            )
        });
        assert_eq!(entry.version, p.version);
        assert_eq!(entry.leaf_hash, p.leaf_hash);
    }
}

fn dev_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Signing-key rotation (#16): `candor keys rotate` and a restart switch the head and
/// SMT keys; a client pinned before keeps verifying (it follows the rotation
/// statement), heads signed before still verify, a client pinned to the new
/// configuration verifies the old heads, an auditor checks every transition across
/// the rotation, and a tampered rotation is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_signing_key_rotation() {
    use candor_client::auditor::Auditor;
    use candor_client::{Client, PinnedConfig, verify};
    use candor_core::signed::{PublicConfig, SigningKeyPair};
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Dev::start_with(tmp.path(), "", "", "300ms", port);
    dev.wait_serving().await;
    let genesis = std::fs::read(tmp.path().join("data/config.bin")).unwrap();
    let old = Client::connect(
        dev_url(port),
        PinnedConfig::from_config_bytes(&genesis).unwrap(),
    )
    .await
    .unwrap()
    .with_token(&dev.dev_token())
    .unwrap();
    let a = old.publish(b"alice", b"key-1").await.unwrap();
    old.wait_merged(b"alice", &a.smt, Duration::from_millis(50))
        .await
        .unwrap();
    let before = old.latest_head().await.unwrap();

    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    drop(dev);
    let out = Command::new(BIN)
        .args(["keys", "rotate", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("data/keys/head-2.key").exists());
    let mut dev = Dev::start_with(tmp.path(), "", "", "300ms", port);
    dev.wait_serving().await;

    // The service now signs under a second configuration and serves the chain. The
    // rotation is a replicated command the leader proposes once it is elected, so it
    // lands shortly after the member reports SERVING: wait for it (bounded).
    let mut raw = dev.client().await;
    let mut served = raw
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    for _ in 0..300 {
        if served.history.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        served = raw
            .get_config(pb::GetConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    }
    assert_eq!(
        served.history.len(),
        2,
        "GetConfig serves both configurations"
    );
    assert_eq!(served.history[0].config, genesis);
    let current = PublicConfig::decode(&served.config).unwrap();
    assert_ne!(current.encode(), genesis);
    assert_eq!(
        current.vrf_key,
        PublicConfig::decode(&genesis).unwrap().vrf_key,
        "the VRF key stays"
    );

    // The client pinned before the rotation, still connected: new heads and SMTs
    // verify once it has followed the rotation.
    let mut latest = old.latest_head().await.unwrap();
    for _ in 0..100 {
        if latest.head.config_digest == current.digest() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        latest = old.latest_head().await.unwrap();
    }
    assert_eq!(latest.head.config_digest, current.digest());
    assert_eq!(old.chain().len(), 2);
    let l = old.lookup(b"alice", None).await.unwrap();
    assert_eq!(l.entry.unwrap().version, 1);
    let b = old.publish(b"bob", b"key-b").await.unwrap();
    old.wait_merged(b"bob", &b.smt, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        b.smt
            .verify(&PublicConfig::decode(&genesis).unwrap())
            .is_err(),
        "the new SMT is signed with the new key"
    );
    // Heads signed before the rotation still verify, under the first configuration.
    let h = old.head(before.head.epoch).await.unwrap();
    assert_eq!(h, before);

    // A client pinned to the new configuration verifies the old heads backwards.
    let new = Client::connect(dev_url(port), PinnedConfig::from(current.clone()))
        .await
        .unwrap();
    assert_eq!(new.head(1).await.unwrap().head.epoch, 1);
    let at = new.lookup(b"alice", Some(before.head.epoch)).await.unwrap();
    assert_eq!(at.entry.unwrap().version, 1);

    // An auditor checks every transition, across the rotation.
    let mut auditor = Auditor::new(
        PublicConfig::decode(&genesis).unwrap(),
        SigningKeyPair::generate(),
    );
    let reports = auditor.follow(&new, false, None).await.unwrap();
    assert!(reports.len() as u64 > before.head.epoch);
    for r in &reports {
        assert!(r.accepted, "epoch {} refused: {:?}", r.epoch, r.events);
    }

    // A tampered rotation statement (any byte) is refused.
    let pin = PinnedConfig::from_config_bytes(&genesis).unwrap();
    verify::config_chain(&pin, &served).unwrap();
    for i in [0, 20, 60, 100, served.history[1].rotation.len() - 1] {
        let mut bad = served.clone();
        bad.history[1].rotation[i] ^= 1;
        assert!(verify::config_chain(&pin, &bad).is_err(), "byte {i}");
    }
    // So is a new configuration that is not the one the statement names.
    let mut bad = served.clone();
    let mut other = current.clone();
    other.smt_key = SigningKeyPair::generate().public_key();
    bad.history[1].config = other.encode();
    bad.config = other.encode();
    assert!(verify::config_chain(&pin, &bad).is_err());
}

/// Erasure (#14): the owner erases a version's value; lookups and histories serve
/// it as redacted and verify, audits still verify, another tenant cannot erase,
/// a missing version is NOT_FOUND, erasing twice is harmless, and the erasure
/// survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_redacts_a_version_and_every_proof_still_verifies() {
    use candor_client::{Client, ClientError, PinnedConfig};
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Dev::start_with(tmp.path(), "", "", "200ms", port);
    dev.wait_serving().await;
    let pin = || {
        PinnedConfig::from_config_bytes(&std::fs::read(tmp.path().join("data/config.bin")).unwrap())
            .unwrap()
    };
    let owner = Client::connect(dev_url(port), pin())
        .await
        .unwrap()
        .with_token(&dev.dev_token())
        .unwrap();
    for v in [b"key-1", b"key-2"] {
        let p = owner.publish(b"alice", v).await.unwrap();
        owner
            .wait_merged(b"alice", &p.smt, Duration::from_millis(50))
            .await
            .unwrap();
    }
    let status = |e: ClientError| match e {
        ClientError::Status(s) => s.code(),
        other => panic!("not a status: {other}"),
    };
    // Another tenant may not erase; a version that does not exist is NOT_FOUND.
    let other = Client::connect(dev_url(port), pin())
        .await
        .unwrap()
        .with_token(TOKEN_B)
        .unwrap();
    assert_eq!(
        status(other.erase(b"alice", 1).await.unwrap_err()),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        status(owner.erase(b"alice", 9).await.unwrap_err()),
        tonic::Code::NotFound
    );
    assert_eq!(
        status(owner.erase(b"nobody", 1).await.unwrap_err()),
        tonic::Code::NotFound
    );
    owner.erase(b"alice", 1).await.unwrap();
    owner.erase(b"alice", 1).await.unwrap();
    let h = owner.history(b"alice").await.unwrap();
    let values: Vec<Option<Vec<u8>>> = h.history.versions.iter().map(|v| v.value.clone()).collect();
    assert_eq!(values, vec![None, Some(b"key-2".to_vec())]);
    owner.erase(b"alice", 2).await.unwrap();
    let l = owner.lookup(b"alice", None).await.unwrap();
    let e = l.entry.unwrap();
    assert_eq!((e.version, e.value), (2, None), "served as redacted");
    // Erasure changes no leaf: every transition still audits.
    let latest = owner.latest_head().await.unwrap().head.epoch;
    candor_client::audit_range(&owner, 1, latest).await.unwrap();

    // Durable across a restart.
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    drop(dev);
    let mut dev = Dev::start_with(tmp.path(), "", "", "200ms", port);
    dev.wait_serving().await;
    let again = Client::connect(dev_url(port), pin()).await.unwrap();
    let h = again.history(b"alice").await.unwrap();
    assert!(h.history.versions.iter().all(|v| v.value.is_none()));
    drop(dev);
}
