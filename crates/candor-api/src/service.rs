//! The `KeyTransparency` gRPC service.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use candor_core::log::HeadExtensionProof;
use candor_core::map::{Index, shard_of};
use candor_core::proof::Opening;
use candor_core::proof::history::PageBody;
use candor_core::signed::{Cosignature, PublicConfig, PublicKey, SignedHead};
use candor_core::vrf::{VrfProof, VrfSecretKey};
use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_server::KeyTransparency;
use candor_sim::watch;
use candor_store::{Direction, KeyRange, Space, Store};
use candor_tree::{EpochLogStore, Forest, MapView, OpeningPolicy};
use futures_util::Stream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::{Instrument, Span, field};

use crate::auth::{Authenticator, Tenant};
use crate::error::{ApiError, Result};
use crate::limits::Limits;
use crate::publisher::{CosignatureLog, PublishReceipt, PublishRequest, Publisher};

/// Before cosignatures were replicated (through the sequencer's group, into the epoch
/// log), the member that received one kept it in space `Meta` under this prefix:
/// `prefix | epoch_be64 | auditor key(32)` → canonical cosignature. Still read.
const LEGACY_COSIG_PREFIX: &[u8] = b"candor-api/cosig/";

/// How far beyond its latest epoch a request may ask and be waited for (a client
/// may learn of an epoch from one member and ask another that has not applied it).
const CATCH_UP_EPOCHS: u64 = 2;

/// Whether this member may present its newest head as the latest: `Err(why)`
/// when it knows it is behind or is cut off from the deployment (a cluster
/// member's rules are in `candor_node::currency`). Called on every read of the
/// latest epoch and by health: it must be cheap and must not block.
pub type Currency = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// What the service reads and writes through.
#[derive(Clone)]
pub struct Backend {
    /// Writes: orders mutations in their shards.
    pub publisher: Arc<dyn Publisher>,
    /// Where auditors' cosignatures are stored so that every member serves them.
    pub cosignatures: Arc<dyn CosignatureLog>,
    /// The tree engine (reads at any retained revision).
    pub forest: Forest,
    /// Signed heads, log proofs, the revisions of each epoch.
    pub epochs: Arc<EpochLogStore>,
    /// The latest signed head; wakes `WatchEpochs` and health.
    pub heads: watch::Receiver<Option<SignedHead>>,
    /// Whether `heads` may be presented as the latest (`None`: always; a single
    /// node, or a reader of a shared store).
    pub currency: Option<Currency>,
    /// Where labels' VRF evaluations are kept (`Space::LabelVrf`), so that a
    /// label's VRF is computed once (`None`: memory only).
    pub label_vrfs: Option<Arc<dyn candor_store::Store>>,
    /// The deployment's public configuration.
    pub config: PublicConfig,
}

/// Service settings that are not part of the signed configuration.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub limits: Limits,
    /// Who may write.
    pub tenants: Vec<Tenant>,
    /// Auditor keys whose cosignatures are stored.
    pub auditor_keys: Vec<PublicKey>,
    /// Cached VRF evaluations (label hash → index and proof), entries.
    pub vrf_cache_entries: usize,
    /// Cached map views, epochs.
    pub view_cache_epochs: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            limits: Limits::default(),
            tenants: Vec::new(),
            auditor_keys: Vec::new(),
            vrf_cache_entries: 65_536,
            view_cache_epochs: 8,
        }
    }
}

struct Inner {
    publisher: Arc<dyn Publisher>,
    cosignatures: Arc<dyn CosignatureLog>,
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    heads: watch::Receiver<Option<SignedHead>>,
    currency: Option<Currency>,
    config: PublicConfig,
    config_bytes: Vec<u8>,
    /// `VRF(label)`, computed once per published label.
    vrfs: crate::label_vrf::LabelVrfs,
    auth: Authenticator,
    limits: Limits,
    auditor_keys: HashSet<[u8; 32]>,
    views: quick_cache::sync::Cache<u64, MapView>,
    shutdown: watch::Receiver<bool>,
    /// Per-tenant publish rate (items per second).
    rate: crate::rate::TenantRate,
    /// What the port's admission guards refused.
    guard_stats: Arc<crate::guard::GuardStats>,
}

/// The `KeyTransparency` implementation. Cheap to clone.
#[derive(Clone)]
pub struct KtService {
    inner: Arc<Inner>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for KtService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KtService")
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

impl KtService {
    /// Checks that the VRF key matches the configuration and builds the service.
    pub fn new(backend: Backend, vrf: VrfSecretKey, options: ApiOptions) -> Result<Self> {
        if vrf.public_key() != backend.config.vrf_key {
            return Err(ApiError::InvalidArgument(
                "the VRF secret key does not match the configuration's VRF public key".into(),
            ));
        }
        options
            .limits
            .validate()
            .map_err(ApiError::InvalidArgument)?;
        backend
            .config
            .validate()
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let inner = Inner {
            publisher: backend.publisher,
            cosignatures: backend.cosignatures,
            forest: backend.forest,
            epochs: backend.epochs,
            heads: backend.heads,
            currency: backend.currency,
            config_bytes: backend.config.encode(),
            config: backend.config,
            vrfs: crate::label_vrf::LabelVrfs::new(
                vrf,
                options.vrf_cache_entries,
                backend.label_vrfs,
            ),
            auth: Authenticator::new(options.tenants),
            limits: options.limits.clone(),
            auditor_keys: options.auditor_keys.iter().map(|k| k.0).collect(),
            views: quick_cache::sync::Cache::new(options.view_cache_epochs.max(1)),
            shutdown,
            rate: crate::rate::TenantRate::new(&options.limits),
            guard_stats: Arc::new(crate::guard::GuardStats::default()),
        };
        let inner = Arc::new(inner);
        crate::guard::export_stats("api", &inner.guard_stats);
        // Read at collection time; the weak handle ends with the service.
        let weak = Arc::downgrade(&inner);
        candor_telemetry::metrics().register_cache("vrf", move || {
            weak.upgrade()
                .map(|i| {
                    let c = i.vrfs.cache();
                    candor_telemetry::CacheSample {
                        // Entries are fixed-size: count times the entry size.
                        bytes: c.weight()
                            * std::mem::size_of::<([u8; 32], (Index, VrfProof))>() as u64,
                        hits: c.hits(),
                        misses: c.misses(),
                    }
                })
                .unwrap_or_default()
        });
        // The store's records behind the VRF cache: a miss is an evaluation.
        let weak = Arc::downgrade(&inner);
        candor_telemetry::metrics().register_cache("vrf_store", move || {
            weak.upgrade()
                .map(|i| candor_telemetry::CacheSample {
                    bytes: 0,
                    hits: i.vrfs.stored.load(std::sync::atomic::Ordering::Relaxed),
                    misses: i.vrfs.evaluated.load(std::sync::atomic::Ordering::Relaxed),
                })
                .unwrap_or_default()
        });
        Ok(KtService {
            inner,
            shutdown_tx: Arc::new(shutdown_tx),
        })
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// How the port's guard checks writes before their body: against the tenants.
    pub(crate) fn write_auth(&self) -> crate::guard::WriteAuth {
        crate::guard::WriteAuth::Tenants(self.inner.auth.clone())
    }

    /// Counters of what the API port's admission guards refused.
    pub fn guard_stats(&self) -> Arc<crate::guard::GuardStats> {
        self.inner.guard_stats.clone()
    }

    /// The latest-head receiver (for health reporting).
    pub fn heads(&self) -> watch::Receiver<Option<SignedHead>> {
        self.inner.heads.clone()
    }

    /// Whether the newest head may be presented as the latest now (`Ok` when no
    /// [`Currency`] check was given).
    pub fn current(&self) -> std::result::Result<(), String> {
        self.inner.currency.as_ref().map_or(Ok(()), |c| c())
    }

    /// The deployment's epoch interval.
    pub fn epoch_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inner.config.epoch_interval_ms)
    }

    /// Ends every open `WatchEpochs` stream with `UNAVAILABLE`: call before a
    /// graceful shutdown, which otherwise waits for those streams forever.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// A gRPC server wrapper with the configured message limits.
    pub fn into_server(
        self,
    ) -> candor_proto::candor::v1::key_transparency_server::KeyTransparencyServer<KtService> {
        let max = self.inner.limits.max_message_bytes as usize;
        // The guard refuses oversized bodies first (RESOURCE_EXHAUSTED, per method);
        // tonic's own limit is only the backstop.
        let max_request = self.inner.limits.max_request_bytes() + (1 << 20);
        candor_proto::candor::v1::key_transparency_server::KeyTransparencyServer::new(self)
            .max_decoding_message_size(max_request)
            .max_encoding_message_size(max)
    }

    /// Runs `f` in a span named after the RPC with a request id, logs the
    /// outcome, maps the error to a status and echoes the request id.
    async fn rpc<T, R, F, Fut>(
        &self,
        method: &'static str,
        req: Request<T>,
        f: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(Arc<Inner>, MetadataMap, T) -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let rid = request_id(req.metadata());
        let span = tracing::info_span!(
            "rpc",
            method,
            request_id = rid.as_str(),
            tenant = field::Empty,
            index = field::Empty,
            epoch = field::Empty,
        );
        let (metadata, _, msg) = req.into_parts();
        let inner = self.inner.clone();
        async move {
            let started = Instant::now();
            let out = f(inner, metadata, msg).await;
            let micros = started.elapsed().as_micros() as u64;
            match out {
                Ok(r) => {
                    tracing::debug!(micros, "ok");
                    let mut resp = Response::new(r);
                    if let Ok(v) = MetadataValue::try_from(rid.as_str()) {
                        resp.metadata_mut().insert("x-request-id", v);
                    }
                    Ok(resp)
                }
                Err(e) => {
                    let code = e.code();
                    record_refusal(&e);
                    if code != tonic::Code::Internal {
                        tracing::info!(micros, ?code, error = %e, "rejected");
                    }
                    let mut s = Status::from(e);
                    if let Ok(v) = MetadataValue::try_from(rid.as_str()) {
                        s.metadata_mut().insert("x-request-id", v);
                    }
                    Err(s)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Counts authentication failures (by reason) and limit refusals (by limit).
fn record_refusal(e: &ApiError) {
    const LIMITS: [&str; 4] = [
        "max_label_bytes",
        "max_value_bytes",
        "max_idempotency_key_bytes",
        "max_batch_items",
    ];
    let metrics = candor_telemetry::metrics();
    match e {
        ApiError::Unauthenticated(reason) => metrics.auth_failure(reason),
        ApiError::InvalidArgument(m) => {
            if let Some(limit) = LIMITS.iter().find(|l| m.contains(&format!("limits.{l} "))) {
                metrics.limit_rejected(limit);
            }
        }
        ApiError::ResourceExhausted(m) if m.contains("maximum message size") => {
            metrics.limit_rejected("max_message_bytes")
        }
        ApiError::ResourceExhausted(_) => metrics.limit_rejected("resource_exhausted"),
        _ => {}
    }
}

/// The caller's `x-request-id` if it is short printable ASCII, else a fresh one.
pub(crate) fn request_id(md: &MetadataMap) -> String {
    if let Some(v) = md.get("x-request-id").and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|b| b.is_ascii_graphic())
    {
        return v.to_owned();
    }
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// First 4 bytes of an index, hex: enough to correlate logs, never the label.
fn index_prefix(index: &Index) -> String {
    hex::encode(&index[..4])
}

/// Runs blocking work (VRF, tree reads) off the async workers, in the span.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let span = Span::current();
    candor_sim::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))?
}

impl Inner {
    fn check_label(&self, label: &[u8], item: Option<usize>) -> Result<()> {
        let at = item.map(|i| format!("item {i}: ")).unwrap_or_default();
        if label.is_empty() {
            return Err(ApiError::InvalidArgument(format!("{at}empty label")));
        }
        if label.len() > self.limits.max_label_bytes as usize {
            return Err(ApiError::InvalidArgument(format!(
                "{at}label of {} bytes exceeds limits.max_label_bytes {}",
                label.len(),
                self.limits.max_label_bytes
            )));
        }
        Ok(())
    }

    fn check_publish(&self, r: &pb::PublishRequest, item: Option<usize>) -> Result<()> {
        self.check_label(&r.label, item)?;
        let at = item.map(|i| format!("item {i}: ")).unwrap_or_default();
        if r.value.len() > self.limits.max_value_bytes as usize {
            return Err(ApiError::InvalidArgument(format!(
                "{at}value of {} bytes exceeds limits.max_value_bytes {}",
                r.value.len(),
                self.limits.max_value_bytes
            )));
        }
        if r.idempotency_key.len() > self.limits.max_idempotency_key_bytes as usize {
            return Err(ApiError::InvalidArgument(format!(
                "{at}idempotency_key of {} bytes exceeds limits.max_idempotency_key_bytes {}",
                r.idempotency_key.len(),
                self.limits.max_idempotency_key_bytes
            )));
        }
        Ok(())
    }

    /// The latest epoch this node can serve: from the `heads` watch, which a cluster
    /// member advances only once its replicas hold every revision the epoch covers.
    fn latest_epoch(&self) -> u64 {
        self.heads.borrow().as_ref().map_or(0, |h| h.head.epoch)
    }

    /// When `epoch` is beyond what this node serves yet, waits (up to two epoch
    /// intervals, at most 5 s) for it: in a cluster a client may learn of an epoch
    /// from one member and ask another that has not applied it yet. Returns at once
    /// otherwise; the caller then answers as usual (NOT_FOUND if it never came).
    async fn catch_up_to(&self, epoch: u64) {
        let latest = self.latest_epoch();
        // Only an epoch about to be served is worth waiting for: one far beyond the
        // latest (2^64-1, say) is NOT_FOUND at once instead of holding the call.
        if epoch <= latest || epoch > latest.saturating_add(CATCH_UP_EPOCHS) {
            return;
        }
        let wait = std::time::Duration::from_millis(
            self.config
                .epoch_interval_ms
                .saturating_mul(2)
                .clamp(200, 5_000),
        );
        let mut rx = self.heads.clone();
        let _ = tokio::time::timeout(
            wait,
            rx.wait_for(|h| h.as_ref().is_some_and(|h| h.head.epoch >= epoch)),
        )
        .await;
    }

    /// The signed head of `epoch`, NOT_FOUND when not (yet) signed.
    fn head(&self, epoch: u64) -> Result<SignedHead> {
        if epoch > self.latest_epoch() && epoch <= self.epochs.latest_epoch() {
            return Err(ApiError::Unavailable(format!(
                "epoch {epoch} is signed but this replica has not applied all of it yet; retry"
            )));
        }
        if epoch == 0 || epoch > self.latest_epoch() {
            return Err(ApiError::NotFound(format!(
                "epoch {epoch} is not signed (latest signed epoch is {})",
                self.latest_epoch()
            )));
        }
        self.epochs
            .head(epoch)?
            .ok_or_else(|| ApiError::NotFound(format!("epoch {epoch} is not signed")))
    }

    /// `requested` or the latest signed epoch, with its head.
    fn resolve_epoch(&self, requested: Option<u64>) -> Result<SignedHead> {
        match requested {
            Some(e) => self.head(e),
            None => {
                let latest = self.latest_epoch();
                if latest == 0 {
                    return Err(ApiError::FailedPrecondition(
                        "no epoch has been signed yet; retry after one epoch interval".into(),
                    ));
                }
                // Never present a head as the latest that this member cannot vouch
                // for: another member (or the front door's next try) can.
                if let Some(Err(why)) = self.currency.as_ref().map(|c| c()) {
                    return Err(ApiError::Unavailable(format!(
                        "this member cannot serve the latest epoch (its newest is {latest}): \
                         {why}; ask another member"
                    )));
                }
                self.head(latest)
            }
        }
    }

    /// The map at `head`'s epoch, checked against the head's map root.
    fn view(&self, head: &SignedHead) -> Result<MapView> {
        let epoch = head.head.epoch;
        if let Some(v) = self.views.get(&epoch) {
            return Ok(v);
        }
        let v = self.epochs.view(&self.forest, epoch)?;
        if v.root_hash() != head.head.map_root {
            return Err(ApiError::Internal(format!(
                "the stored map of epoch {epoch} does not match its signed head"
            )));
        }
        self.views.insert(epoch, v.clone());
        Ok(v)
    }

    /// One page of a label's history (docs/protocol.md §6.4.2). A page
    /// holds at most 2 MiB of openings (and always one version), so it fits
    /// the default 4 MiB gRPC decode limit with its convenience copies
    /// unless a single value is larger.
    fn history_page(
        &self,
        head: &SignedHead,
        view: &MapView,
        index: &Index,
        vrf_proof: VrfProof,
        req: pb::HistoryPageRequest,
    ) -> Result<pb::HistoryResponse> {
        let budget = (self.limits.max_message_bytes as usize / 2).min(2 << 20);
        let page = view
            .history_page(
                index,
                vrf_proof,
                req.last_version,
                req.max_versions as usize,
                budget,
            )?
            .ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "page.last_version {} is beyond the label's latest version at epoch {}",
                    req.last_version, head.head.epoch
                ))
            })?;
        let bytes = page.encode();
        self.check_size("history page", bytes.len())?;
        let (entries, next) = match &page.body {
            PageBody::Absent { .. } => (Vec::new(), 0),
            PageBody::Versions {
                first, openings, ..
            } => (
                openings
                    .iter()
                    .zip(*first..)
                    .map(|(o, version)| pb::HistoryEntry {
                        version,
                        value: o.value().map(<[u8]>::to_vec).unwrap_or_default(),
                        forgotten: o.value().is_none(),
                    })
                    .collect(),
                first - 1,
            ),
        };
        Ok(pb::HistoryResponse {
            epoch: head.head.epoch,
            proof: Vec::new(),
            signed_head: head.encode(),
            entries,
            page: bytes,
            next_last_version: next,
        })
    }

    fn check_size(&self, what: &str, len: usize) -> Result<()> {
        // Leave room for the head and framing beside the proof.
        let max = self.limits.max_message_bytes as usize;
        if len + 4096 > max {
            return Err(ApiError::ResourceExhausted(format!(
                "the {what} is {len} bytes, beyond the maximum message size {max}"
            )));
        }
        Ok(())
    }

    fn publish_response(
        &self,
        r: &PublishReceipt,
        index: &Index,
        proof: &VrfProof,
    ) -> Result<pb::PublishResponse> {
        let m = &r.smt.smt;
        // Cheap self-check: a receipt that does not hold together would be
        // rejected by every verifying client anyway.
        if m.index != *index
            || r.leaf.index != *index
            || r.leaf.hash() != m.leaf_hash
            || r.leaf.version != m.version
        {
            return Err(ApiError::Internal(
                "the shard returned an inconsistent receipt".into(),
            ));
        }
        Ok(pb::PublishResponse {
            smt: r.smt.encode(),
            version: m.version,
            index: index.to_vec(),
            shard: shard_of(index, self.config.shard_bits),
            vrf_proof: proof.to_bytes().to_vec(),
            nonce: r.nonce.to_vec(),
            commitment: r.leaf.commitment.to_vec(),
            prev_leaf_hash: r.leaf.prev.to_vec(),
            leaf_hash: m.leaf_hash.to_vec(),
            timestamp_ms: m.timestamp_ms,
            merge_deadline_ms: m.merge_deadline_ms,
        })
    }

    /// Publishes validated, authenticated items.
    async fn publish_items(
        self: &Arc<Self>,
        tenant: String,
        items: Vec<pb::PublishRequest>,
    ) -> Result<Vec<pb::PublishResponse>> {
        let me = self.clone();
        let labels: Vec<Vec<u8>> = items.iter().map(|i| i.label.clone()).collect();
        // VRF evaluations are the CPU cost of a publish: spread large
        // batches over the blocking pool.
        // spawn_blocking starts each chunk at once (an async wrapper would
        // only start when awaited, one after the other).
        let span = Span::current();
        let tasks: Vec<_> = labels
            .chunks(64)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                let (me, span) = (me.clone(), span.clone());
                candor_sim::spawn_blocking(move || span.in_scope(|| me.vrfs.for_publish(&chunk)))
            })
            .collect();
        let mut vrfs = Vec::with_capacity(items.len());
        for t in tasks {
            vrfs.extend(
                t.await
                    .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))?,
            );
        }
        if let [(index, _)] = vrfs.as_slice() {
            Span::current().record("index", index_prefix(index));
        }
        let reqs: Vec<PublishRequest> = items
            .into_iter()
            .zip(&vrfs)
            .map(|(i, (index, _))| PublishRequest {
                tenant: tenant.clone(),
                idempotency_key: (!i.idempotency_key.is_empty()).then_some(i.idempotency_key),
                label: i.label,
                index: *index,
                value: i.value,
            })
            .collect();
        let n = reqs.len();
        let results = self.publisher.publish(reqs).await?;
        if results.len() != n {
            return Err(ApiError::Internal(format!(
                "the shard layer answered {} of {n} items",
                results.len()
            )));
        }
        let mut out = Vec::with_capacity(n);
        for (i, (r, (index, proof))) in results.into_iter().zip(&vrfs).enumerate() {
            match r {
                Ok(receipt) => out.push(self.publish_response(&receipt, index, proof)?),
                Err(e) => {
                    let e = ApiError::Publish(e);
                    return Err(if n == 1 {
                        e
                    } else {
                        match e.code() {
                            tonic::Code::Internal => e,
                            _ => relabel(e, i),
                        }
                    });
                }
            }
        }
        Ok(out)
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.forest.store()
    }
}

/// Prefixes a per-item error of a batch with the item's position.
fn relabel(e: ApiError, item: usize) -> ApiError {
    let code = e.code();
    let msg = format!("item {item}: {e}");
    match code {
        tonic::Code::Unavailable => ApiError::Unavailable(msg),
        tonic::Code::AlreadyExists => ApiError::AlreadyExists(msg),
        tonic::Code::InvalidArgument => ApiError::InvalidArgument(msg),
        tonic::Code::PermissionDenied => ApiError::PermissionDenied(msg),
        _ => e,
    }
}

fn head_response(h: &SignedHead) -> pb::SignedHeadResponse {
    pb::SignedHeadResponse {
        epoch: h.head.epoch,
        signed_head: h.encode(),
        timestamp_ms: h.head.timestamp_ms,
    }
}

type HeadStream =
    Pin<Box<dyn Stream<Item = Result<pb::SignedHeadResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl KeyTransparency for KtService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        self.rpc("Publish", request, |inner, md, msg| async move {
            let tenant = inner.auth.authenticate(&md)?.to_owned();
            Span::current().record("tenant", tenant.as_str());
            inner.check_publish(&msg, None)?;
            inner.rate.admit(&tenant, 1)?;
            let mut out = inner.publish_items(tenant, vec![msg]).await?;
            out.pop()
                .ok_or_else(|| ApiError::Internal("empty publish result".into()))
        })
        .await
    }

    async fn erase(
        &self,
        request: Request<pb::EraseRequest>,
    ) -> Result<Response<pb::EraseResponse>, Status> {
        self.rpc("Erase", request, |inner, md, msg| async move {
            let tenant = inner.auth.authenticate(&md)?.to_owned();
            Span::current().record("tenant", tenant.as_str());
            inner.check_label(&msg.label, None)?;
            if msg.version == 0 {
                return Err(ApiError::InvalidArgument("versions start at 1".into()));
            }
            inner.rate.admit(&tenant, 1)?;
            let me = inner.clone();
            let label = msg.label;
            let (index, _) = blocking(move || Ok(me.vrfs.get(&label))).await?;
            inner
                .publisher
                .erase(tenant, index, msg.version)
                .await
                .map_err(ApiError::Publish)?;
            Ok(pb::EraseResponse {})
        })
        .await
    }

    async fn publish_batch(
        &self,
        request: Request<pb::PublishBatchRequest>,
    ) -> Result<Response<pb::PublishBatchResponse>, Status> {
        self.rpc("PublishBatch", request, |inner, md, msg| async move {
            let tenant = inner.auth.authenticate(&md)?.to_owned();
            Span::current().record("tenant", tenant.as_str());
            let items = msg.items;
            if items.is_empty() {
                return Err(ApiError::InvalidArgument("batch has no items".into()));
            }
            if items.len() > inner.limits.max_batch_items as usize {
                return Err(ApiError::InvalidArgument(format!(
                    "batch of {} items exceeds limits.max_batch_items {}",
                    items.len(),
                    inner.limits.max_batch_items
                )));
            }
            let mut labels = HashSet::with_capacity(items.len());
            let mut keys = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                inner.check_publish(item, Some(i))?;
                if !labels.insert(item.label.as_slice()) {
                    return Err(ApiError::InvalidArgument(format!(
                        "item {i}: the same label appears earlier in the batch"
                    )));
                }
                if !item.idempotency_key.is_empty() && !keys.insert(item.idempotency_key.as_str()) {
                    return Err(ApiError::InvalidArgument(format!(
                        "item {i}: the same idempotency_key appears earlier in the batch"
                    )));
                }
            }
            inner.rate.admit(&tenant, items.len() as u32)?;
            let results = inner.publish_items(tenant, items).await?;
            Ok(pb::PublishBatchResponse { results })
        })
        .await
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        self.rpc("Lookup", request, |inner, _md, msg| async move {
            inner.check_label(&msg.label, None)?;
            if let Some(e) = msg.epoch {
                inner.catch_up_to(e).await;
            }
            let head = inner.resolve_epoch(msg.epoch)?;
            Span::current().record("epoch", head.head.epoch);
            let me = inner.clone();
            blocking(move || {
                let view = me.view(&head)?;
                let (index, vrf_proof) = me.vrfs.get(&msg.label);
                Span::current().record("index", index_prefix(&index));
                let proof = view.lookup_proof(&index, vrf_proof, OpeningPolicy::Open)?;
                let (found, version, value) = match &proof.terminal {
                    candor_core::proof::lookup::Terminal::Member {
                        version, opening, ..
                    } => (
                        true,
                        *version,
                        opening.value().map(<[u8]>::to_vec).unwrap_or_default(),
                    ),
                    _ => (false, 0, Vec::new()),
                };
                Ok(pb::LookupResponse {
                    epoch: head.head.epoch,
                    proof: proof.encode(),
                    signed_head: head.encode(),
                    found,
                    version,
                    value,
                })
            })
            .await
        })
        .await
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.rpc("History", request, |inner, _md, msg| async move {
            inner.check_label(&msg.label, None)?;
            if let Some(e) = msg.epoch {
                inner.catch_up_to(e).await;
            }
            let head = inner.resolve_epoch(msg.epoch)?;
            Span::current().record("epoch", head.head.epoch);
            let me = inner.clone();
            blocking(move || {
                let view = me.view(&head)?;
                let (index, vrf_proof) = me.vrfs.get(&msg.label);
                Span::current().record("index", index_prefix(&index));
                if let Some(page) = msg.page {
                    return me.history_page(&head, &view, &index, vrf_proof, page);
                }
                let proof = view.history_proof(&index, vrf_proof)?;
                let bytes = proof.encode();
                me.check_size("history proof", bytes.len())?;
                let entries = proof
                    .versions
                    .iter()
                    .enumerate()
                    .map(|(i, o)| match o {
                        Opening::Open { value, .. } => pb::HistoryEntry {
                            version: i as u64 + 1,
                            value: value.clone(),
                            forgotten: false,
                        },
                        Opening::Redacted { .. } => pb::HistoryEntry {
                            version: i as u64 + 1,
                            value: Vec::new(),
                            forgotten: true,
                        },
                    })
                    .collect();
                Ok(pb::HistoryResponse {
                    epoch: head.head.epoch,
                    proof: bytes,
                    signed_head: head.encode(),
                    entries,
                    page: Vec::new(),
                    next_last_version: 0,
                })
            })
            .await
        })
        .await
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        self.rpc("GetConfig", request, |inner, _md, _msg| async move {
            let me = inner.clone();
            let history = blocking(move || Ok(me.epochs.configs()?)).await?;
            // After a rotation the newest configuration is the one served; the chain
            // links it to every earlier one (docs/protocol.md §8.1).
            let (current, config_bytes, history) = if history.len() > 1 {
                let last = history[history.len() - 1].config.clone();
                let c = PublicConfig::decode(&last)
                    .map_err(|e| ApiError::Internal(format!("stored configuration: {e}")))?;
                let h = history
                    .into_iter()
                    .map(|v| pb::ConfigVersion {
                        config: v.config,
                        rotation: v.rotation,
                    })
                    .collect();
                (c, last, h)
            } else {
                (inner.config.clone(), inner.config_bytes.clone(), Vec::new())
            };
            let c = &current;
            Ok(pb::GetConfigResponse {
                config: config_bytes,
                history,
                namespace: c.namespace.clone(),
                suite: String::from_utf8_lossy(candor_core::signed::SUITE).into_owned(),
                vrf_public_key: c.vrf_key.to_bytes().to_vec(),
                epoch_public_key: c.head_key.0.to_vec(),
                smt_public_key: c.smt_key.0.to_vec(),
                epoch_interval_ms: c.epoch_interval_ms,
                max_merge_delay_ms: c.max_merge_delay_ms,
                shard_bits: u32::from(c.shard_bits),
                config_digest: c.digest().to_vec(),
                limits: Some(inner.limits.to_proto()),
            })
        })
        .await
    }

    async fn get_epoch(
        &self,
        request: Request<pb::GetEpochRequest>,
    ) -> Result<Response<pb::SignedHeadResponse>, Status> {
        self.rpc("GetEpoch", request, |inner, _md, msg| async move {
            Span::current().record("epoch", msg.epoch);
            inner.catch_up_to(msg.epoch).await;
            let me = inner.clone();
            blocking(move || Ok(head_response(&me.head(msg.epoch)?))).await
        })
        .await
    }

    async fn get_latest_epoch(
        &self,
        request: Request<pb::GetLatestEpochRequest>,
    ) -> Result<Response<pb::SignedHeadResponse>, Status> {
        self.rpc("GetLatestEpoch", request, |inner, _md, _msg| async move {
            let me = inner.clone();
            blocking(move || Ok(head_response(&me.resolve_epoch(None)?))).await
        })
        .await
    }

    type WatchEpochsStream = HeadStream;

    async fn watch_epochs(
        &self,
        request: Request<pb::WatchEpochsRequest>,
    ) -> Result<Response<Self::WatchEpochsStream>, Status> {
        self.rpc("WatchEpochs", request, |inner, _md, msg| async move {
            // `from_epoch` unset: the latest signed epoch (or epoch 1 once
            // the first is signed). Heads are read from the store as the
            // client pulls them, so a slow client only delays itself and
            // nothing is buffered for it.
            let next = match msg.from_epoch {
                Some(e) => e.max(1),
                None => inner.latest_epoch().max(1),
            };
            Span::current().record("epoch", next);
            Ok(Box::pin(watch_stream(inner, next)) as HeadStream)
        })
        .await
    }

    async fn consistency(
        &self,
        request: Request<pb::ConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyResponse>, Status> {
        self.rpc("Consistency", request, |inner, _md, msg| async move {
            let (from, to) = (msg.from_epoch, msg.to_epoch);
            if from > to {
                return Err(ApiError::InvalidArgument(format!(
                    "from_epoch {from} > to_epoch {to}"
                )));
            }
            Span::current().record("epoch", to);
            inner.catch_up_to(to).await;
            let me = inner.clone();
            blocking(move || {
                let from_head = me.head(from)?;
                let to_head = me.head(to)?;
                let proof = HeadExtensionProof {
                    consistency: me.epochs.consistency_proof(from, to)?,
                    inclusion: me.epochs.inclusion_proof(from, to)?,
                };
                Ok(pb::ConsistencyResponse {
                    proof: proof.encode(),
                    from_head: from_head.encode(),
                    to_head: to_head.encode(),
                })
            })
            .await
        })
        .await
    }

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        self.rpc("Audit", request, |inner, _md, msg| async move {
            let epoch = msg.epoch;
            Span::current().record("epoch", epoch);
            inner.catch_up_to(epoch).await;
            let me = inner.clone();
            blocking(move || {
                let head = me.head(epoch)?;
                let view = me.view(&head)?;
                let (prev_head, prev_view) = if epoch == 1 {
                    let empty = vec![0u64; me.forest.shard_count() as usize];
                    (None, me.forest.view(empty)?)
                } else {
                    let p = me.head(epoch - 1)?;
                    let v = me.view(&p)?;
                    (Some(p), v)
                };
                let proof = view.audit_proof(&prev_view)?;
                let changed_labels = proof.changes.len() as u64;
                let bytes = proof.encode();
                me.check_size("audit proof", bytes.len())?;
                Ok(pb::AuditResponse {
                    epoch,
                    proof: bytes,
                    previous_head: prev_head.map(|h| h.encode()).unwrap_or_default(),
                    head: head.encode(),
                    changed_labels,
                })
            })
            .await
        })
        .await
    }

    async fn submit_cosignature(
        &self,
        request: Request<pb::CosignRequest>,
    ) -> Result<Response<pb::CosignResponse>, Status> {
        self.rpc("SubmitCosignature", request, |inner, _md, msg| async move {
            let c = Cosignature::decode(&msg.cosignature)
                .map_err(|e| ApiError::InvalidArgument(format!("cosignature: {e}")))?;
            if c.namespace != inner.config.namespace {
                return Err(ApiError::InvalidArgument(format!(
                    "cosignature is for namespace {:?}, not {:?}",
                    c.namespace, inner.config.namespace
                )));
            }
            if !inner.auditor_keys.contains(&c.auditor_key.0) {
                return Err(ApiError::PermissionDenied(
                    "the auditor key is not one the operator accepts".into(),
                ));
            }
            Span::current().record("epoch", c.epoch);
            inner.catch_up_to(c.epoch).await;
            let me = inner.clone();
            let encoded = msg.cosignature;
            // Checked here for a precise answer before anything is proposed; the
            // cosignature log checks the signature again where it stores it.
            blocking(move || {
                let head = me.head(c.epoch)?;
                c.verify(&head.head).map_err(|e| {
                    ApiError::InvalidArgument(format!("cosignature does not verify: {e}"))
                })
            })
            .await?;
            // One cosignature per auditor and epoch: the first stored stays, a
            // resubmission changes nothing.
            inner.cosignatures.submit(encoded).await?;
            Ok(pb::CosignResponse {})
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        self.rpc("GetCheckpoint", request, |inner, _md, msg| async move {
            if msg.size != 0 {
                inner.catch_up_to(msg.size).await;
            }
            let me = inner.clone();
            blocking(move || {
                let size = if msg.size == 0 {
                    me.latest_epoch()
                } else {
                    msg.size
                };
                Span::current().record("epoch", size);
                if msg.old_size > size {
                    return Err(ApiError::InvalidArgument(format!(
                        "old_size {} is beyond size {size}",
                        msg.old_size
                    )));
                }
                let head = me.head(size)?;
                let note = match me.epochs.checkpoint(size)? {
                    Some(n) => n,
                    None if !candor_core::checkpoint::valid_key_name(&me.config.namespace) => {
                        return Err(ApiError::FailedPrecondition(format!(
                            "namespace {:?} cannot be a C2SP key name (it contains '+'): \
                             no checkpoints are signed",
                            me.config.namespace
                        )));
                    }
                    None => {
                        return Err(ApiError::NotFound(format!(
                            "epoch {size} was signed before checkpoints existed; ask for a \
                             later one"
                        )));
                    }
                };
                let consistency = me
                    .epochs
                    .checkpoint_consistency(msg.old_size, size)?
                    .path
                    .into_iter()
                    .map(|d| d.to_vec())
                    .collect();
                let head_inclusion = me
                    .epochs
                    .checkpoint_inclusion(size, size)?
                    .path
                    .into_iter()
                    .map(|d| d.to_vec())
                    .collect();
                Ok(pb::GetCheckpointResponse {
                    size,
                    note,
                    consistency,
                    head: head.encode(),
                    head_inclusion,
                })
            })
            .await
        })
        .await
    }

    async fn get_cosignatures(
        &self,
        request: Request<pb::GetCosignaturesRequest>,
    ) -> Result<Response<pb::GetCosignaturesResponse>, Status> {
        self.rpc("GetCosignatures", request, |inner, _md, msg| async move {
            let epoch = msg.epoch;
            Span::current().record("epoch", epoch);
            inner.catch_up_to(epoch).await;
            let me = inner.clone();
            blocking(move || {
                me.head(epoch)?;
                let mut all: std::collections::BTreeMap<[u8; 32], Vec<u8>> =
                    me.epochs.cosignatures(epoch)?.into_iter().collect();
                // Cosignatures stored before they were replicated (one member's
                // `Meta` space, docs/operations.md): still served, the replicated
                // one first if both exist.
                let mut prefix = LEGACY_COSIG_PREFIX.to_vec();
                prefix.extend_from_slice(&epoch.to_be_bytes());
                for kv in candor_store::scan_pages(
                    &**me.store(),
                    Space::Meta,
                    KeyRange::prefix(&prefix),
                    Direction::Forward,
                    256,
                ) {
                    let (k, v) = kv.map_err(candor_tree::TreeError::from)?;
                    let auditor: [u8; 32] =
                        k.get(prefix.len()..)
                            .and_then(|a| a.try_into().ok())
                            .ok_or_else(|| ApiError::internal("malformed cosignature key"))?;
                    all.entry(auditor).or_insert(v);
                }
                let cosignatures = all
                    .into_iter()
                    .map(|(auditor, v)| pb::CosignatureEntry {
                        auditor_public_key: auditor.to_vec(),
                        cosignature: v,
                    })
                    .collect();
                Ok(pb::GetCosignaturesResponse {
                    epoch,
                    cosignatures,
                })
            })
            .await
        })
        .await
    }
}

/// Heads `next, next + 1, ...` read from the store as the client pulls them,
/// waiting for new epochs; ends with UNAVAILABLE on shutdown.
fn watch_stream(
    inner: Arc<Inner>,
    next: u64,
) -> impl Stream<Item = Result<pb::SignedHeadResponse, Status>> + Send {
    let heads = inner.heads.clone();
    let shutdown = inner.shutdown.clone();
    futures_util::stream::unfold(Some((inner, next, heads, shutdown)), |state| async move {
        let (inner, next, mut heads, mut shutdown) = state?;
        loop {
            if *shutdown.borrow() {
                return Some((
                    Err(Status::unavailable("the server is shutting down")),
                    None,
                ));
            }
            if next <= inner.latest_epoch() {
                let me = inner.clone();
                let got = blocking(move || me.head(next)).await;
                return match got {
                    Ok(h) => Some((
                        Ok(head_response(&h)),
                        Some((inner, next + 1, heads, shutdown)),
                    )),
                    Err(e) => Some((Err(Status::from(e)), None)),
                };
            }
            tokio::select! {
                biased;
                changed = heads.changed() => if changed.is_err() {
                    return Some((Err(Status::unavailable("the epoch source stopped")), None));
                },
                stopped = shutdown.changed() => if stopped.is_err() {
                    return Some((Err(Status::unavailable("the server is shutting down")), None));
                },
            }
        }
    })
}
