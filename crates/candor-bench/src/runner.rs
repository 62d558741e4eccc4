//! The load: workers issuing publishes and lookups, the merge tracker, the progress bar.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_client::{Client, ClientError, PublishItem};
use candor_core::Digest;
use candor_core::signed::{SignedHead, SignedMutationTimestamp};
use candor_proto::candor::v1 as pb;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::options::{Mix, OpKind, Stop};
use crate::report::Collected;

/// Most labels remembered for updates and lookups; past it, new labels replace random
/// old ones (memory stays bounded on long runs).
const POOL_CAP: usize = 1 << 20;

/// Merge checks of one epoch in flight at once.
const MERGE_CHECKS_IN_FLIGHT: usize = 32;

/// A small, fast PRNG (SplitMix64) for operation choice and values: the load only needs
/// spread, not unpredictability.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Rng {
        let mut b = [0u8; 8];
        // A fixed fallback seed only changes which labels are picked.
        let _ = getrandom::fill(&mut b);
        Rng(u64::from_le_bytes(b))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// Labels this run published, for updates and lookups.
#[derive(Default)]
pub(crate) struct LabelPool {
    labels: Mutex<Vec<Vec<u8>>>,
}

impl LabelPool {
    pub(crate) fn add(&self, label: Vec<u8>, rng: &mut Rng) {
        let mut v = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < POOL_CAP {
            v.push(label);
        } else {
            let i = rng.below(v.len());
            v[i] = label;
        }
    }

    pub(crate) fn pick(&self, rng: &mut Rng) -> Option<Vec<u8>> {
        let v = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_empty() {
            None
        } else {
            Some(v[rng.below(v.len())].clone())
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One SMT whose merge is checked.
#[derive(Clone, Debug)]
pub(crate) struct MergeSample {
    pub label: Vec<u8>,
    pub smt: SignedMutationTimestamp,
}

impl MergeSample {
    fn version(&self) -> u64 {
        self.smt.smt.version
    }
    fn leaf_hash(&self) -> &Digest {
        &self.smt.smt.leaf_hash
    }
}

/// Live counters for the progress bar.
#[derive(Default)]
pub(crate) struct Live {
    pub mutations: AtomicU64,
    pub lookups: AtomicU64,
    pub errors: AtomicU64,
    pub done_ops: AtomicU64,
}

/// State shared by the workers.
pub(crate) struct Shared {
    pub clients: Vec<Client>,
    pub mix: Mix,
    pub batch: usize,
    pub value_size: usize,
    pub attempts: u32,
    pub merge_sample: u64,
    pub stop: Stop,
    /// Time origin; the measured run starts `start_ns` after it (after the preload).
    pub base: Instant,
    pub start_ns: AtomicU64,
    /// Operations reserved so far (for `Stop::Ops`).
    pub issued: AtomicU64,
    pub next_label: AtomicU64,
    pub run_id: String,
    pub pool: LabelPool,
    pub live: Live,
    pub smt_seq: AtomicU64,
    pub stopping: AtomicBool,
}

impl Shared {
    /// Marks now as the start of the measured run.
    pub(crate) fn start_clock(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.start_ns.store(ns, Ordering::Relaxed);
    }

    /// Time since the measured run started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.base
            .elapsed()
            .saturating_sub(Duration::from_nanos(self.start_ns.load(Ordering::Relaxed)))
    }

    /// Reserves up to `want` operations; 0 when the run is over.
    fn reserve(&self, want: usize) -> usize {
        if self.stopping.load(Ordering::Relaxed) {
            return 0;
        }
        match self.stop {
            Stop::Duration(d) => {
                if self.elapsed() >= d {
                    self.stopping.store(true, Ordering::Relaxed);
                    0
                } else {
                    want
                }
            }
            Stop::Ops(n) => {
                let prev = self.issued.fetch_add(want as u64, Ordering::Relaxed);
                if prev >= n {
                    self.stopping.store(true, Ordering::Relaxed);
                    0
                } else {
                    want.min((n - prev) as usize)
                }
            }
        }
    }

    fn new_label(&self) -> Vec<u8> {
        let n = self.next_label.fetch_add(1, Ordering::Relaxed);
        format!("bench-{}-{n}", self.run_id).into_bytes()
    }
}

/// One worker: draws operations until the run is over.
pub(crate) async fn worker(
    id: usize,
    shared: Arc<Shared>,
    merge_tx: mpsc::UnboundedSender<MergeSample>,
) -> Collected {
    let mut rng = Rng::seeded();
    let client = shared.clients[id % shared.clients.len()].clone();
    let mut c = Collected::default();
    // Consecutive failed calls of this worker: each waits 10 ms × 2^k (at most 1 s)
    // before the next call, so a server that is down is not hammered (millions of
    // errors a minute) and the run's error count stays meaningful.
    let mut failing = 0u32;
    loop {
        let errors_before = c.errors.total();
        match shared.mix.pick_call(rng.next_u64(), shared.batch) {
            OpKind::Lookup => {
                if shared.reserve(1) == 0 {
                    break;
                }
                lookup_once(&shared, &client, &mut rng, &mut c).await;
                shared.live.done_ops.fetch_add(1, Ordering::Relaxed);
            }
            OpKind::New | OpKind::Update => {
                let k = shared.reserve(shared.batch);
                if k == 0 {
                    break;
                }
                publish_once(&shared, &merge_tx, &client, &mut rng, k, &mut c).await;
                shared.live.done_ops.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
        if c.errors.total() > errors_before {
            failing = failing.saturating_add(1);
            tokio::time::sleep(backoff(failing)).await;
        } else {
            failing = 0;
        }
    }
    c
}

/// The pause after the `k`-th consecutive failure: 10 ms doubling, capped at 1 s.
fn backoff(k: u32) -> Duration {
    Duration::from_millis((10u64 << k.saturating_sub(1).min(7)).min(1000))
}

async fn publish_once(
    shared: &Shared,
    merge_tx: &mpsc::UnboundedSender<MergeSample>,
    client: &Client,
    rng: &mut Rng,
    k: usize,
    c: &mut Collected,
) {
    let mut items = Vec::with_capacity(k);
    let mut is_new = Vec::with_capacity(k);
    // The API refuses a label twice in one batch.
    let mut in_batch = std::collections::HashSet::new();
    for _ in 0..k {
        let existing = match shared.mix.pick_write(rng.next_u64()) {
            // A few tries at a label not yet in the batch, else a new label.
            OpKind::Update => (0..4)
                .filter_map(|_| shared.pool.pick(rng))
                .find(|l| !in_batch.contains(l)),
            _ => None,
        };
        is_new.push(existing.is_none());
        let label = existing.unwrap_or_else(|| shared.new_label());
        in_batch.insert(label.clone());
        let mut value = vec![0u8; shared.value_size];
        rng.fill(&mut value);
        items.push(PublishItem::new(label, value));
    }
    let t0 = Instant::now();
    // The SDK verifies every SMT (signature, VRF, commitment, leaf) against the pin.
    let result = client.publish_batch(&items).await;
    let elapsed = t0.elapsed();
    match result {
        Ok(published) => {
            c.smt.record_n(elapsed, k as u64);
            c.counts.publish_calls += 1;
            c.counts.mutations += k as u64;
            shared.live.mutations.fetch_add(k as u64, Ordering::Relaxed);
            for ((item, new), p) in items.into_iter().zip(is_new).zip(published) {
                if new {
                    c.counts.new_labels += 1;
                } else {
                    c.counts.updates += 1;
                }
                let seq = shared.smt_seq.fetch_add(1, Ordering::Relaxed);
                if shared.merge_sample > 0 && seq.is_multiple_of(shared.merge_sample) {
                    c.counts.merge_samples += 1;
                    // The tracker outlives the workers; a send only fails after it stopped.
                    let _ = merge_tx.send(MergeSample {
                        label: item.label.clone(),
                        smt: p.smt,
                    });
                }
                if new {
                    shared.pool.add(item.label, rng);
                }
            }
        }
        Err(e) => {
            c.errors.add(&e);
            shared.live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// True for the statuses the API documents as "retry with backoff".
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    )
}

async fn lookup_once(shared: &Shared, client: &Client, rng: &mut Rng, c: &mut Collected) {
    let label = shared.pool.pick(rng).unwrap_or_else(|| shared.new_label());
    let t0 = Instant::now();
    match verified_lookup(shared, client, &label).await {
        Ok((found, proof_bytes, verify_time)) => {
            c.lookup.record(t0.elapsed());
            c.verify.record(verify_time);
            c.proof_bytes.record(proof_bytes);
            c.counts.lookups += 1;
            if found {
                c.counts.lookups_found += 1;
            }
            shared.live.lookups.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            c.errors.add(&e);
            shared.live.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What `Client::lookup` does (RPC, `Client::verify_lookup`, head tracking), with the
/// verification timed on its own and the proof size kept.
async fn verified_lookup(
    shared: &Shared,
    client: &Client,
    label: &[u8],
) -> Result<(bool, usize, Duration), ClientError> {
    let req = pb::LookupRequest {
        label: label.to_vec(),
        epoch: None,
    };
    let mut attempt = 1;
    let resp = loop {
        match client.raw().lookup(req.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if attempt < shared.attempts && retryable(&s) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
            Err(s) => return Err(s.into()),
        }
    };
    let tv = Instant::now();
    let v = client.verify_lookup(label, None, &resp)?;
    let verify_time = tv.elapsed();
    client.observe_head(&v.head).await?;
    Ok((v.is_found(), resp.proof.len(), verify_time))
}

/// Outcome of checking one sample at one epoch.
enum Check {
    Merged,
    Pending,
    /// The epoch holds another leaf for the promised version.
    Broken(String),
    Failed(ClientError),
}

/// Whether the map of `epoch` holds the sample's leaf (verified by the SDK: a lookup,
/// and the history when the label moved past the sampled version).
async fn check_at(client: &Client, s: &MergeSample, epoch: u64) -> Check {
    let l = match client.lookup(&s.label, Some(epoch)).await {
        Ok(l) => l,
        Err(e) => return Check::Failed(e),
    };
    let Some(entry) = l.entry else {
        return Check::Pending;
    };
    if entry.version < s.version() {
        return Check::Pending;
    }
    if entry.version == s.version() {
        return if entry.leaf_hash == *s.leaf_hash() {
            Check::Merged
        } else {
            Check::Broken(other_leaf(s, epoch))
        };
    }
    match client.history_at(&s.label, Some(epoch)).await {
        Ok(h) if h.contains(s.version(), s.leaf_hash()) => Check::Merged,
        Ok(_) => Check::Broken(other_leaf(s, epoch)),
        Err(e) => Check::Failed(e),
    }
}

fn other_leaf(s: &MergeSample, epoch: u64) -> String {
    format!(
        "broken promise: epoch {epoch} holds another leaf for version {} of {}",
        s.version(),
        String::from_utf8_lossy(&s.label)
    )
}

/// Settings of the merge tracker.
pub(crate) struct TrackerSettings {
    pub poll: Duration,
    /// After the workers stop, how long to keep waiting for pending samples.
    pub drain: Duration,
    /// Signed heads kept to check late-arriving samples against (an SMT can reach the
    /// client after the epoch that holds it was signed).
    pub keep_heads: usize,
}

/// Slack for clock skew between the shard that signs an SMT and the sequencer that
/// signs heads: an epoch whose timestamp is more than this before the SMT's cannot
/// hold it.
const SKEW_MS: u64 = 1000;

/// A sample still to be found, with the last epoch it was checked at.
struct Pending {
    sample: MergeSample,
    checked: u64,
}

/// Result of walking a sample through heads.
enum Walk {
    /// First held by this head.
    Merged(SignedHead),
    /// Not held by any of the heads, none of which is past its deadline.
    Pending(u64),
    /// Not held by a head past its deadline, or another leaf at its version.
    Broken(String),
    /// A call failed (retried at the next tick unless a security event).
    Failed(ClientError, u64),
}

/// Checks `s` at each of `heads` (ascending, all newer than `checked`) until the first
/// that holds it.
async fn walk(client: &Client, s: &MergeSample, mut checked: u64, heads: &[SignedHead]) -> Walk {
    let from = checked;
    for h in heads.iter().filter(|h| h.head.epoch > from) {
        if h.head.timestamp_ms.saturating_add(SKEW_MS) < s.smt.smt.timestamp_ms {
            // Older than the SMT: cannot hold it.
            checked = h.head.epoch;
            continue;
        }
        match check_at(client, s, h.head.epoch).await {
            Check::Merged => return Walk::Merged(h.clone()),
            Check::Pending if h.head.timestamp_ms > s.smt.smt.merge_deadline_ms => {
                return Walk::Broken(format!(
                    "broken promise: version {} of {} is not in epoch {}, signed after its deadline",
                    s.version(),
                    String::from_utf8_lossy(&s.label),
                    h.head.epoch
                ));
            }
            Check::Pending => checked = h.head.epoch,
            Check::Broken(m) => return Walk::Broken(m),
            Check::Failed(e) => return Walk::Failed(e, checked),
        }
    }
    Walk::Pending(checked)
}

/// Follows signed heads and checks every sampled SMT at each epoch from the SMT's time
/// on, in order, until the first epoch that holds it: the merge delay is that head's
/// timestamp minus the SMT's (the service's clock). A first holding epoch signed after
/// the SMT's deadline, or an epoch past the deadline that does not hold it, is a broken
/// promise.
pub(crate) async fn merge_tracker(
    client: Client,
    mut rx: mpsc::UnboundedReceiver<MergeSample>,
    settings: TrackerSettings,
    bar: ProgressBar,
) -> Collected {
    let mut c = Collected::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut heads: std::collections::VecDeque<SignedHead> = std::collections::VecDeque::new();
    let mut latest_epoch = match client.latest_head().await {
        Ok(h) => {
            let e = h.head.epoch;
            heads.push_back(h);
            e
        }
        Err(e) => {
            c.errors.add(&e);
            0
        }
    };
    let mut senders_done = false;
    let mut drain_until: Option<Instant> = None;
    let mut tick = tokio::time::interval(settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            s = rx.recv(), if !senders_done => match s {
                // Checked from the oldest kept head on: the SMT may have reached us after
                // the epoch that holds it was signed.
                Some(sample) => pending.push(Pending { sample, checked: 0 }),
                None => {
                    senders_done = true;
                    drain_until = Some(Instant::now() + settings.drain);
                }
            },
            _ = tick.tick() => {
                if senders_done {
                    if pending.is_empty() || drain_until.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                    bar.set_message(format!("waiting for {} sampled SMTs to merge", pending.len()));
                }
                // New heads, in order.
                match client.latest_head().await {
                    Ok(latest) => {
                        let mut e = latest_epoch + 1;
                        while e < latest.head.epoch {
                            match client.head(e).await {
                                Ok(h) => heads.push_back(h),
                                Err(err) => {
                                    c.errors.add(&err);
                                    break;
                                }
                            }
                            e += 1;
                        }
                        if e == latest.head.epoch {
                            heads.push_back(latest);
                        }
                        latest_epoch = heads.back().map_or(latest_epoch, |h| h.head.epoch);
                        while heads.len() > settings.keep_heads.max(1) {
                            heads.pop_front();
                        }
                    }
                    Err(e) => c.errors.add(&e),
                }
                let snapshot: Vec<SignedHead> = heads.iter().cloned().collect();
                check_pending(&client, &snapshot, &mut pending, &mut c).await;
            }
        }
    }
    c.counts.merge_unconfirmed = pending.len() as u64;
    c
}

/// Walks every pending sample through the heads it has not been checked at.
async fn check_pending(
    client: &Client,
    heads: &[SignedHead],
    pending: &mut Vec<Pending>,
    c: &mut Collected,
) {
    let newest = heads.last().map_or(0, |h| h.head.epoch);
    let mut todo = std::mem::take(pending).into_iter();
    let mut walks: FuturesUnordered<_> = FuturesUnordered::new();
    loop {
        while walks.len() < MERGE_CHECKS_IN_FLIGHT {
            let Some(p) = todo.next() else { break };
            if p.checked >= newest {
                pending.push(p);
                continue;
            }
            walks.push(async move {
                let w = walk(client, &p.sample, p.checked, heads).await;
                (p.sample, w)
            });
        }
        let Some((sample, w)) = walks.next().await else {
            break;
        };
        match w {
            Walk::Merged(h) => {
                let smt = &sample.smt.smt;
                let delay_ms = h.head.timestamp_ms.saturating_sub(smt.timestamp_ms);
                c.merge.record_us(delay_ms.saturating_mul(1000));
                c.counts.merge_confirmed += 1;
                if h.head.timestamp_ms > smt.merge_deadline_ms {
                    c.errors.add_kind(
                        "broken_promise",
                        format!(
                            "broken promise: version {} of {} first in epoch {}, signed {} ms after its deadline",
                            smt.version,
                            String::from_utf8_lossy(&sample.label),
                            h.head.epoch,
                            h.head.timestamp_ms - smt.merge_deadline_ms
                        ),
                    );
                }
            }
            Walk::Pending(checked) => pending.push(Pending { sample, checked }),
            // Counted under the kind of the SDK's BrokenPromise (whose evidence only
            // `wait_merged` builds).
            Walk::Broken(msg) => c.errors.add_kind("broken_promise", msg),
            Walk::Failed(e, checked) => {
                c.errors.add(&e);
                if !e.is_security_event() {
                    pending.push(Pending { sample, checked });
                }
            }
        }
    }
}

/// The progress bar of a run.
pub(crate) fn progress_bar(stop: Stop, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let (len, template) = match stop {
        Stop::Ops(n) => (
            n,
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ops  {msg}",
        ),
        Stop::Duration(d) => (
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
        ),
    };
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Updates the bar every 250 ms with the current rates until `done`.
pub(crate) async fn progress_ticker(shared: Arc<Shared>, bar: ProgressBar, done: Arc<AtomicBool>) {
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        let m = shared.live.mutations.load(Ordering::Relaxed);
        let l = shared.live.lookups.load(Ordering::Relaxed);
        let e = shared.live.errors.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let (mr, lr) = ((m - last.1) as f64 / dt, (l - last.2) as f64 / dt);
        last = (now, m, l);
        match shared.stop {
            Stop::Ops(_) => bar.set_position(shared.live.done_ops.load(Ordering::Relaxed)),
            Stop::Duration(_) => {
                bar.set_position(u64::try_from(shared.elapsed().as_millis()).unwrap_or(u64::MAX))
            }
        }
        bar.set_message(format!(
            "{mr:>7.0} mut/s {lr:>7.0} lookups/s  {e} errors  {} labels",
            shared.pool.len()
        ));
    }
}

/// Publishes `n` new labels before the measured run and waits until the last label of
/// every batch is in a signed epoch. Fails on the first error: without them the run
/// would measure nothing useful.
pub(crate) async fn preload(
    shared: &Shared,
    n: usize,
    batch: usize,
    max_wait: Duration,
    bar: &ProgressBar,
) -> Result<(), ClientError> {
    let mut rng = Rng::seeded();
    let mut batches = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        left -= k;
        let items: Vec<PublishItem> = (0..k)
            .map(|_| {
                let mut v = vec![0u8; shared.value_size];
                rng.fill(&mut v);
                PublishItem::new(shared.new_label(), v)
            })
            .collect();
        batches.push(items);
    }
    bar.set_message(format!("preloading {n} labels"));
    let conns = shared.clients.len();
    let mut last_smts = Vec::new();
    let mut calls = FuturesUnordered::new();
    let mut queue = batches.into_iter().enumerate();
    loop {
        while calls.len() < conns * 2 {
            let Some((i, items)) = queue.next() else {
                break;
            };
            let client = shared.clients[i % conns].clone();
            calls.push(async move {
                let r = client.publish_batch(&items).await;
                (items, r)
            });
        }
        let Some((items, r)) = calls.next().await else {
            break;
        };
        let published = r?;
        if let (Some(item), Some(p)) = (items.last(), published.last()) {
            last_smts.push((item.label.clone(), p.smt.clone()));
        }
        for item in items {
            shared.pool.add(item.label, &mut rng);
        }
    }
    bar.set_message(format!("waiting for the {n} preloaded labels to merge"));
    let client = &shared.clients[0];
    let waits = last_smts.iter().map(|(label, smt)| {
        tokio::time::timeout(
            max_wait,
            client.wait_merged(label, smt, Duration::from_millis(100)),
        )
    });
    for r in futures_util::future::join_all(waits).await {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ClientError::InvalidArgument(format!(
                    "preloaded labels not merged within {max_wait:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_spreads_and_fills() {
        let mut r = Rng(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        let mut b = [0u8; 13];
        r.fill(&mut b);
        assert!(b.iter().any(|&x| x != 0));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn pool_is_bounded_and_picks_members() {
        let pool = LabelPool::default();
        let mut r = Rng(1);
        assert!(pool.pick(&mut r).is_none());
        for i in 0..10u32 {
            pool.add(i.to_be_bytes().to_vec(), &mut r);
        }
        assert_eq!(pool.len(), 10);
        let p = pool.pick(&mut r).unwrap();
        assert!(u32::from_be_bytes(p.try_into().unwrap()) < 10);
    }
}
