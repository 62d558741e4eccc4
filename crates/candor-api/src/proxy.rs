//! The stateless API role: [`ApiProxy`] serves `candor.v1.KeyTransparency` by
//! forwarding every call to one of a set of upstream members (`candor serve
//! --role all`), which do the proof work from their own replicas.
//!
//! It keeps no state: any proxy serves any request, and clients verify every
//! answer against their pinned configuration, so a proxy cannot forge
//! anything (it can only withhold answers, which clients notice as errors).
//!
//! * **Upstream choice**: round robin per call over the members that answered
//!   their last health probe, then the others; a call that fails with
//!   `UNAVAILABLE` (member down, shutting down, or not yet holding the epoch)
//!   or times out is retried on the next member, each member at most once.
//! * **Health probes**: every [`PROBE_INTERVAL`] the proxy asks each member for
//!   its latest epoch. A member that does not answer within [`PROBE_TIMEOUT`]
//!   (partitioned from here, paused, dead) or answers `UNAVAILABLE` (cut off
//!   from its quorum, catching up: see the members' currency rule) is *down*
//!   until it answers again. Calls go to members that are up first, and a
//!   retryable call waiting on a member that goes down is abandoned and sent
//!   to the next one at once. Without this, every call routed to a member cut
//!   off from here waited for the cut to heal: in the multi-host test each
//!   fault on one member stalled every client for the fault's whole length.
//! * **Epochs never go back**: the proxy remembers the newest epoch any member
//!   answered with. A read of the latest epoch (Lookup or History without an
//!   epoch, GetLatestEpoch) answered at an older epoch (a member cut off from
//!   the others keeps serving its last head) is asked of the next member instead;
//!   members whose last such answer lags by more than
//!   [`MAX_UPSTREAM_LAG_EPOCHS`] are tried last. If no member is current, the
//!   call is `UNAVAILABLE`, never an older head.
//! * **Writes** are retried only when every item carries an idempotency key:
//!   the member that finally answers returns the original SMT when an earlier
//!   attempt had been applied. A keyless write is tried once; if its answer is
//!   lost the error says so.
//! * **`WatchEpochs`** follows one member's stream and, when that member goes
//!   away, reopens on another from the next epoch, so the client sees one
//!   gap-free stream.
//! * **Metadata**: only `authorization` and `x-request-id` are passed on.
//! * **TLS**: with [`ProxyOptions::tls`] every upstream is dialed over TLS (a bare
//!   `host:port` becomes `https://host:port`; a plaintext `http://` upstream is refused
//!   rather than silently downgraded), checking the member's certificate against the
//!   given CA and presenting the given client certificate, if any. Without it
//!   `https://` upstreams are refused. [`serve_proxy_tls`] serves the proxy itself over
//!   TLS.
//!
//! * **Local reads** ([`ApiProxy::with_local_reads`]): the API role of a shared-state
//!   deployment answers reads from its own [`KtService`] over the shared store and
//!   still forwards every write. Writes therefore take one route in every deployment:
//!   front door (this proxy) → member ([`KtService`] and its `Publisher`) → shard
//!   leader.
//!
//! Health is SERVING while at least one upstream is up (with local reads: once
//! the first epoch is readable, as [`crate::serve`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use candor_proto::candor::v1::key_transparency_server::{KeyTransparency, KeyTransparencyServer};
use futures_util::Stream;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::ServingStatus;

use crate::error::ApiError;
use crate::service::KtService;

/// Settings of an [`ApiProxy`].
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Upstream members' API addresses (`http://host:port` or `host:port`).
    pub upstreams: Vec<String>,
    /// Deadline of one forwarded call (per attempt).
    pub call_timeout: Duration,
    /// Bound on connecting to an upstream.
    pub connect_timeout: Duration,
    /// Largest message accepted or sent, either side.
    pub max_message_bytes: usize,
    /// TLS towards the upstreams (CA to verify them, optional client identity);
    /// `None`: plaintext.
    pub tls: Option<ClientTlsConfig>,
    /// Admission limits of the proxy's own port (request sizes, connections).
    pub limits: crate::limits::Limits,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            upstreams: Vec::new(),
            call_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_message_bytes: 64 << 20,
            tls: None,
            limits: crate::limits::Limits::default(),
        }
    }
}

struct Inner {
    clients: Vec<KeyTransparencyClient<Channel>>,
    urls: Vec<String>,
    next: AtomicUsize,
    call_timeout: Duration,
    /// The newest epoch any member has answered a read with: answers to "latest"
    /// reads never go below it.
    newest: AtomicU64,
    /// Per member, the epoch of its last answer to a "latest" read.
    seen: Vec<AtomicU64>,
    /// Per member, whether it answered its last health probe (up until the
    /// first probe says otherwise).
    up: Vec<candor_sim::watch::Sender<bool>>,
}

/// How often the proxy probes each member (see the module docs).
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A member that does not answer a probe within this is down. A member
/// answers a probe from memory (its newest head), so only a member that is
/// unreachable, paused or overloaded takes this long.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A member whose last "latest" answer is more than this many epochs behind the
/// newest is tried after the others.
pub const MAX_UPSTREAM_LAG_EPOCHS: u64 = 2;

/// `candor.v1.KeyTransparency` served by forwarding to members. Cheap to clone.
#[derive(Clone)]
pub struct ApiProxy {
    inner: Arc<Inner>,
    max_message_bytes: usize,
    limits: crate::limits::Limits,
    /// Answers reads here instead of forwarding them (writes are always forwarded).
    reads: Option<KtService>,
}

impl std::fmt::Debug for ApiProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProxy")
            .field("upstreams", &self.inner.urls)
            .finish_non_exhaustive()
    }
}

/// The URL an upstream is dialed at; refuses a scheme that contradicts `tls`.
fn normalize(url: &str, tls: bool) -> crate::Result<String> {
    let bad = |why: &str| ApiError::InvalidArgument(format!("upstream {url:?}: {why}"));
    match (url.split_once("://").map(|(s, _)| s), tls) {
        (None, false) => Ok(format!("http://{url}")),
        (None, true) => Ok(format!("https://{url}")),
        (Some("http"), false) | (Some("https"), true) => Ok(url.to_owned()),
        (Some("https"), false) => Err(bad("https:// but no TLS settings for upstreams")),
        (Some("http"), true) => Err(bad(
            "plaintext http:// while TLS is configured for upstreams; use https:// or host:port",
        )),
        _ => Err(bad("only http://, https:// or host:port")),
    }
}

impl ApiProxy {
    /// Connects lazily to every upstream (a member that is down at start is
    /// tried again on each call).
    pub fn new(options: ProxyOptions) -> crate::Result<ApiProxy> {
        if options.upstreams.is_empty() {
            return Err(ApiError::InvalidArgument(
                "the API proxy needs at least one upstream member".into(),
            ));
        }
        let mut clients = Vec::new();
        let mut urls = Vec::new();
        for u in &options.upstreams {
            let url = normalize(u, options.tls.is_some())?;
            let mut ep = Endpoint::from_shared(url.clone())
                .map_err(|e| ApiError::InvalidArgument(format!("upstream {u:?}: {e}")))?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                // A connection kept through a partition delivers nothing until
                // TCP's backed-off retransmission after the heal; drop it instead.
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true);
            if let Some(tls) = &options.tls {
                ep = ep.tls_config(tls.clone()).map_err(|e| {
                    ApiError::InvalidArgument(format!("upstream {u:?}: TLS settings: {e}"))
                })?;
            }
            clients.push(
                KeyTransparencyClient::new(ep.connect_lazy())
                    .max_decoding_message_size(options.max_message_bytes)
                    .max_encoding_message_size(options.max_message_bytes),
            );
            urls.push(url);
        }
        Ok(ApiProxy {
            inner: Arc::new(Inner {
                seen: clients.iter().map(|_| AtomicU64::new(0)).collect(),
                up: clients
                    .iter()
                    .map(|_| candor_sim::watch::Sender::new(true))
                    .collect(),
                clients,
                urls,
                next: AtomicUsize::new(0),
                call_timeout: options.call_timeout,
                newest: AtomicU64::new(0),
            }),
            max_message_bytes: options.max_message_bytes,
            limits: options.limits,
            reads: None,
        })
    }

    /// Answer reads (everything but `Publish` and `PublishBatch`) with `reads`, a
    /// service over a store this process can read (the shared store), and forward only
    /// the writes: the API role of a shared-state deployment, which holds no shard
    /// group and no SMT key. The members authenticate and check the writes; what they
    /// answer is returned as is (clients verify the SMTs against the pinned
    /// configuration).
    #[must_use]
    pub fn with_local_reads(mut self, reads: KtService) -> Self {
        self.reads = Some(reads);
        self
    }

    /// The tonic service with this proxy's message limits.
    pub fn into_server(self) -> KeyTransparencyServer<ApiProxy> {
        let max = self.max_message_bytes;
        KeyTransparencyServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

/// The metadata passed on to the member.
fn forwarded_metadata(from: &MetadataMap) -> MetadataMap {
    let mut md = MetadataMap::new();
    for key in ["authorization", "x-request-id"] {
        if let Some(v) = from.get(key) {
            md.insert(key, v.clone());
        }
    }
    md
}

fn upstream_request<T>(md: &MetadataMap, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    *r.metadata_mut() = md.clone();
    // The member continues this call's trace.
    candor_telemetry::inject(r.metadata_mut());
    r
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send + 'a>>;

impl Inner {
    /// Calls `f` on upstreams in turn until one answers with anything but
    /// `UNAVAILABLE` (or a timeout); only retries when `retry_safe`.
    async fn call<T, F>(&self, what: &str, retry_safe: bool, f: F) -> Result<Response<T>, Status>
    where
        F: Fn(KeyTransparencyClient<Channel>) -> BoxFut<'static, T>,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for k in self.order(start) {
            let status = match self.attempt(k, what, retry_safe, &f).await {
                Ok(r) => return Ok(r),
                Err(s) if s.code() == Code::Unavailable => s,
                Err(s) => return Err(s),
            };
            tracing::debug!(upstream = %self.urls[k], %what, error = %status, "upstream unavailable");
            if !retry_safe {
                return Err(Status::unavailable(format!(
                    "{what} through {} failed ({}); without an idempotency key it was not \
                     retried and may or may not have been applied",
                    self.urls[k],
                    status.message()
                )));
            }
            last = Some(status);
        }
        Err(last.unwrap_or_else(|| Status::unavailable("no upstream member")))
    }

    /// One call of `f` on member `k`, bounded by the call timeout (then
    /// `UNAVAILABLE`). When `abandon` and the member was up at the start, the
    /// call is also given up (`UNAVAILABLE`) as soon as a probe finds the member
    /// down: a retryable call then goes on to the next member at once.
    async fn attempt<T, F>(
        &self,
        k: usize,
        what: &str,
        abandon: bool,
        f: &F,
    ) -> Result<Response<T>, Status>
    where
        F: Fn(KeyTransparencyClient<Channel>) -> BoxFut<'static, T>,
    {
        let mut up = self.up[k].subscribe();
        let was_up = *up.borrow_and_update();
        let call = tokio::time::timeout(self.call_timeout, f(self.clients[k].clone()));
        let outcome = if abandon && was_up {
            tokio::select! {
                biased;
                r = call => r,
                Ok(_) = up.wait_for(|u| !*u) => {
                    return Err(Status::unavailable(format!(
                        "member {} stopped answering its health probe during {what}",
                        self.urls[k]
                    )));
                }
            }
        } else {
            call.await
        };
        outcome.unwrap_or_else(|_| {
            Err(Status::unavailable(format!(
                "member {} did not answer {what} within {:?}",
                self.urls[k], self.call_timeout
            )))
        })
    }

    /// Probes every member once, at the same time (see the module docs);
    /// `true` when at least one is up.
    async fn probe(&self) -> bool {
        let probes = self.clients.iter().map(|c| {
            let mut c = c.clone();
            async move {
                let r = tokio::time::timeout(
                    PROBE_TIMEOUT,
                    c.get_latest_epoch(pb::GetLatestEpochRequest {}),
                )
                .await;
                // Any answer but UNAVAILABLE is a member at work (NOT_FOUND:
                // no epoch signed yet).
                matches!(r, Ok(Ok(_))) || matches!(&r, Ok(Err(s)) if s.code() != Code::Unavailable)
            }
        });
        let results = futures_util::future::join_all(probes).await;
        for (k, &now_up) in results.iter().enumerate() {
            let changed = self.up[k].send_if_modified(|u| std::mem::replace(u, now_up) != now_up);
            if changed {
                tracing::info!(upstream = %self.urls[k], up = now_up, "upstream health changed");
            }
        }
        results.into_iter().any(|u| u)
    }
}

impl Inner {
    /// The order to try members in for a call starting at `start`: round robin
    /// over the members that are up, then those that are down; within each, the
    /// members lagging the newest epoch by more than [`MAX_UPSTREAM_LAG_EPOCHS`]
    /// last.
    fn order(&self, start: usize) -> Vec<usize> {
        let n = self.clients.len();
        let newest = self.newest.load(Ordering::Relaxed);
        let lagging =
            |k: usize| self.seen[k].load(Ordering::Relaxed) + MAX_UPSTREAM_LAG_EPOCHS < newest;
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        // Stable: keeps the round robin within each class.
        order.sort_by_key(|&k| (!*self.up[k].borrow(), lagging(k)));
        order
    }

    /// A read of the latest epoch: like [`Inner::call`], but an answer older than an
    /// epoch already served through this front door is not returned (a member cut
    /// off from the others keeps answering with its last head); the next member is
    /// asked instead, so clients never see the epoch go back.
    async fn call_latest<T, F>(
        &self,
        what: &str,
        epoch_of: fn(&T) -> u64,
        f: F,
    ) -> Result<Response<T>, Status>
    where
        F: Fn(KeyTransparencyClient<Channel>) -> BoxFut<'static, T>,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for k in self.order(start) {
            let status = match self.attempt(k, what, true, &f).await {
                Ok(r) => {
                    let epoch = epoch_of(r.get_ref());
                    self.seen[k].store(epoch, Ordering::Relaxed);
                    let newest = self.newest.fetch_max(epoch, Ordering::Relaxed);
                    if epoch >= newest {
                        return Ok(r);
                    }
                    Status::unavailable(format!(
                        "member {} answered {what} at epoch {epoch}, behind epoch {newest} \
                         already served",
                        self.urls[k]
                    ))
                }
                Err(s) if s.code() == Code::Unavailable => s,
                Err(s) => return Err(s),
            };
            tracing::debug!(upstream = %self.urls[k], %what, error = %status, "upstream unavailable or behind");
            last = Some(status);
        }
        Err(last.unwrap_or_else(|| Status::unavailable("no upstream member")))
    }

    /// Records the epoch of an answer to a read at a given epoch (it exists).
    fn saw(&self, epoch: u64) {
        self.newest.fetch_max(epoch, Ordering::Relaxed);
    }
}

/// A read of the latest epoch (`$latest` true for this request), forwarded with
/// [`Inner::call_latest`]; other reads as [`forward!`].
macro_rules! read_latest {
    ($self:ident, $request:ident, $method:ident, $what:literal, $latest:expr, $epoch_of:expr) => {{
        if $self.reads.is_some() {
            read!($self, $request, $method, $what)
        } else {
            let md = forwarded_metadata($request.metadata());
            let msg = $request.into_inner();
            let latest = $latest(&msg);
            let f = move |mut c: KeyTransparencyClient<Channel>| -> BoxFut<'static, _> {
                let r = upstream_request(&md, msg.clone());
                Box::pin(async move { c.$method(r).await })
            };
            if latest {
                $self.inner.call_latest($what, $epoch_of, f).await
            } else {
                let out = $self.inner.call($what, true, f).await;
                if let Ok(r) = &out {
                    $self.inner.saw($epoch_of(r.get_ref()));
                }
                out
            }
        }
    }};
}

macro_rules! forward {
    ($self:ident, $request:ident, $method:ident, $what:literal, $safe:expr) => {{
        let md = forwarded_metadata($request.metadata());
        let msg = $request.into_inner();
        let safe = $safe(&msg);
        $self
            .inner
            .call($what, safe, move |mut c| {
                let r = upstream_request(&md, msg.clone());
                Box::pin(async move { c.$method(r).await })
            })
            .await
    }};
}

/// A read: answered by the local service if there is one, else forwarded.
macro_rules! read {
    ($self:ident, $request:ident, $method:ident, $what:literal) => {{
        match &$self.reads {
            Some(local) => local.$method($request).await,
            None => forward!($self, $request, $method, $what, always),
        }
    }};
}

fn always<T>(_: &T) -> bool {
    true
}

type HeadStream = Pin<Box<dyn Stream<Item = Result<pb::SignedHeadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl KeyTransparency for ApiProxy {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        forward!(
            self,
            request,
            publish,
            "Publish",
            |m: &pb::PublishRequest| { !m.idempotency_key.is_empty() }
        )
    }

    async fn publish_batch(
        &self,
        request: Request<pb::PublishBatchRequest>,
    ) -> Result<Response<pb::PublishBatchResponse>, Status> {
        forward!(
            self,
            request,
            publish_batch,
            "PublishBatch",
            |m: &pb::PublishBatchRequest| { m.items.iter().all(|i| !i.idempotency_key.is_empty()) }
        )
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        read_latest!(
            self,
            request,
            lookup,
            "Lookup",
            |m: &pb::LookupRequest| m.epoch.is_none(),
            |r: &pb::LookupResponse| r.epoch
        )
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        read_latest!(
            self,
            request,
            history,
            "History",
            |m: &pb::HistoryRequest| m.epoch.is_none(),
            |r: &pb::HistoryResponse| r.epoch
        )
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        read!(self, request, get_config, "GetConfig")
    }

    async fn get_epoch(
        &self,
        request: Request<pb::GetEpochRequest>,
    ) -> Result<Response<pb::SignedHeadResponse>, Status> {
        read!(self, request, get_epoch, "GetEpoch")
    }

    async fn get_latest_epoch(
        &self,
        request: Request<pb::GetLatestEpochRequest>,
    ) -> Result<Response<pb::SignedHeadResponse>, Status> {
        read_latest!(
            self,
            request,
            get_latest_epoch,
            "GetLatestEpoch",
            |_: &pb::GetLatestEpochRequest| true,
            |r: &pb::SignedHeadResponse| r.epoch
        )
    }

    type WatchEpochsStream = HeadStream;

    async fn watch_epochs(
        &self,
        request: Request<pb::WatchEpochsRequest>,
    ) -> Result<Response<Self::WatchEpochsStream>, Status> {
        if let Some(local) = &self.reads {
            return local.watch_epochs(request).await;
        }
        let md = forwarded_metadata(request.metadata());
        let first = request.into_inner().from_epoch;
        // Open the first stream now so that a bad request fails the call itself.
        let stream = self.open_watch(&md, first).await?;
        Ok(Response::new(Box::pin(follow(
            self.clone(),
            md,
            first,
            stream,
        ))))
    }

    async fn consistency(
        &self,
        request: Request<pb::ConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyResponse>, Status> {
        read!(self, request, consistency, "Consistency")
    }

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        read!(self, request, audit, "Audit")
    }

    async fn submit_cosignature(
        &self,
        request: Request<pb::CosignRequest>,
    ) -> Result<Response<pb::CosignResponse>, Status> {
        // Storing the same cosignature twice is harmless.
        read!(self, request, submit_cosignature, "SubmitCosignature")
    }

    async fn get_cosignatures(
        &self,
        request: Request<pb::GetCosignaturesRequest>,
    ) -> Result<Response<pb::GetCosignaturesResponse>, Status> {
        read!(self, request, get_cosignatures, "GetCosignatures")
    }

    async fn erase(
        &self,
        request: Request<pb::EraseRequest>,
    ) -> Result<Response<pb::EraseResponse>, Status> {
        // Erasing is idempotent: safe to send again after an unknown outcome.
        forward!(self, request, erase, "Erase", |_: &pb::EraseRequest| true)
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        read_latest!(
            self,
            request,
            get_checkpoint,
            "GetCheckpoint",
            |m: &pb::GetCheckpointRequest| m.size == 0,
            |r: &pb::GetCheckpointResponse| r.size
        )
    }
}

impl ApiProxy {
    async fn open_watch(
        &self,
        md: &MetadataMap,
        from_epoch: Option<u64>,
    ) -> Result<Streaming<pb::SignedHeadResponse>, Status> {
        let md = md.clone();
        self.inner
            .call("WatchEpochs", true, move |mut c| {
                let r = upstream_request(&md, pb::WatchEpochsRequest { from_epoch });
                Box::pin(async move { c.watch_epochs(r).await })
            })
            .await
            .map(Response::into_inner)
    }
}

/// Forwards `stream`; when its member goes away (`UNAVAILABLE` or the stream
/// ends), reopens on another member from the next epoch.
fn follow(
    proxy: ApiProxy,
    md: MetadataMap,
    first: Option<u64>,
    stream: Streaming<pb::SignedHeadResponse>,
) -> impl Stream<Item = Result<pb::SignedHeadResponse, Status>> + Send {
    let state = (proxy, md, first, Some(stream));
    futures_util::stream::unfold(state, |(proxy, md, mut next, mut stream)| async move {
        loop {
            let s = match stream.as_mut() {
                Some(s) => s,
                None => match proxy.open_watch(&md, next).await {
                    Ok(s) => stream.insert(s),
                    Err(e) => return Some((Err(e), (proxy, md, next, None))),
                },
            };
            match s.message().await {
                Ok(Some(h)) => {
                    if next.is_some_and(|n| h.epoch < n) {
                        // Already sent (a reopened stream starts at `next`).
                        continue;
                    }
                    next = Some(h.epoch + 1);
                    return Some((Ok(h), (proxy, md, next, stream)));
                }
                Ok(None) => stream = None,
                Err(e) if e.code() == Code::Unavailable => stream = None,
                Err(e) => return Some((Err(e), (proxy, md, next, None))),
            }
            // Do not spin when every member is briefly away.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Serves `proxy` with `grpc.health.v1` and reflection until `shutdown`.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: ApiProxy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_proxy_tls(listener, proxy, None, shutdown).await
}

/// As [`serve_proxy`], over TLS when `tls` is set (see [`crate::serve_tls`]).
pub async fn serve_proxy_tls(
    listener: TcpListener,
    proxy: ApiProxy,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let kt = candor_proto::KEY_TRANSPARENCY_SERVICE;
    let limits = proxy.limits.clone();
    let stats = Arc::new(crate::guard::GuardStats::default());
    crate::guard::export_stats("front_door", &stats);
    let router = crate::server::public_router(
        &limits,
        crate::guard::WriteAuth::PresenceOnly,
        stats.clone(),
        tls,
        health,
    )?;
    let probe = proxy.clone();
    let r = reporter.clone();
    let local = proxy.reads.clone();
    // Probes the members, and sets this front door's health: with local reads
    // SERVING once the first epoch is readable here, else while a member is up.
    let health_task = tokio::spawn(async move {
        let mut current = None;
        loop {
            let any_up = probe.inner.probe().await;
            let serving = match &local {
                Some(local) => local.heads().borrow().is_some(),
                None => any_up,
            };
            if current != Some(serving) {
                let s = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                r.set_service_status("", s).await;
                r.set_service_status(kt, s).await;
                tracing::info!(serving, "front door health");
                current = Some(serving);
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    });
    let local = proxy.reads.clone();
    let drain = async move {
        shutdown.await;
        health_task.abort();
        if let Some(local) = local {
            // End open local `WatchEpochs` streams, which would hold the drain forever.
            local.begin_shutdown();
        }
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status(kt, ServingStatus::NotServing)
            .await;
    };
    let incoming = crate::guard::guarded_incoming(listener, &limits, stats);
    router
        .add_service(candor_telemetry::traced(proxy.into_server()))
        .serve_with_incoming_shutdown(incoming, drain)
        .await
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn upstream_schemes_follow_the_tls_setting() {
        assert_eq!(normalize("m1:8700", false).unwrap(), "http://m1:8700");
        assert_eq!(normalize("m1:8700", true).unwrap(), "https://m1:8700");
        assert_eq!(
            normalize("http://m1:8700", false).unwrap(),
            "http://m1:8700"
        );
        assert_eq!(
            normalize("https://m1:8700", true).unwrap(),
            "https://m1:8700"
        );
        assert!(normalize("https://m1:8700", false).is_err());
        assert!(normalize("http://m1:8700", true).is_err());
        assert!(normalize("grpc://m1:8700", true).is_err());
    }
}
