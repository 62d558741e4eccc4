//! The generic state-machine adapter: openraft's `RaftStateMachine` driving a narrow,
//! synchronous [`StateMachineLogic`] that the shard and sequencer implement.
//!
//! # Contract for implementors
//!
//! * [`StateMachineLogic::apply`] receives committed entries in log order, in batches (all
//!   entries openraft has ready, up to [`APPLY_CHUNK`] at a time). It must be deterministic
//!   and return exactly one response per entry. A business-level rejection is a *response*;
//!   an `Err` means the replica cannot go on (I/O failure) and stops the group.
//! * Each batch carries an opaque **applied marker** (last applied log id and membership).
//!   The logic must persist it atomically with the batch's effects and return the most
//!   recently persisted one from [`StateMachineLogic::applied_marker`]. This is what lets
//!   a persistent state machine (e.g. one FoundationDB transaction per batch) restart
//!   without replaying, and makes re-application idempotent: the adapter never applies an
//!   entry at or below the marker.
//! * Batches may contain only Raft-internal entries (blank or membership); the logic then
//!   sees an empty `entries` slice and must still persist the new marker.
//! * Snapshots are byte streams: [`StateMachineLogic::snapshot`] returns a reader that
//!   must describe exactly the state at the current marker, even while later batches are
//!   applied (take a consistent store view, e.g. with [`crate::store_snapshot`]); the
//!   adapter drains it outside the state-machine lock. [`StateMachineLogic::restore`]
//!   replaces the whole state with a stream and persists the given marker; it must be
//!   crash-safe in the sense below.
//!
//! # Snapshot storage and install protocol
//!
//! A snapshot is kept in the group's log store (space `RaftLog`) as chunks of 64 KiB
//! under a generation number, plus a header naming the current generation
//! ([`SnapshotData`] is a read handle on one generation through a consistent store
//! view, so it is never held in memory). Building one drains the logic's reader into a
//! fresh generation and then switches the header. Installing one (received from the
//! leader, see [`crate::network`]) proceeds as follows:
//!
//! 1. the received bytes are first made the group's current snapshot (copied into a
//!    fresh generation, header switched, store synced);
//! 2. then the logic restores from them and persists the new marker.
//!
//! A crash during 2 leaves a logic that must report an applied marker *older* than the
//! stored snapshot (e.g. none): on restart openraft finds the stored snapshot ahead of
//! the state machine and installs it again before anything else happens. So a logic's
//! `restore` needs only: "until it returns, a restart reports a marker below the
//! snapshot, and never serves a half-installed state".
//!
//! The logic runs on tokio's blocking pool (it may do synchronous I/O) behind a mutex, so
//! it needs `Send` but not `Sync`. The last built or installed snapshot is also kept in
//! the group's log store so it survives restarts and can be sent to lagging followers.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::log_store::{
    GroupLogStore, TAG_SNAP_DATA, TAG_SNAP_META, TAG_SNAP_RECV, data_err, io_err,
};
use crate::types::{
    LogId, RaftSnapshot, Response, SnapshotMeta, StoredMembership, TypeConfig, decode, encode,
};
use candor_store::{Durability, KeyRange, ReadView, Space, WriteBatch, prefix_end};

/// Largest number of entries handed to one [`StateMachineLogic::apply`] call.
pub const APPLY_CHUNK: usize = 4096;

/// Snapshot bytes are stored in chunks of this size.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// One committed application entry.
#[derive(Clone, Copy, Debug)]
pub struct CommittedEntry<'a> {
    /// Its position in the log.
    pub log_id: LogId,
    /// The bytes given to `client_write`.
    pub data: &'a [u8],
}

/// A batch of committed entries and the marker to persist with it.
#[derive(Debug)]
pub struct ApplyBatch<'a> {
    /// Application entries, in log order (Raft-internal entries are filtered out).
    pub entries: &'a [CommittedEntry<'a>],
    /// The log id of the batch's last entry (internal or not).
    pub last_log_id: LogId,
    /// Opaque marker to persist atomically with the batch's effects.
    pub marker: &'a [u8],
}

/// The deterministic application logic of a Raft group.
pub trait StateMachineLogic: Send + 'static {
    /// The logic's failure type (I/O and the like; never a business-level rejection).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Apply a batch of committed entries; return one response per entry of
    /// `batch.entries`. Persist `batch.marker` atomically with the effects.
    fn apply(&mut self, batch: ApplyBatch<'_>) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// The most recently persisted marker (from `apply` or `restore`), `None` if fresh.
    fn applied_marker(&self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The whole state at the current marker, as a byte stream. Called under the
    /// state-machine lock; the stream is read afterwards, outside it, while later
    /// batches may be applied, so it must read from a consistent view.
    fn snapshot(&self) -> Result<Box<dyn Read + Send>, Self::Error>;

    /// Replace the whole state with the stream `data` (produced by [`Self::snapshot`] on
    /// some replica) and persist `marker` with it. See the module docs for what a crash
    /// in the middle may leave.
    fn restore(&mut self, data: &mut dyn Read, marker: &[u8]) -> Result<(), Self::Error>;
}

/// What the marker records. Encoded with postcard; opaque to the logic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Last applied membership.
    pub membership: StoredMembership,
}

impl AppliedState {
    /// Decode a marker produced by this crate.
    pub fn decode(marker: &[u8]) -> Result<Self, crate::Error> {
        Ok(decode(marker)?)
    }

    fn encode(&self) -> Result<Vec<u8>, io::Error> {
        encode(self).map_err(|e| data_err("applied marker", e))
    }
}

/// The stored snapshot header (the data lives in chunks beside it).
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    meta: SnapshotMeta,
    generation: u64,
    len: u64,
    chunks: u32,
}

struct Inner<L> {
    logic: L,
    applied: AppliedState,
}

pub(crate) struct Shared<L> {
    inner: Mutex<Inner<L>>,
    store: GroupLogStore,
    // Serializes snapshot saves (a build and an install may overlap).
    snapshot_lock: tokio::sync::Mutex<()>,
}

impl<L> Shared<L> {
    fn lock(&self) -> MutexGuard<'_, Inner<L>> {
        // Poisoning only follows a panic in the logic; the adapter's own state is updated
        // after the logic returns, so it is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// openraft's `RaftStateMachine` over a [`StateMachineLogic`].
pub struct StateMachine<L> {
    pub(crate) shared: Arc<Shared<L>>,
}

fn logic_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("state machine logic: {e}"))
}

/// Store and logic work: on the blocking pool, or inline (see [`crate::IoMode`]).
async fn blocking<T: Send + 'static>(
    mode: crate::IoMode,
    f: impl FnOnce() -> Result<T, io::Error> + Send + 'static,
) -> Result<T, io::Error> {
    crate::log_store::run_io(mode, f).await
}

impl<L: StateMachineLogic> StateMachine<L> {
    /// Wrap `logic`, loading its marker. `store` (the group's log store) keeps the
    /// group's snapshot copy.
    pub fn new(logic: L, store: GroupLogStore) -> Result<Self, crate::Error> {
        let applied = match logic
            .applied_marker()
            .map_err(|e| crate::Error::StateMachine(e.to_string()))?
        {
            None => AppliedState::default(),
            Some(m) => AppliedState::decode(&m)?,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner { logic, applied }),
                store,
                snapshot_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Run `f` on the logic (on the blocking pool, serialized with apply).
    pub(crate) async fn with_logic<R: Send + 'static>(
        shared: Arc<Shared<L>>,
        f: impl FnOnce(&L) -> R + Send + 'static,
    ) -> Result<R, io::Error> {
        blocking(shared.store.io_mode(), move || Ok(f(&shared.lock().logic))).await
    }
}

type Item = EntryResponder<TypeConfig>;

fn apply_chunk<L: StateMachineLogic>(
    shared: &Shared<L>,
    chunk: Vec<Item>,
) -> Result<(), io::Error> {
    let mut g = shared.lock();
    let inner = &mut *g;
    let mut next = inner.applied.clone();
    let mut app: Vec<CommittedEntry<'_>> = Vec::with_capacity(chunk.len());
    // Per entry: does it get a response from the logic?
    let mut answered: Vec<bool> = Vec::with_capacity(chunk.len());
    for (entry, _) in &chunk {
        let log_id = entry.log_id();
        // Idempotence: a marker ahead of openraft's view (e.g. a shared backend another
        // replica advanced) means these entries are already reflected in the state.
        if inner.applied.last_applied.as_ref() >= Some(&log_id) {
            answered.push(false);
            continue;
        }
        match &entry.payload {
            EntryPayload::Normal(req) => {
                app.push(CommittedEntry {
                    log_id,
                    data: &req.0,
                });
                answered.push(true);
            }
            EntryPayload::Membership(m) => {
                next.membership = StoredMembership::new(Some(log_id), m.clone());
                answered.push(false);
            }
            EntryPayload::Blank => answered.push(false),
        }
        next.last_applied = Some(log_id);
    }
    let mut responses = Vec::new();
    if next.last_applied != inner.applied.last_applied {
        let Some(last_log_id) = next.last_applied else {
            return Err(io::Error::other("apply: marker went backwards"));
        };
        let marker = next.encode()?;
        responses = inner
            .logic
            .apply(ApplyBatch {
                entries: &app,
                last_log_id,
                marker: &marker,
            })
            .map_err(logic_err)?;
        if responses.len() != app.len() {
            return Err(logic_err(format!(
                "returned {} responses for {} entries",
                responses.len(),
                app.len()
            )));
        }
        inner.applied = next;
    }
    drop(app);
    drop(g);
    // Responders fire after the state is updated, so a reader woken by a response sees
    // the write. Internal and already-applied entries answer empty.
    let mut responses = responses.into_iter();
    for ((_, responder), answered) in chunk.into_iter().zip(answered) {
        let resp = if answered {
            responses.next().unwrap_or_default()
        } else {
            Vec::new()
        };
        if let Some(r) = responder {
            r.send(Response(resp));
        }
    }
    Ok(())
}

impl<L: StateMachineLogic> RaftStateMachine<TypeConfig> for StateMachine<L> {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder<L>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let g = self.shared.lock();
        Ok((g.applied.last_applied, g.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<Item, io::Error>> + Unpin + OptionalSend,
    {
        let mut entries = entries;
        let mut chunk: Vec<Item> = Vec::new();
        loop {
            let next = entries.try_next().await?;
            let done = next.is_none();
            if let Some(item) = next {
                chunk.push(item);
            }
            if (done && !chunk.is_empty()) || chunk.len() >= APPLY_CHUNK {
                let shared = Arc::clone(&self.shared);
                let batch = std::mem::take(&mut chunk);
                blocking(shared.store.io_mode(), move || apply_chunk(&shared, batch)).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    /// See "install protocol" in the module docs: persist first, then restore.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let marker = applied.encode()?;
        // On restart openraft hands back the stored snapshot itself: nothing to copy.
        let store = self.shared.store.clone();
        let is_current = match snapshot.generation {
            Some(g) => {
                let header =
                    blocking(store.io_mode(), move || read_header(store.kv(), &store)).await?;
                header.is_some_and(|h| h.generation == g && h.meta == *meta)
            }
            None => false,
        };
        // Timed only when a snapshot is really installed (not the stored one on restart).
        let started = (!is_current).then(std::time::Instant::now);
        if !is_current {
            let source = snapshot.clone();
            save_snapshot(
                &self.shared.store,
                &self.shared.snapshot_lock,
                meta,
                Box::new(source.reader()),
            )
            .await?;
        }
        let shared = Arc::clone(&self.shared);
        blocking(shared.store.io_mode(), move || {
            let mut reader = snapshot.reader();
            let mut g = shared.lock();
            g.logic.restore(&mut reader, &marker).map_err(logic_err)?;
            g.applied = applied;
            Ok(())
        })
        .await?;
        if let Some(t) = started {
            candor_telemetry::metrics().raft_snapshot(
                self.shared.store.group_id().0,
                "install",
                t.elapsed(),
            );
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<RaftSnapshot>, io::Error> {
        let store = self.shared.store.clone();
        blocking(store.io_mode(), move || load_snapshot(&store)).await
    }
}

/// Builds a snapshot from the logic: the stream and the marker it is labelled with are
/// taken together under the state-machine lock; the stream is drained into the store
/// afterwards, without the lock.
pub struct SnapshotBuilder<L> {
    shared: Arc<Shared<L>>,
}

impl<L: StateMachineLogic> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<L> {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<RaftSnapshot, io::Error> {
        let started = std::time::Instant::now();
        let shared = Arc::clone(&self.shared);
        let (meta, source) = blocking(shared.store.io_mode(), move || {
            let g = shared.lock();
            let source = g.logic.snapshot().map_err(logic_err)?;
            let meta = SnapshotMeta {
                last_log_id: g.applied.last_applied,
                last_membership: g.applied.membership.clone(),
            };
            Ok((meta, source))
        })
        .await?;
        save_snapshot(
            &self.shared.store,
            &self.shared.snapshot_lock,
            &meta,
            source,
        )
        .await?;
        candor_telemetry::metrics().raft_snapshot(
            self.shared.store.group_id().0,
            "build",
            started.elapsed(),
        );
        let store = self.shared.store.clone();
        // The stored one: ours, or a newer one installed meanwhile.
        blocking(store.io_mode(), move || load_snapshot(&store))
            .await?
            .ok_or_else(|| data_err("snapshot", "missing right after it was saved"))
    }
}

/// A snapshot's bytes as stored in the node's store: a read handle on one set of
/// chunks through a consistent view, so neither holding nor sending it needs the whole
/// snapshot in memory, and a concurrent save cannot pull chunks from under a reader.
#[derive(Clone)]
pub struct SnapshotData {
    view: Arc<dyn ReadView>,
    /// Chunk `i` is at `base ‖ i u32be` in space `RaftLog`.
    base: Arc<[u8]>,
    len: u64,
    chunks: u32,
    /// `Some(generation)` for the group's stored snapshot; `None` for a received one.
    generation: Option<u64>,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotData")
            .field("len", &self.len)
            .field("chunks", &self.chunks)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl SnapshotData {
    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// No bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader over the bytes (blocking store reads, one chunk at a time). Fails with
    /// `InvalidData` if chunks are missing or the length does not match.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader {
            data: self.clone(),
            next: 0,
            buf: Vec::new(),
            pos: 0,
            total: 0,
        }
    }

    /// Read everything into memory (tests, small snapshots).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut v = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0).min(1 << 30));
        self.reader().read_to_end(&mut v)?;
        Ok(v)
    }
}

/// Reads a [`SnapshotData`] chunk by chunk.
pub struct SnapshotReader {
    data: SnapshotData,
    next: u32,
    buf: Vec<u8>,
    pos: usize,
    total: u64,
}

impl Read for SnapshotReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.buf.len() {
            if self.next == self.data.chunks {
                if self.total != self.data.len {
                    return Err(data_err("snapshot", "shorter than its header says"));
                }
                return Ok(0);
            }
            let key = chunk_key(&self.data.base, self.next);
            let v = self
                .data
                .view
                .get(Space::RaftLog, &key)
                .map_err(io_err)?
                .ok_or_else(|| data_err("snapshot", "missing chunk"))?;
            self.total += v.len() as u64;
            if self.total > self.data.len {
                return Err(data_err("snapshot", "longer than its header says"));
            }
            self.buf = v;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Read until `buf` is full or the reader ends; returns the bytes read.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_header(
    view: &dyn ReadView,
    store: &GroupLogStore,
) -> Result<Option<SnapshotHeader>, io::Error> {
    match view
        .get(Space::RaftLog, &store.key(TAG_SNAP_META, &[]))
        .map_err(io_err)?
    {
        None => Ok(None),
        Some(h) => decode(&h)
            .map(Some)
            .map_err(|e| data_err("snapshot header", e)),
    }
}

fn chunk_key(base: &[u8], chunk: u32) -> Vec<u8> {
    let mut k = base.to_vec();
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

fn generation_base(store: &GroupLogStore, generation: u64) -> Vec<u8> {
    store.key(TAG_SNAP_DATA, &generation.to_be_bytes())
}

fn base_range(base: &[u8], fallback_end: Vec<u8>) -> KeyRange {
    let end = prefix_end(base).unwrap_or(fallback_end);
    KeyRange::half_open(base.to_vec(), end)
}

fn generation_range(store: &GroupLogStore, generation: u64) -> KeyRange {
    base_range(
        &generation_base(store, generation),
        store.key(TAG_SNAP_DATA + 1, &[]),
    )
}

/// Persist the stream `source` as the group's current snapshot labelled `meta`, unless
/// a newer one is already stored. Streams in chunks: memory stays bounded.
///
/// Crash safety: the chunks go under a fresh generation first; the header that points at
/// them is switched afterwards, so a crash at any point leaves the old snapshot or the new
/// one, each complete.
async fn save_snapshot(
    store: &GroupLogStore,
    lock: &tokio::sync::Mutex<()>,
    meta: &SnapshotMeta,
    source: Box<dyn Read + Send>,
) -> Result<(), io::Error> {
    let _serialized = lock.lock().await;
    let s = store.clone();
    let meta = meta.clone();
    blocking(s.io_mode(), move || save_blocking(&s, &meta, source)).await?;
    store.sync().await
}

/// Bytes of chunks written per store batch while saving.
const SAVE_BATCH: usize = 4 << 20;

fn save_blocking(
    store: &GroupLogStore,
    meta: &SnapshotMeta,
    mut source: Box<dyn Read + Send>,
) -> Result<(), io::Error> {
    let old = read_header(store.kv(), store)?;
    if let Some(old) = &old
        && old.meta.last_log_id > meta.last_log_id
    {
        return Ok(());
    }
    let generation = old.as_ref().map_or(0, |h| h.generation.wrapping_add(1));
    let mut b = WriteBatch::new();
    b.delete_range(Space::RaftLog, generation_range(store, generation));
    let base = generation_base(store, generation);
    let mut chunks = 0u32;
    let mut len = 0u64;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK];
    loop {
        let n = read_full(&mut *source, &mut buf)?;
        if n == 0 {
            break;
        }
        b.put(Space::RaftLog, chunk_key(&base, chunks), buf[..n].to_vec());
        chunks = chunks
            .checked_add(1)
            .ok_or_else(|| io::Error::other("snapshot too large"))?;
        len += n as u64;
        if b.cost() >= SAVE_BATCH {
            store
                .kv()
                .write_chunked(std::mem::take(&mut b), Durability::Buffered)
                .map_err(io_err)?;
        }
        if n < SNAPSHOT_CHUNK {
            break;
        }
    }
    store
        .kv()
        .write_chunked(b, Durability::Buffered)
        .map_err(io_err)?;

    let header = SnapshotHeader {
        meta: meta.clone(),
        generation,
        len,
        chunks,
    };
    let mut b = WriteBatch::new();
    b.put(
        Space::RaftLog,
        store.key(TAG_SNAP_META, &[]),
        encode(&header).map_err(|e| data_err("snapshot header", e))?,
    );
    if let Some(old) = &old
        && old.generation != generation
    {
        b.delete_range(Space::RaftLog, generation_range(store, old.generation));
    }
    store
        .kv()
        .write_chunked(b, Durability::Buffered)
        .map_err(io_err)?;
    Ok(())
}

fn load_snapshot(store: &GroupLogStore) -> Result<Option<RaftSnapshot>, io::Error> {
    // One consistent view: a concurrent save may switch generations and delete chunks.
    let view: Arc<dyn ReadView> = Arc::from(store.kv().snapshot().map_err(io_err)?);
    let Some(header) = read_header(&*view, store)? else {
        return Ok(None);
    };
    Ok(Some(RaftSnapshot {
        meta: header.meta,
        snapshot: SnapshotData {
            view,
            base: Arc::from(generation_base(store, header.generation)),
            len: header.len,
            chunks: header.chunks,
            generation: Some(header.generation),
        },
    }))
}

// ---- Receiving a snapshot (the server side of `RpcKind::SnapshotChunk`) ----

fn recv_base(store: &GroupLogStore) -> Vec<u8> {
    store.key(TAG_SNAP_RECV, &[])
}

fn recv_range(store: &GroupLogStore) -> KeyRange {
    base_range(&recv_base(store), store.key(TAG_SNAP_RECV + 1, &[]))
}

/// Drop whatever a previous transfer staged.
pub(crate) fn recv_clear(store: &GroupLogStore) -> Result<(), io::Error> {
    let mut b = WriteBatch::new();
    b.delete_range(Space::RaftLog, recv_range(store));
    store.kv().write(&b, Durability::Buffered).map_err(io_err)
}

/// Stage `data` as chunks `first..` of the transfer in progress; returns the chunk count
/// written. Buffered: a received snapshot only becomes durable when it is installed
/// (which copies and syncs it).
pub(crate) fn recv_append(
    store: &GroupLogStore,
    first: u32,
    data: &[u8],
) -> Result<u32, io::Error> {
    let base = recv_base(store);
    let mut b = WriteBatch::new();
    let mut n = 0u32;
    for c in data.chunks(SNAPSHOT_CHUNK) {
        let i = first
            .checked_add(n)
            .ok_or_else(|| io::Error::other("snapshot too large"))?;
        b.put(Space::RaftLog, chunk_key(&base, i), c.to_vec());
        n += 1;
    }
    store
        .kv()
        .write_chunked(b, Durability::Buffered)
        .map_err(io_err)?;
    Ok(n)
}

/// A handle on the staged transfer (`len` bytes in `chunks` chunks).
pub(crate) fn recv_data(
    store: &GroupLogStore,
    len: u64,
    chunks: u32,
) -> Result<SnapshotData, io::Error> {
    let view: Arc<dyn ReadView> = Arc::from(store.kv().snapshot().map_err(io_err)?);
    Ok(SnapshotData {
        view,
        base: Arc::from(recv_base(store)),
        len,
        chunks,
        generation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::LogDb;
    use crate::types::GroupId;
    use candor_store::{Direction, MemStore};

    fn meta(index: u64) -> SnapshotMeta {
        let log_id = LogId {
            leader_id: openraft::impls::leader_id_adv::LeaderId {
                term: 1,
                node_id: 1,
            },
            index,
        };
        SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::default(),
        }
    }

    #[tokio::test]
    async fn save_load_stream_and_stage() {
        let kv: Arc<dyn candor_store::Store> = Arc::new(MemStore::new());
        let db = LogDb::open(kv, b"r/").unwrap();
        let store = db.group(GroupId(3));
        let lock = tokio::sync::Mutex::new(());
        for (i, size) in [0usize, 1, SNAPSHOT_CHUNK, 3 * SNAPSHOT_CHUNK + 17]
            .into_iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
            save_snapshot(
                &store,
                &lock,
                &meta(10 + i as u64),
                Box::new(io::Cursor::new(bytes.clone())),
            )
            .await
            .unwrap();
            let got = load_snapshot(&store).unwrap().unwrap();
            assert_eq!(got.meta, meta(10 + i as u64));
            assert_eq!(got.snapshot.len(), size as u64);
            assert_eq!(got.snapshot.to_vec().unwrap(), bytes);
            // Older snapshots never replace newer ones.
            save_snapshot(&store, &lock, &meta(1), Box::new(io::Cursor::new(vec![1])))
                .await
                .unwrap();
            assert_eq!(load_snapshot(&store).unwrap().unwrap().meta, got.meta);
        }
        // Only the current generation's chunks remain.
        let all = store
            .kv()
            .scan(
                Space::RaftLog,
                &KeyRange::prefix(&store.key(TAG_SNAP_DATA, &[])),
                Direction::Forward,
                1000,
            )
            .unwrap();
        assert_eq!(all.len(), 4);

        // Staging a received snapshot in pieces, then reading it back.
        recv_clear(&store).unwrap();
        let piece: Vec<u8> = (0..(SNAPSHOT_CHUNK * 2 + 5)).map(|j| j as u8).collect();
        let n1 = recv_append(&store, 0, &piece).unwrap();
        let n2 = recv_append(&store, n1, &piece[..7]).unwrap();
        let data = recv_data(&store, piece.len() as u64 + 7, n1 + n2).unwrap();
        let mut want = piece.clone();
        want.extend_from_slice(&piece[..7]);
        assert_eq!(data.to_vec().unwrap(), want);
        // A header that promises more than is stored is an error, not a short read.
        let short = recv_data(&store, want.len() as u64 + 1, n1 + n2).unwrap();
        assert!(short.to_vec().is_err());
        let missing = recv_data(&store, want.len() as u64, n1 + n2 + 1).unwrap();
        assert!(missing.to_vec().is_err());
    }
}
