//! The Raft log and vote storage (openraft `RaftLogStorage`, storage API v2) on a
//! `candor_store::Store`.
//!
//! # Layout
//!
//! Keys live in the store's [`Space::RaftLog`]. Every key is
//! `prefix ‖ group id (u64 BE) ‖ tag ‖ rest`, so any number of groups share one store and
//! one group's keys are a contiguous range:
//!
//! | tag | rest | value |
//! |-----|------|-------|
//! | `l` | log index (u64 BE) | postcard(`Entry`) |
//! | `v` | — | postcard(`Vote`) |
//! | `p` | — | postcard(`LogId`): last purged |
//! | `c` | — | postcard(`Option<LogId>`): last committed (a hint, see below) |
//! | `s` | — | postcard(snapshot header: meta, generation, length, chunk count) |
//! | `t` | generation (u64 BE) ‖ chunk number (u32 BE) | snapshot bytes |
//! | `u` | chunk number (u32 BE) | bytes of a snapshot being received (staging) |
//!
//! # Durability
//!
//! An append is written [`Durability::Buffered`] (readable as soon as `append` returns, as
//! openraft requires) and acknowledged through openraft's `IOFlushed` callback only after a
//! [`Store::sync`] that started after the write returned (candor-store's durability is
//! prefix-closed, so that sync covers the append and all before it). One background *syncer* thread per
//! store performs those syncs: whatever appends and votes queue up while one fsync runs are
//! covered by the next, so N groups appending concurrently cost about one fsync per round,
//! not N. Callbacks fire in submission order, which keeps openraft's flushed watermark
//! monotonic. `save_vote` waits for its sync before returning.
//!
//! Truncation and purge are buffered writes: both may be lost in a crash, which leaves the log
//! as it was before them, a state openraft accepts (nothing that depended on them has been
//! acknowledged, because every later acknowledgement waits for a sync that covers them). The
//! committed log id is saved buffered too; it only lets a restarted node re-apply its
//! committed entries without waiting for the cluster.
//!
//! # Threads
//!
//! Appends are written from tokio's blocking pool (a write may queue behind an fsync and
//! must not stall the runtime threads other groups' Raft cores run on); fsyncs run on the
//! syncer thread. Reads, votes' buffered writes, truncations and purges run inline: they
//! are short and rare.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::mpsc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};

use crate::types::{Entry, GroupId, LogId, TypeConfig, Vote, decode, encode};
use candor_store::{Direction, Durability, KeyRange, Space, Store, StoreError, WriteBatch};

const TAG_LOG: u8 = b'l';
const TAG_VOTE: u8 = b'v';
const TAG_PURGED: u8 = b'p';
const TAG_COMMITTED: u8 = b'c';
pub(crate) const TAG_SNAP_META: u8 = b's';
pub(crate) const TAG_SNAP_DATA: u8 = b't';
pub(crate) const TAG_SNAP_RECV: u8 = b'u';

/// Entries read per store scan.
const SCAN_PAGE: usize = 1024;

/// Bytes a log entry adds around its payload (log id varints, payload tag, length), with
/// room to spare.
const ENTRY_OVERHEAD: usize = 128;

type SyncJob = Box<dyn FnOnce(Result<(), io::Error>) + Send>;

/// Where a node's Raft store work runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoMode {
    /// Store writes on tokio's blocking pool, fsyncs on the syncer thread
    /// (group commit across groups): what a server runs.
    #[default]
    Threads,
    /// Everything on the calling task, fsyncs included: no thread besides the
    /// runtime's. For deterministic simulation (see [`crate::sim`]) over an
    /// in-memory store only: a real disk would stall the runtime.
    Inline,
}

/// Runs `f` where `mode` says.
pub(crate) async fn run_io<T: Send + 'static>(
    mode: IoMode,
    f: impl FnOnce() -> Result<T, io::Error> + Send + 'static,
) -> Result<T, io::Error> {
    match mode {
        IoMode::Inline => f(),
        IoMode::Threads => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| io::Error::other(format!("store task failed: {e}")))?,
    }
}

/// The per-store Raft log database: shared by every group on a node.
///
/// Cloning is cheap. Dropping the last clone (and every [`GroupLogStore`] made from it)
/// stops the syncer thread.
#[derive(Clone)]
pub struct LogDb {
    shared: Arc<DbShared>,
}

pub(crate) struct DbShared {
    pub(crate) kv: Arc<dyn Store>,
    prefix: Vec<u8>,
    /// The syncer thread's queue; `None` in [`IoMode::Inline`] (sync in place).
    sync_tx: Option<mpsc::Sender<SyncJob>>,
    mode: IoMode,
}

impl LogDb {
    /// Open the log database over `kv`, with every key under `prefix`.
    ///
    /// Spawns the syncer thread.
    pub fn open(kv: Arc<dyn Store>, prefix: &[u8]) -> Result<Self, io::Error> {
        Self::open_with(kv, prefix, IoMode::Threads)
    }

    /// [`LogDb::open`] with the I/O placement chosen: [`IoMode::Inline`]
    /// starts no thread.
    pub fn open_with(kv: Arc<dyn Store>, prefix: &[u8], mode: IoMode) -> Result<Self, io::Error> {
        let sync_tx = match mode {
            IoMode::Inline => None,
            IoMode::Threads => {
                let (sync_tx, sync_rx) = mpsc::channel::<SyncJob>();
                let thread_kv = Arc::clone(&kv);
                std::thread::Builder::new()
                    .name("candor-raft-sync".into())
                    .spawn(move || syncer(thread_kv, sync_rx))?;
                Some(sync_tx)
            }
        };
        Ok(Self {
            shared: Arc::new(DbShared {
                kv,
                prefix: prefix.to_vec(),
                sync_tx,
                mode,
            }),
        })
    }

    /// The log store of one group.
    pub fn group(&self, group: GroupId) -> GroupLogStore {
        let mut base = self.shared.prefix.clone();
        base.extend_from_slice(&group.0.to_be_bytes());
        GroupLogStore {
            db: Arc::clone(&self.shared),
            group,
            base: Arc::from(base),
        }
    }
}

/// Group commit: take every queued job, sync once, complete them in order.
fn syncer(kv: Arc<dyn Store>, rx: mpsc::Receiver<SyncJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let res = kv.sync();
        if let Err(e) = &res {
            // Every waiting append and vote fails with it; their groups stop.
            tracing::error!(error = %e, waiting = jobs.len(), "raft log sync failed");
        }
        for job in jobs {
            job(match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            });
        }
    }
}

impl DbShared {
    fn submit_sync(&self, job: SyncJob) {
        let Some(tx) = &self.sync_tx else {
            // Inline: this sync covers every write that returned before it.
            job(self.kv.sync().map_err(|e| io::Error::other(e.to_string())));
            return;
        };
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            // The syncer only exits when every sender is gone; we hold one, so this is
            // unreachable in practice. Fail the IO rather than acknowledge it unsynced.
            job(Err(io::Error::other("raft log syncer stopped")));
        }
    }

    /// Wait until every write that returned before this call is durable.
    pub(crate) async fn sync(&self) -> Result<(), io::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit_sync(Box::new(move |res| {
            let _ = tx.send(res);
        }));
        rx.await
            .map_err(|_| io::Error::other("raft log syncer dropped a request"))?
    }
}

pub(crate) fn io_err(e: StoreError) -> io::Error {
    io::Error::other(e)
}

pub(crate) fn data_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// One group's view of the [`LogDb`]: implements openraft's `RaftLogStorage` and
/// `RaftLogReader` (it is its own reader; clones share everything).
#[derive(Clone)]
pub struct GroupLogStore {
    db: Arc<DbShared>,
    group: GroupId,
    base: Arc<[u8]>,
}

impl GroupLogStore {
    /// The group this store serves.
    pub fn group_id(&self) -> GroupId {
        self.group
    }

    pub(crate) fn key(&self, tag: u8, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.base.len() + 1 + rest.len());
        k.extend_from_slice(&self.base);
        k.push(tag);
        k.extend_from_slice(rest);
        k
    }

    fn log_key(&self, index: u64) -> Vec<u8> {
        self.key(TAG_LOG, &index.to_be_bytes())
    }

    /// First key after every log key of this group.
    fn log_end(&self) -> Vec<u8> {
        self.key(TAG_LOG + 1, &[])
    }

    /// Where this node's store work runs.
    pub(crate) fn io_mode(&self) -> IoMode {
        self.db.mode
    }

    pub(crate) fn kv(&self) -> &dyn Store {
        &*self.db.kv
    }

    /// Largest application payload whose log entry the store accepts. Larger writes must
    /// be refused before they reach the log: a failed append stops the group.
    pub fn max_payload_bytes(&self) -> usize {
        self.db
            .kv
            .limits()
            .max_value_bytes
            .saturating_sub(ENTRY_OVERHEAD)
    }

    pub(crate) async fn sync(&self) -> Result<(), io::Error> {
        self.db.sync().await
    }

    fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        tag: u8,
        what: &str,
    ) -> Result<Option<T>, io::Error> {
        match self
            .db
            .kv
            .get(Space::RaftLog, &self.key(tag, &[]))
            .map_err(io_err)?
        {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| data_err(what, e)),
        }
    }

    fn index_of_key(&self, key: &[u8]) -> Option<u64> {
        let rest = key.strip_prefix(&*self.base)?.strip_prefix(&[TAG_LOG])?;
        let arr: [u8; 8] = rest.try_into().ok()?;
        Some(u64::from_be_bytes(arr))
    }

    /// Read entries with index in `[start, end)` (`end = None`: to the last entry).
    fn read_range(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, io::Error> {
        let end_key = match end {
            Some(e) if e <= start => return Ok(Vec::new()),
            Some(e) => self.log_key(e),
            None => self.log_end(),
        };
        let mut out: Vec<Entry> = Vec::new();
        let mut cursor = self.log_key(start);
        loop {
            let page = self
                .db
                .kv
                .scan(
                    Space::RaftLog,
                    &KeyRange::half_open(cursor.clone(), end_key.clone()),
                    Direction::Forward,
                    SCAN_PAGE,
                )
                .map_err(io_err)?;
            let full = page.len() == SCAN_PAGE;
            for (k, v) in page {
                let idx = self
                    .index_of_key(&k)
                    .ok_or_else(|| data_err("raft log key", "malformed"))?;
                let entry: Entry = decode(&v).map_err(|e| data_err("raft log entry", e))?;
                if entry.index() != idx {
                    return Err(data_err(
                        "raft log entry",
                        format!("key index {idx} holds entry {}", entry.log_id()),
                    ));
                }
                if let Some(prev) = out.last()
                    && prev.index() + 1 != idx
                {
                    return Err(data_err(
                        "raft log",
                        format!("hole between index {} and {idx}", prev.index()),
                    ));
                }
                out.push(entry);
            }
            match out.last() {
                Some(last) if full => match last.index().checked_add(1) {
                    Some(next) => cursor = self.log_key(next),
                    None => break,
                },
                _ => break,
            }
        }
        Ok(out)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, io::Error> {
        let probe = self.log_key(u64::MAX);
        let floor = self.log_key(0);
        match self
            .db
            .kv
            .get_le(Space::RaftLog, &probe, &floor)
            .map_err(io_err)?
        {
            Some((k, v)) if self.index_of_key(&k).is_some() => {
                let entry: Entry = decode(&v).map_err(|e| data_err("raft log entry", e))?;
                Ok(Some(entry.log_id()))
            }
            _ => Ok(None),
        }
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let Some(start) = start else {
        return (u64::MAX, Some(u64::MAX));
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        self.read_range(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_decoded(TAG_VOTE, "raft vote")
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        // Bound one replication payload's memory; openraft asks again for the rest.
        const LIMIT: u64 = 4096;
        let end = end.min(start.saturating_add(LIMIT));
        self.read_range(start, Some(end))
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_decoded(TAG_PURGED, "raft purged id")?;
        let last = self.last_log_id()?;
        let last_log_id = match last {
            Some(l) => Some(l),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut b = WriteBatch::new();
        b.put(
            Space::RaftLog,
            self.key(TAG_VOTE, &[]),
            encode(vote).map_err(|e| data_err("raft vote", e))?,
        );
        self.db.kv.write(&b, Durability::Buffered).map_err(io_err)?;
        // Through the syncer so it is ordered with (and batched with) pending appends.
        self.db.sync().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut b = WriteBatch::new();
        b.put(
            Space::RaftLog,
            self.key(TAG_COMMITTED, &[]),
            encode(&committed).map_err(|e| data_err("raft committed id", e))?,
        );
        self.db.kv.write(&b, Durability::Buffered).map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self
            .get_decoded::<Option<LogId>>(TAG_COMMITTED, "raft committed id")?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = <TypeConfig as RaftTypeConfig>::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One batch per append call: one store write, and (through the syncer) at most one
        // fsync, shared with whatever else is queued.
        let mut b = WriteBatch::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| data_err("raft log entry", e))?;
            b.put(Space::RaftLog, self.log_key(entry.index()), bytes);
        }
        if !b.is_empty() {
            // On the blocking pool: a store write can wait behind an fsync in progress, and
            // must not stall the runtime threads every other group's Raft core runs on.
            let kv = Arc::clone(&self.db.kv);
            run_io(self.db.mode, move || {
                kv.write_chunked(b, Durability::Buffered).map_err(io_err)
            })
            .await?;
        }
        // Even an empty append is acknowledged through the syncer, so completions stay in
        // submission order.
        self.db
            .submit_sync(Box::new(move |res| callback.io_completed(res)));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let start = match last_log_id {
            Some(l) => match l.index.checked_add(1) {
                Some(s) => s,
                None => return Ok(()),
            },
            None => 0,
        };
        let mut b = WriteBatch::new();
        b.delete_range(
            Space::RaftLog,
            KeyRange::half_open(self.log_key(start), self.log_end()),
        );
        self.db.kv.write(&b, Durability::Buffered).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut b = WriteBatch::new();
        // The purged marker and the deletion are one atomic batch: no state where entries
        // are gone but the marker is not.
        b.put(
            Space::RaftLog,
            self.key(TAG_PURGED, &[]),
            encode(&log_id).map_err(|e| data_err("raft purged id", e))?,
        );
        let end = match log_id.index.checked_add(1) {
            Some(e) => self.log_key(e),
            None => self.log_end(),
        };
        b.delete_range(Space::RaftLog, KeyRange::half_open(self.log_key(0), end));
        // A purge may remove many entries: chunk it. The marker comes first, so a crash
        // midway leaves only entries openraft already ignores.
        self.db
            .kv
            .write_chunked(b, Durability::Buffered)
            .map_err(io_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds() {
        assert_eq!(bounds(&(3..7)), (3, Some(7)));
        assert_eq!(bounds(&(3..=7)), (3, Some(8)));
        assert_eq!(bounds(&(..)), (0, None));
        assert_eq!(bounds(&(5..)), (5, None));
        assert_eq!(bounds(&(0..=u64::MAX)), (0, None));
        assert_eq!(
            bounds(&(Bound::Excluded(u64::MAX), Bound::Unbounded)),
            (u64::MAX, Some(u64::MAX))
        );
    }
}
