//! [`FdbStore`]: the `Store` / `ReadView` implementation over the `foundationdb` crate.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use candor_store::{
    Direction, Durability, KeyRange, KeyValue, Limits, Op, ReadView, SizeKind, Space, Store,
    StoreError, WriteBatch,
};
use foundationdb::options::{DatabaseOption, StreamingMode};
use foundationdb::{
    Database, FdbBindingError, FdbError, KeySelector, RangeOption, RetryableTransaction,
    Transaction,
};
use futures::executor::block_on;
use futures::future::try_join_all;

use crate::error::{FdbStoreError, codes};
use crate::keyspace::{FDB_MAX_TRANSACTION_BYTES, FORMAT, FdbConfig, Keyspace};
use crate::network::start_network;

type Result<T, E = StoreError> = std::result::Result<T, E>;
/// A FoundationDB key range, `[begin, end)`.
type FdbRange = (Vec<u8>, Vec<u8>);

/// Commit markers older than this are cleared (far beyond any retry window, which the
/// transaction timeout bounds; tolerates clock differences between writers up to this).
const MARKER_TTL_SECS: u64 = 3600;
/// Every this many writes a handle clears expired markers (a range clear: cheap, but no
/// need to send one with every batch).
const MARKER_CLEANUP_EVERY: u64 = 256;
/// Below this estimate `disk_space_bytes` counts exactly (FoundationDB's byte sample is
/// too coarse for small ranges: 100 kB can be estimated as 0).
const EXACT_SIZE_BELOW: u64 = 4 << 20;

/// A [`Store`] on a FoundationDB cluster. Cheap to clone (clones share the database
/// handle); `Send + Sync`. See the crate docs for how the contract maps onto
/// FoundationDB.
#[derive(Clone)]
pub struct FdbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    ks: Keyspace,
    config: FdbConfig,
    /// Random id of this handle, part of its commit-marker keys.
    handle: [u8; 16],
    seq: AtomicU64,
}

impl std::fmt::Debug for FdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbStore")
            .field("root", &self.inner.ks.root().to_string())
            .field("cluster_file", &self.inner.config.cluster_file)
            .finish_non_exhaustive()
    }
}

fn fdb_err(e: FdbError) -> FdbStoreError {
    FdbStoreError::Fdb {
        code: e.code(),
        message: e.message().to_string(),
        retryable: e.is_retryable(),
    }
}

fn binding_err(e: FdbBindingError) -> FdbStoreError {
    let e = match e {
        FdbBindingError::CustomError(b) => match b.downcast::<FdbStoreError>() {
            Ok(ours) => return *ours,
            Err(b) => FdbBindingError::CustomError(b),
        },
        e => e,
    };
    e.get_fdb_error()
        .map_or_else(|| FdbStoreError::Binding(format!("{e:?}")), fdb_err)
}

/// Carries our own errors through the binding's retry loop (which does not retry them).
fn custom(e: FdbStoreError) -> FdbBindingError {
    FdbBindingError::new_custom_error(Box::new(e))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl FdbStore {
    /// Opens the store rooted at `("candor", namespace)` on the cluster of `cluster_file`
    /// (`None`: FoundationDB's default cluster file), with [`FdbConfig::new`] defaults.
    pub fn open(cluster_file: Option<&Path>, namespace: &str) -> Result<Self, FdbStoreError> {
        Self::open_with(FdbConfig::new(
            cluster_file.map(Path::to_path_buf),
            namespace,
        ))
    }

    /// Opens a store with a full configuration. Starts the client network if needed
    /// ([`crate::start_network`]), then checks (or, in an empty keyspace, writes) the
    /// format marker, which also verifies that the cluster answers within the timeout.
    pub fn open_with(config: FdbConfig) -> Result<Self, FdbStoreError> {
        let ks = config.keyspace()?;
        let path = config
            .cluster_file
            .as_deref()
            .map(cluster_path)
            .transpose()?;
        start_network()?;
        let db = Database::new(path.as_deref()).map_err(fdb_err)?;
        db.set_option(DatabaseOption::TransactionTimeout(config.timeout_millis()))
            .map_err(fdb_err)?;
        let mut handle = [0u8; 16];
        getrandom::fill(&mut handle)
            .map_err(|e| FdbStoreError::Binding(format!("random handle id: {e}")))?;
        let store = FdbStore {
            inner: Arc::new(Inner {
                db,
                ks,
                config,
                handle,
                seq: AtomicU64::new(0),
            }),
        };
        store.check_format()?;
        Ok(store)
    }

    /// The key layout of this store.
    pub fn keyspace(&self) -> &Keyspace {
        &self.inner.ks
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &FdbConfig {
        &self.inner.config
    }

    /// Deletes every key of this store (all spaces, the format marker, commit markers) in
    /// one range clear. For tests and for decommissioning a namespace.
    pub fn clear_all(&self) -> Result<(), FdbStoreError> {
        let (b, e) = self.inner.ks.whole_range();
        let (b, e) = (&b, &e);
        block_on(self.inner.db.run(|trx, _| async move {
            trx.clear_range(b, e);
            Ok(())
        }))
        .map_err(binding_err)
    }

    fn check_format(&self) -> Result<(), FdbStoreError> {
        let ks = &self.inner.ks;
        let key = ks.format_key();
        let found = block_on(self.inner.db.run(|trx, _| async move {
            let cur = trx.get(key, false).await?.map(|v| v.to_vec());
            if cur.is_none() {
                trx.set(key, FORMAT.as_bytes());
            }
            Ok(cur)
        }))
        .map_err(binding_err)?;
        match found {
            Some(v) if v != FORMAT.as_bytes() => Err(FdbStoreError::Format {
                root: ks.root().to_string(),
                found: String::from_utf8_lossy(&v).into_owned(),
                expected: FORMAT.into(),
            }),
            _ => Ok(()),
        }
    }

    /// One live read: a fresh read-only transaction (so it sees every write acknowledged
    /// before the call) through the retry loop; its commit is a local no-op.
    fn read<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(RetryableTransaction) -> Fut,
        Fut: Future<Output = Result<T, FdbBindingError>>,
    {
        block_on(self.inner.db.run(|trx, _| f(trx))).map_err(|e| binding_err(e).into())
    }

    /// The marker key of the next write and, every so often, the range of expired markers.
    fn next_marker(&self) -> (Vec<u8>, Option<FdbRange>) {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let now = unix_secs();
        let key = self.inner.ks.marker_key(now, &self.inner.handle, seq);
        let cleanup = (seq.is_multiple_of(MARKER_CLEANUP_EVERY) && now > MARKER_TTL_SECS)
            .then(|| self.inner.ks.markers_before(now - MARKER_TTL_SECS));
        (key, cleanup)
    }
}

fn cluster_path(p: &Path) -> Result<String, FdbStoreError> {
    // Fail early with the path in the message, rather than with FoundationDB's
    // `no_cluster_file_found`.
    std::fs::File::open(p).map_err(|source| FdbStoreError::ClusterFile {
        path: PathBuf::from(p),
        source,
    })?;
    p.to_str()
        .filter(|s| !s.contains('\0'))
        .map(str::to_owned)
        .ok_or_else(|| {
            FdbStoreError::Config(format!(
                "cluster file path {} is not UTF-8 or contains NUL",
                p.display()
            ))
        })
}

// ---- reads shared by live calls and snapshots (one transaction, snapshot reads: a
// read-only transaction needs no read-conflict ranges) ----

async fn get_in(trx: &Transaction, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, FdbBindingError> {
    match key {
        None => Ok(None),
        Some(k) => Ok(trx.get(k, true).await?.map(|v| v.to_vec())),
    }
}

async fn scan_in(
    trx: &Transaction,
    ks: &Keyspace,
    space: Space,
    range: Option<&FdbRange>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<KeyValue>, FdbBindingError> {
    let Some((begin, end)) = range else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut opt = RangeOption {
        begin: KeySelector::first_greater_or_equal(begin.as_slice()),
        end: KeySelector::first_greater_or_equal(end.as_slice()),
        limit: Some(limit),
        mode: StreamingMode::WantAll,
        reverse: direction == Direction::Reverse,
        ..RangeOption::default()
    };
    let mut out = Vec::new();
    let mut iteration = 1;
    loop {
        let page = trx.get_range(&opt, iteration, true).await?;
        for kv in &page {
            let key = ks.user_key(space, kv.key()).map_err(custom)?;
            out.push((key, kv.value().to_vec()));
        }
        // `next_range` stops when FoundationDB says the range is exhausted or the limit
        // is reached, and otherwise continues after (or, reversed, before) the last key.
        match opt.next_range(&page) {
            Some(next) => {
                opt = next;
                iteration += 1;
            }
            None => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

async fn get_le_in(
    trx: &Transaction,
    ks: &Keyspace,
    space: Space,
    range: Option<&FdbRange>,
) -> Result<Option<KeyValue>, FdbBindingError> {
    // "Seek for prev" is a reverse range read of [floor, key] with limit 1: one round trip
    // (a `last_less_or_equal` key selector would need a second read for the value).
    Ok(scan_in(trx, ks, space, range, Direction::Reverse, 1)
        .await?
        .pop())
}

fn le_range(ks: &Keyspace, space: Space, key: &[u8], floor: &[u8]) -> Option<FdbRange> {
    ks.read_range(space, &KeyRange::inclusive(floor, key))
}

impl ReadView for FdbStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.inner.ks.point_key(space, key);
        let key = key.as_deref();
        self.read(|trx| async move { get_in(&trx, key).await })
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let ks = &self.inner.ks;
        let range = ks.read_range(space, range);
        let range = range.as_ref();
        self.read(|trx| async move { scan_in(&trx, ks, space, range, direction, limit).await })
    }

    fn get_le(&self, space: Space, key: &[u8], floor: &[u8]) -> Result<Option<KeyValue>> {
        let ks = &self.inner.ks;
        let range = le_range(ks, space, key, floor);
        let range = range.as_ref();
        self.read(|trx| async move { get_le_in(&trx, ks, space, range).await })
    }

    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let ks = &self.inner.ks;
        let keys: Vec<Option<Vec<u8>>> = keys.iter().map(|k| ks.point_key(space, k)).collect();
        let keys = &keys;
        self.read(|trx| async move {
            try_join_all(keys.iter().map(|k| get_in(&trx, k.as_deref()))).await
        })
    }

    fn get_le_many(
        &self,
        space: Space,
        queries: &[(&[u8], &[u8])],
    ) -> Result<Vec<Option<KeyValue>>> {
        let ks = &self.inner.ks;
        let ranges: Vec<_> = queries
            .iter()
            .map(|(k, f)| le_range(ks, space, k, f))
            .collect();
        let ranges = &ranges;
        self.read(|trx| async move {
            try_join_all(
                ranges
                    .iter()
                    .map(|r| get_le_in(&trx, ks, space, r.as_ref())),
            )
            .await
        })
    }
}

impl Store for FdbStore {
    fn write(&self, batch: &WriteBatch, _durability: Durability) -> Result<()> {
        // Both durabilities mean "committed": a FoundationDB commit is durable on return.
        let ks = &self.inner.ks;
        batch.validate(&ks.limits())?;
        if batch.is_empty() {
            return Ok(());
        }
        let size = ks.batch_transaction_bytes(batch);
        if size > ks.budget() {
            // Unreachable for batches within `limits()` (see `Keyspace::safe_batch_cost`);
            // kept so a bug there fails cleanly rather than at commit.
            return Err(StoreError::TooLarge {
                what: SizeKind::Batch,
                size,
                limit: ks.budget(),
            });
        }
        let marker = self.inner.config.commit_markers.then(|| self.next_marker());
        let marker = marker.as_ref();
        // Set by the attempt that finds a precondition broken (reset by every attempt).
        let refused: std::sync::Mutex<Option<StoreError>> = std::sync::Mutex::new(None);
        let refused = &refused;
        let result = block_on(self.inner.db.run(|trx, maybe_committed| {
            let maybe_committed = bool::from(maybe_committed);
            async move {
                *refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
                // A previous attempt may have committed: if its marker is there, it did.
                // The read is conflict-checked, so an attempt still in flight that commits
                // after this read makes this attempt conflict and retry.
                if let Some((key, _)) = marker
                    && maybe_committed
                    && trx.get(key, false).await?.is_some()
                {
                    return Ok(());
                }
                // Preconditions: conflict-checked reads, so a writer that changes one of
                // these keys before this commit makes this attempt retry and re-check.
                for p in batch.preconditions() {
                    let cur = trx.get(&ks.key(p.space, &p.key), false).await?;
                    if !p.holds(cur.as_deref()) {
                        // Commit nothing (the transaction has made no writes).
                        *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.failed());
                        return Ok(());
                    }
                }
                for op in batch.ops() {
                    match op {
                        Op::Put { space, key, value } => trx.set(&ks.key(*space, key), value),
                        Op::Delete { space, key } => trx.clear(&ks.key(*space, key)),
                        Op::DeleteRange { space, range } => {
                            if let Some((b, e)) = ks.delete_range(*space, range) {
                                trx.clear_range(&b, &e);
                            }
                        }
                    }
                }
                if let Some((key, cleanup)) = marker {
                    trx.set(key, b"");
                    if let Some((b, e)) = cleanup {
                        trx.clear_range(b, e);
                    }
                }
                Ok(())
            }
        }));
        if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take()
            && result.is_ok()
        {
            return Err(e);
        }
        result.map_err(|e| match binding_err(e) {
            FdbStoreError::Fdb {
                code: codes::TRANSACTION_TOO_LARGE,
                ..
            } => StoreError::TooLarge {
                what: SizeKind::Batch,
                size,
                limit: FDB_MAX_TRANSACTION_BYTES,
            },
            e => e.into(),
        })
    }

    fn limits(&self) -> Limits {
        self.inner.ks.limits()
    }

    fn snapshot(&self) -> Result<Box<dyn ReadView>> {
        let mut trx = self.inner.db.create_trx().map_err(fdb_err)?;
        // Fix the read version now, so the view is the state at this call and not at its
        // first read. Transient failures are retried (bounded by the timeout).
        loop {
            match block_on(trx.get_read_version()) {
                Ok(_) => break,
                Err(e) => trx = block_on(trx.on_error(e)).map_err(fdb_err)?,
            }
        }
        Ok(Box::new(FdbSnapshot {
            trx,
            store: self.clone(),
        }))
    }

    fn sync(&self) -> Result<()> {
        // Every acknowledged write is already committed, hence durable.
        Ok(())
    }

    fn disk_space_bytes(&self) -> Result<u64> {
        let (begin, end) = self.inner.ks.whole_range();
        let (begin, end) = (&begin, &end);
        self.read(|trx| async move {
            let estimate =
                u64::try_from(trx.get_estimated_range_size_bytes(begin, end).await?).unwrap_or(0);
            if estimate >= EXACT_SIZE_BELOW {
                return Ok(estimate);
            }
            // Small (or not yet sampled) keyspace: count, up to a bound.
            let mut opt = RangeOption {
                begin: KeySelector::first_greater_or_equal(begin.as_slice()),
                end: KeySelector::first_greater_or_equal(end.as_slice()),
                mode: StreamingMode::WantAll,
                ..RangeOption::default()
            };
            let mut counted = 0u64;
            let mut iteration = 1;
            loop {
                let page = trx.get_range(&opt, iteration, true).await?;
                counted += page
                    .iter()
                    .map(|kv| (kv.key().len() + kv.value().len()) as u64)
                    .sum::<u64>();
                if counted >= 2 * EXACT_SIZE_BELOW {
                    break;
                }
                match opt.next_range(&page) {
                    Some(next) => {
                        opt = next;
                        iteration += 1;
                    }
                    None => break,
                }
            }
            Ok(counted.max(estimate))
        })
    }
}

/// A read-only transaction at one read version (see [`Store::snapshot`]).
struct FdbSnapshot {
    // Dropped before the store handle that owns the database.
    trx: Transaction,
    store: FdbStore,
}

impl FdbSnapshot {
    fn run<T>(&self, f: impl Future<Output = Result<T, FdbBindingError>>) -> Result<T> {
        // No retry: a retry would move the read version. `transaction_too_old` after 5 s
        // maps to `Unavailable`.
        block_on(f).map_err(|e| binding_err(e).into())
    }
}

impl ReadView for FdbSnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.store.inner.ks.point_key(space, key);
        self.run(get_in(&self.trx, key.as_deref()))
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let ks = &self.store.inner.ks;
        let range = ks.read_range(space, range);
        self.run(scan_in(
            &self.trx,
            ks,
            space,
            range.as_ref(),
            direction,
            limit,
        ))
    }

    fn get_le(&self, space: Space, key: &[u8], floor: &[u8]) -> Result<Option<KeyValue>> {
        let ks = &self.store.inner.ks;
        let range = le_range(ks, space, key, floor);
        self.run(get_le_in(&self.trx, ks, space, range.as_ref()))
    }

    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let ks = &self.store.inner.ks;
        let keys: Vec<Option<Vec<u8>>> = keys.iter().map(|k| ks.point_key(space, k)).collect();
        self.run(try_join_all(
            keys.iter().map(|k| get_in(&self.trx, k.as_deref())),
        ))
    }

    fn get_le_many(
        &self,
        space: Space,
        queries: &[(&[u8], &[u8])],
    ) -> Result<Vec<Option<KeyValue>>> {
        let ks = &self.store.inner.ks;
        let ranges: Vec<_> = queries
            .iter()
            .map(|(k, f)| le_range(ks, space, k, f))
            .collect();
        self.run(try_join_all(
            ranges
                .iter()
                .map(|r| get_le_in(&self.trx, ks, space, r.as_ref())),
        ))
    }
}
