//! The one set of instruments, on the OpenTelemetry metrics API.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists
//! (`rpc.server.call.duration`, `process.*`) and `candor.*` otherwise. The
//! Prometheus exporter derives its names from these (dots to underscores, the
//! unit as a suffix, `_total` on counters), so `candor.smt.latency` in seconds
//! is scraped as `candor_smt_latency_seconds`; the table in
//! docs/operations.md lists both. The OTLP and Prometheus exporters read the
//! same instruments through one meter provider.
//!
//! [`metrics()`] builds the set the first time it is called, from the global
//! meter provider: a binary installs its provider ([`crate::init`]) before
//! anything records; in a library test with no provider every instrument is a
//! no-op. Gauges that are cheaper to read at collection time than to keep
//! current (Raft state, disk usage, caches, the process) are observable: the
//! owner registers a source closure with [`Metrics::register_raft`] and
//! friends, and the closure runs only when a reader collects.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Gauge, Histogram, Meter, ObservableCounter, ObservableGauge,
};

/// Meter (instrumentation scope) name.
pub const METER_NAME: &str = "candor";

/// Bucket boundaries (seconds) for latencies from sub-millisecond RPCs to
/// merge delays of many minutes: the default OpenTelemetry buckets are in
/// milliseconds-sized integers and would put every SMT in one bucket.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// One Raft group's state as the group's metrics watch reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftGroupSample {
    /// This node is the group's leader.
    pub is_leader: bool,
    /// The node's current term.
    pub term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last committed entry (known to this node).
    pub committed_index: u64,
    /// Index of the last entry applied to the state machine.
    pub applied_index: u64,
    /// On the leader: per follower (node id), entries behind the leader's last log index.
    pub follower_lag: Vec<(String, u64)>,
}

/// A cache's size and cumulative hit/miss counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheSample {
    /// Bytes (or the cache's weight unit, documented per cache) held.
    pub bytes: u64,
    /// Lookups answered from the cache since start.
    pub hits: u64,
    /// Lookups that missed since start.
    pub misses: u64,
}

type RaftSource = Arc<dyn Fn() -> Vec<(String, RaftGroupSample)> + Send + Sync>;
type BytesSource = (
    Option<std::path::PathBuf>,
    Arc<dyn Fn() -> Option<u64> + Send + Sync>,
);
type CacheSource = Arc<dyn Fn() -> CacheSample + Send + Sync>;
type GuardSource = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;
/// (strides loaded, records scanned, positions sought) since start.
type TreeLoadSource = Arc<dyn Fn() -> [u64; 3] + Send + Sync>;

/// Sources read at collection time.
#[derive(Default)]
struct Sources {
    raft: Mutex<BTreeMap<String, RaftSource>>,
    disk: Mutex<BTreeMap<String, BytesSource>>,
    caches: Mutex<BTreeMap<String, CacheSource>>,
    guards: Mutex<BTreeMap<String, GuardSource>>,
    tree_loads: Mutex<BTreeMap<String, TreeLoadSource>>,
}

fn snapshot<V: Clone>(m: &Mutex<BTreeMap<String, V>>) -> Vec<(String, V)> {
    m.lock()
        .map(|g| g.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Every Candor instrument. Cheap to record on; clone-free (`&'static`).
pub struct Metrics {
    // --- API (gRPC server) ---
    /// `rpc.server.call.duration` (s): every gRPC call by `rpc.system`,
    /// `rpc.method` (the full path) and `rpc.grpc.status_code`.
    pub rpc_server_duration: Histogram<f64>,
    /// `candor.auth.failures`: requests refused by authentication, by `reason`.
    pub auth_failures: Counter<u64>,
    /// `candor.limits.rejected`: requests refused by a limit, by `limit`.
    pub limits_rejected: Counter<u64>,

    // --- Shards ---
    /// `candor.smt.latency` (s): request accepted → SMT signed, by `shard`.
    pub smt_latency: Histogram<f64>,
    /// `candor.shard.pending_mutations`, by `shard`: SMTs signed here not yet in a signed epoch.
    pub shard_pending: Gauge<u64>,
    /// `candor.shard.sealed_revision`, by `shard`: the revision the last signed epoch sealed.
    pub shard_sealed_revision: Gauge<u64>,

    // --- Sequencer ---
    /// `candor.merge.delay` (s): SMT timestamp → first signed epoch holding it.
    pub merge_delay: Histogram<f64>,
    /// `candor.epoch.signed`: epochs signed by this node.
    pub epoch_signed: Counter<u64>,
    /// `candor.epoch.number`: the latest signed epoch number this node knows.
    pub epoch_number: Gauge<u64>,
    last_epoch_unix_ms: Arc<AtomicU64>,

    // --- Auditor (`candor auditor`) ---
    /// `candor.auditor.cosigned_epoch`: the newest epoch this auditor verified
    /// and cosigned, by `auditor` (its key, hex).
    pub auditor_cosigned_epoch: Gauge<u64>,
    /// `candor.auditor.alarms`: alarms raised, by `auditor` and `kind`.
    pub auditor_alarms: Counter<u64>,

    // --- Raft ---
    /// `candor.raft.snapshot.duration` (s), by `group` and `kind` (`build` | `install`).
    pub raft_snapshot_duration: Histogram<f64>,
    /// `candor.raft.step_asides`: leaderships this node handed over because a
    /// quorum acknowledged it or committed its entries too slowly, by `group`.
    pub raft_step_asides: Counter<u64>,

    // --- Store integrity ---
    /// `candor.store.damaged_records`: records read back from the store that
    /// failed their integrity check and were recomputed, by `space`.
    pub store_damaged_records: Counter<u64>,

    // --- Process ---
    /// `candor.memory.budget` (By): `memory.budget_bytes`, what the process is
    /// sized for (compare with `process.memory.usage`).
    pub memory_budget: Gauge<u64>,

    // --- Store ---
    /// `candor.store.write.duration` (s): one write batch, by `store`.
    pub store_write_duration: Histogram<f64>,
    /// `candor.store.write.stalls`: write batches taking [`STALL_THRESHOLD`] or more, by `store`.
    pub store_write_stalls: Counter<u64>,

    sources: Arc<Sources>,
    merge: Mutex<MergeTracker>,
    // Observable instruments stay registered while their handles live.
    _observables: Observables,
}

#[allow(dead_code)]
struct Observables {
    since_last_epoch: ObservableGauge<f64>,
    raft_is_leader: ObservableGauge<u64>,
    raft_term: ObservableGauge<u64>,
    raft_last_log: ObservableGauge<u64>,
    raft_committed: ObservableGauge<u64>,
    raft_applied: ObservableGauge<u64>,
    raft_lag: ObservableGauge<u64>,
    raft_elections: ObservableCounter<u64>,
    guard_refused: ObservableCounter<u64>,
    disk: ObservableGauge<u64>,
    fs_available: ObservableGauge<u64>,
    fs_capacity: ObservableGauge<u64>,
    cache_bytes: ObservableGauge<u64>,
    cache_ratio: ObservableGauge<f64>,
    cache_requests: ObservableCounter<u64>,
    tree_stride_loads: ObservableCounter<u64>,
    tree_stride_records: ObservableCounter<u64>,
    process: crate::process::ProcessInstruments,
}

/// A write batch this slow counts as a stall (`candor.store.write.stalls`): the
/// engine throttling writes (L0 back-pressure, a full journal) or a slow disk sync.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(100);

/// See [`Metrics::store_write_timer`].
pub struct StoreWriteTimer {
    metrics: &'static Metrics,
    store: &'static str,
    start: std::time::Instant,
}

impl Drop for StoreWriteTimer {
    fn drop(&mut self) {
        self.metrics.store_write(self.store, self.start.elapsed());
    }
}

/// Bound on SMTs tracked per shard for merge delay: when epochs stop for long
/// under load the tracker stops growing (the alert on epochs fires first).
const MAX_TRACKED_PER_SHARD: usize = 1 << 20;

/// SMT timestamps (ms) signed here and not yet in a signed epoch, per shard, in
/// signing order.
#[derive(Default)]
struct MergeTracker {
    pending: BTreeMap<u32, std::collections::VecDeque<u64>>,
}

static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| Metrics::new(&opentelemetry::global::meter(METER_NAME)));

/// The process-wide instrument set (built on first use from the global meter provider).
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// (bytes available to unprivileged users, filesystem size) of the filesystem holding `path`.
pub fn filesystem_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn raft_gauge(
    meter: &Meter,
    sources: &Arc<Sources>,
    name: &'static str,
    description: &'static str,
    pick: fn(&RaftGroupSample) -> u64,
) -> ObservableGauge<u64> {
    let s = sources.clone();
    meter
        .u64_observable_gauge(name)
        .with_description(description)
        .with_callback(move |obs| {
            for (_, source) in snapshot(&s.raft) {
                for (group, sample) in source() {
                    obs.observe(pick(&sample), &[KeyValue::new("group", group)]);
                }
            }
        })
        .build()
}

impl Metrics {
    /// Builds the instruments on `meter` (tests build their own on a private provider).
    pub fn new(meter: &Meter) -> Metrics {
        let sources = Arc::new(Sources::default());
        let last_epoch_unix_ms = Arc::new(AtomicU64::new(0));
        let hist = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };

        let since_last_epoch = {
            let last = last_epoch_unix_ms.clone();
            meter
                .f64_observable_gauge("candor.epoch.since_last_signed")
                .with_unit("s")
                .with_description(
                    "Seconds since this node last saw an epoch signed (absent until the first)",
                )
                .with_callback(move |obs| {
                    let at = last.load(Ordering::Relaxed);
                    if at != 0 {
                        let secs = now_unix_ms().saturating_sub(at) as f64 / 1000.0;
                        obs.observe(secs, &[]);
                    }
                })
                .build()
        };

        let raft_lag = {
            let s = sources.clone();
            meter
                .u64_observable_gauge("candor.raft.replication.lag")
                .with_unit("{entry}")
                .with_description(
                    "On the leader: entries a follower is behind the leader's last log index",
                )
                .with_callback(move |obs| {
                    for (_, source) in snapshot(&s.raft) {
                        for (group, sample) in source() {
                            for (follower, lag) in sample.follower_lag {
                                obs.observe(
                                    lag,
                                    &[
                                        KeyValue::new("group", group.clone()),
                                        KeyValue::new("follower", follower),
                                    ],
                                );
                            }
                        }
                    }
                })
                .build()
        };

        // Every election moves the term on, so elections seen by this node are
        // its term's growth since it first reported the group (exact whatever
        // the collection interval).
        let raft_elections = {
            let s = sources.clone();
            let first_term: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
            meter
                .u64_observable_counter("candor.raft.elections")
                .with_description(
                    "Elections (term changes) seen by this node since start, by group",
                )
                .with_callback(move |obs| {
                    let Ok(mut first) = first_term.lock() else {
                        return;
                    };
                    for (_, source) in snapshot(&s.raft) {
                        for (group, sample) in source() {
                            let base = *first.entry(group.clone()).or_insert(sample.term);
                            obs.observe(
                                sample.term.saturating_sub(base),
                                &[KeyValue::new("group", group)],
                            );
                        }
                    }
                })
                .build()
        };
        let guard_refused = {
            let s = sources.clone();
            meter
                .u64_observable_counter("candor.guard.refused")
                .with_description(
                    "Connections and requests the API port's admission guard refused, by port and reason",
                )
                .with_callback(move |obs| {
                    for (port, source) in snapshot(&s.guards) {
                        for (reason, n) in source() {
                            obs.observe(
                                n,
                                &[
                                    KeyValue::new("port", port.clone()),
                                    KeyValue::new("reason", reason),
                                ],
                            );
                        }
                    }
                })
                .build()
        };
        let disk = {
            let s = sources.clone();
            meter
                .u64_observable_gauge("candor.store.disk.usage")
                .with_unit("By")
                .with_description("Bytes the store occupies on disk, by store")
                .with_callback(move |obs| {
                    for (store, (_, source)) in snapshot(&s.disk) {
                        if let Some(bytes) = source() {
                            obs.observe(bytes, &[KeyValue::new("store", store)]);
                        }
                    }
                })
                .build()
        };
        let fs_gauge =
            |name: &'static str, description: &'static str, pick: fn((u64, u64)) -> u64| {
                let s = sources.clone();
                meter
                    .u64_observable_gauge(name)
                    .with_unit("By")
                    .with_description(description)
                    .with_callback(move |obs| {
                        for (store, (path, _)) in snapshot(&s.disk) {
                            if let Some(space) = path.as_deref().and_then(filesystem_space) {
                                obs.observe(pick(space), &[KeyValue::new("store", store)]);
                            }
                        }
                    })
                    .build()
            };
        let fs_available = fs_gauge(
            "candor.store.filesystem.available",
            "Bytes available to the service on the store's filesystem, by store",
            |(available, _)| available,
        );
        let fs_capacity = fs_gauge(
            "candor.store.filesystem.capacity",
            "Size of the store's filesystem, by store",
            |(_, capacity)| capacity,
        );

        let cache_bytes = {
            let s = sources.clone();
            meter
                .u64_observable_gauge("candor.cache.size")
                .with_unit("By")
                .with_description("Bytes held by a cache, by cache")
                .with_callback(move |obs| {
                    for (cache, source) in snapshot(&s.caches) {
                        obs.observe(source().bytes, &[KeyValue::new("cache", cache)]);
                    }
                })
                .build()
        };
        let cache_ratio = {
            let s = sources.clone();
            meter
                .f64_observable_gauge("candor.cache.hit_ratio")
                .with_description(
                    "Hits over lookups since start, by cache (absent before the first lookup)",
                )
                .with_callback(move |obs| {
                    for (cache, source) in snapshot(&s.caches) {
                        let c = source();
                        let total = c.hits + c.misses;
                        if total > 0 {
                            obs.observe(
                                c.hits as f64 / total as f64,
                                &[KeyValue::new("cache", cache)],
                            );
                        }
                    }
                })
                .build()
        };
        let cache_requests = {
            let s = sources.clone();
            meter
                .u64_observable_counter("candor.cache.requests")
                .with_description("Cache lookups, by cache and result (hit | miss)")
                .with_callback(move |obs| {
                    for (cache, source) in snapshot(&s.caches) {
                        let c = source();
                        obs.observe(
                            c.hits,
                            &[
                                KeyValue::new("cache", cache.clone()),
                                KeyValue::new("result", "hit"),
                            ],
                        );
                        obs.observe(
                            c.misses,
                            &[
                                KeyValue::new("cache", cache),
                                KeyValue::new("result", "miss"),
                            ],
                        );
                    }
                })
                .build()
        };
        // Tree-cache misses: each loads a stride from the store by scanning every
        // stored version of its child positions (or, past a limit, one seek per
        // position). Records per load rising with history is what slows inserts
        // at scale (docs/performance.md, "Beyond 1M labels").
        let tree_stride_loads = {
            let s = sources.clone();
            meter
                .u64_observable_counter("candor.tree.stride_loads")
                .with_description("Tree strides loaded from the store after a tree-cache miss")
                .with_callback(move |obs| {
                    for (_, source) in snapshot(&s.tree_loads) {
                        obs.observe(source()[0], &[]);
                    }
                })
                .build()
        };
        let tree_stride_records = {
            let s = sources.clone();
            meter
                .u64_observable_counter("candor.tree.stride_records_read")
                .with_description(
                    "Store records read to load tree strides, by how (scan: every version \
                     of each child position; seek: one read per position)",
                )
                .with_callback(move |obs| {
                    for (_, source) in snapshot(&s.tree_loads) {
                        let [_, scanned, sought] = source();
                        obs.observe(scanned, &[KeyValue::new("how", "scan")]);
                        obs.observe(sought, &[KeyValue::new("how", "seek")]);
                    }
                })
                .build()
        };
        let observables = Observables {
            since_last_epoch,
            raft_is_leader: raft_gauge(
                meter,
                &sources,
                "candor.raft.is_leader",
                "1 when this node leads the Raft group, else 0",
                |s| u64::from(s.is_leader),
            ),
            raft_term: raft_gauge(
                meter,
                &sources,
                "candor.raft.term",
                "Current Raft term",
                |s| s.term,
            ),
            raft_last_log: raft_gauge(
                meter,
                &sources,
                "candor.raft.last_log_index",
                "Index of the last Raft log entry",
                |s| s.last_log_index,
            ),
            raft_committed: raft_gauge(
                meter,
                &sources,
                "candor.raft.committed_index",
                "Index of the last committed Raft log entry",
                |s| s.committed_index,
            ),
            raft_applied: raft_gauge(
                meter,
                &sources,
                "candor.raft.applied_index",
                "Index of the last Raft log entry applied to the state machine",
                |s| s.applied_index,
            ),
            raft_lag,
            raft_elections,
            guard_refused,
            disk,
            fs_available,
            fs_capacity,
            cache_bytes,
            cache_ratio,
            cache_requests,
            tree_stride_loads,
            tree_stride_records,
            process: crate::process::ProcessInstruments::new(meter),
        };

        Metrics {
            rpc_server_duration: hist(
                "rpc.server.call.duration",
                "Duration of gRPC calls served, by method and status code",
            ),
            auth_failures: meter
                .u64_counter("candor.auth.failures")
                .with_description("Requests refused by authentication, by reason")
                .build(),
            limits_rejected: meter
                .u64_counter("candor.limits.rejected")
                .with_description("Requests refused by a limit, by limit")
                .build(),
            smt_latency: hist(
                "candor.smt.latency",
                "Request accepted to SMT signed, by shard",
            ),
            shard_pending: meter
                .u64_gauge("candor.shard.pending_mutations")
                .with_description("Mutations with a signed SMT not yet in a signed epoch, by shard")
                .build(),
            shard_sealed_revision: meter
                .u64_gauge("candor.shard.sealed_revision")
                .with_description("The shard tree's last sealed revision, by shard")
                .build(),
            merge_delay: hist(
                "candor.merge.delay",
                "SMT timestamp to the first signed epoch holding it",
            ),
            epoch_signed: meter
                .u64_counter("candor.epoch.signed")
                .with_description("Epochs signed by this node")
                .build(),
            epoch_number: meter
                .u64_gauge("candor.epoch.number")
                .with_description("The latest signed epoch number this node knows")
                .build(),
            last_epoch_unix_ms,
            auditor_cosigned_epoch: meter
                .u64_gauge("candor.auditor.cosigned_epoch")
                .with_description("The newest epoch this auditor verified and cosigned")
                .build(),
            auditor_alarms: meter
                .u64_counter("candor.auditor.alarms")
                .with_description("Alarms the auditor raised, by kind")
                .build(),
            raft_snapshot_duration: hist(
                "candor.raft.snapshot.duration",
                "Time to build or install a Raft snapshot, by group and kind (build | install)",
            ),
            raft_step_asides: meter
                .u64_counter("candor.raft.step_asides")
                .with_description("Leaderships this node handed over because a quorum acknowledged it or committed its entries too slowly (inbound drops or a slow link here), by group")
                .build(),
            store_damaged_records: meter
                .u64_counter("candor.store.damaged_records")
                .with_description("Records read back from the store that failed their integrity check and were recomputed, by space")
                .build(),
            memory_budget: meter
                .u64_gauge("candor.memory.budget")
                .with_unit("By")
                .with_description("The memory budget the process is sized for (memory.budget_bytes)")
                .build(),
            store_write_duration: hist(
                "candor.store.write.duration",
                "Duration of one store write batch, by store",
            ),
            store_write_stalls: meter
                .u64_counter("candor.store.write.stalls")
                .with_description("Store write batches that took 100 ms or more (engine back-pressure or a slow sync), by store")
                .build(),
            sources,
            merge: Mutex::new(MergeTracker::default()),
            _observables: observables,
        }
    }

    /// Records one epoch signed by this node: the counter, the epoch number and
    /// the clock behind `candor.epoch.since_last_signed`.
    pub fn record_epoch_signed(&self, epoch: u64) {
        self.epoch_signed.add(1, &[]);
        self.note_epoch(epoch);
    }

    /// Notes a signed epoch seen (signed here or replicated from the leader):
    /// the number and the time, not the counter.
    pub fn note_epoch(&self, epoch: u64) {
        self.epoch_number.record(epoch, &[]);
        self.last_epoch_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
    }

    /// Records SMT latency for one accepted mutation.
    pub fn record_smt_latency(&self, shard: u32, latency: Duration) {
        self.smt_latency.record(
            latency.as_secs_f64(),
            &[KeyValue::new("shard", i64::from(shard))],
        );
    }

    /// Records the merge delay of one mutation (SMT timestamp → epoch signed).
    pub fn record_merge_delay(&self, delay: Duration) {
        self.merge_delay.record(delay.as_secs_f64(), &[]);
    }

    /// Sets a shard's last sealed revision (from a signed epoch).
    pub fn shard_sealed(&self, shard: u32, sealed_revision: u64) {
        self.shard_sealed_revision
            .record(sealed_revision, &[KeyValue::new("shard", i64::from(shard))]);
    }

    /// Notes an SMT this node signed (shard, its timestamp). The SMT counts as
    /// pending in `candor.shard.pending_mutations` until [`Metrics::epoch_signed_at`]
    /// reports an epoch at or after its timestamp, which records its merge delay.
    pub fn smt_signed(&self, shard: u32, timestamp_ms: u64) {
        if let Ok(mut t) = self.merge.lock() {
            let q = t.pending.entry(shard).or_default();
            if q.len() < MAX_TRACKED_PER_SHARD {
                q.push_back(timestamp_ms);
                self.shard_pending
                    .record(q.len() as u64, &[KeyValue::new("shard", i64::from(shard))]);
            }
        }
    }

    /// An epoch with timestamp `epoch_ms` was signed: every SMT this node
    /// signed at or before that time is in it (SMTs are signed after their
    /// mutation is applied, and an epoch seals the roots read after its
    /// timestamp is taken). Records their merge delays and the pending counts.
    /// Across machines this relies on the members' clocks agreeing to within
    /// the histogram's resolution.
    pub fn epoch_signed_at(&self, epoch_ms: u64) {
        let Ok(mut t) = self.merge.lock() else {
            return;
        };
        for (shard, q) in t.pending.iter_mut() {
            let mut any = false;
            while let Some(&ts) = q.front() {
                if ts > epoch_ms {
                    break;
                }
                q.pop_front();
                any = true;
                self.merge_delay
                    .record(epoch_ms.saturating_sub(ts) as f64 / 1000.0, &[]);
            }
            if any {
                self.shard_pending
                    .record(q.len() as u64, &[KeyValue::new("shard", i64::from(*shard))]);
            }
        }
    }

    /// Records one authentication failure.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// Records one request refused by a limit.
    pub fn limit_rejected(&self, limit: &'static str) {
        self.limits_rejected
            .add(1, &[KeyValue::new("limit", limit)]);
    }

    /// Records a snapshot built (`kind = "build"`) or installed (`"install"`) by
    /// Raft group `group` (its id; labelled with [`group_label`]).
    pub fn raft_snapshot(&self, group: u64, kind: &'static str, took: Duration) {
        self.raft_snapshot_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("group", group_label(group)),
                KeyValue::new("kind", kind),
            ],
        );
    }

    /// Records one leadership of group `group` handed over by the step-aside rule.
    pub fn raft_step_aside(&self, group: u64) {
        self.raft_step_asides
            .add(1, &[KeyValue::new("group", group_label(group))]);
    }

    /// Records one record of `space` that failed its integrity check when read.
    pub fn store_damaged_record(&self, space: &'static str) {
        self.store_damaged_records
            .add(1, &[KeyValue::new("space", space)]);
    }

    /// Records the process's memory budget (once, at start).
    pub fn memory_budget(&self, bytes: u64) {
        self.memory_budget.record(bytes, &[]);
    }

    /// Records one store write batch; one taking [`STALL_THRESHOLD`] or more also
    /// counts as a write stall.
    pub fn store_write(&self, store: &'static str, took: Duration) {
        let attrs = [KeyValue::new("store", store)];
        self.store_write_duration.record(took.as_secs_f64(), &attrs);
        if took >= STALL_THRESHOLD {
            self.store_write_stalls.add(1, &attrs);
        }
    }

    /// A guard that records a store write batch's duration when dropped (every
    /// return path of a write function).
    pub fn store_write_timer(&'static self, store: &'static str) -> StoreWriteTimer {
        StoreWriteTimer {
            metrics: self,
            store,
            start: std::time::Instant::now(),
        }
    }

    /// Registers (or replaces, under `name`) a source of Raft group states:
    /// (group label, sample) for every group running on this node, read at
    /// each collection, so groups that come and go are reported as they do.
    pub fn register_raft(
        &self,
        name: impl Into<String>,
        source: impl Fn() -> Vec<(String, RaftGroupSample)> + Send + Sync + 'static,
    ) {
        if let Ok(mut m) = self.sources.raft.lock() {
            m.insert(name.into(), Arc::new(source));
        }
    }

    /// Registers (or replaces) the source of a store's on-disk size; with
    /// `path` (its data directory) also the free space and size of that filesystem.
    pub fn register_disk_usage(
        &self,
        store: impl Into<String>,
        path: Option<std::path::PathBuf>,
        source: impl Fn() -> Option<u64> + Send + Sync + 'static,
    ) {
        if let Ok(mut m) = self.sources.disk.lock() {
            m.insert(store.into(), (path, Arc::new(source)));
        }
    }

    /// Registers (or replaces) a cache's source.
    pub fn register_cache(
        &self,
        cache: impl Into<String>,
        source: impl Fn() -> CacheSample + Send + Sync + 'static,
    ) {
        if let Ok(mut m) = self.sources.caches.lock() {
            m.insert(cache.into(), Arc::new(source));
        }
    }

    /// Registers (or replaces) the tree engine's stride-load counters: (strides
    /// loaded, records scanned, positions sought) since start.
    pub fn register_tree_loads(&self, source: impl Fn() -> [u64; 3] + Send + Sync + 'static) {
        if let Ok(mut m) = self.sources.tree_loads.lock() {
            m.insert("tree".into(), Arc::new(source));
        }
    }

    /// Registers (or replaces) the admission-guard counters of an API port
    /// (`name`: `api` or `front_door`): (reason, count since start).
    pub fn register_guard(
        &self,
        name: impl Into<String>,
        source: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    ) {
        if let Ok(mut m) = self.sources.guards.lock() {
            m.insert(name.into(), Arc::new(source));
        }
    }
}

/// Id of the sequencer's Raft group (`candor_sequencer::SEQUENCER_GROUP`; a test in
/// `candor-node` keeps the two equal). Shard groups use their shard number.
const SEQUENCER_GROUP_ID: u64 = 1 << 32;

/// The `group` label of a Raft group in every metric: `shard-N` for shard N,
/// `sequencer`, or `gID` for anything else.
pub fn group_label(group: u64) -> String {
    if group == SEQUENCER_GROUP_ID {
        "sequencer".into()
    } else if group < (1 << 16) {
        format!("shard-{group}")
    } else {
        format!("g{group}")
    }
}
