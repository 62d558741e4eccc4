//! A fake `KeyTransparency` gRPC server over a [`World`] on 127.0.0.1:0.
//! Tests swap or mutate the world (a fork, a rewritten epoch) to make it
//! misbehave.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use candor_core::signed::Cosignature;
use candor_proto::candor::v1::{
    self as pb,
    key_transparency_server::{KeyTransparency, KeyTransparencyServer},
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::World;

type Res<T> = Result<Response<T>, Status>;
/// (label, value, response) of an idempotency key.
type Remembered = (Vec<u8>, Vec<u8>, pb::PublishResponse);

pub struct Fake {
    pub world: Mutex<World>,
    /// When set, writes need `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The next this-many publishes are applied but answered UNAVAILABLE
    /// (the reply was lost), so the client must retry with the same key.
    pub lose_replies: AtomicU32,
    pub publish_calls: AtomicU32,
    idem: Mutex<HashMap<String, Remembered>>,
    pub cosignatures: Mutex<BTreeMap<u64, Vec<Vec<u8>>>>,
    /// When set, "the latest epoch" is answered with this older epoch (a
    /// replaying service, for the freshness rule).
    pub replay_latest: Mutex<Option<u64>>,
    /// Versions per history page (0: 2); pages are served only when asked.
    pub page_versions: AtomicU32,
}

impl Fake {
    pub fn new(world: World) -> Arc<Self> {
        Arc::new(Fake {
            world: Mutex::new(world),
            token: None,
            lose_replies: AtomicU32::new(0),
            publish_calls: AtomicU32::new(0),
            idem: Mutex::new(HashMap::new()),
            cosignatures: Mutex::new(BTreeMap::new()),
            replay_latest: Mutex::new(None),
            page_versions: AtomicU32::new(0),
        })
    }

    pub fn with_token(world: World, token: &str) -> Arc<Self> {
        let mut f = Arc::into_inner(Self::new(world)).expect("fresh");
        f.token = Some(token.into());
        Arc::new(f)
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }

    fn check_auth<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(t) = &self.token else { return Ok(()) };
        match req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if v == format!("Bearer {t}") => Ok(()),
            _ => Err(Status::unauthenticated("bad or missing bearer token")),
        }
    }

    fn signed_epoch(&self, w: &World, epoch: Option<u64>) -> Result<u64, Status> {
        match epoch {
            Some(e) if e >= 1 && e <= w.latest_epoch() => Ok(e),
            Some(e) => Err(Status::not_found(format!("epoch {e} is not signed"))),
            None if w.latest_epoch() == 0 => Err(Status::failed_precondition("no epoch yet")),
            None => Ok(self
                .replay_latest
                .lock()
                .expect("replay lock")
                .unwrap_or(w.latest_epoch())),
        }
    }

    fn publish_one(&self, r: pb::PublishRequest) -> Result<pb::PublishResponse, Status> {
        if r.label.is_empty() {
            return Err(Status::invalid_argument("empty label"));
        }
        if !r.idempotency_key.is_empty() {
            let idem = self.idem.lock().expect("idem lock");
            if let Some((l, v, resp)) = idem.get(&r.idempotency_key) {
                if *l == r.label && *v == r.value {
                    return Ok(resp.clone());
                }
                return Err(Status::already_exists("key used for another mutation"));
            }
        }
        let resp = self.world().publish(&r.label, &r.value);
        if !r.idempotency_key.is_empty() {
            self.idem
                .lock()
                .expect("idem lock")
                .insert(r.idempotency_key, (r.label, r.value, resp.clone()));
        }
        Ok(resp)
    }

    fn lose_reply(&self) -> bool {
        self.lose_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

pub struct Svc(pub Arc<Fake>);

#[tonic::async_trait]
impl KeyTransparency for Svc {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Res<pb::PublishResponse> {
        self.0.check_auth(&req)?;
        self.0.publish_calls.fetch_add(1, Ordering::SeqCst);
        let resp = self.0.publish_one(req.into_inner())?;
        if self.0.lose_reply() {
            return Err(Status::unavailable("reply lost"));
        }
        Ok(Response::new(resp))
    }

    async fn publish_batch(
        &self,
        req: Request<pb::PublishBatchRequest>,
    ) -> Res<pb::PublishBatchResponse> {
        self.0.check_auth(&req)?;
        let items = req.into_inner().items;
        if items.is_empty() {
            return Err(Status::invalid_argument("no items"));
        }
        let results = items
            .into_iter()
            .map(|r| self.0.publish_one(r))
            .collect::<Result<Vec<_>, _>>()?;
        if self.0.lose_reply() {
            return Err(Status::unavailable("reply lost"));
        }
        Ok(Response::new(pb::PublishBatchResponse { results }))
    }

    async fn lookup(&self, req: Request<pb::LookupRequest>) -> Res<pb::LookupResponse> {
        let r = req.into_inner();
        let w = self.0.world();
        let e = self.0.signed_epoch(&w, r.epoch)?;
        Ok(Response::new(w.lookup_response(&r.label, Some(e))))
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Res<pb::HistoryResponse> {
        let r = req.into_inner();
        let w = self.0.world();
        let e = self.0.signed_epoch(&w, r.epoch)?;
        match r.page {
            Some(p) => {
                let size = match self.0.page_versions.load(Ordering::SeqCst) {
                    0 => 2,
                    n => n,
                };
                let size = if p.max_versions == 0 {
                    size
                } else {
                    size.min(p.max_versions)
                };
                Ok(Response::new(w.history_page_response(
                    &r.label,
                    e,
                    p.last_version,
                    size as usize,
                )))
            }
            None => Ok(Response::new(w.history_response(&r.label, Some(e)))),
        }
    }

    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Res<pb::GetConfigResponse> {
        Ok(Response::new(self.0.world().config_response()))
    }

    async fn get_epoch(&self, req: Request<pb::GetEpochRequest>) -> Res<pb::SignedHeadResponse> {
        let w = self.0.world();
        let e = self.0.signed_epoch(&w, Some(req.into_inner().epoch))?;
        Ok(Response::new(w.head_response(e)))
    }

    async fn get_latest_epoch(
        &self,
        _: Request<pb::GetLatestEpochRequest>,
    ) -> Res<pb::SignedHeadResponse> {
        let w = self.0.world();
        let e = self.0.signed_epoch(&w, None)?;
        Ok(Response::new(w.head_response(e)))
    }

    type WatchEpochsStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::SignedHeadResponse, Status>> + Send>>;

    async fn watch_epochs(
        &self,
        _: Request<pb::WatchEpochsRequest>,
    ) -> Res<Self::WatchEpochsStream> {
        Err(Status::unimplemented("fake"))
    }

    async fn consistency(
        &self,
        req: Request<pb::ConsistencyRequest>,
    ) -> Res<pb::ConsistencyResponse> {
        let r = req.into_inner();
        if r.from_epoch > r.to_epoch {
            return Err(Status::invalid_argument("from > to"));
        }
        let w = self.0.world();
        self.0.signed_epoch(&w, Some(r.from_epoch))?;
        self.0.signed_epoch(&w, Some(r.to_epoch))?;
        Ok(Response::new(
            w.consistency_response(r.from_epoch, r.to_epoch),
        ))
    }

    async fn audit(&self, req: Request<pb::AuditRequest>) -> Res<pb::AuditResponse> {
        let w = self.0.world();
        let e = self.0.signed_epoch(&w, Some(req.into_inner().epoch))?;
        Ok(Response::new(w.audit_response(e)))
    }

    async fn submit_cosignature(&self, req: Request<pb::CosignRequest>) -> Res<pb::CosignResponse> {
        let bytes = req.into_inner().cosignature;
        let c = Cosignature::decode(&bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let w = self.0.world();
        let e = self.0.signed_epoch(&w, Some(c.epoch))?;
        c.verify(&w.head(e).head)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut all = self.0.cosignatures.lock().expect("cosig lock");
        let list = all.entry(e).or_default();
        if !list.contains(&bytes) {
            list.push(bytes);
        }
        Ok(Response::new(pb::CosignResponse {}))
    }

    async fn get_cosignatures(
        &self,
        req: Request<pb::GetCosignaturesRequest>,
    ) -> Res<pb::GetCosignaturesResponse> {
        let epoch = req.into_inner().epoch;
        {
            let w = self.0.world();
            self.0.signed_epoch(&w, Some(epoch))?;
        }
        let all = self.0.cosignatures.lock().expect("cosig lock");
        let cosignatures = all
            .get(&epoch)
            .map(|l| {
                l.iter()
                    .map(|b| pb::CosignatureEntry {
                        auditor_public_key: b.get(..0).unwrap_or_default().to_vec(),
                        cosignature: b.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::GetCosignaturesResponse {
            epoch,
            cosignatures,
        }))
    }

    async fn erase(&self, _: Request<pb::EraseRequest>) -> Res<pb::EraseResponse> {
        Err(Status::unimplemented("the fake does not erase"))
    }
    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Res<pb::GetCheckpointResponse> {
        Err(Status::unimplemented("the fake serves no checkpoints"))
    }
}

/// Serves `fake` on 127.0.0.1:0; returns the endpoint URI.
pub async fn serve(fake: Arc<Fake>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(KeyTransparencyServer::new(Svc(fake)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("fake server");
    });
    format!("http://{addr}")
}
