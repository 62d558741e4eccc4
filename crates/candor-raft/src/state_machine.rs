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
//! * Snapshots are plain bytes: [`StateMachineLogic::snapshot`] must describe exactly the
//!   state at the current marker; [`StateMachineLogic::restore`] replaces the whole state
//!   and persists the given marker.
//!
//! The logic runs on tokio's blocking pool (it may do synchronous I/O) behind a mutex, so
//! it needs `Send` but not `Sync`. The last built or installed snapshot is also kept in
//! the group's log store so it survives restarts and can be sent to lagging followers.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::log_store::{GroupLogStore, TAG_SNAP_DATA, TAG_SNAP_META, data_err, io_err};
use crate::types::{
    LogId, RaftSnapshot, Response, SnapshotMeta, StoredMembership, TypeConfig, decode, encode,
};
use candor_store::{
    Direction, Durability, KeyRange, ReadView, Space, WriteBatch, prefix_end, scan_pages,
};

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

    /// The whole state, as bytes, at the current marker.
    fn snapshot(&self) -> Result<Vec<u8>, Self::Error>;

    /// Replace the whole state with `data` and persist `marker` with it.
    fn restore(&mut self, data: &[u8], marker: &[u8]) -> Result<(), Self::Error>;
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
struct SnapshotHeader {
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, io::Error> + Send + 'static,
) -> Result<T, io::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("state machine task failed: {e}")))?
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
        blocking(move || Ok(f(&shared.lock().logic))).await
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
    type SnapshotData = Vec<u8>;
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
                blocking(move || apply_chunk(&shared, batch)).await?;
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

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let applied = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let marker = applied.encode()?;
        let shared = Arc::clone(&self.shared);
        let meta2 = meta.clone();
        let data = blocking(move || {
            let mut g = shared.lock();
            g.logic.restore(&snapshot, &marker).map_err(logic_err)?;
            g.applied = applied;
            drop(g);
            Ok(snapshot)
        })
        .await?;
        save_snapshot(
            &self.shared.store,
            &self.shared.snapshot_lock,
            &meta2,
            &data,
        )
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<RaftSnapshot>, io::Error> {
        let store = self.shared.store.clone();
        blocking(move || load_snapshot(&store)).await
    }
}

/// Builds a snapshot from the logic under the state-machine lock, so the bytes and the
/// marker they are labelled with always match.
pub struct SnapshotBuilder<L> {
    shared: Arc<Shared<L>>,
}

impl<L: StateMachineLogic> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<L> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<RaftSnapshot, io::Error> {
        let shared = Arc::clone(&self.shared);
        let (meta, data) = blocking(move || {
            let g = shared.lock();
            let data = g.logic.snapshot().map_err(logic_err)?;
            let meta = SnapshotMeta {
                last_log_id: g.applied.last_applied,
                last_membership: g.applied.membership.clone(),
            };
            Ok((meta, data))
        })
        .await?;
        save_snapshot(&self.shared.store, &self.shared.snapshot_lock, &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
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

fn data_key(store: &GroupLogStore, generation: u64, chunk: u32) -> Vec<u8> {
    let mut rest = generation.to_be_bytes().to_vec();
    rest.extend_from_slice(&chunk.to_be_bytes());
    store.key(TAG_SNAP_DATA, &rest)
}

fn generation_range(store: &GroupLogStore, generation: u64) -> KeyRange {
    let start = store.key(TAG_SNAP_DATA, &generation.to_be_bytes());
    let end = prefix_end(&start).unwrap_or_else(|| store.key(TAG_SNAP_DATA + 1, &[]));
    KeyRange::half_open(start, end)
}

/// Persist `data` as the group's current snapshot, unless a newer one is already stored.
///
/// Crash safety: the chunks go under a fresh generation first; the header that points at
/// them is switched afterwards, so a crash at any point leaves the old snapshot or the new
/// one, each complete.
async fn save_snapshot(
    store: &GroupLogStore,
    lock: &tokio::sync::Mutex<()>,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), io::Error> {
    let _serialized = lock.lock().await;
    let old = read_header(store.kv(), store)?;
    if let Some(old) = &old
        && old.meta.last_log_id > meta.last_log_id
    {
        return Ok(());
    }
    let generation = old.as_ref().map_or(0, |h| h.generation.wrapping_add(1));
    let chunks = data.chunks(SNAPSHOT_CHUNK);
    let n = u32::try_from(chunks.len()).map_err(|_| io::Error::other("snapshot too large"))?;

    let mut b = WriteBatch::new();
    b.delete_range(Space::RaftLog, generation_range(store, generation));
    for (i, c) in (0u32..).zip(chunks) {
        b.put(Space::RaftLog, data_key(store, generation, i), c.to_vec());
    }
    store
        .kv()
        .write_chunked(b, Durability::Buffered)
        .map_err(io_err)?;

    let header = SnapshotHeader {
        meta: meta.clone(),
        generation,
        len: data.len() as u64,
        chunks: n,
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
    store.sync().await
}

fn load_snapshot(store: &GroupLogStore) -> Result<Option<RaftSnapshot>, io::Error> {
    // One consistent view: a concurrent save may switch generations and delete chunks.
    let view = store.kv().snapshot().map_err(io_err)?;
    let Some(header) = read_header(&*view, store)? else {
        return Ok(None);
    };
    let len = usize::try_from(header.len).map_err(|_| data_err("snapshot", "too large"))?;
    let mut data = Vec::with_capacity(len.min(1 << 30));
    let pairs = scan_pages(
        &*view,
        Space::RaftLog,
        generation_range(store, header.generation),
        Direction::Forward,
        64,
    );
    let mut count = 0u32;
    for pair in pairs {
        let (k, v) = pair.map_err(io_err)?;
        if count >= header.chunks || k != data_key(store, header.generation, count) {
            return Err(data_err("snapshot", "unexpected chunk"));
        }
        data.extend_from_slice(&v);
        count += 1;
    }
    if count != header.chunks || data.len() != len {
        return Err(data_err("snapshot", "missing chunks"));
    }
    Ok(Some(RaftSnapshot {
        meta: header.meta,
        snapshot: data,
    }))
}
