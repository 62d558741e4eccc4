//! The embedded backend on fjall 3 (documented on [`FjallStore`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fjall::config::CompressionPolicy;
use fjall::{
    AbstractTree as _, CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode,
    Readable,
};

use crate::error::{Result, StoreError};
use crate::store::{ReadView, Store, Visit};
use crate::types::{Direction, Durability, KeyRange, KeyValue, Limits, Op, Space, WriteBatch};

/// Tuning of the embedded backend. The defaults fit `candor dev` with 1M labels in a
/// 512 MiB process: ~64 MiB block cache plus at most ~2 × 16 MiB of memtables per space
/// being written.
#[derive(Clone, Debug)]
pub struct FjallConfig {
    /// Block cache capacity, bytes (shared by all spaces). Default 64 MiB.
    pub cache_bytes: u64,
    /// Size at which a space's in-memory write buffer (memtable) is sealed and flushed to a
    /// table file, bytes. Default 16 MiB.
    pub memtable_bytes: u64,
    /// Journal size after which fjall flushes memtables so old journals can be deleted,
    /// bytes (minimum 64 MiB). Default 128 MiB.
    pub max_journal_bytes: u64,
    /// lz4-compress data blocks of the deeper LSM levels (where most data sits); the top
    /// levels stay uncompressed for write speed. Tree data is mostly hashes, which do not
    /// compress, so the gain comes from keys and small records. Default true. Only applies
    /// when a space is created; an existing store keeps its setting.
    pub lz4: bool,
    /// Background flush/compaction threads (at least 1). Default 1: with two or more,
    /// fjall 3.1's first worker hands every compaction request back to the queue for the
    /// others and takes it again at once, spinning a core for as long as another worker
    /// compacts (measured: ~15 % of all CPU time of a 1M-label tree bench on 2 cores).
    pub worker_threads: usize,
    /// Limits enforced on writes. Default [`Limits::PORTABLE`]. Capped at fjall's own
    /// (key 65,535 B, value 4 GiB).
    pub limits: Limits,
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            cache_bytes: 64 << 20,
            memtable_bytes: 16 << 20,
            max_journal_bytes: 128 << 20,
            lz4: true,
            worker_threads: 1,
            limits: Limits::PORTABLE,
        }
    }
}

/// The embedded, crash-safe backend on fjall 3.
///
/// # How the contract maps onto fjall
///
/// - One fjall `Database` per store directory, one fjall keyspace (LSM tree) per [`Space`].
///   fjall write batches are atomic across keyspaces: the whole batch is one journal
///   record with a checksum and an end marker; recovery discards a torn trailing record.
/// - [`Durability::Sync`] appends the batch to the journal and `fsync`s it
///   (`PersistMode::SyncAll`) before returning. Since fjall has one journal written in
///   order, this also makes every earlier batch durable. [`Durability::Buffered`] flushes
///   the journal's user-space buffer to the OS (`PersistMode::Buffer`): the batch
///   survives the process being killed, not a power cut.
/// - Reads: fjall's plain keyspace reads see items of a batch that is still being applied
///   to the memtables (they read at the newest sequence number). Every read here therefore
///   goes through a fjall snapshot taken at the last *published* sequence number, which
///   fjall advances only after a whole batch is in the memtables. That is what makes
///   "a reader never sees half a batch" hold.
/// - Range deletes are expanded into point tombstones for the keys present at commit time
///   (fjall 3 has no range tombstones). All writes hold one writer mutex so that the
///   expansion and the commit are a single step with respect to other writers. fjall
///   serialises commits on its journal lock anyway, so the mutex costs no parallelism.
/// - A batch is first folded into its final effect per key (last operation wins), because
///   fjall gives all items of a batch the same sequence number and two items for the same
///   key in one batch would be ambiguous.
///
/// # Handles
///
/// One handle per directory per process (fjall takes a file lock; a second open fails
/// with [`StoreError::Locked`]). Share it with `Arc`. Dropping the last handle stops the
/// background threads and releases the lock.
pub struct FjallStore {
    db: Database,
    spaces: [Keyspace; Space::ALL.len()],
    write_lock: Mutex<()>,
    limits: Limits,
    path: PathBuf,
    /// [`FjallConfig::memtable_bytes`], enforced by the writer too (see [`FjallStore::write`]).
    memtable_bytes: u64,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn map_err(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(e) => StoreError::Io(e),
        fjall::Error::Storage(fjall::LsmError::Io(e)) => StoreError::Io(e),
        fjall::Error::Poisoned => StoreError::Poisoned,
        fjall::Error::Locked => StoreError::Locked("fjall database lock is held".into()),
        fjall::Error::Storage(e) => StoreError::Corruption(format!("{e:?}")),
        fjall::Error::JournalRecovery(e) => StoreError::Corruption(format!("journal: {e:?}")),
        fjall::Error::InvalidVersion(v) => {
            StoreError::Corruption(format!("unsupported fjall format version {v:?}"))
        }
        fjall::Error::Decompress(c) => StoreError::Corruption(format!("decompression ({c:?})")),
        fjall::Error::InvalidTrailer | fjall::Error::InvalidTag(_) => {
            StoreError::Corruption(format!("{e:?}"))
        }
        fjall::Error::Unrecoverable => {
            StoreError::Corruption("fjall reports the database unrecoverable".into())
        }
        other => StoreError::Backend(format!("{other:?}")),
    }
}

impl FjallStore {
    /// Opens (creating if needed) the store in directory `path` with the default config.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, FjallConfig::default())
    }

    /// Opens (creating if needed) the store in directory `path`.
    pub fn open_with(path: impl AsRef<Path>, config: FjallConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // Clamp values fjall would assert on: opening must not panic.
        let db = Database::builder(&path)
            .cache_size(config.cache_bytes)
            .max_journaling_size(config.max_journal_bytes.max(64 << 20))
            .worker_threads(config.worker_threads.max(1))
            .open()
            .map_err(map_err)?;
        let memtable = config.memtable_bytes.max(1 << 20);
        let lz4 = config.lz4;
        let open_space = |s: Space| {
            db.keyspace(s.name(), || {
                let mut opts = KeyspaceCreateOptions::default().max_memtable_size(memtable);
                if !lz4 {
                    opts = opts.data_block_compression_policy(CompressionPolicy::all(
                        CompressionType::None,
                    ));
                }
                opts
            })
            .map_err(map_err)
        };
        let spaces = [
            open_space(Space::Meta)?,
            open_space(Space::Tree)?,
            open_space(Space::Values)?,
            open_space(Space::EpochLog)?,
            open_space(Space::RaftLog)?,
            open_space(Space::LabelVrf)?,
        ];
        debug_assert!(
            Space::ALL
                .iter()
                .all(|s| spaces[s.index()].name().as_ref() == s.name())
        );
        let mut limits = config.limits;
        limits.max_key_bytes = limits.max_key_bytes.min(FJALL_MAX_KEY);
        limits.max_value_bytes = limits.max_value_bytes.min(u32::MAX as usize);
        Ok(FjallStore {
            db,
            spaces,
            write_lock: Mutex::new(()),
            limits,
            path,
            memtable_bytes: memtable,
        })
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes every space's write buffer to table files and fully compacts each space,
    /// blocking until done. For measurements (steady-state bytes on disk per entry) and
    /// tests; normal operation never needs it, background compaction does this lazily.
    /// Uses fjall's test-facing API (stable within fjall 3.1).
    pub fn flush_and_compact(&self) -> Result<()> {
        self.sync()?;
        // Compaction may only drop versions older than fjall's MVCC watermark, which
        // advances when fjall counts closed snapshots (every 10,000th close). Without
        // this, overwritten and deleted records may survive the compaction.
        self.advance_gc_watermark();
        for ks in &self.spaces {
            ks.rotate_memtable_and_wait().map_err(map_err)?;
            ks.major_compact().map_err(map_err)?;
        }
        Ok(())
    }

    /// Opens and drops enough snapshots that fjall recomputes its GC watermark.
    fn advance_gc_watermark(&self) {
        for _ in 0..10_000 {
            drop(self.db.snapshot());
        }
    }

    /// Bytes of the table files the current LSM version of every space uses. Unlike
    /// [`FjallStore::disk_usage`] this leaves out table files that compaction replaced but
    /// fjall has not deleted yet (it does once no snapshot can need them) and the journal.
    pub fn live_table_bytes(&self) -> u64 {
        self.spaces.iter().map(Keyspace::disk_space).sum()
    }

    /// [`FjallStore::live_table_bytes`] per space, in [`Space::ALL`] order.
    pub fn space_table_bytes(&self) -> [(Space, u64); Space::ALL.len()] {
        Space::ALL.map(|s| (s, self.spaces[s.index()].disk_space()))
    }

    /// Bytes written to the fullest space's active memtable (fjall's count: keys and
    /// values, not the allocator's). After a write returns it is at most
    /// [`FjallConfig::memtable_bytes`].
    pub fn largest_active_memtable_bytes(&self) -> u64 {
        self.spaces
            .iter()
            .map(|ks| ks.tree.active_memtable().size())
            .max()
            .unwrap_or(0)
    }

    /// Disk use split into journal, tables and the rest (allocated bytes).
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        classify(&self.path).map_err(StoreError::Io)
    }

    /// Seals every memtable of a space `batch` wrote to that is past
    /// [`FjallConfig::memtable_bytes`]; called by the writer, under the write lock, after
    /// each commit. (Every write goes through here, so a space the batch did not touch
    /// cannot have grown since it was last checked.)
    ///
    /// fjall leaves sealing a full memtable to its background worker. While that worker
    /// runs a long compaction the active memtable keeps growing with every write:
    /// measured at 1M labels, 210 MiB of memtables (≈ 480 MiB of heap) in a store
    /// configured for 16 MiB, and still there after 30 s idle. Sealed here, a memtable
    /// waits in fjall's flush queue instead, and fjall holds writers back once four
    /// sealed memtables wait: what a space holds in memory is bounded by five
    /// memtables.
    fn seal_full_memtables(&self, batch: &WriteBatch) -> Result<()> {
        let mut touched = [false; Space::ALL.len()];
        for op in batch.ops() {
            touched[op.space().index()] = true;
        }
        for (ks, _) in self.spaces.iter().zip(touched).filter(|(_, t)| *t) {
            if ks.tree.active_memtable().size() > self.memtable_bytes {
                ks.rotate_memtable().map_err(map_err)?;
            }
        }
        Ok(())
    }

    fn ks(&self, space: Space) -> &Keyspace {
        &self.spaces[space.index()]
    }

    fn view(&self) -> FjallView<'_> {
        FjallView {
            snap: self.db.snapshot(),
            spaces: &self.spaces,
        }
    }

    /// Folds `batch` into its net effect per key: `Some(value)` = put, `None` = delete.
    /// Range deletes are resolved against the current state, so this must run under the
    /// writer lock.
    fn fold(&self, batch: &WriteBatch) -> Result<Vec<NetEffect>> {
        let mut net: Vec<NetEffect> = vec![BTreeMap::new(); Space::ALL.len()];
        // Range deletes seen so far per space; a key written by an earlier op in this batch
        // is already in `net`, so the store only needs consulting for the ranges themselves.
        let mut snap: Option<fjall::Snapshot> = None;
        for op in batch.ops() {
            match op {
                Op::Put { space, key, value } => {
                    net[space.index()].insert(key.clone(), Some(value.clone()));
                }
                Op::Delete { space, key } => {
                    net[space.index()].insert(key.clone(), None);
                }
                Op::DeleteRange { space, range } => {
                    if range.is_empty() {
                        continue;
                    }
                    let m = &mut net[space.index()];
                    for (_, v) in m.range_mut::<[u8], _>(range.as_bounds()) {
                        *v = None;
                    }
                    let snap = snap.get_or_insert_with(|| self.db.snapshot());
                    for item in snap.range(self.ks(*space), Bounds::of(range)) {
                        let key = item.key().map_err(map_err)?;
                        m.insert(key.to_vec(), None);
                    }
                }
            }
        }
        Ok(net)
    }
}

/// fjall's key length limit; longer keys cannot be stored, and fjall asserts (panics)
/// when it meets one, even in a read. Reads clamp their bounds to it (exactly, see
/// [`Bounds::of`]), writes are capped by [`Limits`].
const FJALL_MAX_KEY: usize = u16::MAX as usize;

/// A [`KeyRange`] as fjall wants it: a `RangeBounds<K>` with one unambiguous `K`, and no
/// bound longer than [`FJALL_MAX_KEY`].
struct Bounds<'a> {
    start: std::ops::Bound<&'a [u8]>,
    end: std::ops::Bound<&'a [u8]>,
}

impl<'a> Bounds<'a> {
    /// For stored keys `x` (at most `M` = [`FJALL_MAX_KEY`] bytes) and a bound `b` longer
    /// than `M`, with `b' = b[..M]`: `x >= b` iff `x > b'`, and `x < b` iff `x <= b'`.
    /// So long bounds are replaced exactly by their truncations with the other inclusivity.
    fn of(r: &'a KeyRange) -> Self {
        use std::ops::Bound;
        let s = r.start();
        let start = if s.len() > FJALL_MAX_KEY {
            Bound::Excluded(&s[..FJALL_MAX_KEY])
        } else {
            Bound::Included(s)
        };
        let end = match r.end() {
            None => Bound::Unbounded,
            Some(e) if e.len() > FJALL_MAX_KEY => Bound::Included(&e[..FJALL_MAX_KEY]),
            Some(e) => Bound::Excluded(e),
        };
        Bounds { start, end }
    }
}

impl<'a> std::ops::RangeBounds<&'a [u8]> for Bounds<'a> {
    fn start_bound(&self) -> std::ops::Bound<&&'a [u8]> {
        self.start.as_ref()
    }

    fn end_bound(&self) -> std::ops::Bound<&&'a [u8]> {
        self.end.as_ref()
    }
}

/// Final state per key of one space after a batch: `Some(value)` = put, `None` = delete.
type NetEffect = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Reads through one fjall snapshot (one point in time).
struct FjallView<'a> {
    snap: fjall::Snapshot,
    spaces: &'a [Keyspace; Space::ALL.len()],
}

fn scan_snap(
    snap: &fjall::Snapshot,
    ks: &Keyspace,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
) -> Result<Vec<KeyValue>> {
    if range.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let it = snap.range(ks, Bounds::of(range));
    let mut out = Vec::with_capacity(limit.min(1024));
    let mut push = |g: fjall::Guard| -> Result<()> {
        let (k, v) = g.into_inner().map_err(map_err)?;
        out.push((k.to_vec(), v.to_vec()));
        Ok(())
    };
    match direction {
        Direction::Forward => it.take(limit).try_for_each(&mut push)?,
        Direction::Reverse => it.rev().take(limit).try_for_each(&mut push)?,
    }
    Ok(out)
}

/// [`ReadView::scan_each`] on one fjall snapshot: keys and values are visited in
/// place (fjall hands out reference-counted slices of its blocks).
fn scan_each_snap(
    snap: &fjall::Snapshot,
    ks: &Keyspace,
    range: &KeyRange,
    direction: Direction,
    visit: &mut Visit<'_>,
) -> Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let it = snap.range(ks, Bounds::of(range));
    let mut step = |g: fjall::Guard| -> Result<bool> {
        let (k, v) = g.into_inner().map_err(map_err)?;
        visit(&k, &v)
    };
    match direction {
        Direction::Forward => {
            for g in it {
                if !step(g)? {
                    break;
                }
            }
        }
        Direction::Reverse => {
            for g in it.rev() {
                if !step(g)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn get_snap(snap: &fjall::Snapshot, ks: &Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>> {
    if key.is_empty() || key.len() > FJALL_MAX_KEY {
        return Ok(None);
    }
    Ok(snap.get(ks, key).map_err(map_err)?.map(|v| v.to_vec()))
}

fn get_le_snap(
    snap: &fjall::Snapshot,
    ks: &Keyspace,
    key: &[u8],
    floor: &[u8],
) -> Result<Option<KeyValue>> {
    if floor > key {
        return Ok(None);
    }
    let last = if key.len() <= FJALL_MAX_KEY && floor.len() <= FJALL_MAX_KEY {
        // The hot path (versioned tree reads): no allocation.
        snap.range(ks, floor..=key).next_back()
    } else {
        let range = KeyRange::inclusive(floor, key);
        snap.range(ks, Bounds::of(&range)).next_back()
    };
    match last {
        None => Ok(None),
        Some(g) => {
            let (k, v) = g.into_inner().map_err(map_err)?;
            Ok(Some((k.to_vec(), v.to_vec())))
        }
    }
}

/// A snapshot handed out by [`Store::snapshot`]: owns clones of the keyspace handles.
struct OwnedView {
    snap: fjall::Snapshot,
    spaces: [Keyspace; Space::ALL.len()],
}

/// Reads through a fjall snapshot: the same for the borrowed view and the
/// owned one [`Store::snapshot`] hands out.
macro_rules! snapshot_reads {
    ($($view:ty),*) => {$(
        impl ReadView for $view {
            fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
                get_snap(&self.snap, &self.spaces[space.index()], key)
            }

            fn scan(
                &self,
                space: Space,
                range: &KeyRange,
                direction: Direction,
                limit: usize,
            ) -> Result<Vec<KeyValue>> {
                scan_snap(
                    &self.snap,
                    &self.spaces[space.index()],
                    range,
                    direction,
                    limit,
                )
            }

            fn scan_each(
                &self,
                space: Space,
                range: &KeyRange,
                direction: Direction,
                visit: &mut Visit<'_>,
            ) -> Result<()> {
                scan_each_snap(
                    &self.snap,
                    &self.spaces[space.index()],
                    range,
                    direction,
                    visit,
                )
            }

            fn get_le(&self, space: Space, key: &[u8], floor: &[u8]) -> Result<Option<KeyValue>> {
                get_le_snap(&self.snap, &self.spaces[space.index()], key, floor)
            }
        }
    )*};
}

snapshot_reads!(FjallView<'_>, OwnedView);

impl ReadView for FjallStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.view().get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.view().scan(space, range, direction, limit)
    }

    fn scan_each(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        self.view().scan_each(space, range, direction, visit)
    }

    fn get_le(&self, space: Space, key: &[u8], floor: &[u8]) -> Result<Option<KeyValue>> {
        self.view().get_le(space, key, floor)
    }

    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.view().get_many(space, keys)
    }

    fn get_le_many(
        &self,
        space: Space,
        queries: &[(&[u8], &[u8])],
    ) -> Result<Vec<Option<KeyValue>>> {
        self.view().get_le_many(space, queries)
    }
}

impl Store for FjallStore {
    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<()> {
        batch.validate(&self.limits)?;
        if batch.is_empty() {
            return Ok(());
        }
        let _timer = candor_telemetry::metrics().store_write_timer("embedded");
        // A poisoned mutex only says another writer panicked; it guards no data.
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Every write holds the lock, so nothing changes between this check and the commit.
        batch.check_preconditions(|space, key| self.get(space, key))?;
        let mode = Some(match durability {
            Durability::Sync => PersistMode::SyncAll,
            Durability::Buffered => PersistMode::Buffer,
        });
        let ops = batch.ops();
        if ops.iter().any(|op| matches!(op, Op::DeleteRange { .. })) {
            let net = self.fold(batch)?;
            let n: usize = net.iter().map(BTreeMap::len).sum();
            let mut wb = fjall::OwnedWriteBatch::with_capacity(self.db.clone(), n).durability(mode);
            for (space, m) in Space::ALL.into_iter().zip(net) {
                let ks = self.ks(space);
                for (k, v) in m {
                    match v {
                        Some(v) => wb.insert(ks, k, v),
                        None => wb.remove(ks, k),
                    }
                }
            }
            wb.commit().map_err(map_err)?;
            return self.seal_full_memtables(batch);
        }
        // Fast path (no range deletes): keep the last operation of each key, found with
        // one hash probe per op instead of sorting copies of every key and value.
        let mut seen: HashSet<(Space, &[u8])> = HashSet::with_capacity(ops.len());
        let mut keep = vec![false; ops.len()];
        for (i, op) in ops.iter().enumerate().rev() {
            let (Op::Put { space, key, .. } | Op::Delete { space, key }) = op else {
                continue;
            };
            keep[i] = seen.insert((*space, key.as_slice()));
        }
        drop(seen);
        let mut wb =
            fjall::OwnedWriteBatch::with_capacity(self.db.clone(), ops.len()).durability(mode);
        for (op, keep) in ops.iter().zip(keep) {
            match op {
                Op::Put { space, key, value } if keep => {
                    wb.insert(self.ks(*space), key.as_slice(), value.as_slice())
                }
                Op::Delete { space, key } if keep => wb.remove(self.ks(*space), key.as_slice()),
                _ => {}
            }
        }
        wb.commit().map_err(map_err)?;
        self.seal_full_memtables(batch)
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn snapshot(&self) -> Result<Box<dyn ReadView>> {
        Ok(Box::new(OwnedView {
            snap: self.db.snapshot(),
            spaces: self.spaces.clone(),
        }))
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(map_err)
    }

    fn disk_space_bytes(&self) -> Result<u64> {
        allocated_bytes(&self.path).map_err(StoreError::Io)
    }
}

/// Where the embedded store's disk space goes (allocated bytes), see
/// [`FjallStore::disk_usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Write-ahead journal files (`*.jnl`): data not yet flushed to tables, plus journals
    /// fjall has not yet deleted.
    pub journal_bytes: u64,
    /// LSM table files: the steady-state data.
    pub table_bytes: u64,
    /// Everything else (manifests, fjall's own metadata).
    pub other_bytes: u64,
}

impl DiskUsage {
    /// Sum of all parts.
    pub fn total(&self) -> u64 {
        self.journal_bytes + self.table_bytes + self.other_bytes
    }
}

fn classify(dir: &Path) -> std::io::Result<DiskUsage> {
    let mut u = DiskUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jnl") {
                u.journal_bytes += file_bytes(&meta);
            } else if path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "tables" || n == "blobs")
            {
                u.table_bytes += file_bytes(&meta);
            } else {
                u.other_bytes += file_bytes(&meta);
            }
        }
    }
    Ok(u)
}

/// Allocated bytes of every file under `dir` (sparse and preallocated-but-unwritten space
/// excluded where the OS tells; fjall preallocates 64 MiB journals sparsely).
fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    classify(dir).map(|u| u.total())
}

#[cfg(unix)]
fn file_bytes(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn file_bytes(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}
