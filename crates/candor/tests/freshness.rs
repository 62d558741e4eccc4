//! The freshness rule through the CLI (docs/protocol.md §9.4): a replaying
//! service that answers "latest" with an older, validly signed lookup is
//! refused with exit 3 once the CLI has seen a newer head; and `verify smt
//! --label OTHER` is a verification failure (exit 3). Never asserts timing:
//! every wait is a bounded poll.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use candor_proto::candor::v1::key_transparency_server::{KeyTransparency, KeyTransparencyServer};
use tonic::{Request, Response, Status};

const BIN: &str = env!("CARGO_BIN_EXE_candor");

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(args: &[&str], state: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("CANDOR_STATE_DIR", state)
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

/// A test double of the service that replays what it captured: the real
/// configuration, and one old (validly signed) lookup answer as the latest.
/// With `silent`, it answers no publish and no health probe (a member
/// partitioned from the front door or paused), counting the publishes.
struct Replay {
    config: pb::GetConfigResponse,
    lookup: pb::LookupResponse,
    silent: Option<Arc<AtomicUsize>>,
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl KeyTransparency for Replay {
    async fn publish(&self, _: Request<pb::PublishRequest>) -> Res<pb::PublishResponse> {
        if let Some(n) = &self.silent {
            n.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        Err(Status::unimplemented("replay"))
    }
    async fn publish_batch(
        &self,
        _: Request<pb::PublishBatchRequest>,
    ) -> Res<pb::PublishBatchResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn lookup(&self, _: Request<pb::LookupRequest>) -> Res<pb::LookupResponse> {
        Ok(Response::new(self.lookup.clone()))
    }
    async fn history(&self, _: Request<pb::HistoryRequest>) -> Res<pb::HistoryResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Res<pb::GetConfigResponse> {
        Ok(Response::new(self.config.clone()))
    }
    async fn get_epoch(&self, _: Request<pb::GetEpochRequest>) -> Res<pb::SignedHeadResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn get_latest_epoch(
        &self,
        _: Request<pb::GetLatestEpochRequest>,
    ) -> Res<pb::SignedHeadResponse> {
        if self.silent.is_some() {
            std::future::pending::<()>().await;
        }
        Err(Status::unimplemented("replay"))
    }
    type WatchEpochsStream =
        tonic::codegen::tokio_stream::Empty<Result<pb::SignedHeadResponse, Status>>;
    async fn watch_epochs(
        &self,
        _: Request<pb::WatchEpochsRequest>,
    ) -> Res<Self::WatchEpochsStream> {
        Err(Status::unimplemented("replay"))
    }
    async fn consistency(
        &self,
        _: Request<pb::ConsistencyRequest>,
    ) -> Res<pb::ConsistencyResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn audit(&self, _: Request<pb::AuditRequest>) -> Res<pb::AuditResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn submit_cosignature(&self, _: Request<pb::CosignRequest>) -> Res<pb::CosignResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn get_cosignatures(
        &self,
        _: Request<pb::GetCosignaturesRequest>,
    ) -> Res<pb::GetCosignaturesResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn erase(&self, _: Request<pb::EraseRequest>) -> Res<pb::EraseResponse> {
        Err(Status::unimplemented("replay"))
    }
    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Res<pb::GetCheckpointResponse> {
        Err(Status::unimplemented("replay"))
    }
}

async fn connect(url: &str) -> KeyTransparencyClient<tonic::transport::Channel> {
    for _ in 0..600 {
        if let Ok(c) = KeyTransparencyClient::connect(url.to_owned()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never accepted a connection");
}

/// Polls until the service answers a lookup at an epoch above `above`.
async fn lookup_after(
    raw: &mut KeyTransparencyClient<tonic::transport::Channel>,
    label: &[u8],
    above: u64,
) -> pb::LookupResponse {
    for _ in 0..1200 {
        if let Ok(r) = raw
            .lookup(pb::LookupRequest {
                label: label.to_vec(),
                epoch: None,
            })
            .await
            && r.get_ref().epoch > above
        {
            return r.into_inner();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no epoch above {above}");
}

/// A running `candor dev` (see [`start_dev`]).
struct Dev {
    _proc: Kill,
    url: String,
    raw: KeyTransparencyClient<tonic::transport::Channel>,
    /// Its first lookup of alice@example.com (an epoch that will be old).
    old: pb::LookupResponse,
    config: pb::GetConfigResponse,
}

/// A `candor dev` (2 shards, 200 ms epochs) on `data`, logging into `dir`,
/// once it has answered a lookup.
async fn start_dev(dir: &Path, data: &Path) -> Dev {
    let port = free_port();
    let log = std::fs::File::create(dir.join("dev.log")).unwrap();
    let proc = Kill(
        Command::new(BIN)
            .args(["dev", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--epoch-interval", "200ms", "--shards", "2"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut raw = connect(&url).await;
    let old = lookup_after(&mut raw, b"alice@example.com", 0).await;
    let config = raw
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    Dev {
        _proc: proc,
        url,
        raw,
        old,
        config,
    }
}

/// Serves `double` on a free port; its URL, once it accepts connections.
async fn serve_double(double: Replay) -> String {
    let port = free_port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KeyTransparencyServer::new(double))
            .serve(format!("127.0.0.1:{port}").parse().unwrap()),
    );
    let url = format!("http://127.0.0.1:{port}");
    connect(&url).await;
    url
}

/// A front door (`ApiProxy`) over `upstreams`, served on a free port; a client
/// of it.
async fn front_door(
    upstreams: Vec<String>,
    call_timeout: Duration,
) -> KeyTransparencyClient<tonic::transport::Channel> {
    let proxy = candor_api::ApiProxy::new(candor_api::ProxyOptions {
        upstreams,
        call_timeout,
        ..candor_api::ProxyOptions::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(candor_api::serve_proxy(
        listener,
        proxy,
        std::future::pending(),
    ));
    connect(&front).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_head_replayed_as_latest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let state = dir.path().join("state");
    let mut dev = start_dev(dir.path(), &data).await;
    lookup_after(&mut dev.raw, b"alice@example.com", dev.old.epoch + 2).await;

    let data_s = data.to_str().unwrap();
    // The honest service: the CLI sees (and remembers) a newer epoch.
    let (code, out, err) = cli(
        &[
            "lookup",
            "--target",
            &dev.url,
            "--data-dir",
            data_s,
            "--json",
            "alice@example.com",
        ],
        &state,
    );
    assert_eq!(code, 0, "{out}{err}");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(seen["epoch"].as_u64().unwrap() > dev.old.epoch);

    // The replaying double: epoch `dev.old.epoch` as the latest.
    let rurl = serve_double(Replay {
        config: dev.config.clone(),
        lookup: dev.old.clone(),
        silent: None,
    })
    .await;
    let (code, out, err) = cli(
        &[
            "lookup",
            "--target",
            &rurl,
            "--data-dir",
            data_s,
            "alice@example.com",
        ],
        &state,
    );
    assert_eq!(code, 3, "a replayed head must be refused: {out}{err}");
    assert!(err.contains("stale head"), "{err}");
    assert!(err.contains("already saw epoch"), "{err}");
    assert!(out.is_empty(), "nothing is shown as current: {out}");

    // A client without memory is protected by the head age only: with a
    // maximum age below the replayed head's age it is refused too.
    let fresh = dir.path().join("fresh-state");
    let (code, _, err) = cli(
        &[
            "lookup",
            "--target",
            &rurl,
            "--data-dir",
            data_s,
            "--max-head-age",
            "1ms",
            "alice@example.com",
        ],
        &fresh,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("maximum head age"), "{err}");

    // `verify smt --label OTHER`: an SMT for another label is a
    // verification failure (exit 3), not a usage error.
    let token = std::fs::read_to_string(data.join("dev-token")).unwrap();
    let (code, out, err) = cli(
        &[
            "publish",
            "--target",
            &dev.url,
            "--data-dir",
            data_s,
            "--token",
            token.trim(),
            "--json",
            "bob@example.com",
            "bob key",
        ],
        &state,
    );
    assert_eq!(code, 0, "{out}{err}");
    let p: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let smt = p["smt"].as_str().unwrap();
    let (code, _, err) = cli(
        &[
            "verify",
            "--target",
            &dev.url,
            "--data-dir",
            data_s,
            "smt",
            smt,
            "--label",
            "carol@example.com",
        ],
        &state,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not for \"carol@example.com\""), "{err}");
}

/// Issue 19: through a front door (`ApiProxy`), a client's epoch never goes back.
/// One upstream is the real service, the other a member stuck at an old epoch (the
/// replaying double: what a member cut off from the others serves). Every latest
/// read through the front door is at an epoch at least as new as the previous one,
/// and once a newer epoch was served the stuck member's answer is never returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_door_never_serves_an_older_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut dev = start_dev(dir.path(), &data).await;
    lookup_after(&mut dev.raw, b"alice@example.com", dev.old.epoch + 2).await;

    let stuck_url = serve_double(Replay {
        config: dev.config.clone(),
        lookup: dev.old.clone(),
        silent: None,
    })
    .await;
    let default_timeout = candor_api::ProxyOptions::default().call_timeout;
    let mut client = front_door(vec![stuck_url, dev.url.clone()], default_timeout).await;
    let mut epochs = Vec::new();
    for _ in 0..40 {
        let r = client
            .lookup(pb::LookupRequest {
                label: b"alice@example.com".to_vec(),
                epoch: None,
            })
            .await
            .expect("the current member answers every latest read")
            .into_inner();
        epochs.push(r.epoch);
    }
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "the epoch went back through the front door: {epochs:?}"
    );
    let newer = epochs
        .iter()
        .position(|&e| e > dev.old.epoch)
        .expect("a newer epoch");
    assert!(
        epochs[newer..].iter().all(|&e| e > dev.old.epoch),
        "the stuck member's epoch was served after a newer one: {epochs:?}"
    );
}

/// A member that falls silent (partitioned from the front door, or paused)
/// answers neither calls nor health probes. A front door used to wait for it
/// for the whole call timeout on every call routed there: in the multi-host
/// test, each fault on one member stalled every client for the fault's
/// length. With an hour's call timeout, every keyed publish here must still
/// complete, and once a probe finds the silent member down no publish is
/// routed to it (round robin alone would send it every other one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_door_routes_around_a_member_that_falls_silent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Dev {
        _proc,
        url,
        old,
        config,
        ..
    } = start_dev(dir.path(), &data).await;
    let token = std::fs::read_to_string(data.join("dev-token")).unwrap();

    let silent_publishes = Arc::new(AtomicUsize::new(0));
    let silent_url = serve_double(Replay {
        config,
        lookup: old,
        silent: Some(Arc::clone(&silent_publishes)),
    })
    .await;
    let mut client = front_door(vec![silent_url, url], Duration::from_secs(3600)).await;
    let publish = |n: u32| {
        let mut r = Request::new(pb::PublishRequest {
            label: format!("user{n}@example.com").into_bytes(),
            value: b"key".to_vec(),
            idempotency_key: format!("silent-test-{n}"),
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token.trim()).parse().unwrap(),
        );
        r
    };
    for n in 0..10 {
        let r = tokio::time::timeout(Duration::from_secs(300), client.publish(publish(n)))
            .await
            .unwrap_or_else(|_| panic!("publish {n} waited on the silent member"));
        assert_eq!(r.expect("the live member answers").into_inner().version, 1);
    }
    let routed = silent_publishes.load(Ordering::SeqCst);
    assert!(
        routed <= 1,
        "{routed} of 10 publishes were routed to a member already found down"
    );
}
