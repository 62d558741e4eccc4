//! The publish path: [`ShardPublisher`], the shard layer's [`Publisher`] (the seam the
//! API calls, defined in `candor-publish`), which
//! routes items to their shard, groups concurrent requests into one Raft entry per shard,
//! and signs an SMT for each applied item.
//!
//! Per shard, one batching task takes queued requests; while fewer than
//! [`PublisherConfig::max_inflight`] entries of that shard are in flight it drains
//! everything queued (up to [`PublisherConfig::max_batch_items`]) into entries bounded by
//! the Raft payload limit and proposes them. Raft's log store turns concurrent appends
//! of all shards into one fsync, so a burst of N publishes costs a few entries and a few
//! fsyncs, not N.

use std::sync::Arc;

use candor_core::Index;
use candor_core::map::{Leaf, shard_of};
use candor_core::signed::{MutationTimestamp, SignedMutationTimestamp, SigningKeyPair};
use candor_raft::{RaftGroup, RemoteGroup};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use candor_publish::{PublishError, PublishReceipt, PublishRequest, Publisher};

use crate::command::{EraseOutcome, Item, ItemOutcome, ShardCommand, ShardResponse};
use crate::error::ShardError;
use crate::logic::ShardLogic;

/// Tuning of [`ShardPublisher`].
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Namespace put in SMTs.
    pub namespace: String,
    /// `log2` of the shard count.
    pub shard_bits: u8,
    /// SMT deadline = timestamp + this.
    pub max_merge_delay_ms: u64,
    /// Most items in one Raft entry. Default 1024.
    pub max_batch_items: usize,
    /// Most entries of one shard in flight at once. Default 1: requests that arrive
    /// while an entry is in flight join the next one, and fewer, larger entries cost
    /// less per mutation (measured on `candor dev`: 1 beat 2 and 4 in throughput and CPU
    /// per mutation, with 1 or 16 items per call). A cluster with network round trips
    /// may want 2–4 to overlap replication of consecutive entries.
    pub max_inflight: usize,
    /// Requests queued per shard before callers wait. Default 4096.
    pub queue_depth: usize,
}

impl PublisherConfig {
    /// Defaults for a namespace and shard count.
    pub fn new(namespace: impl Into<String>, shard_bits: u8, max_merge_delay_ms: u64) -> Self {
        Self {
            namespace: namespace.into(),
            shard_bits,
            max_merge_delay_ms,
            max_batch_items: 1024,
            max_inflight: 1,
            queue_depth: 4096,
        }
    }
}

/// Per item: the outcome, with the index and nonce the receipt needs.
type ItemResult = Result<(ItemOutcome, Index, [u8; 32]), ShardError>;

struct Job {
    items: Vec<Item>,
    reply: oneshot::Sender<Vec<ItemResult>>,
    /// The caller's span: the batch's write continues the first caller's trace.
    span: tracing::Span,
}

struct Inner {
    config: PublisherConfig,
    queues: Vec<mpsc::Sender<Job>>,
    /// Each shard's group, for single entries that are not batched (erasures).
    routes: Vec<ShardRoute>,
    /// Replaced when the deployment rotates its keys ([`ShardPublisher::set_smt_key`]).
    smt_key: std::sync::RwLock<Arc<SigningKeyPair>>,
    cancel: CancellationToken,
}

impl Inner {
    fn smt_key(&self) -> Arc<SigningKeyPair> {
        Arc::clone(&self.smt_key.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The [`Publisher`] over this node's shard groups. Cheap to clone.
#[derive(Clone)]
pub struct ShardPublisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ShardPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardPublisher")
            .field("shards", &self.inner.queues.len())
            .finish_non_exhaustive()
    }
}

static NEXT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Wall clock in ms since the Unix epoch (0 if the clock is before 1970);
/// virtual in a simulation ([`candor_sim::wall_ms`]).
pub fn now_ms() -> u64 {
    candor_sim::wall_ms()
}

/// Where the publisher sends a shard's entries: the shard's group on this node, or the
/// replicas that host it elsewhere (a shared-state member whose placement leaves the
/// shard to other members).
#[derive(Clone)]
pub enum ShardRoute {
    /// This node hosts a replica of the shard's group.
    Local(RaftGroup<ShardLogic>),
    /// Other nodes host it.
    Remote(RemoteGroup),
}

impl std::fmt::Debug for ShardRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardRoute::Local(_) => f.write_str("ShardRoute::Local"),
            ShardRoute::Remote(g) => write!(f, "ShardRoute::Remote({g:?})"),
        }
    }
}

impl From<RaftGroup<ShardLogic>> for ShardRoute {
    fn from(g: RaftGroup<ShardLogic>) -> Self {
        ShardRoute::Local(g)
    }
}

impl ShardRoute {
    fn max_payload_bytes(&self) -> usize {
        match self {
            ShardRoute::Local(g) => g.max_payload_bytes(),
            ShardRoute::Remote(g) => g.max_payload_bytes(),
        }
    }

    async fn write(&self, data: Vec<u8>) -> Result<Vec<u8>, candor_raft::Error> {
        match self {
            ShardRoute::Local(g) => g.write(data).await,
            ShardRoute::Remote(g) => g.write(data).await,
        }
    }
}

impl ShardPublisher {
    /// Start one batching task per shard. `groups[s]` is the group of shard `s`
    /// (`2^shard_bits` of them). Must be called inside a tokio runtime.
    pub fn new(
        groups: Vec<RaftGroup<ShardLogic>>,
        smt_key: Arc<SigningKeyPair>,
        config: PublisherConfig,
    ) -> Result<Self, ShardError> {
        Self::with_routes(
            groups.into_iter().map(ShardRoute::from).collect(),
            smt_key,
            config,
        )
    }

    /// As [`ShardPublisher::new`], with each shard's route: local groups, or remote
    /// ones for shards this node does not host.
    pub fn with_routes(
        groups: Vec<ShardRoute>,
        smt_key: Arc<SigningKeyPair>,
        config: PublisherConfig,
    ) -> Result<Self, ShardError> {
        if groups.len() != 1usize << config.shard_bits {
            return Err(ShardError::InvalidArgument(format!(
                "{} groups for 2^{} shards",
                groups.len(),
                config.shard_bits
            )));
        }
        let cancel = CancellationToken::new();
        let mut queues = Vec::with_capacity(groups.len());
        let routes = groups.clone();
        for (s, g) in groups.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
            queues.push(tx);
            let b = Batcher {
                shard: s as u32,
                group: g,
                config: config.clone(),
                inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
            };
            tokio::spawn(b.run(rx, cancel.clone()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                queues,
                routes,
                smt_key: std::sync::RwLock::new(smt_key),
                cancel,
            }),
        })
    }

    /// Stop the batching tasks; later publishes fail with `Unavailable`.
    pub fn close(&self) {
        self.inner.cancel.cancel();
    }

    /// Sign an SMT for `leaf` of `shard`, timestamped now.
    pub fn sign_smt(&self, shard: u32, leaf: &Leaf) -> SignedMutationTimestamp {
        sign_smt(&self.inner.config, &self.inner.smt_key(), shard, leaf)
    }

    /// Signs SMTs with `key` from now on (the deployment rotated its keys).
    pub fn set_smt_key(&self, key: Arc<SigningKeyPair>) {
        *self
            .inner
            .smt_key
            .write()
            .unwrap_or_else(|p| p.into_inner()) = key;
    }
}

fn sign_smt(
    config: &PublisherConfig,
    key: &SigningKeyPair,
    shard: u32,
    leaf: &Leaf,
) -> SignedMutationTimestamp {
    let ts = now_ms();
    MutationTimestamp {
        namespace: config.namespace.clone(),
        index: leaf.index,
        version: leaf.version,
        leaf_hash: leaf.hash(),
        shard,
        timestamp_ms: ts,
        merge_deadline_ms: ts.saturating_add(config.max_merge_delay_ms),
    }
    .sign(key)
}

#[async_trait::async_trait]
impl Publisher for ShardPublisher {
    async fn publish(
        &self,
        items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishReceipt, PublishError>>, PublishError> {
        Ok(self
            .publish_items(items)
            .await?
            .into_iter()
            .map(|r| r.map_err(PublishError::from))
            .collect())
    }

    async fn erase(&self, tenant: String, index: Index, version: u64) -> Result<(), PublishError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(PublishError::Unavailable("shutting down".into()));
        }
        let s = shard_of(&index, inner.config.shard_bits) as usize;
        let cmd = ShardCommand::Erase {
            tenant,
            index,
            version,
        };
        let span = info_span!("erase", shard = s, version);
        let resp = inner.routes[s]
            .write(cmd.encode())
            .instrument(span)
            .await
            .map_err(|e| PublishError::from(ShardError::from_raft(e)))?;
        match ShardResponse::decode(&resp).map_err(PublishError::from)? {
            ShardResponse::Erased(EraseOutcome::Erased) => Ok(()),
            ShardResponse::Erased(EraseOutcome::NotFound) => Err(PublishError::NotFound(format!(
                "the label has no version {version}"
            ))),
            ShardResponse::Erased(EraseOutcome::Forbidden) => Err(PublishError::PermissionDenied),
            ShardResponse::Erased(EraseOutcome::Invalid(m)) | ShardResponse::Rejected(m) => {
                Err(PublishError::InvalidArgument(m))
            }
            // Applied before (a restart, shared storage): erasing is idempotent, but
            // the outcome was not kept; the caller retries to learn it.
            ShardResponse::Forgotten => Err(PublishError::Indeterminate(
                "the erase was applied before and its outcome is no longer kept; retry".into(),
            )),
            other => Err(PublishError::Internal(format!(
                "unexpected shard response {other:?}"
            ))),
        }
    }
}

impl ShardPublisher {
    async fn publish_items(
        &self,
        items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishReceipt, ShardError>>, ShardError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(ShardError::Unavailable("shutting down".into()));
        }
        let n = items.len();
        // SMT latency runs from here (request accepted) to each SMT signed.
        let accepted = std::time::Instant::now();
        // A per-process request number ties the publish span to its shard writes.
        let request = NEXT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let span = info_span!("publish", request, items = n);
        async move {
            // Group by shard, remembering each item's position.
            let mut per_shard: Vec<(Vec<usize>, Vec<Item>)> = (0..inner.queues.len())
                .map(|_| (Vec::new(), Vec::new()))
                .collect();
            // All nonces of the call from one OS RNG read (not one syscall per item);
            // from the seed in a simulation.
            let mut nonces = vec![0u8; 32 * n];
            candor_sim::fill_random(&mut nonces)
                .map_err(|e| ShardError::Unavailable(format!("operating system RNG: {e}")))?;
            for ((pos, r), nonce) in items.into_iter().enumerate().zip(nonces.chunks_exact(32)) {
                let s = shard_of(&r.index, inner.config.shard_bits) as usize;
                let (p, it) = &mut per_shard[s];
                p.push(pos);
                it.push(Item {
                    tenant: r.tenant,
                    idempotency_key: r.idempotency_key,
                    label: r.label,
                    index: r.index,
                    value: r.value,
                    nonce: {
                        let mut a = [0u8; 32];
                        a.copy_from_slice(nonce);
                        a
                    },
                });
            }
            let mut waits = Vec::new();
            for (s, (positions, items)) in per_shard.into_iter().enumerate() {
                if items.is_empty() {
                    continue;
                }
                let (tx, rx) = oneshot::channel();
                inner.queues[s]
                    .send(Job {
                        items,
                        reply: tx,
                        span: tracing::Span::current(),
                    })
                    .await
                    .map_err(|_| ShardError::Unavailable("shard publisher stopped".into()))?;
                waits.push((s as u32, positions, rx));
            }
            let mut out: Vec<Option<Result<PublishReceipt, ShardError>>> =
                (0..n).map(|_| None).collect();
            for (shard, positions, rx) in waits {
                let results = match rx.await {
                    Ok(r) => r,
                    Err(_) => {
                        let e = ShardError::Unavailable("shard publisher stopped".into());
                        positions.iter().map(|_| Err(e.clone())).collect()
                    }
                };
                let metrics = candor_telemetry::metrics();
                let smt_key = inner.smt_key();
                for (pos, r) in positions.into_iter().zip(results) {
                    let r = r.and_then(|(o, index, nonce)| {
                        receipt(&inner.config, &smt_key, shard, o, index, nonce)
                    });
                    if let Ok(receipt) = &r {
                        metrics.record_smt_latency(shard, accepted.elapsed());
                        metrics.smt_signed(shard, receipt.smt.smt.timestamp_ms);
                    }
                    out[pos] = Some(r);
                }
            }
            Ok(out
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(ShardError::Internal("missing result".into()))))
                .collect())
        }
        .instrument(span)
        .await
    }
}

fn receipt(
    config: &PublisherConfig,
    key: &SigningKeyPair,
    shard: u32,
    outcome: ItemOutcome,
    index: Index,
    item_nonce: [u8; 32],
) -> Result<PublishReceipt, ShardError> {
    let (version, commitment, prev, nonce) = match outcome {
        ItemOutcome::Applied {
            version,
            commitment,
            prev,
        } => (version, commitment, prev, item_nonce),
        ItemOutcome::Duplicate {
            version,
            commitment,
            prev,
            nonce,
        } => (version, commitment, prev, nonce),
        ItemOutcome::Conflict => return Err(ShardError::IdempotencyConflict),
        ItemOutcome::Invalid(m) => return Err(ShardError::InvalidArgument(m)),
        ItemOutcome::Forbidden => return Err(ShardError::PermissionDenied),
    };
    let leaf = Leaf {
        index,
        version,
        commitment,
        prev,
    };
    // Signed only now: the entry is committed in the shard's quorum and applied.
    let smt = sign_smt(config, key, shard, &leaf);
    Ok(PublishReceipt { smt, leaf, nonce })
}

/// (job, position in job) of each item of an entry.
type Tags = Vec<(usize, usize)>;

struct Batcher {
    shard: u32,
    group: ShardRoute,
    config: PublisherConfig,
    inflight: Arc<Semaphore>,
}

/// Bytes an item adds to an entry beyond its label, value and strings (index, nonce,
/// length prefixes, option tag), with room to spare.
const ITEM_OVERHEAD: usize = 96;

fn item_size(i: &Item) -> usize {
    ITEM_OVERHEAD
        + i.tenant.len()
        + i.idempotency_key.as_ref().map_or(0, String::len)
        + i.label.len()
        + i.value.len()
}

impl Batcher {
    async fn run(self, mut rx: mpsc::Receiver<Job>, cancel: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let first = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                j = rx.recv() => match j { Some(j) => j, None => break },
            };
            // Wait for room first: requests arriving meanwhile join this batch.
            let permit = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                p = Arc::clone(&this.inflight).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let mut n = first.items.len();
            let mut jobs = vec![first];
            while n < this.config.max_batch_items {
                match rx.try_recv() {
                    Ok(j) => {
                        n += j.items.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            let me = Arc::clone(&this);
            tokio::spawn(async move {
                me.write(jobs).await;
                drop(permit);
            });
        }
        // Queued jobs are dropped: their callers see `Unavailable`.
        rx.close();
    }

    /// Propose the items of `jobs` in as few entries as fit, then answer each job.
    async fn write(&self, jobs: Vec<Job>) {
        let limit = self.group.max_payload_bytes();
        let mut replies = Vec::with_capacity(jobs.len());
        let mut results: Vec<Vec<Option<ItemResult>>> = Vec::with_capacity(jobs.len());
        // Entries of owned items, each item tagged with its (job, position).
        let mut entries: Vec<(Tags, Vec<Item>)> = Vec::new();
        let (mut tags, mut cur, mut cur_bytes) = (Vec::new(), Vec::new(), 16usize);
        let mut callers = Vec::with_capacity(jobs.len());
        for (ji, job) in jobs.into_iter().enumerate() {
            replies.push(job.reply);
            callers.push(job.span);
            let mut res: Vec<Option<ItemResult>> = Vec::with_capacity(job.items.len());
            for (ii, item) in job.items.into_iter().enumerate() {
                let sz = item_size(&item);
                if sz + 16 > limit {
                    res.push(Some(Err(ShardError::InvalidArgument(format!(
                        "item of about {sz} bytes exceeds the {limit}-byte entry limit"
                    )))));
                    continue;
                }
                res.push(None);
                if !cur.is_empty()
                    && (cur.len() >= self.config.max_batch_items || cur_bytes + sz > limit)
                {
                    entries.push((std::mem::take(&mut tags), std::mem::take(&mut cur)));
                    cur_bytes = 16;
                }
                tags.push((ji, ii));
                cur.push(item);
                cur_bytes += sz;
            }
            results.push(res);
        }
        if !cur.is_empty() {
            entries.push((tags, cur));
        }
        let span = match callers.first() {
            Some(parent) => {
                info_span!(parent: parent, "shard_write", shard = self.shard, entries = entries.len())
            }
            None => info_span!("shard_write", shard = self.shard, entries = entries.len()),
        };
        for other in callers.iter().skip(1) {
            span.follows_from(other);
        }
        let writes = entries.into_iter().map(|(tags, items)| {
            let keys: Vec<(Index, [u8; 32])> = items.iter().map(|i| (i.index, i.nonce)).collect();
            async move { (tags, keys, self.propose(items).await) }
        });
        let outs = futures_util::future::join_all(writes)
            .instrument(span)
            .await;
        for (tags, keys, out) in outs {
            match out {
                Ok(outcomes) => {
                    for ((&(ji, ii), o), (index, nonce)) in tags.iter().zip(outcomes).zip(keys) {
                        results[ji][ii] = Some(Ok((o, index, nonce)));
                    }
                }
                Err(err) => {
                    for &(ji, ii) in &tags {
                        results[ji][ii] = Some(Err(err.clone()));
                    }
                }
            }
        }
        for (reply, res) in replies.into_iter().zip(results) {
            let r = res
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(ShardError::Internal("item not proposed".into()))))
                .collect();
            let _ = reply.send(r);
        }
    }

    async fn propose(&self, items: Vec<Item>) -> Result<Vec<ItemOutcome>, ShardError> {
        let n = items.len();
        // Every item keyed: the state machine lands each (tenant, key) once and answers
        // a repeat with the first result, so an entry whose outcome is unknown (its
        // leader was deposed while holding it) can be sent once more through the new
        // leader instead of failing the caller.
        let keyed = items.iter().all(|i| i.idempotency_key.is_some());
        let cmd = ShardCommand::Publish {
            timestamp_ms: now_ms(),
            items,
        }
        .encode();
        let resp = match self.group.write(cmd.clone()).await {
            Err(candor_raft::Error::Indeterminate { detail, .. }) if keyed => {
                debug!(shard = self.shard, %detail, "publish entry outcome unknown; resending (keyed)");
                self.group.write(cmd).await.map_err(ShardError::from_raft)?
            }
            other => other.map_err(ShardError::from_raft)?,
        };
        match ShardResponse::decode(&resp)? {
            ShardResponse::Published(o) if o.len() == n => Ok(o),
            // Shared-state mode: other replicas applied the entry first and its response
            // is no longer retained. It was applied; a retry with the same idempotency
            // key returns its result.
            ShardResponse::Forgotten => Err(ShardError::Indeterminate(
                "the entry was applied but its result is no longer retained".into(),
            )),
            other => {
                warn!(
                    shard = self.shard,
                    ?other,
                    "unexpected response to a publish entry"
                );
                Err(ShardError::Internal(format!(
                    "unexpected response {other:?}"
                )))
            }
        }
    }
}
