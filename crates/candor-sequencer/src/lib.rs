//! # candor-sequencer: epochs, the global root and signed heads
//!
//! The sequencer is one openraft group ([`SEQUENCER_GROUP`]). Every `epoch_interval` its
//! leader (the epoch ticker of `candor-node`, calling [`propose_epoch`]) reads each shard's latest sealed revision and root and
//! proposes a [`SequencerCommand::Epoch`] listing the shards that moved. Applying it
//! ([`SequencerLogic`], deterministic):
//!
//! 1. `epoch = last + 1` (the number comes from the log, so there is exactly one head per
//!    epoch number, across failovers);
//! 2. `timestamp = max(entry timestamp, previous timestamp)`: never goes back;
//! 3. each listed shard whose revision is newer than the recorded one takes the new
//!    revision and root (stale or unknown shards are ignored); the global root is
//!    [`combine_shard_roots`] of all of them;
//! 4. the epoch entry is appended to the epoch log and the head (namespace, epoch,
//!    timestamp, map root, log size and root, config digest) is **signed inside apply**:
//!    Ed25519 is deterministic, so every replica computes the same bytes;
//! 5. the head and the revision vector are persisted atomically
//!    ([`EpochLogStore::append`], a synced write), then the sequencer's own bookkeeping
//!    (applied index, roots, Raft marker); only then is the head published on the watch
//!    channel.
//!
//! An epoch is signed even when nothing changed (heads keep flowing, clients see
//! liveness).
//!
//! ## Key rotation
//!
//! A [`SequencerCommand::Rotate`] entry (proposed by [`propose_rotation`]) switches
//! the head and SMT keys to the next key version (docs/protocol.md §8.1). Applying
//! it builds the new configuration from the replica's own keys of that version
//! ([`SequencerLogic::with_key_versions`]), signs the rotation statement with the
//! old and the new head key (deterministic, like heads), records the configuration
//! in the epoch log ([`EpochLogStore::put_config`]) with the bookkeeping in one batch,
//! and signs every later epoch with the new key. A replica that lacks the keys of
//! the version stops applying (an error, logged) instead of signing with old keys.
//!
//! ## Cosignatures
//!
//! A [`SequencerCommand::Cosign`] entry (proposed by [`propose_cosignature`]) stores
//! an auditor's cosignature of a signed head in the epoch log
//! ([`EpochLogStore::put_cosignature`]) on every replica, so every member serves it
//! after any member is lost, and snapshots carry it with the rest of the epoch log.
//! Apply checks, deterministically, the namespace, that the epoch is signed and the
//! signature over its head; the first cosignature of an auditor for an epoch stays.
//! Which auditor keys are accepted is the API's decision, before proposing.
//!
//! ## Exactly once
//!
//! Entries at or below the recorded applied index are skipped. If a crash falls between
//! the epoch-log append and the bookkeeping write, re-applying the entry recomputes the
//! identical head (same inputs, deterministic signature) and the append is a no-op; a
//! *different* head for a stored epoch is refused by the epoch log and stops the group.
//!
//! ## Shared-state mode
//!
//! With FoundationDB every replica of the group reads and writes one shared store
//! ([`SequencerLogic::open_shared`]). Each replica still applies every committed entry
//! (Raft gives them the same log); the result must be that of applying it once:
//!
//! * before each entry the replica reads the stored bookkeeping; if another replica
//!   advanced it, it takes the stored state (and the epoch log's end) over;
//! * an entry at or below the stored applied index answers `AlreadyApplied`
//!   ([`propose_epoch`] then reads the epoch from the state);
//! * the epoch-log append is a compare-and-set on the log's end and the bookkeeping
//!   write a compare-and-set on the state record (`WriteBatch::require`): a replica
//!   that loses a race wrote nothing, catches up and retries; since the head is a
//!   deterministic function of the entry and the previous state, a replica that
//!   appended the head first and one that finds it there agree byte for byte;
//! * the Raft marker is per replica (`m ‖ replica u64be`), and snapshots carry only
//!   the applied index (the state is already where every replica reads it).
//!
//! ## State (space `Meta`, prefix `candor-seq/`)
//!
//! `s` → [`SequencerState`]; `m` → the Raft marker (`m ‖ replica` in shared mode); `r ‖ shard u32be` → the shard's
//! recorded revision and root. `candor-seq-install` (outside the prefix) marks an
//! unfinished snapshot install. The epoch log is space `EpochLog`, owned by
//! [`EpochLogStore`] (its docs give the key layout).
//!
//! ## Snapshots
//!
//! Every member has its own store, so a snapshot carries the sequencer's whole state: a
//! [`candor_raft::store_snapshot`] record stream read from **one consistent store view**
//! (taken under the state-machine lock, so it is exactly the state at the adapter's
//! marker). Sections, in order:
//!
//! 1. `Meta` `candor-seq/s` (the state), `EpochLog` `L` (the log's end) and `C` (its
//!    shard count): first, so an installer learns where the snapshot stands before it
//!    touches anything;
//! 2. `Meta` `candor-seq/` except `s` and the Raft marker `m` (the marker is per member
//!    and never shipped): the shard roots;
//! 3. the rest of space `EpochLog`: heads, log nodes, revision vectors.
//!
//! **Install** (crash-safe, the shape of the shard's):
//!
//! 0. Read the leading records and refuse, with nothing touched, a stream that is not
//!    the sequencer's, whose log end disagrees with its state (the log is at the
//!    recorded epoch or one beyond: a crash between an apply's two writes), whose shard
//!    count is not this configuration's, or whose log ends **before this member's**
//!    (an epoch log never goes back).
//! 1. One synced batch: put the install record and delete every `candor-seq/` record
//!    (state, marker, roots). From now on a restart opens the logic with **no** marker
//!    and refusing to apply (and to snapshot) until a full snapshot is installed;
//!    openraft finds its stored copy of the snapshot ahead of the state machine and
//!    installs it again.
//! 2. Stream the records in bounded batches, each checked to lie in the sections of 2–3.
//!    Epoch-log records are *overwritten*, never deleted first: for epochs this member
//!    already has they are the same bytes (a head that differs is refused as a fork),
//!    so readers of those epochs through the shared [`EpochLogStore`] see no change.
//!    `s`, `L` and `C` are held back.
//! 3. After the stream's digest checked out, check the new log before adopting it: the
//!    latest head verifies under this [`PublicConfig`], names the log's size, and its
//!    log root is the root of the installed nodes; its revision vector is present.
//! 4. One synced batch writes `L` and `C` and deletes epoch-log records beyond the new
//!    end (left by an earlier interrupted install); then
//!    [`EpochLogStore::reload`] moves the shared handle forward (it re-checks the log
//!    and never moves back), so the API serves the new epochs from here on.
//! 5. The installed roots are checked against the log's revision vector of the
//!    recorded epoch; one synced batch writes the state and this member's marker and
//!    deletes the install record. The in-memory state is reloaded and the recorded
//!    epoch's head is published on the heads watch (which only moves forward).
//!
//! A crash anywhere before 5 leaves the install record, so the member refuses to apply
//! until the install is redone; a crash after 4 leaves a longer, whole epoch log (its
//! heads can be served) under the same refusal.
//!
//! The older **index-only** form (the postcard [`SequencerState`]) is still accepted:
//! only storage that already holds that state can install it (a restart, shared
//! storage). [`SequencerLogic::with_index_only_snapshots`] makes a logic produce it,
//! for a single-member group whose snapshots only compact its Raft log.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;

use candor_core::Digest;
use candor_core::log::EpochEntry;
use candor_core::map::{Subtree, combine_shard_roots};
use candor_core::rotation::{ConfigChain, ConfigRotation, ConfigVersion};
use candor_core::signed::{
    Cosignature, EpochHead, PublicConfig, PublicKey, SignedHead, SigningKeyPair,
};
use candor_raft::{ApplyBatch, RaftGroup, StateMachineLogic};
use candor_sim::watch;
use candor_store::{Direction, Durability, KeyRange, Space, Store, WriteBatch, scan_pages};
use candor_tree::{EpochLogStore, Forest};
use serde::{Deserialize, Serialize};
use tracing::{debug, info_span, warn};

mod snapshot;

/// Raft group id of the sequencer (shard groups use ids below 2^16).
pub const SEQUENCER_GROUP: u64 = 1 << 32;

const SPACE: Space = Space::Meta;
const PREFIX: &[u8] = b"candor-seq/";
const TAG_STATE: u8 = b's';
const TAG_MARKER: u8 = b'm';
const TAG_ROOT: u8 = b'r';

/// Everything that can go wrong in the sequencer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    /// Store, tree or epoch-log failure; inside apply it stops the group.
    #[error("storage: {0}")]
    Storage(String),
    /// Invalid configuration (keys that do not match the public config, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// A Raft failure (not the leader, stopped, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// Shared-state mode: another replica changed the shared state first; nothing was
    /// written (retried internally after catching up).
    #[error("stale replica: {0}")]
    StaleReplica(String),
    /// A snapshot was refused (malformed, foreign, behind this member's epoch log, or
    /// forking it), or an interrupted install must be completed before applying.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A proposed entry was refused by the state machine (a cosignature that does not
    /// check out, ...): nothing changed but the applied index.
    #[error("refused: {0}")]
    Rejected(String),
}

impl From<candor_store::StoreError> for SequencerError {
    fn from(e: candor_store::StoreError) -> Self {
        SequencerError::Storage(e.to_string())
    }
}

impl From<candor_tree::TreeError> for SequencerError {
    fn from(e: candor_tree::TreeError) -> Self {
        SequencerError::Storage(e.to_string())
    }
}

/// One shard's position in an epoch proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRoot {
    /// Shard number.
    pub shard: u32,
    /// Its latest sealed revision.
    pub revision: u64,
    /// Root hash of the shard subtree at that revision.
    pub root: Digest,
    /// Leaves in it (needed to join subtrees).
    pub leaves: u64,
}

/// A sequencer Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequencerCommand {
    /// Make the next epoch.
    Epoch {
        /// Proposer's wall clock, ms (clamped to never go back).
        timestamp_ms: u64,
        /// Shards whose sealed revision moved (others keep theirs).
        shards: Vec<ShardRoot>,
    },
    /// Switch to key version `version` (exactly the active version + 1) from the next
    /// epoch on.
    Rotate {
        /// The key version to activate (≥ 2; 1 is the first configuration).
        version: u32,
        /// Proposer's wall clock, ms (clamped to never go back).
        timestamp_ms: u64,
    },
    /// Store an auditor's cosignature (canonical encoding, docs/protocol.md §9.3) of
    /// a signed head, on every replica. The API checked that the auditor key is one
    /// the operator accepts; apply checks what every replica can check the same way:
    /// the namespace, that the epoch is signed, and the signature over its head.
    Cosign {
        /// The canonical cosignature.
        cosignature: Vec<u8>,
    },
}

impl SequencerCommand {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// Response of an applied sequencer entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequencerResponse {
    /// The epoch this entry made.
    Epoch(u64),
    /// The entry did not decode (the applied index still advanced).
    Rejected(String),
    /// Applied before (restart or shared storage).
    AlreadyApplied,
    /// The key version now active.
    Rotated(u32),
    /// The cosignature is stored (`false`: one of that auditor for that epoch was
    /// already, and the first stays).
    Cosigned(bool),
}

impl SequencerResponse {
    /// Decode a response of [`SequencerLogic`].
    pub fn decode(b: &[u8]) -> Result<Self, SequencerError> {
        postcard::from_bytes(b)
            .map_err(|e| SequencerError::Raft(format!("malformed response: {e}")))
    }
}

/// Persistent bookkeeping of the sequencer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencerState {
    /// Log index of the last applied entry.
    pub applied_index: u64,
    /// Latest epoch made (0 = none).
    pub epoch: u64,
    /// Its timestamp.
    pub timestamp_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RootRecord {
    revision: u64,
    hash: Digest,
    leaves: u64,
}

/// The signed head of the next epoch, its revision vector and the changed roots.
type NextEpoch = (SignedHead, Vec<u64>, Vec<(u32, RootRecord)>);

fn key(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

fn corrupt(what: impl std::fmt::Display) -> SequencerError {
    SequencerError::Storage(format!("corrupt sequencer record: {what}"))
}

/// The signing keys of one key version beyond the first: the head key signs, the SMT
/// key's public half goes into the configuration.
#[derive(Clone, Debug)]
pub struct KeyVersion {
    /// The version (≥ 2).
    pub version: u32,
    /// Signs heads (and, with the previous version's, the rotation statement).
    pub head: Arc<SigningKeyPair>,
    /// The SMT public key.
    pub smt_public: PublicKey,
}

/// The deterministic state machine of the sequencer group.
pub struct SequencerLogic {
    store: Arc<dyn Store>,
    epochs: Arc<EpochLogStore>,
    /// The first configuration (version 1), as the member's keys define it.
    genesis: PublicConfig,
    genesis_key: Arc<SigningKeyPair>,
    /// Keys of versions ≥ 2 this replica holds.
    key_versions: Vec<KeyVersion>,
    /// The active key version and its configuration.
    version: u32,
    /// The keys of the active version are missing here: applying fails with this.
    key_error: Option<String>,
    versions_tx: watch::Sender<u32>,
    public: PublicConfig,
    config_digest: Digest,
    head_key: Arc<SigningKeyPair>,
    state: SequencerState,
    revisions: Vec<u64>,
    roots: Vec<Subtree>,
    marker: Option<Vec<u8>>,
    heads: watch::Sender<Option<SignedHead>>,
    /// A snapshot install started and has not finished: nothing to apply to until a
    /// full snapshot is installed (see [`snapshot`](crate#snapshots)).
    installing: bool,
    index_only_snapshots: bool,
    /// Shared-state mode: this replica's Raft node id (see [`SequencerLogic::open_shared`]).
    replica: Option<u64>,
    /// Where this replica's Raft marker lives (`m`, or `m ‖ replica` when shared).
    marker_key: Vec<u8>,
}

impl std::fmt::Debug for SequencerLogic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequencerLogic")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl SequencerLogic {
    /// Open (or recover) the sequencer whose state lives in `store` and whose epochs go
    /// to `epochs` (over the same store). `head_key` must match `public.head_key`.
    pub fn open(
        store: Arc<dyn Store>,
        epochs: Arc<EpochLogStore>,
        public: PublicConfig,
        head_key: Arc<SigningKeyPair>,
    ) -> Result<Self, SequencerError> {
        Self::open_inner(store, epochs, public, head_key, None)
    }

    /// Open (or recover) the sequencer in **shared-state mode**, as replica `replica`
    /// (its Raft node id) of the sequencer group, over a store every replica shares
    /// (FoundationDB).
    ///
    /// Every replica applies every committed entry to the one shared state; the result
    /// is that of applying each entry once ([crate docs](crate#shared-state-mode)).
    /// Differences from [`SequencerLogic::open`]: the Raft marker is per replica, a
    /// replica behind the stored state takes it over before applying, the epoch-log
    /// append and the state write are compare-and-sets, and snapshots carry only the
    /// applied index. `epochs` must be a handle over `store`.
    pub fn open_shared(
        store: Arc<dyn Store>,
        epochs: Arc<EpochLogStore>,
        public: PublicConfig,
        head_key: Arc<SigningKeyPair>,
        replica: u64,
    ) -> Result<Self, SequencerError> {
        Self::open_inner(store, epochs, public, head_key, Some(replica))
    }

    fn open_inner(
        store: Arc<dyn Store>,
        epochs: Arc<EpochLogStore>,
        public: PublicConfig,
        head_key: Arc<SigningKeyPair>,
        replica: Option<u64>,
    ) -> Result<Self, SequencerError> {
        public
            .validate()
            .map_err(|e| SequencerError::Config(e.to_string()))?;
        if head_key.public_key() != public.head_key {
            return Err(SequencerError::Config(
                "the head signing key does not match the public configuration".into(),
            ));
        }
        let mut this = Self {
            config_digest: public.digest(),
            store,
            epochs,
            genesis: public.clone(),
            genesis_key: Arc::clone(&head_key),
            key_versions: Vec::new(),
            version: 1,
            key_error: None,
            versions_tx: watch::channel(1).0,
            public,
            head_key,
            state: SequencerState::default(),
            revisions: Vec::new(),
            roots: Vec::new(),
            marker: None,
            heads: watch::channel(None).0,
            installing: false,
            // Shared: the state is already where every replica reads it.
            index_only_snapshots: replica.is_some(),
            replica,
            marker_key: candor_raft::exactly_once::replica_marker_key(
                &key(TAG_MARKER, &[]),
                replica,
            ),
        };
        this.load()?;
        Ok(this)
    }

    /// The keys of versions ≥ 2 this replica holds, for rotations (see the crate docs).
    /// Reloads the state: a store whose active version is among them signs with it.
    pub fn with_key_versions(mut self, versions: Vec<KeyVersion>) -> Result<Self, SequencerError> {
        self.key_versions = versions;
        self.load()?;
        Ok(self)
    }

    /// The active key version (1 until the first rotation), following applies.
    pub fn subscribe_versions(&self) -> watch::Receiver<u32> {
        self.versions_tx.subscribe()
    }

    /// The active key version.
    pub fn key_version(&self) -> u32 {
        self.version
    }

    /// The head key and configuration of `version`, from this replica's keys.
    fn keys_of(&self, version: u32) -> Result<(Arc<SigningKeyPair>, PublicConfig), SequencerError> {
        if version == 1 {
            return Ok((Arc::clone(&self.genesis_key), self.genesis.clone()));
        }
        let k = self
            .key_versions
            .iter()
            .find(|k| k.version == version)
            .ok_or_else(|| {
                SequencerError::Config(format!(
                    "key version {version} is active in the deployment but this member lacks \
                     its keys (head-{version}.key, smt-{version}.key): copy them from another \
                     member's key directory"
                ))
            })?;
        let config = PublicConfig {
            head_key: k.head.public_key(),
            smt_key: k.smt_public,
            ..self.genesis.clone()
        };
        Ok((Arc::clone(&k.head), config))
    }

    /// Reads the recorded configurations (writing the first if there is none) and makes
    /// the newest the active one.
    fn load_configs(&mut self) -> Result<(), SequencerError> {
        let mut recorded = self.epochs.configs()?;
        if recorded.is_empty() {
            let first = ConfigVersion {
                config: self.genesis.encode(),
                rotation: Vec::new(),
            };
            let mut b = WriteBatch::new();
            EpochLogStore::put_config(&mut b, 1, &first);
            self.store.write(&b, Durability::Sync)?;
            recorded.push(first);
        }
        if recorded[0].config != self.genesis.encode() {
            return Err(SequencerError::Config(
                "the store's first configuration is not the one this member's keys \
                 (head.key, smt.key, vrf.key) and settings define"
                    .into(),
            ));
        }
        ConfigChain::verify(&recorded, &self.genesis.digest())
            .map_err(|e| corrupt(format!("configuration chain: {e}")))?;
        let version = recorded.len() as u32;
        let (head_key, public) = match self.keys_of(version) {
            Ok(k) => k,
            Err(SequencerError::Config(why)) => {
                // Loud, and nothing is signed with other keys until they are given.
                tracing::error!(version, "{why}");
                self.version = version;
                self.key_error = Some(why);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.key_error = None;
        if public.encode() != recorded[recorded.len() - 1].config {
            return Err(SequencerError::Config(format!(
                "this member's keys of version {version} are not the deployment's"
            )));
        }
        self.version = version;
        self.config_digest = public.digest();
        self.public = public;
        self.head_key = head_key;
        self.versions_tx.send_replace(version);
        Ok(())
    }

    /// (Re)load the in-memory state from the store: bookkeeping, roots and marker, or
    /// "installing" when an interrupted snapshot install left its mark.
    fn load(&mut self) -> Result<(), SequencerError> {
        let shards = 1usize << self.public.shard_bits;
        if self.store.get(SPACE, snapshot::INSTALL_KEY)?.is_some() {
            warn!(
                "an interrupted sequencer snapshot install: waiting for it to be installed again"
            );
            self.state = SequencerState::default();
            self.revisions = vec![0; shards];
            self.roots = vec![Subtree::EMPTY; shards];
            self.marker = None;
            self.installing = true;
            // The epoch log itself is whole up to its recorded end (an install moves
            // that end only once the log is complete): its heads can still be served.
            self.publish(self.epochs.latest()?);
            return Ok(());
        }
        // One consistent view: on a shared store another replica may write the state and
        // its roots (one batch) between two plain reads.
        let view = self.store.snapshot()?;
        let state: SequencerState = match view.get(SPACE, &key(TAG_STATE, &[]))? {
            Some(v) => postcard::from_bytes(&v).map_err(corrupt)?,
            None => SequencerState::default(),
        };
        let (revisions, roots) = self.load_roots(&*view)?;
        drop(view);
        if self.replica.is_some() {
            // Another replica may have appended since this handle last looked; read after
            // the state, so the log reaches at least the recorded epoch (a log append
            // precedes the state write).
            self.epochs.reload()?;
        }
        self.check_against_log(&state, &revisions)?;
        let latest = if state.epoch > 0 {
            self.epochs.head(state.epoch)?
        } else {
            None
        };
        self.marker = self.store.get(SPACE, &self.marker_key)?;
        self.state = state;
        self.revisions = revisions;
        self.roots = roots;
        self.installing = false;
        self.load_configs()?;
        self.publish(latest);
        Ok(())
    }

    /// The recorded revision and root of every shard (`r ‖ shard` records).
    fn load_roots(
        &self,
        view: &dyn candor_store::ReadView,
    ) -> Result<(Vec<u64>, Vec<Subtree>), SequencerError> {
        let shards = 1usize << self.public.shard_bits;
        let mut revisions = vec![0u64; shards];
        let mut roots = vec![Subtree::EMPTY; shards];
        let p = key(TAG_ROOT, &[]);
        for kv in scan_pages(view, SPACE, KeyRange::prefix(&p), Direction::Forward, 1024) {
            let (k, v) = kv?;
            let s = u32::from_be_bytes(k[p.len()..].try_into().map_err(|_| corrupt("root key"))?)
                as usize;
            let r: RootRecord = postcard::from_bytes(&v).map_err(corrupt)?;
            if s >= shards {
                return Err(SequencerError::Config(format!(
                    "the store records shard {s}, beyond 2^{} shards",
                    self.public.shard_bits
                )));
            }
            revisions[s] = r.revision;
            roots[s] = Subtree {
                hash: r.hash,
                leaves: r.leaves,
            };
        }
        Ok((revisions, roots))
    }

    /// The bookkeeping agrees with the epoch log: the log reaches the recorded epoch
    /// and records the same shard revisions for it.
    fn check_against_log(
        &self,
        state: &SequencerState,
        revisions: &[u64],
    ) -> Result<(), SequencerError> {
        let logged = self.epochs.latest_epoch();
        if logged < state.epoch {
            return Err(corrupt(format!(
                "state records epoch {} but the epoch log ends at {logged}",
                state.epoch
            )));
        }
        if state.epoch > 0 && self.epochs.revisions(state.epoch)? != revisions {
            return Err(corrupt(format!(
                "recorded shard revisions differ from epoch {}",
                state.epoch
            )));
        }
        Ok(())
    }

    /// Publish `head` on the watch unless an equal or later epoch is already out
    /// (subscribers only ever see heads move forward).
    fn publish(&self, head: Option<SignedHead>) {
        let Some(head) = head else { return };
        self.heads.send_if_modified(|cur| {
            if cur
                .as_ref()
                .is_some_and(|c| c.head.epoch >= head.head.epoch)
            {
                return false;
            }
            *cur = Some(head);
            true
        });
    }

    /// Snapshots name only the applied index (the older form) instead of carrying the
    /// sequencer's state and epoch log. For a group whose only member is this one
    /// (`candor dev`): its snapshots only compact the Raft log and are never sent.
    /// Default false: members of a replicated group need the data to catch up.
    #[must_use]
    pub fn with_index_only_snapshots(mut self, yes: bool) -> Self {
        self.index_only_snapshots = yes;
        self
    }

    /// An interrupted snapshot install is pending: this replica applies nothing until a
    /// full snapshot is installed.
    pub fn install_pending(&self) -> bool {
        self.installing
    }

    /// Bookkeeping as of the last applied entry.
    pub fn state(&self) -> SequencerState {
        self.state
    }

    /// The revision of every shard in the latest epoch.
    pub fn revisions(&self) -> &[u64] {
        &self.revisions
    }

    /// Latest signed heads, published after they are persisted.
    pub fn subscribe(&self) -> watch::Receiver<Option<SignedHead>> {
        self.heads.subscribe()
    }

    /// The head the next epoch would get from `timestamp_ms` and `shards` (pure: no
    /// writes), with the revision vector and the changed root records.
    fn make_epoch(
        &self,
        timestamp_ms: u64,
        shards: &[ShardRoot],
    ) -> Result<NextEpoch, SequencerError> {
        let mut revisions = self.revisions.clone();
        let mut roots = self.roots.clone();
        let mut changed = Vec::new();
        for s in shards {
            let i = s.shard as usize;
            // Unknown shards and stale revisions (an old leader's proposal) are ignored:
            // an epoch never moves a shard backwards.
            if i < revisions.len() && s.revision > revisions[i] {
                revisions[i] = s.revision;
                roots[i] = Subtree {
                    hash: s.root,
                    leaves: s.leaves,
                };
                changed.push((
                    s.shard,
                    RootRecord {
                        revision: s.revision,
                        hash: s.root,
                        leaves: s.leaves,
                    },
                ));
            }
        }
        let map = combine_shard_roots(&roots).map_err(|e| SequencerError::Config(e.to_string()))?;
        let epoch = self.state.epoch + 1;
        let timestamp_ms = timestamp_ms.max(self.state.timestamp_ms);
        let entry = EpochEntry {
            epoch,
            timestamp_ms,
            map_root: map.hash,
        };
        let (log_size, log_root) = if self.epochs.latest_epoch() >= epoch {
            // Re-application after a crash: the log already holds this epoch.
            (epoch, self.epochs.root_at(epoch)?)
        } else {
            self.epochs.prepare(&entry)?
        };
        let head = EpochHead {
            namespace: self.public.namespace.clone(),
            epoch,
            timestamp_ms,
            map_root: map.hash,
            log_size,
            log_root,
            config_digest: self.config_digest,
        }
        .sign(&self.head_key);
        Ok((head, revisions, changed))
    }

    /// The bookkeeping record as stored (one point read).
    fn stored_state(&self) -> Result<SequencerState, SequencerError> {
        Ok(match self.store.get(SPACE, &key(TAG_STATE, &[]))? {
            Some(v) => postcard::from_bytes(&v).map_err(corrupt)?,
            None => SequencerState::default(),
        })
    }

    /// Shared-state mode: take over the stored state when another replica advanced it,
    /// and follow the epoch log's end.
    fn catch_up(&mut self) -> Result<(), SequencerError> {
        let stored = self.stored_state()?;
        match stored.applied_index.cmp(&self.state.applied_index) {
            std::cmp::Ordering::Equal => {
                self.epochs.reload()?;
                Ok(())
            }
            std::cmp::Ordering::Greater => {
                debug!(
                    replica = self.replica,
                    from = self.state.applied_index,
                    to = stored.applied_index,
                    "sequencer catching up with the shared store"
                );
                let marker = self.marker.clone();
                self.load()?;
                // The marker is this replica's own and moves only with its applies.
                self.marker = marker;
                Ok(())
            }
            std::cmp::Ordering::Less => Err(SequencerError::Storage(format!(
                "the store's sequencer applied index {} is behind this replica's {}; \
                 restart the replica after restoring a store",
                stored.applied_index, self.state.applied_index
            ))),
        }
    }

    /// Requires the stored bookkeeping to be the one this replica holds (shared mode).
    fn require_state(&self, b: &mut WriteBatch) {
        if self.replica.is_some() {
            let expected = (self.state != SequencerState::default()).then(|| enc(&self.state));
            b.require(SPACE, key(TAG_STATE, &[]), expected);
        }
    }

    /// Writes a batch that carries the state record; a lost compare-and-set on it
    /// (shared-state mode) is [`SequencerError::StaleReplica`].
    fn write_state_batch(
        &self,
        b: &WriteBatch,
        durability: Durability,
    ) -> Result<(), SequencerError> {
        match self.store.write(b, durability) {
            Err(candor_store::StoreError::PreconditionFailed(m)) => {
                Err(SequencerError::StaleReplica(m))
            }
            r => Ok(r?),
        }
    }

    fn apply_entry_once(
        &mut self,
        log_index: u64,
        data: &[u8],
        marker: Option<&[u8]>,
    ) -> Result<SequencerResponse, SequencerError> {
        let mut b = WriteBatch::new();
        if let Some(m) = marker {
            b.put(SPACE, self.marker_key.clone(), m.to_vec());
        }
        if log_index <= self.state.applied_index {
            if !b.is_empty() {
                self.store.write(&b, Durability::Buffered)?;
            }
            return Ok(SequencerResponse::AlreadyApplied);
        }
        if let Some(why) = &self.key_error {
            return Err(SequencerError::Config(why.clone()));
        }
        let mut st = self.state;
        st.applied_index = log_index;
        let cmd: SequencerCommand = match postcard::from_bytes(data) {
            Ok(c) => c,
            Err(e) => {
                b.put(SPACE, key(TAG_STATE, &[]), enc(&st));
                self.require_state(&mut b);
                self.write_state_batch(&b, Durability::Buffered)?;
                self.state = st;
                return Ok(SequencerResponse::Rejected(format!(
                    "malformed sequencer entry: {e}"
                )));
            }
        };
        let (timestamp_ms, shards) = match cmd {
            SequencerCommand::Epoch {
                timestamp_ms,
                shards,
            } => (timestamp_ms, shards),
            SequencerCommand::Rotate {
                version,
                timestamp_ms,
            } => return self.apply_rotation(st, b, version, timestamp_ms),
            SequencerCommand::Cosign { cosignature } => {
                return self.apply_cosignature(st, b, &cosignature);
            }
        };
        let epoch = st.epoch + 1;
        let span = info_span!("epoch_apply", epoch, log_index, shards = shards.len());
        let _g = span.enter();
        let (head, revisions, changed) = self.make_epoch(timestamp_ms, &shards)?;
        // Synced, atomic: head, log nodes, revision vector. A no-op if already there.
        match self
            .epochs
            .append_signed(&head, &revisions, Some(&self.head_key))
        {
            Err(candor_tree::TreeError::Store(candor_store::StoreError::PreconditionFailed(m))) => {
                return Err(SequencerError::StaleReplica(m));
            }
            r => r?,
        }
        st.epoch = epoch;
        st.timestamp_ms = head.head.timestamp_ms;
        for (s, r) in &changed {
            b.put(SPACE, key(TAG_ROOT, &s.to_be_bytes()), enc(r));
        }
        b.put(SPACE, key(TAG_STATE, &[]), enc(&st));
        self.require_state(&mut b);
        self.write_state_batch(&b, Durability::Buffered)?;
        self.state = st;
        let metrics = candor_telemetry::metrics();
        metrics.record_epoch_signed(epoch);
        metrics.epoch_signed_at(head.head.timestamp_ms);
        for (s, r) in changed {
            metrics.shard_sealed(s, r.revision);
            self.revisions[s as usize] = r.revision;
            self.roots[s as usize] = Subtree {
                hash: r.hash,
                leaves: r.leaves,
            };
        }
        debug!(epoch, timestamp_ms = head.head.timestamp_ms, "epoch signed");
        self.heads.send_replace(Some(head));
        Ok(SequencerResponse::Epoch(epoch))
    }
}

impl SequencerLogic {
    /// Applies a [`SequencerCommand::Cosign`]: a deterministic check against the
    /// replicated epoch log, then the cosignature (if it is the auditor's first for
    /// that epoch) with the bookkeeping in one synced batch, since the auditor is told
    /// it is stored once this returns.
    fn apply_cosignature(
        &mut self,
        st: SequencerState,
        mut b: WriteBatch,
        encoded: &[u8],
    ) -> Result<SequencerResponse, SequencerError> {
        let verdict = self.check_cosignature(encoded)?;
        let response = match verdict {
            Ok(Some(c)) => {
                EpochLogStore::put_cosignature(&mut b, c.epoch, &c.auditor_key.0, encoded);
                SequencerResponse::Cosigned(true)
            }
            Ok(None) => SequencerResponse::Cosigned(false),
            Err(why) => SequencerResponse::Rejected(why),
        };
        b.put(SPACE, key(TAG_STATE, &[]), enc(&st));
        self.require_state(&mut b);
        self.write_state_batch(&b, Durability::Sync)?;
        // Only the applied index moved.
        self.state = st;
        Ok(response)
    }

    /// `Ok(Some(c))`: store `c`; `Ok(None)`: that auditor's cosignature of that epoch is
    /// stored already; `Err(why)`: refused.
    #[allow(clippy::type_complexity)]
    fn check_cosignature(
        &self,
        encoded: &[u8],
    ) -> Result<Result<Option<Cosignature>, String>, SequencerError> {
        let c = match Cosignature::decode(encoded) {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("cosignature: {e}"))),
        };
        if c.namespace != self.public.namespace {
            return Ok(Err(format!(
                "cosignature is for namespace {:?}, not {:?}",
                c.namespace, self.public.namespace
            )));
        }
        let Some(head) = self.epochs.head(c.epoch)? else {
            return Ok(Err(format!("epoch {} is not signed", c.epoch)));
        };
        if let Err(e) = c.verify(&head.head) {
            return Ok(Err(format!("cosignature does not verify: {e}")));
        }
        if self
            .epochs
            .cosignature(c.epoch, &c.auditor_key.0)?
            .is_some()
        {
            return Ok(Ok(None));
        }
        Ok(Ok(Some(c)))
    }

    /// Applies a [`SequencerCommand::Rotate`] (see the crate docs); `st` already
    /// carries the new applied index and `b` the marker.
    fn apply_rotation(
        &mut self,
        mut st: SequencerState,
        mut b: WriteBatch,
        version: u32,
        timestamp_ms: u64,
    ) -> Result<SequencerResponse, SequencerError> {
        let span = info_span!("key_rotation", version, epoch = st.epoch + 1);
        let _g = span.enter();
        if version != self.version + 1 {
            // Deterministic on every replica: the active version is replicated state.
            b.put(SPACE, key(TAG_STATE, &[]), enc(&st));
            self.require_state(&mut b);
            self.write_state_batch(&b, Durability::Buffered)?;
            self.state = st;
            return Ok(SequencerResponse::Rejected(format!(
                "rotation to key version {version} while version {} is active",
                self.version
            )));
        }
        let (new_key, new_public) = self.keys_of(version)?;
        let timestamp_ms = timestamp_ms.max(st.timestamp_ms);
        let rotation = ConfigRotation {
            namespace: self.public.namespace.clone(),
            old_digest: self.config_digest,
            new_digest: new_public.digest(),
            first_epoch: st.epoch + 1,
            timestamp_ms,
        }
        .sign(&self.head_key, &new_key);
        EpochLogStore::put_config(
            &mut b,
            version,
            &ConfigVersion {
                config: new_public.encode(),
                rotation: rotation.encode(),
            },
        );
        st.timestamp_ms = timestamp_ms;
        b.put(SPACE, key(TAG_STATE, &[]), enc(&st));
        self.require_state(&mut b);
        // Synced: clients may see the new configuration as soon as it is served.
        self.write_state_batch(&b, Durability::Sync)?;
        self.state = st;
        self.version = version;
        self.config_digest = new_public.digest();
        self.public = new_public;
        self.head_key = new_key;
        self.versions_tx.send_replace(version);
        tracing::info!(
            version,
            first_epoch = rotation.rotation.first_epoch,
            config_digest = %hex_digest(&self.config_digest),
            "signing keys rotated"
        );
        Ok(SequencerResponse::Rotated(version))
    }
}

fn hex_digest(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly-once apply (`candor_raft::exactly_once`): epochs and rotations with the
/// bookkeeping and the replica's marker.
impl candor_raft::exactly_once::ExactlyOnce for SequencerLogic {
    type Error = SequencerError;

    fn refuse_apply(&self) -> Option<SequencerError> {
        self.installing.then(|| {
            SequencerError::Snapshot(
                "a snapshot install is unfinished; the snapshot must be installed first".into(),
            )
        })
    }

    fn shared(&self) -> bool {
        self.replica.is_some()
    }

    fn catch_up(&mut self) -> Result<(), SequencerError> {
        SequencerLogic::catch_up(self)
    }

    fn is_stale(e: &SequencerError) -> bool {
        matches!(e, SequencerError::StaleReplica(_))
    }

    fn apply_entry(
        &mut self,
        log_index: u64,
        data: &[u8],
        marker: Option<&[u8]>,
    ) -> Result<Vec<u8>, SequencerError> {
        self.apply_entry_once(log_index, data, marker)
            .map(|r| enc(&r))
    }

    fn write_marker(&mut self, marker: &[u8]) -> Result<(), SequencerError> {
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

impl StateMachineLogic for SequencerLogic {
    type Error = SequencerError;

    fn apply(&mut self, batch: ApplyBatch<'_>) -> Result<Vec<Vec<u8>>, SequencerError> {
        candor_raft::exactly_once::apply_exactly_once(self, batch)
    }

    fn applied_marker(&self) -> Result<Option<Vec<u8>>, SequencerError> {
        Ok(self.marker.clone())
    }

    /// The sequencer's bookkeeping (without its Raft marker) and the whole epoch log,
    /// as a record stream over one consistent store view ([crate docs](crate#snapshots)).
    /// With [`SequencerLogic::with_index_only_snapshots`]: only the [`SequencerState`].
    fn snapshot(&self) -> Result<Box<dyn std::io::Read + Send>, SequencerError> {
        if self.installing {
            return Err(SequencerError::Snapshot(
                "no state to snapshot: a snapshot install is unfinished".into(),
            ));
        }
        if self.index_only_snapshots {
            return Ok(Box::new(std::io::Cursor::new(enc(&self.state))));
        }
        self.snapshot_stream()
    }

    /// A record stream: replaces this member's sequencer state and extends its epoch
    /// log, crash-safely ([crate docs](crate#snapshots)). An index-only snapshot (the
    /// older form): the store must already hold that state; only the marker moves.
    fn restore(
        &mut self,
        data: &mut dyn std::io::Read,
        marker: &[u8],
    ) -> Result<(), SequencerError> {
        self.restore_from(data, marker)
    }
}

/// Head timestamps: the wall clock (virtual in a simulation, see candor_sim).
fn now_ms() -> u64 {
    candor_sim::wall_ms()
}

/// The shards of `forest` whose latest sealed revision is beyond `recorded`, with roots.
pub fn moved_shards(forest: &Forest, recorded: &[u64]) -> Result<Vec<ShardRoot>, SequencerError> {
    let mut out = Vec::new();
    for s in 0..forest.shard_count() {
        let t = forest.shard(s)?;
        let rev = t.latest_revision();
        if rev > recorded.get(s as usize).copied().unwrap_or(0) {
            let root = t.root(rev)?;
            out.push(ShardRoot {
                shard: s,
                revision: rev,
                root: root.hash,
                leaves: root.leaves,
            });
        }
    }
    Ok(out)
}

/// Propose the switch to key version `version` (leader only; see the crate docs).
/// Returns the active version after the entry applied.
pub async fn propose_rotation(
    group: &RaftGroup<SequencerLogic>,
    version: u32,
) -> Result<u32, SequencerError> {
    let cmd = SequencerCommand::Rotate {
        version,
        timestamp_ms: now_ms(),
    };
    let resp = group
        .client_write(cmd.encode())
        .await
        .map_err(|e| SequencerError::Raft(e.to_string()))?;
    match SequencerResponse::decode(&resp)? {
        SequencerResponse::Rotated(v) => Ok(v),
        SequencerResponse::AlreadyApplied => group
            .read(|l| l.key_version())
            .await
            .map_err(|e| SequencerError::Raft(e.to_string())),
        SequencerResponse::Rejected(why) => Err(SequencerError::Config(why)),
        other => Err(SequencerError::Raft(format!(
            "unexpected response {other:?}"
        ))),
    }
}

/// Store an auditor's cosignature through the group (any replica; a follower
/// forwards to the leader). `Ok(true)` once it is stored on a quorum, `Ok(false)` if
/// that auditor's cosignature of that epoch was stored before; a cosignature that
/// does not check out is [`SequencerError::Rejected`].
pub async fn propose_cosignature(
    group: &RaftGroup<SequencerLogic>,
    cosignature: Vec<u8>,
) -> Result<bool, SequencerError> {
    let id = Cosignature::decode(&cosignature)
        .map(|c| (c.epoch, c.auditor_key.0))
        .map_err(|e| SequencerError::Rejected(format!("cosignature: {e}")))?;
    let cmd = SequencerCommand::Cosign { cosignature };
    let resp = group
        .write(cmd.encode())
        .await
        .map_err(|e| SequencerError::Raft(e.to_string()))?;
    match SequencerResponse::decode(&resp)? {
        SequencerResponse::Cosigned(stored) => Ok(stored),
        // Another replica applied it first to the shared store: look at the outcome.
        SequencerResponse::AlreadyApplied => {
            let (epoch, auditor) = id;
            let stored = group
                .read(move |l| l.epochs.cosignature(epoch, &auditor))
                .await
                .map_err(|e| SequencerError::Raft(e.to_string()))??;
            match stored {
                Some(_) => Ok(false),
                None => Err(SequencerError::Rejected(
                    "the cosignature was not stored (it did not check out)".into(),
                )),
            }
        }
        SequencerResponse::Rejected(why) => Err(SequencerError::Rejected(why)),
        other => Err(SequencerError::Raft(format!(
            "unexpected response {other:?}"
        ))),
    }
}

/// Propose the next epoch now (leader only). Returns the epoch number.
pub async fn propose_epoch(
    group: &RaftGroup<SequencerLogic>,
    forest: &Forest,
) -> Result<u64, SequencerError> {
    let recorded = group
        .read(|l| l.revisions().to_vec())
        .await
        .map_err(|e| SequencerError::Raft(e.to_string()))?;
    let f = forest.clone();
    let shards = candor_sim::spawn_blocking(move || moved_shards(&f, &recorded))
        .await
        .map_err(|e| SequencerError::Raft(format!("task failed: {e}")))??;
    let cmd = SequencerCommand::Epoch {
        timestamp_ms: now_ms(),
        shards,
    };
    let resp = group
        .client_write(cmd.encode())
        .await
        .map_err(|e| SequencerError::Raft(e.to_string()))?;
    match SequencerResponse::decode(&resp)? {
        SequencerResponse::Epoch(e) => Ok(e),
        // Shared-state mode: another replica applied the entry to the shared state
        // first; this replica's state now includes it.
        SequencerResponse::AlreadyApplied => group
            .read(|l| l.state().epoch)
            .await
            .map_err(|e| SequencerError::Raft(e.to_string())),
        other => Err(SequencerError::Raft(format!(
            "unexpected response {other:?}"
        ))),
    }
}
