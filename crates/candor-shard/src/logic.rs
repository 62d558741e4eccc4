//! The shard state machine: [`ShardLogic`], a deterministic [`StateMachineLogic`].
//!
//! # State (space `Meta`, prefix `candor-shard/ ‖ shard u32be`)
//!
//! | key suffix | value |
//! |---|---|
//! | `s` | [`ShardState`]: applied log index, sealed revision, idempotency counters |
//! | `m` | the Raft adapter's applied marker (embedded mode) |
//! | `m ‖ replica u64be` | the applied marker of one replica (shared-state mode) |
//! | `p ‖ log index u64be` | indices of the labels an entry staged (their union since the last seal is the pending set) |
//! | `k ‖ H(tenant, key)` | idempotency record: sequence, time, H(label, index, value), version, nonce |
//! | `q ‖ seq u64be` | `H(tenant, key) ‖ time u64be`: idempotency records in arrival order |
//! | `r ‖ log index u64be` | compact response of the entry (for re-application) |
//! | `o ‖ index` | the label's owner: `H(tenant)` (16 bytes) of the tenant that first published it |
//!
//! Leaves and openings are staged into the tree (`candor-tree`) in the same batch.
//!
//! # Apply, exactly once
//!
//! Each entry is applied with **one atomic store batch** holding its effects, the new
//! [`ShardState`] (whose `applied_index` is the entry's log index) and, for the last entry
//! of an adapter batch, the adapter's marker. An entry at or below `applied_index` is
//! skipped and answered from its stored response, so applying an entry twice (a restart
//! between the batch and the adapter's bookkeeping, or a shared store that another
//! replica already advanced) is the same as applying it once. Reads made while applying
//! see the state as of the previous entry because every earlier entry's batch is
//! already written; within one entry, an overlay carries the items already processed.
//!
//! A `Seal` hands the newest staged leaf of every pending label (kept in memory) to
//! [`ShardTree::seal_staged`], which writes the revision itself (crash-safe, marker
//! last); then one batch clears the pending set and records the revision. If a crash
//! falls between the two, re-applying the entry finds the tree one revision ahead of
//! [`ShardState::sealed_rev`] and only records it: only Seal entries of this shard's log
//! seal its tree, so that revision is exactly this entry's seal (whichever replica made
//! it).
//!
//! # Shared-state mode
//!
//! [`ShardLogic::open_shared`]: every replica of the shard's Raft group runs its own
//! `ShardLogic` (and its own [`Forest`]) over **one** store, e.g. one FoundationDB
//! cluster, and applies every committed entry. The mechanism above makes that the same
//! as applying each entry once:
//!
//! * **Marker per replica** (`m ‖ replica`): each replica has its own Raft log and
//!   membership; the marker says how far *its* adapter got, the state says how far the
//!   shard got.
//! * **Catch-up, one point read per apply batch**: if the stored [`ShardState`] is ahead
//!   of this replica's copy, the replica takes it over (the tree handle re-reads its
//!   latest revision by itself). When no seal happened in between, the pending set only
//!   grew: the replica reads just the pending records of the entries it missed and the
//!   labels they staged (a follower that finds the store ahead on every batch pays for
//!   the new labels only; `tests/shared_catch_up.rs` counts the reads); after a seal it
//!   reloads the pending set, which then holds only what was staged since. Entries at or below the stored applied index
//!   are then skipped and answered from their stored responses. A stored state *behind*
//!   the replica (entries it applied are gone, e.g. an older backup restored under a
//!   running process) stops the group with [`ShardError::Storage`].
//! * **Pruned responses**: responses are kept for the last
//!   [`ShardLogicConfig::response_retention`] entries (dropped in steps of 256). A replica
//!   lagging further behind answers [`ShardResponse::Forgotten`] for such an entry and
//!   skips it; it never fails and writes nothing but its marker. Followers' responses are
//!   discarded by Raft; a leader that gets `Forgotten` (other replicas applied the entry
//!   first) reports [`ShardError::Indeterminate`] to the publisher: the entry *was*
//!   applied, and a retry with the same idempotency key returns its result.
//! * **Seal**: a lagging replica that reloaded either skips the Seal (the state records
//!   it) or, if another replica sealed the tree and stopped before the bookkeeping batch,
//!   finds the tree one revision ahead and only records it: never a second revision.
//! * **Snapshots** carry only the applied index (a postcard varint). No data is
//!   transferred: `restore` reloads from the store and refuses a snapshot the store has
//!   not reached (given an embedded-mode record stream, it reads only the index from
//!   its first record).
//!
//! *Determinism.* Every key and value an entry writes (except the marker) is a function
//! of the stored state before the entry, the entry, the store's value limit and
//! [`ShardLogicConfig`]: in-memory copies (state, pending set) are only caches of stored
//! records, refreshed by the catch-up. All replicas must therefore use the same
//! `ShardLogicConfig` (the tree's `shard_bits` is enforced by the store).
//!
//! *Concurrency: every entry's batch is a compare-and-set.* In shared-state mode each
//! entry's batch carries a store precondition ([`WriteBatch::require`]): the `s` record
//! still holds the state this replica computed the entry from. A replica whose state
//! went stale while it applied (another replica wrote entry `N` or later first) gets
//! [`ShardError::StaleReplica`], writes nothing, catches up and re-applies, which then
//! answers the entry from its stored response or applies the next one. On FoundationDB
//! the precondition is a conflict-checked read inside the batch's transaction; on the
//! embedded store a check under the write lock. So overlapping applies cannot put back
//! an older [`ShardState`], resurrect deleted records or apply an entry twice.
//!
//! Seals write the tree revision (through `candor-tree`) before the bookkeeping batch.
//! A revision's content is a function of the entry that seals it, so two replicas
//! sealing it write the same bytes; a replica re-reads the state record right before
//! sealing and backs off if anyone moved past it, and `candor-tree` writes a seal as a
//! compare-and-set on the shard's marker, so a stalled replica can never move the
//! marker back. `tests/shared_state.rs` runs three replicas concurrently on one store
//! (memory and fjall) and requires the single-replica result byte for byte.
//!
//! # Label ownership
//!
//! A label belongs to the tenant that first published it (`o ‖ index`); another
//! tenant's write to it is [`ItemOutcome::Forbidden`] (PERMISSION_DENIED at the API)
//! and changes nothing. Labels published before ownership existed have no record:
//! the next tenant to publish them claims them.
//!
//! # Idempotency retention
//!
//! Records are kept per shard, evicted oldest first once there are more than
//! [`ShardLogicConfig::idempotency_max_records`] or once older than
//! [`ShardLogicConfig::idempotency_max_age_ms`] (measured with the proposer timestamps in the
//! entries, so eviction is deterministic). Eviction work per entry is bounded. A key
//! is scoped by tenant and shard: reusing a key for a label of another shard is not
//! detected as a conflict.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use candor_core::map::{Leaf, commit, shard_of};
use candor_core::{Digest, Index};
use candor_raft::{ApplyBatch, StateMachineLogic};
use candor_store::{Direction, Durability, KeyRange, Space, Store, WriteBatch, scan_pages};
use candor_tree::{Forest, ShardTree};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, info_span};

use crate::command::{EraseOutcome, Item, ItemOutcome, ShardCommand, ShardResponse};
use crate::error::ShardError;

const SPACE: Space = Space::Meta;
const TAG_STATE: u8 = b's';
const TAG_MARKER: u8 = b'm';
const TAG_PENDING: u8 = b'p';
const TAG_KEY: u8 = b'k';
const TAG_QUEUE: u8 = b'q';
const TAG_RESPONSE: u8 = b'r';
const TAG_OWNER: u8 = b'o';

mod snapshot;

/// Retention knobs of a shard state machine.
#[derive(Clone, Debug)]
pub struct ShardLogicConfig {
    /// Most idempotency records kept per shard. Default 65,536 (about 170 bytes each
    /// on disk: ~11 MiB per shard at most).
    pub idempotency_max_records: u64,
    /// Idempotency records older than this (by entry timestamps) are evicted.
    /// Default 1 h.
    pub idempotency_max_age_ms: u64,
    /// Stored entry responses kept (entries, by log index). Default 1,024.
    pub response_retention: u64,
    /// Snapshots name only the applied index, as in shared-state mode, instead of
    /// carrying the shard's data. For a group whose only member is this replica
    /// (`candor dev`): its snapshots exist only to compact the Raft log, are never
    /// sent anywhere, and a full copy of the shard per snapshot would be waste.
    /// Default false (members of a replicated group need the data to catch up).
    pub index_only_snapshots: bool,
}

impl Default for ShardLogicConfig {
    fn default() -> Self {
        Self {
            idempotency_max_records: 1 << 16,
            idempotency_max_age_ms: 3600 * 1000,
            response_retention: 1024,
            index_only_snapshots: false,
        }
    }
}

/// Persistent bookkeeping of one shard (key suffix `s`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Log index of the last entry whose effects are stored.
    pub applied_index: u64,
    /// Latest revision sealed by this state machine.
    pub sealed_rev: u64,
    /// Sequence number of the next idempotency record.
    pub idem_next: u64,
    /// Sequence number of the oldest idempotency record still stored.
    pub idem_oldest: u64,
}

/// Idempotency record (key suffix `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IdemRecord {
    seq: u64,
    timestamp_ms: u64,
    /// First 128 bits of `H(label, index, value)`: enough to tell a retry from a
    /// conflicting reuse of the key, and half the bytes.
    digest: [u8; 16],
    version: u64,
    nonce: [u8; 32],
}

/// Compact response kept for re-application (key suffix `r`); leaves are re-read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum StoredResponse {
    Published(Vec<StoredOutcome>),
    Sealed { revision: u64, changed: u64 },
    Rejected(String),
    Erased(EraseOutcome),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum StoredOutcome {
    Applied(u64),
    Duplicate(u64, [u8; 32]),
    Conflict,
    Invalid(String),
    Forbidden,
}

fn corrupt(what: impl std::fmt::Display) -> ShardError {
    ShardError::Storage(format!("corrupt shard record: {what}"))
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

fn dec<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, ShardError> {
    postcard::from_bytes(b).map_err(|e| corrupt(format!("{what}: {e}")))
}

/// `H(tenant, key)`: the idempotency record's key. Length-prefixed so no two pairs collide.
pub fn idempotency_key_hash(tenant: &str, key: &str) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("candor-shard 2025 idempotency key");
    h.update(&(tenant.len() as u64).to_be_bytes());
    h.update(tenant.as_bytes());
    h.update(&(key.len() as u64).to_be_bytes());
    h.update(key.as_bytes());
    *h.finalize().as_bytes()
}

/// `H(tenant)` truncated to 128 bits: a label's owner record.
fn owner_digest(tenant: &str) -> [u8; 16] {
    let h = blake3::derive_key("candor-shard 2026 label owner", tenant.as_bytes());
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[..16]);
    d
}

/// `H(label, index, value)` truncated to 128 bits: what a retry must match.
fn item_digest(item: &Item) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("candor-shard 2025 idempotent item");
    h.update(&(item.label.len() as u64).to_be_bytes());
    h.update(&item.label);
    h.update(&item.index);
    h.update(&(item.value.len() as u64).to_be_bytes());
    h.update(&item.value);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h.finalize().as_bytes()[..16]);
    d
}

/// The deterministic state machine of one shard group.
pub struct ShardLogic {
    shard: u32,
    shard_bits: u8,
    store: Arc<dyn Store>,
    tree: ShardTree,
    config: ShardLogicConfig,
    prefix: Vec<u8>,
    state: ShardState,
    /// The newest staged leaf of every label staged since the last seal (what the next
    /// seal puts in the tree; also saves a store seek per update of a pending label).
    pending: BTreeMap<Index, Leaf>,
    /// Log indices of the entries whose `p` records make up the pending set.
    pending_entries: Vec<u64>,
    marker: Option<Vec<u8>>,
    /// Key of this replica's Raft adapter marker (`m`, or `m ‖ replica` when shared).
    marker_key: Vec<u8>,
    /// `Some(replica id)` in shared-state mode (see the module docs).
    replica: Option<u64>,
    pending_count: Arc<AtomicUsize>,
    max_value: usize,
    /// A snapshot install started and has not finished (embedded mode): there is no
    /// state to apply to until it is installed again (see the `snapshot` submodule).
    installing: bool,
}

impl std::fmt::Debug for ShardLogic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLogic")
            .field("shard", &self.shard)
            .field("replica", &self.replica)
            .field("state", &self.state)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl ShardLogic {
    /// Open (or recover) shard `shard` of `forest`, whose state lives in `forest`'s store.
    ///
    /// The store belongs to this replica alone (embedded mode). For several replicas
    /// over one store, use [`ShardLogic::open_shared`].
    pub fn open(forest: &Forest, shard: u32, config: ShardLogicConfig) -> Result<Self, ShardError> {
        Self::open_inner(forest, shard, None, config)
    }

    /// Open (or recover) shard `shard` of `forest` in **shared-state mode**, as replica
    /// `replica` (its Raft node id) of the shard's group.
    ///
    /// Every replica of the group opens its own `ShardLogic` (and its own [`Forest`])
    /// over the *same* store and applies every committed entry; the result is that of
    /// applying each entry once. Differences from [`ShardLogic::open`]: the adapter
    /// marker is per replica, a replica behind the stored state reloads it before an
    /// apply batch, and snapshots carry only the applied index. All replicas must use
    /// the same `config` (retention is part of the deterministic result). Applies of
    /// different replicas may overlap in time: each entry's batch is a compare-and-set
    /// on the shard's state (see "Shared-state mode" in the module docs).
    pub fn open_shared(
        forest: &Forest,
        shard: u32,
        replica: u64,
        config: ShardLogicConfig,
    ) -> Result<Self, ShardError> {
        Self::open_inner(forest, shard, Some(replica), config)
    }

    fn open_inner(
        forest: &Forest,
        shard: u32,
        replica: Option<u64>,
        config: ShardLogicConfig,
    ) -> Result<Self, ShardError> {
        let store = Arc::clone(forest.store());
        let tree = forest.shard(shard)?;
        let mut prefix = b"candor-shard/".to_vec();
        prefix.extend_from_slice(&shard.to_be_bytes());
        let marker_key = candor_raft::exactly_once::replica_marker_key(
            &{
                let mut p = prefix.clone();
                p.push(TAG_MARKER);
                p
            },
            replica,
        );
        let mut this = Self {
            shard,
            shard_bits: forest.shard_bits(),
            max_value: store.limits().max_value_bytes,
            store,
            tree,
            config,
            prefix,
            state: ShardState::default(),
            pending: BTreeMap::new(),
            pending_entries: Vec::new(),
            marker: None,
            marker_key,
            replica,
            pending_count: Arc::new(AtomicUsize::new(0)),
            installing: false,
        };
        if !this.interrupted_install()? {
            this.reload()?;
        }
        Ok(this)
    }

    /// The shard's [`ShardState`] as stored (one point read).
    fn stored_state(&self) -> Result<ShardState, ShardError> {
        Ok(match self.store.get(SPACE, &self.key(TAG_STATE, &[]))? {
            Some(v) => dec("shard state", &v)?,
            None => ShardState::default(),
        })
    }

    /// Shared-state mode, before an apply batch: if another replica advanced the
    /// shard's stored state past ours, take it over (state, pending set; the tree
    /// handle re-reads its revision on its own).
    fn catch_up(&mut self) -> Result<(), ShardError> {
        let stored = self.stored_state()?;
        match stored.applied_index.cmp(&self.state.applied_index) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => {
                debug!(
                    shard = self.shard,
                    replica = self.replica,
                    from = self.state.applied_index,
                    to = stored.applied_index,
                    "catching up with the shared store"
                );
                if stored.sealed_rev == self.state.sealed_rev {
                    self.catch_up_incremental(stored)
                } else {
                    // A seal cleared the pending set: what is pending now was staged
                    // after it, so the full reload reads only that.
                    self.reload()
                }
            }
            // Entries this replica applied are gone from the store (e.g. a restore of an
            // older backup under a running replica): continuing would skip them forever.
            std::cmp::Ordering::Less => Err(ShardError::Storage(format!(
                "shard {}: the store's applied index {} is behind this replica's {}; \
                 restart the replica after restoring a store",
                self.shard, stored.applied_index, self.state.applied_index
            ))),
        }
    }

    /// Catch-up when no seal happened since this replica's state: the pending set only
    /// grew, by the entries after ours. Read just their pending records and the labels
    /// they staged, so a follower that finds the store ahead on every batch pays for the
    /// new labels, not the whole pending set again. (A concurrent writer can make what is
    /// read here stale; every later write is a compare-and-set on the state, which then
    /// fails and catches up again.)
    fn catch_up_incremental(&mut self, stored: ShardState) -> Result<(), ShardError> {
        let from = self.state.applied_index.saturating_add(1);
        let to = stored.applied_index.saturating_add(1);
        let (entries, staged) = self.read_pending(KeyRange::half_open(
            self.key(TAG_PENDING, &from.to_be_bytes()),
            self.key(TAG_PENDING, &to.to_be_bytes()),
        ))?;
        self.pending.extend(staged);
        self.pending_entries.extend(entries);
        self.pending_count
            .store(self.pending.len(), Ordering::Relaxed);
        self.state = stored;
        Ok(())
    }

    /// The pending records in `range` (entries' log indexes, in order) and the latest
    /// staged leaf of every label they list (each label read once).
    fn read_pending(
        &self,
        range: KeyRange,
    ) -> Result<(Vec<u64>, BTreeMap<Index, Leaf>), ShardError> {
        let p_len = self.key(TAG_PENDING, &[]).len();
        let mut entries = Vec::new();
        let mut staged = BTreeMap::new();
        for kv in scan_pages(&*self.store, SPACE, range, Direction::Forward, 256) {
            let (k, v) = kv?;
            let li: [u8; 8] = k[p_len..]
                .try_into()
                .map_err(|_| corrupt("pending key of unexpected length"))?;
            if v.len() % 32 != 0 {
                return Err(corrupt("pending record of unexpected length"));
            }
            entries.push(u64::from_be_bytes(li));
            for c in v.chunks_exact(32) {
                let mut idx = [0u8; 32];
                idx.copy_from_slice(c);
                if let std::collections::btree_map::Entry::Vacant(v) = staged.entry(idx) {
                    let leaf = self
                        .tree
                        .latest_leaf(&idx)?
                        .ok_or_else(|| corrupt("pending label without a staged leaf"))?;
                    v.insert(leaf);
                }
            }
        }
        Ok((entries, staged))
    }

    fn reload(&mut self) -> Result<(), ShardError> {
        self.state = self.stored_state()?;
        self.marker = self.store.get(SPACE, &self.marker_key)?;
        let (entries, pending) =
            self.read_pending(KeyRange::prefix(&self.key(TAG_PENDING, &[])))?;
        self.pending_entries = entries;
        self.pending = pending;
        self.pending_count
            .store(self.pending.len(), Ordering::Relaxed);
        let latest = self.tree.latest_revision();
        if latest < self.state.sealed_rev {
            return Err(corrupt(format!(
                "shard {} recorded revision {} but the tree has only {latest}",
                self.shard, self.state.sealed_rev
            )));
        }
        Ok(())
    }

    fn key(&self, tag: u8, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 1 + rest.len());
        k.extend_from_slice(&self.prefix);
        k.push(tag);
        k.extend_from_slice(rest);
        k
    }

    /// The shard number.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Persistent bookkeeping as of the last applied entry.
    pub fn state(&self) -> ShardState {
        self.state
    }

    /// Labels staged since the last seal, with their newest staged leaf.
    pub fn pending(&self) -> &BTreeMap<Index, Leaf> {
        &self.pending
    }

    /// A live count of pending labels, readable without the state-machine lock (the
    /// sealing ticker polls it).
    pub fn pending_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.pending_count)
    }

    /// The shard tree this logic writes.
    pub fn tree(&self) -> &ShardTree {
        &self.tree
    }

    /// This replica's id in shared-state mode ([`ShardLogic::open_shared`]), `None` when
    /// the store is this replica's own.
    pub fn replica(&self) -> Option<u64> {
        self.replica
    }

    fn read_idem(&self, kh: &Digest) -> Result<Option<IdemRecord>, ShardError> {
        match self.store.get(SPACE, &self.key(TAG_KEY, kh))? {
            Some(v) => Ok(Some(dec("idempotency record", &v)?)),
            None => Ok(None),
        }
    }

    fn read_owner(&self, index: &Index) -> Result<Option<[u8; 16]>, ShardError> {
        match self.store.get(SPACE, &self.key(TAG_OWNER, index))? {
            Some(v) => Ok(Some(
                v.as_slice()
                    .try_into()
                    .map_err(|_| corrupt("owner record length"))?,
            )),
            None => Ok(None),
        }
    }

    fn read_leaf(&self, index: &Index, version: u64) -> Result<Leaf, ShardError> {
        self.tree
            .leaf(index, version)?
            .ok_or_else(|| corrupt(format!("recorded leaf version {version} is missing")))
    }

    /// Apply one application entry at `log_index`; `marker` goes into its batch.
    fn apply_entry(
        &mut self,
        log_index: u64,
        data: &[u8],
        marker: Option<&[u8]>,
    ) -> Result<ShardResponse, ShardError> {
        if log_index <= self.state.applied_index {
            let resp = self.replay_response(log_index, data)?;
            if let Some(m) = marker {
                let mut b = WriteBatch::new();
                b.put(SPACE, self.marker_key.clone(), m.to_vec());
                self.store.write(&b, Durability::Buffered)?;
            }
            return Ok(resp);
        }
        match ShardCommand::decode(data) {
            Ok(ShardCommand::Publish {
                timestamp_ms,
                items,
            }) => self.apply_publish(log_index, timestamp_ms, &items, marker),
            Ok(ShardCommand::Seal) => self.apply_seal(log_index, marker),
            Ok(ShardCommand::Erase {
                tenant,
                index,
                version,
            }) => self.apply_erase(log_index, &tenant, &index, version, marker),
            Err(e) => {
                let msg = e.to_string();
                let mut b = WriteBatch::new();
                let mut st = self.state;
                st.applied_index = log_index;
                self.finish(
                    &mut b,
                    &st,
                    log_index,
                    &StoredResponse::Rejected(msg.clone()),
                    marker,
                );
                self.store.write(&b, Durability::Buffered)?;
                self.state = st;
                Ok(ShardResponse::Rejected(msg))
            }
        }
    }

    /// Adds the state, the stored response, response retention and the marker to `b`.
    fn finish(
        &self,
        b: &mut WriteBatch,
        st: &ShardState,
        log_index: u64,
        resp: &StoredResponse,
        marker: Option<&[u8]>,
    ) {
        let bytes = enc(resp);
        // A response too large to store is answered `Forgotten` on re-application.
        if bytes.len() + 64 <= self.max_value {
            b.put(
                SPACE,
                self.key(TAG_RESPONSE, &log_index.to_be_bytes()),
                bytes,
            );
        }
        // Drop old responses in one range every 256 entries (bounded, deterministic).
        let keep = self.config.response_retention.max(1);
        if log_index.is_multiple_of(256) && log_index > keep {
            b.delete_range(
                SPACE,
                KeyRange::half_open(
                    self.key(TAG_RESPONSE, &[]),
                    self.key(TAG_RESPONSE, &(log_index - keep).to_be_bytes()),
                ),
            );
        }
        b.put(SPACE, self.key(TAG_STATE, &[]), enc(st));
        if let Some(m) = marker {
            b.put(SPACE, self.marker_key.clone(), m.to_vec());
        }
        if self.replica.is_some() {
            // Shared-state mode: write entry N only on top of the state this replica
            // computed it from (a compare-and-set on the state record; see module docs).
            let prior = (self.state != ShardState::default()).then(|| enc(&self.state));
            b.require(SPACE, self.key(TAG_STATE, &[]), prior);
        }
    }

    fn replay_response(&self, log_index: u64, data: &[u8]) -> Result<ShardResponse, ShardError> {
        let Some(bytes) = self
            .store
            .get(SPACE, &self.key(TAG_RESPONSE, &log_index.to_be_bytes()))?
        else {
            return Ok(ShardResponse::Forgotten);
        };
        Ok(match dec::<StoredResponse>("stored response", &bytes)? {
            StoredResponse::Sealed { revision, changed } => {
                ShardResponse::Sealed { revision, changed }
            }
            StoredResponse::Rejected(m) => ShardResponse::Rejected(m),
            StoredResponse::Erased(o) => ShardResponse::Erased(o),
            StoredResponse::Published(outs) => {
                let Ok(ShardCommand::Publish { items, .. }) = ShardCommand::decode(data) else {
                    return Err(corrupt("stored publish response for another entry"));
                };
                if items.len() != outs.len() {
                    return Err(corrupt("stored response length"));
                }
                let mut v = Vec::with_capacity(outs.len());
                for (item, o) in items.iter().zip(outs) {
                    v.push(match o {
                        StoredOutcome::Applied(version) => {
                            let l = self.read_leaf(&item.index, version)?;
                            ItemOutcome::Applied {
                                version,
                                commitment: l.commitment,
                                prev: l.prev,
                            }
                        }
                        StoredOutcome::Duplicate(version, nonce) => {
                            let l = self.read_leaf(&item.index, version)?;
                            ItemOutcome::Duplicate {
                                version,
                                commitment: l.commitment,
                                prev: l.prev,
                                nonce,
                            }
                        }
                        StoredOutcome::Conflict => ItemOutcome::Conflict,
                        StoredOutcome::Invalid(m) => ItemOutcome::Invalid(m),
                        StoredOutcome::Forbidden => ItemOutcome::Forbidden,
                    });
                }
                ShardResponse::Published(v)
            }
        })
    }

    fn check_item(&self, item: &Item) -> Result<(), String> {
        if shard_of(&item.index, self.shard_bits) != self.shard {
            return Err(format!("index does not belong to shard {}", self.shard));
        }
        if item.label.is_empty() {
            return Err("empty label".into());
        }
        // Labels and values are length-prefixed with u32 in the commitment; the opening
        // (nonce + value) must fit one store value.
        if item.label.len() > u32::MAX as usize || item.value.len() + 32 > self.max_value {
            return Err("label or value too large".into());
        }
        Ok(())
    }

    fn apply_publish(
        &mut self,
        log_index: u64,
        timestamp_ms: u64,
        items: &[Item],
        marker: Option<&[u8]>,
    ) -> Result<ShardResponse, ShardError> {
        let _span = info_span!(
            "shard_apply_publish",
            shard = self.shard,
            log_index,
            items = items.len()
        )
        .entered();
        let mut b = WriteBatch::with_capacity(items.len() * 4 + 4);
        let mut st = self.state;
        // Overlays: what earlier items of this entry staged (not yet in the store).
        let mut latest: HashMap<Index, Leaf> = HashMap::new();
        let mut staged: HashMap<(Index, u64), Leaf> = HashMap::new();
        let mut keys: HashMap<Digest, IdemRecord> = HashMap::new();
        let mut new_pending: Vec<u8> = Vec::new();
        let mut seen: HashSet<Index> = HashSet::new();
        let mut owners: HashMap<Index, [u8; 16]> = HashMap::new();
        let mut outs = Vec::with_capacity(items.len());
        let mut stored = Vec::with_capacity(items.len());
        for item in items {
            if let Err(m) = self.check_item(item) {
                outs.push(ItemOutcome::Invalid(m.clone()));
                stored.push(StoredOutcome::Invalid(m));
                continue;
            }
            let kh = item
                .idempotency_key
                .as_ref()
                .map(|k| idempotency_key_hash(&item.tenant, k));
            let digest = item_digest(item);
            if let Some(kh) = &kh {
                let rec = match keys.get(kh) {
                    Some(r) => Some(*r),
                    None => self.read_idem(kh)?,
                };
                if let Some(rec) = rec {
                    if rec.digest != digest {
                        outs.push(ItemOutcome::Conflict);
                        stored.push(StoredOutcome::Conflict);
                        continue;
                    }
                    let leaf = match staged.get(&(item.index, rec.version)) {
                        Some(l) => *l,
                        None => self.read_leaf(&item.index, rec.version)?,
                    };
                    outs.push(ItemOutcome::Duplicate {
                        version: rec.version,
                        commitment: leaf.commitment,
                        prev: leaf.prev,
                        nonce: rec.nonce,
                    });
                    stored.push(StoredOutcome::Duplicate(rec.version, rec.nonce));
                    continue;
                }
            }
            let owner = owner_digest(&item.tenant);
            let recorded = match owners.get(&item.index) {
                Some(o) => Some(*o),
                None => self.read_owner(&item.index)?,
            };
            match recorded {
                Some(o) if o != owner => {
                    outs.push(ItemOutcome::Forbidden);
                    stored.push(StoredOutcome::Forbidden);
                    continue;
                }
                Some(_) => {}
                None => {
                    b.put(SPACE, self.key(TAG_OWNER, &item.index), owner.to_vec());
                    owners.insert(item.index, owner);
                }
            }
            let prev = match latest
                .get(&item.index)
                .or_else(|| self.pending.get(&item.index))
            {
                Some(l) => Some(*l),
                None => self.tree.latest_leaf(&item.index)?,
            };
            let version = prev.map_or(1, |p| p.version + 1);
            let commitment = commit(&item.nonce, &item.label, version, &item.value);
            let leaf = match &prev {
                Some(p) => p.next(commitment),
                None => Leaf::first(item.index, commitment),
            };
            self.tree
                .stage(&mut b, &leaf, Some((&item.nonce, item.value.as_slice())))?;
            latest.insert(item.index, leaf);
            staged.insert((item.index, version), leaf);
            // Every label the entry staged, pending before or not: a replica catching up
            // incrementally (shared-state mode) re-reads exactly these leaves.
            if seen.insert(item.index) {
                new_pending.extend_from_slice(&item.index);
            }
            if let Some(kh) = kh {
                let rec = IdemRecord {
                    seq: st.idem_next,
                    timestamp_ms,
                    digest,
                    version,
                    nonce: item.nonce,
                };
                st.idem_next += 1;
                b.put(SPACE, self.key(TAG_KEY, &kh), enc(&rec));
                let mut q = kh.to_vec();
                q.extend_from_slice(&timestamp_ms.to_be_bytes());
                b.put(SPACE, self.key(TAG_QUEUE, &rec.seq.to_be_bytes()), q);
                keys.insert(kh, rec);
            }
            outs.push(ItemOutcome::Applied {
                version,
                commitment,
                prev: leaf.prev,
            });
            stored.push(StoredOutcome::Applied(version));
        }
        self.evict_idempotency(
            &mut b,
            &mut st,
            timestamp_ms,
            items.len() as u64 * 2 + 16,
            &keys,
        )?;
        st.applied_index = log_index;
        let added = !new_pending.is_empty();
        if added {
            // One record per entry (not per label): the pending set costs two store
            // operations per entry, its put and its delete at the next seal.
            b.put(
                SPACE,
                self.key(TAG_PENDING, &log_index.to_be_bytes()),
                new_pending,
            );
        }
        self.finish(
            &mut b,
            &st,
            log_index,
            &StoredResponse::Published(stored),
            marker,
        );
        self.store.write(&b, Durability::Buffered)?;
        self.state = st;
        if added {
            self.pending_entries.push(log_index);
        }
        drop(seen);
        self.pending.extend(latest);
        self.pending_count
            .store(self.pending.len(), Ordering::Relaxed);
        Ok(ShardResponse::Published(outs))
    }

    /// Evicts at most `budget` of the oldest idempotency records that are over the count
    /// or age limit. `fresh` holds records this entry wrote (never evicted by it).
    fn evict_idempotency(
        &self,
        b: &mut WriteBatch,
        st: &mut ShardState,
        now_ms: u64,
        budget: u64,
        fresh: &HashMap<Digest, IdemRecord>,
    ) -> Result<(), ShardError> {
        let cutoff = now_ms.saturating_sub(self.config.idempotency_max_age_ms);
        let mut done = 0;
        while st.idem_oldest < st.idem_next && done < budget {
            let over_count = st.idem_next - st.idem_oldest > self.config.idempotency_max_records;
            let qk = self.key(TAG_QUEUE, &st.idem_oldest.to_be_bytes());
            let Some(q) = self.store.get(SPACE, &qk)? else {
                // Written by this very entry (still in the batch): nothing older remains.
                break;
            };
            if q.len() != 40 {
                return Err(corrupt("idempotency queue record"));
            }
            let kh: Digest = q[..32].try_into().map_err(|_| corrupt("queue"))?;
            let ts = u64::from_be_bytes(q[32..40].try_into().map_err(|_| corrupt("queue"))?);
            if !over_count && ts >= cutoff {
                break;
            }
            b.delete(SPACE, qk);
            if !fresh.contains_key(&kh) {
                b.delete(SPACE, self.key(TAG_KEY, &kh));
            }
            st.idem_oldest += 1;
            done += 1;
        }
        Ok(())
    }

    /// Erases one version's opening (see [`ShardCommand::Erase`]): deterministic,
    /// idempotent (erasing twice leaves the same record), and in one batch with the
    /// bookkeeping.
    fn apply_erase(
        &mut self,
        log_index: u64,
        tenant: &str,
        index: &Index,
        version: u64,
        marker: Option<&[u8]>,
    ) -> Result<ShardResponse, ShardError> {
        let _span =
            info_span!("shard_apply_erase", shard = self.shard, log_index, version).entered();
        let mut b = WriteBatch::new();
        let outcome = if shard_of(index, self.shard_bits) != self.shard {
            EraseOutcome::Invalid(format!("index does not belong to shard {}", self.shard))
        } else if version == 0 {
            EraseOutcome::Invalid("versions start at 1".into())
        } else {
            match self.read_owner(index)? {
                Some(o) if o == owner_digest(tenant) => {
                    if self.tree.forget(&mut b, index, version)? {
                        EraseOutcome::Erased
                    } else {
                        EraseOutcome::NotFound
                    }
                }
                Some(_) => EraseOutcome::Forbidden,
                // No owner record: the label does not exist, or it predates
                // ownership records and nobody can prove to own it.
                None if self.tree.forget(&mut WriteBatch::new(), index, version)? => {
                    EraseOutcome::Forbidden
                }
                None => EraseOutcome::NotFound,
            }
        };
        let mut st = self.state;
        st.applied_index = log_index;
        self.finish(
            &mut b,
            &st,
            log_index,
            &StoredResponse::Erased(outcome.clone()),
            marker,
        );
        self.store.write(&b, Durability::Buffered)?;
        self.state = st;
        if outcome == EraseOutcome::Erased {
            info!(shard = self.shard, version, "a version's value was erased");
        }
        Ok(ShardResponse::Erased(outcome))
    }

    fn apply_seal(
        &mut self,
        log_index: u64,
        marker: Option<&[u8]>,
    ) -> Result<ShardResponse, ShardError> {
        let _span = info_span!(
            "shard_apply_seal",
            shard = self.shard,
            log_index,
            pending = self.pending.len()
        )
        .entered();
        let mut st = self.state;
        let mut b = WriteBatch::with_capacity(self.pending.len() + 4);
        let mut changed = 0u64;
        if !self.pending.is_empty() {
            if self.replica.is_some() && self.stored_state()? != self.state {
                // Shared-state mode: someone applied past our state since this batch's
                // catch-up; sealing now could move the tree's revision marker back.
                return Err(ShardError::StaleReplica(
                    "the shard state moved before the seal".into(),
                ));
            }
            let latest = self.tree.latest_revision();
            let revision = if latest == st.sealed_rev {
                // The newest staged leaves are known: no store seek per label.
                let leaves: Vec<Leaf> = self.pending.values().copied().collect();
                let sealed = self.tree.seal_staged(&leaves)?;
                sealed.revision
            } else if latest == st.sealed_rev + 1 {
                // Sealed before a crash; only the bookkeeping below was lost.
                latest
            } else if self.replica.is_some() && self.stored_state()? != self.state {
                // Shared-state mode: other replicas sealed (and moved on) between the
                // check above and the tree read.
                return Err(ShardError::StaleReplica(
                    "the shard was sealed further while this replica was sealing".into(),
                ));
            } else {
                return Err(corrupt(format!(
                    "shard {}: tree at revision {latest}, state records {}",
                    self.shard, st.sealed_rev
                )));
            };
            changed = self.pending.len() as u64;
            for li in &self.pending_entries {
                b.delete(SPACE, self.key(TAG_PENDING, &li.to_be_bytes()));
            }
            st.sealed_rev = revision;
            debug!(shard = self.shard, revision, changed, "sealed");
        }
        st.applied_index = log_index;
        let resp = StoredResponse::Sealed {
            revision: st.sealed_rev,
            changed,
        };
        self.finish(&mut b, &st, log_index, &resp, marker);
        self.store.write(&b, Durability::Buffered)?;
        self.state = st;
        self.pending.clear();
        self.pending_entries.clear();
        self.pending_count.store(0, Ordering::Relaxed);
        Ok(ShardResponse::Sealed {
            revision: st.sealed_rev,
            changed,
        })
    }
}

/// Exactly-once apply (`candor_raft::exactly_once`): the shard's entries, their stored
/// responses and the replica's marker.
impl candor_raft::exactly_once::ExactlyOnce for ShardLogic {
    type Error = ShardError;

    fn refuse_apply(&self) -> Option<ShardError> {
        self.installing.then(|| {
            ShardError::Storage(format!(
                "shard {}: a snapshot install is unfinished; the snapshot must be installed first",
                self.shard
            ))
        })
    }

    fn shared(&self) -> bool {
        self.replica.is_some()
    }

    fn catch_up(&mut self) -> Result<(), ShardError> {
        ShardLogic::catch_up(self)
    }

    fn is_stale(e: &ShardError) -> bool {
        matches!(e, ShardError::StaleReplica(_))
    }

    fn apply_entry(
        &mut self,
        log_index: u64,
        data: &[u8],
        marker: Option<&[u8]>,
    ) -> Result<Vec<u8>, ShardError> {
        ShardLogic::apply_entry(self, log_index, data, marker).map(|r| r.encode())
    }

    fn write_marker(&mut self, marker: &[u8]) -> Result<(), ShardError> {
        let mut b = WriteBatch::new();
        b.put(SPACE, self.marker_key.clone(), marker.to_vec());
        self.store.write(&b, Durability::Buffered)?;
        self.set_marker(marker);
        Ok(())
    }

    fn set_marker(&mut self, marker: &[u8]) {
        self.marker = Some(marker.to_vec());
    }
}

impl StateMachineLogic for ShardLogic {
    type Error = ShardError;

    fn apply(&mut self, batch: ApplyBatch<'_>) -> Result<Vec<Vec<u8>>, ShardError> {
        candor_raft::exactly_once::apply_exactly_once(self, batch)
    }

    fn applied_marker(&self) -> Result<Option<Vec<u8>>, ShardError> {
        Ok(self.marker.clone())
    }

    /// Embedded mode: the shard's whole state (tree records, tree marker, bookkeeping)
    /// as a record stream over a consistent store view (the `snapshot` submodule has the format).
    /// Shared-state mode (or [`ShardLogicConfig::index_only_snapshots`]): only the
    /// applied index (a postcard varint); the data is already in the store.
    fn snapshot(&self) -> Result<Box<dyn std::io::Read + Send>, ShardError> {
        if self.replica.is_some() || self.config.index_only_snapshots {
            return Ok(Box::new(std::io::Cursor::new(enc(&self
                .state
                .applied_index))));
        }
        self.snapshot_stream()
    }

    /// Embedded mode with a record stream: replaces the shard's state with the
    /// snapshot's, crash-safely (the `snapshot` submodule has the protocol). Shared-state mode, or an
    /// index-only snapshot (older embedded snapshots were the [`ShardState`], which
    /// starts with the index): the store must already hold that state; only the marker
    /// is written.
    fn restore(&mut self, data: &mut dyn std::io::Read, marker: &[u8]) -> Result<(), ShardError> {
        self.restore_from(data, marker)
    }
}
