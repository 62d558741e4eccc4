//! # candor-node: one Candor process
//!
//! [`Node`] assembles one process of any deployment; what `candor dev` runs:
//!
//! * one [`FjallStore`] at `data_dir/store` holding the Raft logs (space `RaftLog`), the
//!   shard and sequencer state machines (space `Meta`, prefixes `candor-shard/`,
//!   `candor-seq/`), the trees (`Tree`, `Values`) and the epoch log (`EpochLog`);
//! * one [`RaftNode`] (node id 1) on an [`InProcessNetwork`]: the same code path a
//!   cluster uses, with a single member per group;
//! * `2^shard_bits` shard groups (group id = shard number, [`ShardLogic`]) and the
//!   sequencer group ([`SEQUENCER_GROUP`], [`SequencerLogic`]), initialized on the first
//!   start and recovered from the store on later ones;
//! * the tickers: one sealer per shard (`seal_interval`), the epoch ticker
//!   (`epoch_interval`; a sequencer leader that lost a shard replica hands leadership
//!   over instead, see [`membership`]);
//! * the seam the API uses: [`Node::publisher`], [`Node::store`],
//!   [`Node::forest`], [`Node::epochs`], [`Node::heads`], [`Node::config`].
//!
//! ## Deployments
//!
//! * [`Node::start`] / [`Node::start_on`]: `candor dev`, one member of every
//!   group, everything in one embedded store.
//! * [`Node::start_with`]: a member of a cluster on the embedded store (`--role
//!   all`): every member hosts a replica of every group and keeps its own copy of the
//!   state; followers that fall behind are sent whole-state snapshots.
//! * [`Node::start_shared`]: a member of a **shared-state** deployment
//!   (FoundationDB): the groups' state lives once in the shared store, the Raft logs in
//!   the member's own store; shard and sequencer members may be different nodes
//!   ([`SharedTopology`]), every replica applies idempotently to the shared state, and
//!   snapshots carry only an applied index.
//! * [`StoreReader`]: the API role of a shared-state deployment: no group, no signing
//!   key; trees and epochs read straight from the store at signed epochs.
//!
//! ## Durability
//!
//! A publish is acknowledged after its Raft entry is synced (the log store syncs before
//! acknowledging appends) and applied. State-machine writes and seals are buffered:
//! the store's durability is prefix-closed, so the next synced write (a Raft append or
//! the epoch log's synced append) covers them, and anything lost in a power cut is
//! re-applied from the Raft log, exactly once (see `candor_shard::logic`). A restart on
//! the same `data_dir` keeps every acknowledged mutation and continues the epoch numbers;
//! old heads stay valid (the epoch log only grows).
//!
//! The store remembers the namespace and shard count it was created with; starting
//! with other values fails ([`NodeError::Config`]). Keys may change between starts
//! (later heads then carry the new configuration digest).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod currency;
pub mod dev_certs;
pub mod keys;
pub mod member;
pub mod membership;
pub mod memory;
pub mod reader;
pub mod statefulset;
pub mod telemetry;
pub mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use candor_core::signed::{PublicConfig, SignedHead, SigningKeyPair};
use candor_core::vrf::VrfPublicKey;
use candor_raft::{
    GroupId, InProcessNetwork, NodeId, RaftGroup, RaftNodeConfig, RaftTuning, RemoteGroup,
};
use candor_sim::watch;
use candor_store::{Durability, FjallConfig, FjallStore, Space, Store, WriteBatch};
use candor_tree::{EpochLogStore, Forest, TreeConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use candor_publish::CosignatureLog;
pub use candor_raft::{RaftNode, RaftTransport};
pub use candor_sequencer::{SEQUENCER_GROUP, SequencerLogic, propose_epoch, propose_rotation};
pub use candor_shard::{
    PublishError, PublishReceipt, PublishRequest, Publisher, PublisherConfig, ShardError,
    ShardLogic, ShardLogicConfig, ShardPublisher, ShardRoute,
};
pub use membership::Membership;
pub use reader::StoreReader;

/// The Raft node id of a dev node.
pub const DEV_NODE_ID: u64 = 1;

const CONFIG_KEY: &[u8] = b"candor-node/config";
/// Shared-state mode: the encoded [`PublicConfig`], written by every member at start,
/// read by API nodes ([`StoreReader::stored_public_config`]).
const PUBLIC_CONFIG_KEY: &[u8] = b"candor-node/public-config";

/// Failure to start a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid or does not match the store.
    #[error("configuration: {0}")]
    Config(String),
    /// A key or token file is missing, malformed or readable by others ([`keys`]).
    #[error("{0}")]
    Keys(String),
    /// A key or token file could not be read or written ([`keys`]).
    #[error("{what}")]
    KeyFile {
        /// What failed, naming the file.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open or read.
    #[error("storage: {0}")]
    Storage(String),
    /// Raft failed to start a group, or a membership change failed in Raft (the group
    /// stopped, or the change did not commit in time: repeating it completes it).
    #[error("raft: {0}")]
    Raft(String),
    /// A membership request is malformed (node id 0, bad address, unknown group).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A call to another member's admin service failed (unreachable, or an error
    /// status, named).
    #[error("peer: {0}")]
    Peer(String),
    /// A membership request names a member that is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// A membership request cannot be carried out in the current membership (it would
    /// leave a group without a voter, the node is known under another address, ...).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// Membership changes must run on the group's leader, and this node does not lead.
    #[error(
        "group {group}: this node is not the leader (leader: {})",
        match (leader, leader_addr) {
            (Some(l), Some(a)) => format!("{l} at {a}"),
            (Some(l), None) => format!("{l}"),
            _ => "unknown".to_string(),
        }
    )]
    NotLeader {
        /// The group.
        group: u64,
        /// The leader this replica knows of (never this node).
        leader: Option<NodeId>,
        /// Its address, when known.
        leader_addr: Option<String>,
    },
    /// A learner did not catch up in time; it stays a learner.
    #[error(
        "group {group}: node {node} did not catch up within {timeout:?} \
         (it holds the log up to {matched:?}, the leader's ends at {last})"
    )]
    CatchUpTimeout {
        /// The group.
        group: u64,
        /// The learner.
        node: NodeId,
        /// The last log index the leader knows it holds.
        matched: Option<u64>,
        /// The leader's last log index.
        last: u64,
        /// The time allowed.
        timeout: Duration,
    },
    /// Another membership change of the group stayed in progress for the whole time
    /// allowed.
    #[error("group {group}: another membership change is in progress: {detail}")]
    Conflict {
        /// The group.
        group: u64,
        /// Raft's reason.
        detail: String,
    },
}

impl From<candor_store::StoreError> for NodeError {
    fn from(e: candor_store::StoreError) -> Self {
        NodeError::Storage(e.to_string())
    }
}
impl From<candor_tree::TreeError> for NodeError {
    fn from(e: candor_tree::TreeError) -> Self {
        NodeError::Storage(e.to_string())
    }
}
impl From<candor_raft::Error> for NodeError {
    fn from(e: candor_raft::Error) -> Self {
        NodeError::Raft(e.to_string())
    }
}
impl From<ShardError> for NodeError {
    fn from(e: ShardError) -> Self {
        NodeError::Storage(e.to_string())
    }
}
impl From<candor_sequencer::SequencerError> for NodeError {
    fn from(e: candor_sequencer::SequencerError) -> Self {
        match e {
            candor_sequencer::SequencerError::Config(m) => NodeError::Config(m),
            other => NodeError::Storage(other.to_string()),
        }
    }
}

/// The node's keys. The VRF secret stays in the API; only its public key is needed here.
pub struct NodeKeys {
    /// Signs epoch heads.
    pub head: SigningKeyPair,
    /// Signs SMTs.
    pub smt: SigningKeyPair,
    /// The VRF public key (part of the public configuration).
    pub vrf_public: VrfPublicKey,
}

impl Clone for NodeKeys {
    fn clone(&self) -> Self {
        Self {
            head: SigningKeyPair::from_seed(&self.head.to_seed()),
            smt: SigningKeyPair::from_seed(&self.smt.to_seed()),
            vrf_public: self.vrf_public,
        }
    }
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("head", &self.head)
            .field("smt", &self.smt)
            .field("vrf_public", &self.vrf_public)
            .finish()
    }
}

/// Configuration of a [`Node`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Directory of the store (created if missing).
    pub data_dir: PathBuf,
    /// Deployment namespace (in every signed message).
    pub namespace: String,
    /// `log2` of the shard count (0..=16). Default 4 (16 shards).
    pub shard_bits: u8,
    /// Time between epochs. Default 1 s.
    pub epoch_interval: Duration,
    /// Maximum merge delay promised by SMTs. Default 10 s.
    pub max_merge_delay: Duration,
    /// Time between seals of a shard with pending labels. Default 250 ms: a seal
    /// rehashes the paths of its labels up to the shard root, so fewer, larger seals
    /// cost less per mutation (measured: about a fifth of the node's CPU at 100 ms vs
    /// a tenth at 250 ms, 16 shards at ~8k mutations/s), while the merge delay stays
    /// below `seal_interval + epoch_interval` plus commit time (≈ 1.3 s at 1 s epochs).
    pub seal_interval: Duration,
    /// Signing keys and the VRF public key.
    pub keys: NodeKeys,
    /// Embedded store tuning (block cache, memtables).
    pub store: FjallConfig,
    /// Tree node cache budget, bytes. Default 64 MiB.
    pub tree_cache_bytes: u64,
    /// Shard state machine retention knobs.
    pub shard: ShardLogicConfig,
    /// Most items per Raft entry. Default 1024.
    pub max_batch_items: usize,
    /// Most entries in flight per shard. Default 1 (see `PublisherConfig::max_inflight`).
    pub max_inflight: usize,
    /// Raft timing and log retention. Default: `RaftTuning::default()` timings, but a
    /// snapshot (and log purge) every 4,096 entries keeping 512: with one member per
    /// group the log is only needed until its entries are applied, and entries carry
    /// every published value, so a long log would dominate disk use.
    pub raft: RaftTuning,
    /// How long `start` waits for every group to elect itself. Default 30 s.
    pub start_timeout: Duration,
    /// Signing keys of versions ≥ 2 (docs/operations.md, key rotation). Every member of
    /// the sequencer group must hold a version before it is activated.
    pub key_versions: Vec<KeyVersionPair>,
    /// The sequencer leader rotates up to this key version. Default none: no rotation.
    pub activate_key_version: Option<u32>,
}

/// The head and SMT signing keys of one key version beyond the first.
#[derive(Clone, Debug)]
pub struct KeyVersionPair {
    /// The version (≥ 2).
    pub version: u32,
    /// Signs epoch heads from the rotation on.
    pub head: Arc<SigningKeyPair>,
    /// Signs SMTs from the rotation on.
    pub smt: Arc<SigningKeyPair>,
}

impl NodeConfig {
    /// Defaults for `data_dir`, `namespace` and `keys`.
    pub fn new(data_dir: impl Into<PathBuf>, namespace: impl Into<String>, keys: NodeKeys) -> Self {
        Self {
            data_dir: data_dir.into(),
            namespace: namespace.into(),
            shard_bits: 4,
            epoch_interval: Duration::from_secs(1),
            max_merge_delay: Duration::from_secs(10),
            seal_interval: Duration::from_millis(250),
            keys,
            store: FjallConfig::default(),
            tree_cache_bytes: 64 << 20,
            shard: ShardLogicConfig::default(),
            max_batch_items: 1024,
            max_inflight: 1,
            raft: RaftTuning {
                snapshot_after_entries: 4096,
                keep_after_snapshot: 512,
                ..RaftTuning::default()
            },
            start_timeout: Duration::from_secs(30),
            key_versions: Vec::new(),
            activate_key_version: None,
        }
    }

    /// The public configuration these settings define.
    pub fn public_config(&self) -> PublicConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        PublicConfig {
            namespace: self.namespace.clone(),
            vrf_key: self.keys.vrf_public,
            head_key: self.keys.head.public_key(),
            smt_key: self.keys.smt.public_key(),
            shard_bits: self.shard_bits,
            epoch_interval_ms: ms(self.epoch_interval),
            max_merge_delay_ms: ms(self.max_merge_delay),
        }
    }
}

/// One Candor process: the groups it hosts (shard replicas, a sequencer replica, or
/// both), its tickers and its read path, for every deployment (`candor dev`, cluster
/// members, shared-state roles; see the crate docs for the constructors).
pub struct Node {
    public: PublicConfig,
    store: Arc<dyn Store>,
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    raft: RaftNode,
    shards: Vec<RaftGroup<ShardLogic>>,
    sequencer: Option<RaftGroup<SequencerLogic>>,
    publisher: Arc<dyn Publisher>,
    /// The write path when this node hosts shard groups (closed at shutdown).
    shard_publisher: Option<ShardPublisher>,
    /// Where auditors' cosignatures are stored (see [`Node::cosignature_log`]).
    cosignatures: Arc<dyn CosignatureLog>,
    heads: watch::Receiver<Option<SignedHead>>,
    /// When `heads` last changed (for [`Node::currency`]).
    head_clock: currency::HeadClock,
    /// Whether this node's heads come from its own groups (not a shared store).
    heads_from_groups: bool,
    /// Epoch interval and Raft election timeout (for [`Node::currency`]).
    currency_timing: (Duration, Duration),
    membership: Membership,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("namespace", &self.public.namespace)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

fn members() -> BTreeMap<u64, String> {
    BTreeMap::from([(DEV_NODE_ID, format!("inproc-{DEV_NODE_ID}"))])
}

/// Where a node sits among the members of its deployment.
///
/// Every member holds a replica of every group (each shard and the sequencer): the
/// co-located layout of `candor serve --role all`.
#[derive(Clone)]
pub struct Topology {
    /// This node's Raft id (stable across restarts, unique in the deployment).
    pub node_id: NodeId,
    /// The address peers reach this node's Raft service at.
    pub addr: String,
    /// Every voting member (id → Raft address), this node included.
    pub members: BTreeMap<NodeId, String>,
    /// Sends this node's Raft RPCs.
    pub transport: Arc<dyn RaftTransport>,
    /// Initialize brand-new groups with `members` (a no-op on groups that have state).
    /// Exactly one member of a new deployment should bootstrap; by convention the one
    /// with the smallest id. A member joining an existing deployment must not: its
    /// groups stay idle (no leader, no heads, API not ready) until the leaders add it
    /// ([`Membership::add_member`]), then it catches up from their logs.
    pub bootstrap: bool,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("node_id", &self.node_id)
            .field("addr", &self.addr)
            .field("members", &self.members)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Topology {
    fn validate(&self) -> Result<(), NodeError> {
        match self.members.get(&self.node_id) {
            None => Err(NodeError::Config(format!(
                "node id {} is not among the members {:?}",
                self.node_id,
                self.members.keys().collect::<Vec<_>>()
            ))),
            Some(a) if *a != self.addr => Err(NodeError::Config(format!(
                "node {} has address {:?} in the member list but {:?} as its own",
                self.node_id, a, self.addr
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Where a member of a **shared-state** deployment sits ([`Node::start_shared`]).
///
/// Shard groups and the sequencer group may have different members: the member hosts
/// every shard group if it is among `shard_members` and the sequencer group if it is
/// among `sequencer_members` (both: `--role all`).
#[derive(Clone)]
pub struct SharedTopology {
    /// This node's Raft id (stable across restarts, unique in the deployment).
    pub node_id: NodeId,
    /// The address peers reach this node's Raft service at.
    pub addr: String,
    /// The voters of every shard group (id → Raft address).
    pub shard_members: BTreeMap<NodeId, String>,
    /// The voters of the sequencer group.
    pub sequencer_members: BTreeMap<NodeId, String>,
    /// Placement: the shard members hosting each shard's group, by shard number. A
    /// shard not listed (or an empty map) is hosted by every shard member. A member
    /// sends the writes of shards it does not host to the members that do
    /// ([`candor_raft::RemoteGroup`]); reads need no placement (the store is shared).
    pub shard_placement: BTreeMap<u32, Vec<NodeId>>,
    /// Sends this node's Raft RPCs.
    pub transport: Arc<dyn RaftTransport>,
    /// Initialize the brand-new groups this member hosts with their member sets. Per
    /// kind of group, exactly one member of a new deployment should bootstrap (by
    /// convention the smallest id among the group's members).
    pub bootstrap: bool,
}

impl std::fmt::Debug for SharedTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTopology")
            .field("node_id", &self.node_id)
            .field("addr", &self.addr)
            .field("shard_members", &self.shard_members)
            .field("sequencer_members", &self.sequencer_members)
            .field("shard_placement", &self.shard_placement)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl SharedTopology {
    fn validate(&self) -> Result<(), NodeError> {
        let mut hosts = false;
        for (kind, members) in [
            ("shard", &self.shard_members),
            ("sequencer", &self.sequencer_members),
        ] {
            if members.is_empty() {
                return Err(NodeError::Config(format!("no {kind} members given")));
            }
            if let Some(a) = members.get(&self.node_id) {
                hosts = true;
                if *a != self.addr {
                    return Err(NodeError::Config(format!(
                        "node {} has address {a:?} among the {kind} members but {:?} as its own",
                        self.node_id, self.addr
                    )));
                }
            }
        }
        for (shard, ids) in &self.shard_placement {
            if ids.is_empty() {
                return Err(NodeError::Config(format!(
                    "shard {shard} is placed on no member"
                )));
            }
            if let Some(id) = ids.iter().find(|i| !self.shard_members.contains_key(i)) {
                return Err(NodeError::Config(format!(
                    "shard {shard} is placed on node {id}, which is not a shard member"
                )));
            }
        }
        if !hosts {
            return Err(NodeError::Config(format!(
                "node {} is neither a shard member {:?} nor a sequencer member {:?} \
                 (an API-only process reads the store: StoreReader)",
                self.node_id,
                self.shard_members.keys().collect::<Vec<_>>(),
                self.sequencer_members.keys().collect::<Vec<_>>()
            )));
        }
        Ok(())
    }
}

/// What `start_inner` builds: which groups, with whom, over which state.
struct Plan {
    node_id: NodeId,
    addr: String,
    /// Host the shard groups (with these members at bootstrap).
    shard_members: Option<BTreeMap<NodeId, String>>,
    /// Host the sequencer group.
    sequencer_members: Option<BTreeMap<NodeId, String>>,
    transport: Arc<dyn RaftTransport>,
    bootstrap: bool,
    /// Shared-state mode (FoundationDB): every replica applies to one store.
    shared: bool,
    /// Shared mode: the shard members hosting each shard (absent: all shard members).
    placement: BTreeMap<u32, Vec<NodeId>>,
}

impl Plan {
    /// The members of shard `s`'s group (shard members, narrowed by the placement).
    fn shard_group_members(&self, s: u32) -> BTreeMap<NodeId, String> {
        let all = self.shard_members.clone().unwrap_or_default();
        match self.placement.get(&s) {
            None => all,
            Some(ids) => all.into_iter().filter(|(id, _)| ids.contains(id)).collect(),
        }
    }

    /// Whether this node initializes a new group with `members`: co-located, the
    /// bootstrap member initializes every group; shared, each group is initialized by
    /// its smallest member (when that member is started with `bootstrap`), so that
    /// placements with different members need no coordination.
    fn initializes(&self, members: &BTreeMap<NodeId, String>) -> bool {
        self.bootstrap && (!self.shared || members.keys().next() == Some(&self.node_id))
    }
}

/// The write path of a process without shard groups (a sequencer member, an API node
/// reading a shared store): every write is refused as unavailable (clients retry
/// elsewhere; an API node forwards writes to shard members instead).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoShards;

#[async_trait::async_trait]
impl Publisher for NoShards {
    async fn publish(
        &self,
        _items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishReceipt, PublishError>>, PublishError> {
        Err(PublishError::Unavailable(
            "this member hosts no shard group (role sequencer): send writes to a shard member"
                .into(),
        ))
    }

    async fn erase(
        &self,
        _tenant: String,
        _index: candor_core::Index,
        _version: u64,
    ) -> Result<(), PublishError> {
        Err(PublishError::Unavailable(
            "this member hosts no shard group (role sequencer): send writes to a shard member"
                .into(),
        ))
    }
}

/// Cosignatures through the sequencer's Raft group ([`candor_sequencer::propose_cosignature`]).
struct RaftCosignatures(RaftGroup<SequencerLogic>);

#[async_trait::async_trait]
impl CosignatureLog for RaftCosignatures {
    async fn submit(&self, cosignature: Vec<u8>) -> Result<bool, PublishError> {
        candor_sequencer::propose_cosignature(&self.0, cosignature)
            .await
            .map_err(|e| match e {
                candor_sequencer::SequencerError::Rejected(why) => {
                    PublishError::InvalidArgument(why)
                }
                // Not proposed, or an unknown outcome: storing is idempotent, the
                // auditor retries.
                candor_sequencer::SequencerError::Raft(why) => PublishError::Unavailable(why),
                other => PublishError::Internal(other.to_string()),
            })
    }
}

/// Cosignatures written straight into a store every member shares (the caller, the
/// API, verified them against the stored head).
pub struct DirectCosignatures(pub Arc<EpochLogStore>);

#[async_trait::async_trait]
impl CosignatureLog for DirectCosignatures {
    async fn submit(&self, cosignature: Vec<u8>) -> Result<bool, PublishError> {
        let c = candor_core::signed::Cosignature::decode(&cosignature)
            .map_err(|e| PublishError::InvalidArgument(format!("cosignature: {e}")))?;
        let epochs = Arc::clone(&self.0);
        candor_sim::spawn_blocking(move || {
            epochs.store_cosignature(c.epoch, &c.auditor_key.0, &cosignature)
        })
        .await
        .map_err(|e| PublishError::Internal(format!("cosignature write task: {e}")))?
        .map_err(|e| PublishError::Internal(e.to_string()))
    }
}

/// A member with its own store and no sequencer replica: it cannot store a
/// cosignature where every member would see it.
struct NoCosignatures;

#[async_trait::async_trait]
impl CosignatureLog for NoCosignatures {
    async fn submit(&self, _cosignature: Vec<u8>) -> Result<bool, PublishError> {
        Err(PublishError::Unavailable(
            "this member hosts no sequencer replica: submit cosignatures to one that does".into(),
        ))
    }
}

/// Whether this node's shard trees hold every revision `epoch` covers.
fn readable_now(forest: &Forest, epochs: &EpochLogStore, epoch: u64) -> bool {
    match epochs.revisions(epoch) {
        Ok(revs) => revs.iter().enumerate().all(|(s, r)| {
            forest
                .shard(s as u32)
                .is_ok_and(|t| t.latest_revision() >= *r)
        }),
        Err(e) => {
            tracing::warn!(epoch, error = %e, "cannot read the epoch's revisions");
            false
        }
    }
}

/// Forwards each applied head to `readable` once this node's shard trees hold every
/// revision the head covers (at once on a single node; a follower may lag briefly).
fn spawn_readable_heads(
    mut applied: watch::Receiver<Option<SignedHead>>,
    readable: watch::Sender<Option<SignedHead>>,
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let head = applied.borrow_and_update().clone();
            if let Some(h) = head {
                let epoch = h.head.epoch;
                let mut wait = Duration::from_millis(1);
                loop {
                    if readable_now(&forest, &epochs, epoch) {
                        break;
                    }
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_millis(50));
                }
                readable.send_if_modified(|cur| {
                    if cur.as_ref().is_some_and(|c| c.head.epoch >= epoch) {
                        false
                    } else {
                        *cur = Some(h);
                        true
                    }
                });
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = applied.changed() => if r.is_err() { return },
            }
        }
    })
}

/// Keeps the SMT signing key on the active key version: from the sequencer replica
/// here, or (no sequencer replica here) from the configurations in the shared store.
fn spawn_smt_key_follower(
    publisher: ShardPublisher,
    versions: Option<watch::Receiver<u32>>,
    epochs: Arc<EpochLogStore>,
    config: NodeConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let key_of = move |v: u32| -> Option<Arc<SigningKeyPair>> {
        if v == 1 {
            return Some(Arc::new(SigningKeyPair::from_seed(
                &config.keys.smt.to_seed(),
            )));
        }
        config
            .key_versions
            .iter()
            .find(|k| k.version == v)
            .map(|k| Arc::clone(&k.smt))
    };
    let poll = reader::poll_interval(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut current = 1u32;
        let mut versions = versions;
        loop {
            let v = match &mut versions {
                Some(rx) => *rx.borrow_and_update(),
                None => epochs
                    .configs()
                    .map(|c| (c.len() as u32).max(1))
                    .unwrap_or(current),
            };
            if v != current {
                match key_of(v) {
                    Some(k) => {
                        publisher.set_smt_key(k);
                        current = v;
                        tracing::info!(version = v, "SMTs are signed with the new key version");
                    }
                    None => tracing::error!(
                        version = v,
                        "key version {v} is active but this member lacks smt-{v}.key: its SMTs \
                         will fail verification once the grace period ends"
                    ),
                }
            }
            match &mut versions {
                Some(rx) => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    r = rx.changed() => if r.is_err() { return },
                },
                None => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(poll) => {}
                },
            }
        }
    })
}

/// What [`Node::start_shards`] started.
struct ShardStep {
    groups: Vec<RaftGroup<ShardLogic>>,
    counters: Vec<(u32, Arc<std::sync::atomic::AtomicUsize>)>,
    routes: Vec<ShardRoute>,
}

/// What [`Node::start_sequencer`] started.
struct SequencerStep {
    group: Option<RaftGroup<SequencerLogic>>,
    applied_heads: Option<watch::Receiver<Option<SignedHead>>>,
    key_versions: Option<watch::Receiver<u32>>,
}

/// Refuses a store that belongs to another (namespace, shard_bits). An empty store is
/// stamped with this one when `record` (members), accepted as is otherwise (readers:
/// the members stamp it when they start).
pub(crate) fn check_identity(
    store: &dyn Store,
    public: &PublicConfig,
    record: bool,
) -> Result<(), NodeError> {
    let mut want = vec![1u8, public.shard_bits];
    want.extend_from_slice(public.namespace.as_bytes());
    match store.get(Space::Meta, CONFIG_KEY)? {
        Some(v) if v == want => Ok(()),
        Some(v) if v.len() >= 2 && v[0] == 1 => Err(NodeError::Config(format!(
            "the store belongs to namespace {:?} with shard_bits {}, not {:?} with {}",
            String::from_utf8_lossy(&v[2..]),
            v[1],
            public.namespace,
            public.shard_bits
        ))),
        Some(_) => Err(NodeError::Storage(
            "node identity record of unexpected shape".into(),
        )),
        None if record => {
            let mut b = WriteBatch::new();
            b.put(Space::Meta, CONFIG_KEY.to_vec(), want);
            store.write(&b, Durability::Sync)?;
            Ok(())
        }
        None => {
            tracing::warn!("the store holds no deployment yet: waiting for the members to start");
            Ok(())
        }
    }
}

impl Node {
    /// Open (or create) the store at `config.data_dir`, start every group and ticker,
    /// and wait until each group has elected this node. Call inside a tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let public = config.public_config();
        public
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        if config.seal_interval.is_zero() || config.seal_interval >= config.max_merge_delay {
            return Err(NodeError::Config(
                "seal interval must be > 0 and below the maximum merge delay".into(),
            ));
        }
        let store = Self::open_store(&config).await?;
        Self::start_on(store, config).await
    }

    /// Open (or create) the embedded store at `config.data_dir/store`.
    pub async fn open_store(config: &NodeConfig) -> Result<Arc<dyn Store>, NodeError> {
        let dir = config.data_dir.join("store");
        let fjall_cfg = config.store.clone();
        candor_sim::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| NodeError::Storage(format!("cannot create {}: {e}", dir.display())))?;
            FjallStore::open_with(&dir, fjall_cfg).map_err(NodeError::from)
        })
        .await
        .map_err(|e| NodeError::Storage(format!("open task failed: {e}")))?
        .map(|s| Arc::new(s) as Arc<dyn Store>)
    }

    /// Like [`Node::start`] on an already opened store (tests use `MemStore`).
    pub async fn start_on(
        store: Arc<dyn Store>,
        mut config: NodeConfig,
    ) -> Result<Node, NodeError> {
        // The only member: snapshots just compact the log; the data stays in the store.
        config.shard.index_only_snapshots = true;
        let net = InProcessNetwork::new(0);
        let topology = Topology {
            node_id: DEV_NODE_ID,
            addr: format!("inproc-{DEV_NODE_ID}"),
            members: members(),
            transport: net.endpoint(DEV_NODE_ID),
            bootstrap: true,
        };
        let node = Self::start_with(store, config.clone(), topology, move |raft| {
            net.register(raft)
        })
        .await?;
        for g in &node.shards {
            g.wait_for_leader(config.start_timeout).await?;
        }
        if let Some(seq) = &node.sequencer {
            seq.wait_for_leader(config.start_timeout).await?;
        }
        Ok(node)
    }

    /// Start one member of a cluster (or the single member of `candor dev`) on `store`.
    ///
    /// Every group (each shard and the sequencer) is replicated on every member of
    /// `topology.members`; `on_raft` runs right after the Raft node exists, before any
    /// group starts, so the caller can start serving its Raft RPCs (peers contact it as
    /// soon as groups run). Unlike [`Node::start_on`] this does not wait for leaders:
    /// a restarting member comes up while its peers may still be down.
    pub async fn start_with(
        store: Arc<dyn Store>,
        config: NodeConfig,
        topology: Topology,
        on_raft: impl FnOnce(&RaftNode),
    ) -> Result<Node, NodeError> {
        topology.validate()?;
        let plan = Plan {
            node_id: topology.node_id,
            addr: topology.addr,
            shard_members: Some(topology.members.clone()),
            sequencer_members: Some(topology.members),
            transport: topology.transport,
            bootstrap: topology.bootstrap,
            shared: false,
            placement: BTreeMap::new(),
        };
        Self::start_inner(Arc::clone(&store), store, config, plan, on_raft).await
    }

    /// Start one member of a **shared-state** deployment (FoundationDB): the groups'
    /// state lives in `shared`, which every member and every API node reads and writes;
    /// this member's Raft logs live in `local` (its own disk).
    ///
    /// The member hosts the shard groups if it is among `topology.shard_members` and the
    /// sequencer group if it is among `topology.sequencer_members` (the `--role shard`,
    /// `--role sequencer` and `--role all` processes). Shard replicas run
    /// [`ShardLogic::open_shared`] and sequencer replicas
    /// [`SequencerLogic::open_shared`]: each applies every committed entry to the one
    /// shared state, idempotently, and snapshots carry only the applied index.
    /// [`Node::heads`] follows the epoch log in the shared store (as
    /// [`StoreReader`] does), so a shard member serves reads at every signed epoch.
    pub async fn start_shared(
        local: Arc<dyn Store>,
        shared: Arc<dyn Store>,
        mut config: NodeConfig,
        topology: SharedTopology,
        on_raft: impl FnOnce(&RaftNode),
    ) -> Result<Node, NodeError> {
        topology.validate()?;
        config.shard.index_only_snapshots = true;
        let plan = Plan {
            node_id: topology.node_id,
            addr: topology.addr.clone(),
            shard_members: topology
                .shard_members
                .contains_key(&topology.node_id)
                .then(|| topology.shard_members.clone()),
            sequencer_members: topology
                .sequencer_members
                .contains_key(&topology.node_id)
                .then(|| topology.sequencer_members.clone()),
            transport: topology.transport,
            bootstrap: topology.bootstrap,
            shared: true,
            placement: topology.shard_placement.clone(),
        };

        Self::start_inner(local, shared, config, plan, on_raft).await
    }

    async fn start_inner(
        raft_store: Arc<dyn Store>,
        store: Arc<dyn Store>,
        config: NodeConfig,
        plan: Plan,
        on_raft: impl FnOnce(&RaftNode),
    ) -> Result<Node, NodeError> {
        let public = config.public_config();
        public
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        check_identity(&*store, &public, true)?;
        if plan.shared {
            let mut b = WriteBatch::new();
            b.put(Space::Meta, PUBLIC_CONFIG_KEY.to_vec(), public.encode());
            store.write(&b, Durability::Sync)?;
        }
        let forest = Forest::open(
            Arc::clone(&store),
            TreeConfig {
                shard_bits: config.shard_bits,
                cache_bytes: config.tree_cache_bytes,
                // Buffered: a seal is re-done from the Raft log if lost (see crate docs).
                seal_durability: Durability::Buffered,
                ..TreeConfig::default()
            },
        )?;
        let epochs = Arc::new(EpochLogStore::open(Arc::clone(&store))?);

        let node_id = plan.node_id;
        let mut rcfg = RaftNodeConfig::new(node_id, plan.addr.clone());
        rcfg.tuning = config.raft.clone();
        if candor_sim::is_simulated() {
            // No thread besides the simulation's: Raft store work runs inline
            // (simulations run over in-memory stores).
            rcfg.io = candor_raft::IoMode::Inline;
        }
        let raft = RaftNode::new(rcfg, raft_store, Arc::clone(&plan.transport))?;
        on_raft(&raft);

        let ShardStep {
            groups: shards,
            counters,
            routes,
        } = Self::start_shards(&raft, &forest, &config, &plan).await?;
        let SequencerStep {
            group: sequencer,
            applied_heads,
            key_versions,
        } = Self::start_sequencer(&raft, &store, &epochs, &public, &config, &plan).await?;
        let mut pcfg = PublisherConfig::new(
            public.namespace.clone(),
            config.shard_bits,
            public.max_merge_delay_ms,
        );
        pcfg.max_batch_items = config.max_batch_items.max(1);
        pcfg.max_inflight = config.max_inflight.max(1);
        let smt_key = Arc::new(SigningKeyPair::from_seed(&config.keys.smt.to_seed()));
        let shard_publisher = if routes.is_empty() {
            None
        } else {
            Some(ShardPublisher::with_routes(routes, smt_key, pcfg)?)
        };
        let publisher: Arc<dyn Publisher> = match &shard_publisher {
            Some(p) => Arc::new(p.clone()),
            None => Arc::new(NoShards),
        };

        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        // What the epoch ticker seals first when this node becomes sequencer leader.
        let local_shards: Vec<membership::LocalShard> = shards
            .iter()
            .zip(&counters)
            .map(|(g, (s, c))| (*s, g.clone(), Arc::clone(c)))
            .collect();
        for (g, (s, c)) in shards.iter().zip(counters) {
            tasks.push(candor_shard::spawn_sealer(
                node_id,
                s,
                g.clone(),
                c,
                config.seal_interval,
                cancel.child_token(),
            ));
        }
        let membership = Membership::new(node_id, &shards, sequencer.as_ref());
        if let Some(seq) = &sequencer {
            tasks.push(membership::spawn_epoch_ticker(
                seq.clone(),
                forest.clone(),
                membership.clone(),
                local_shards,
                config.epoch_interval,
                config.activate_key_version,
                cancel.child_token(),
            ));
        }
        if let Some(p) = &shard_publisher {
            tasks.push(spawn_smt_key_follower(
                p.clone(),
                key_versions,
                Arc::clone(&epochs),
                config.clone(),
                cancel.child_token(),
            ));
        }
        let heads = Self::start_heads(
            &plan,
            &config,
            &forest,
            &epochs,
            applied_heads,
            &cancel,
            &mut tasks,
        );
        let (head_clock, clock_task) =
            currency::HeadClock::follow(heads.clone(), cancel.child_token());
        tasks.push(clock_task);
        info!(
            node = node_id,
            shard_members = plan.shard_members.as_ref().map_or(0, BTreeMap::len),
            sequencer_members = plan.sequencer_members.as_ref().map_or(0, BTreeMap::len),
            shared_state = plan.shared,
            namespace = %public.namespace,
            shards = shards.len(),
            epoch = epochs.latest_epoch(),
            "candor node started"
        );
        let cosignatures: Arc<dyn CosignatureLog> = match (&sequencer, plan.shared) {
            (Some(g), _) => Arc::new(RaftCosignatures(g.clone())),
            (None, true) => Arc::new(DirectCosignatures(Arc::clone(&epochs))),
            (None, false) => Arc::new(NoCosignatures),
        };
        Ok(Node {
            public,
            store,
            forest,
            epochs,
            raft,
            shards,
            sequencer,
            publisher,
            shard_publisher,
            cosignatures,
            heads,
            head_clock,
            heads_from_groups: !plan.shared,
            currency_timing: (config.epoch_interval, config.raft.election_timeout_max),
            membership,
            cancel,
            tasks,
        })
    }

    /// Start step 1: the shard groups this node hosts (started, and initialized when
    /// this node bootstraps them), and a route for every shard.
    async fn start_shards(
        raft: &RaftNode,
        forest: &Forest,
        config: &NodeConfig,
        plan: &Plan,
    ) -> Result<ShardStep, NodeError> {
        let node_id = plan.node_id;
        let n = 1u32 << config.shard_bits;
        let mut shards = Vec::with_capacity(n as usize);
        // (shard, pending counter) of each hosted group, for its sealer.
        let mut counters = Vec::with_capacity(n as usize);
        let mut routes = Vec::with_capacity(n as usize);
        if plan.shard_members.is_some() {
            for s in 0..n {
                let members = plan.shard_group_members(s);
                if !members.contains_key(&node_id) {
                    // Placed on other members: writes go through them.
                    let replicas = members.into_iter().collect();
                    routes.push(ShardRoute::Remote(RemoteGroup::new(
                        raft,
                        GroupId(u64::from(s)),
                        replicas,
                    )?));
                    continue;
                }
                let logic = if plan.shared {
                    ShardLogic::open_shared(forest, s, node_id, config.shard.clone())?
                } else {
                    ShardLogic::open(forest, s, config.shard.clone())?
                };
                counters.push((s, logic.pending_counter()));
                let g = raft.start_group(GroupId(u64::from(s)), logic).await?;
                if plan.initializes(&members) {
                    g.initialize(members).await?;
                }
                routes.push(ShardRoute::Local(g.clone()));
                shards.push(g);
            }
        }
        Ok(ShardStep {
            groups: shards,
            counters,
            routes,
        })
    }

    /// Start step 2: the sequencer replica, when this node hosts one, with its
    /// applied heads and active key version.
    async fn start_sequencer(
        raft: &RaftNode,
        store: &Arc<dyn Store>,
        epochs: &Arc<EpochLogStore>,
        public: &PublicConfig,
        config: &NodeConfig,
        plan: &Plan,
    ) -> Result<SequencerStep, NodeError> {
        let mut sequencer = None;
        let mut applied_heads = None;
        let mut key_versions = None;
        if let Some(members) = &plan.sequencer_members {
            let head_key = Arc::new(SigningKeyPair::from_seed(&config.keys.head.to_seed()));
            let seq_logic = if plan.shared {
                SequencerLogic::open_shared(
                    Arc::clone(store),
                    Arc::clone(epochs),
                    public.clone(),
                    head_key,
                    plan.node_id,
                )?
            } else {
                SequencerLogic::open(
                    Arc::clone(store),
                    Arc::clone(epochs),
                    public.clone(),
                    head_key,
                )?
                // A single-member node never ships its state (see `ShardLogicConfig`).
                .with_index_only_snapshots(config.shard.index_only_snapshots)
            };
            let seq_logic = seq_logic.with_key_versions(
                config
                    .key_versions
                    .iter()
                    .map(|k| candor_sequencer::KeyVersion {
                        version: k.version,
                        head: Arc::clone(&k.head),
                        smt_public: k.smt.public_key(),
                    })
                    .collect(),
            )?;
            key_versions = Some(seq_logic.subscribe_versions());
            applied_heads = Some(seq_logic.subscribe());
            let g = raft
                .start_group(GroupId(SEQUENCER_GROUP), seq_logic)
                .await?;
            if plan.initializes(members) {
                g.initialize(members.clone()).await?;
            }
            sequencer = Some(g);
        }

        Ok(SequencerStep {
            group: sequencer,
            applied_heads,
            key_versions,
        })
    }

    /// Start step 3: the heads this node serves as readable (a signed head whose
    /// revisions the local trees hold): from the local sequencer replica, or from the
    /// epoch log in a shared store.
    fn start_heads(
        plan: &Plan,
        config: &NodeConfig,
        forest: &Forest,
        epochs: &Arc<EpochLogStore>,
        applied_heads: Option<watch::Receiver<Option<SignedHead>>>,
        cancel: &CancellationToken,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> watch::Receiver<Option<SignedHead>> {
        match (plan.shared, applied_heads) {
            (false, Some(applied_heads)) => {
                // Start from the stored head when this node already holds its revisions
                // (any restart of a member that was caught up), so `heads()` is never
                // briefly empty.
                let initial = applied_heads
                    .borrow()
                    .clone()
                    .filter(|h| readable_now(forest, epochs, h.head.epoch));
                let (readable_tx, heads) = watch::channel(initial);
                tasks.push(spawn_readable_heads(
                    applied_heads,
                    readable_tx,
                    forest.clone(),
                    Arc::clone(epochs),
                    cancel.child_token(),
                ));
                heads
            }
            // Shared state: follow the epoch log in the store (another member signs).
            (_, applied) => {
                let (heads, task) = reader::spawn_store_heads(
                    forest.clone(),
                    Arc::clone(epochs),
                    applied,
                    reader::poll_interval(config.epoch_interval),
                    cancel.child_token(),
                );
                tasks.push(task);
                heads
            }
        }
    }

    /// The write path (routes to shards, batches, signs SMTs).
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::clone(&self.publisher)
    }

    /// Where the API stores auditors' cosignatures: through the sequencer's Raft group
    /// when this node hosts a replica of it (every replica then holds them), straight
    /// into the shared store otherwise (FoundationDB; every member reads that one
    /// copy). A member with its own store and no sequencer replica refuses them.
    pub fn cosignature_log(&self) -> Arc<dyn CosignatureLog> {
        Arc::clone(&self.cosignatures)
    }

    /// The node's store (every space).
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The tree engine over the store (reads at any retained revision).
    pub fn forest(&self) -> Forest {
        self.forest.clone()
    }

    /// The epoch log: heads, revisions per epoch, log proofs, `view(forest, epoch)`.
    pub fn epochs(&self) -> Arc<EpochLogStore> {
        Arc::clone(&self.epochs)
    }

    /// The latest signed head this node can serve: persisted, and every shard tree
    /// revision it covers applied by this node's replicas (a follower may apply the
    /// sequencer's entry before the seals it names).
    pub fn heads(&self) -> watch::Receiver<Option<SignedHead>> {
        self.heads.clone()
    }

    /// Whether this member may present its newest head as the latest, checked at
    /// each call (see [`currency`]): the API's latest reads, gRPC health and
    /// `/readyz` follow it.
    pub fn currency(&self) -> candor_api::Currency {
        let heads = self.heads.clone();
        let epochs = Arc::clone(&self.epochs);
        let raft = self.raft.downgrade();
        let clock = self.head_clock.clone();
        let from_groups = self.heads_from_groups;
        let (epoch_interval, election_timeout) = self.currency_timing;
        // Only a co-located member's heads follow its own sequencer replica.
        let sequencer = self.sequencer.clone().filter(|_| from_groups);
        Arc::new(move || {
            let served_epoch = heads.borrow().as_ref().map_or(0, |h| h.head.epoch);
            let since_last_head = clock.since();
            // Group metrics only matter once heads are stale (rule 2); reading
            // them on every latest read would cost a copy per group.
            let stale = since_last_head > epoch_interval * currency::STALE_INTERVALS;
            let groups = match (from_groups && stale, raft.upgrade()) {
                (true, Some(r)) => r.group_metrics(),
                (true, None) => return Err("shutting down".into()),
                (false, _) => Vec::new(),
            };
            currency::verdict(&currency::CurrencyInputs {
                served_epoch,
                signed_epoch: epochs.latest_epoch(),
                sequencer: sequencer
                    .as_ref()
                    .map_or(currency::SequencerView::Unknown, |g| {
                        currency::sequencer_view(&g.metrics(), election_timeout)
                    }),
                since_last_head,
                epoch_interval,
                election_timeout,
                groups: &groups,
            })
        })
    }

    /// What the API serves this node through: its write path, cosignature log,
    /// trees, epoch log, heads and their [`Node::currency`].
    pub fn api_backend(&self) -> candor_api::Backend {
        candor_api::Backend {
            publisher: self.publisher(),
            cosignatures: self.cosignature_log(),
            forest: self.forest(),
            epochs: self.epochs(),
            heads: self.heads(),
            currency: Some(self.currency()),
            config: self.public.clone(),
            label_vrfs: Some(self.store()),
        }
    }

    /// The public configuration (what clients pin).
    pub fn config(&self) -> &PublicConfig {
        &self.public
    }

    /// The shard groups this node hosts, in ascending shard order (every shard, by shard
    /// number, unless a shared-state placement gives some to other members).
    pub fn shard_groups(&self) -> &[RaftGroup<ShardLogic>] {
        &self.shards
    }

    /// This node's Raft node (serves Raft RPCs, membership changes).
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// Membership operations on this node's groups (add / remove a member, move a
    /// replica, status); see [`membership`].
    pub fn membership(&self) -> Membership {
        self.membership.clone()
    }

    /// The sequencer group (metrics, tests); `None` on a member that does not host it.
    pub fn sequencer_group(&self) -> Option<&RaftGroup<SequencerLogic>> {
        self.sequencer.as_ref()
    }

    /// Seal every shard with pending labels and make an epoch now, without waiting for
    /// the tickers. Returns the new epoch number.
    pub async fn flush_epoch(&self) -> Result<u64, NodeError> {
        for g in &self.shards {
            let pending = g.read(|l| !l.pending().is_empty()).await?;
            if pending {
                g.client_write(candor_shard::ShardCommand::Seal.encode())
                    .await?;
            }
        }
        let seq = self.sequencer.as_ref().ok_or_else(|| {
            NodeError::FailedPrecondition("this node does not host the sequencer".into())
        })?;
        Ok(propose_epoch(seq, &self.forest).await?)
    }

    /// Stop the tickers and the publisher, shut every group down and sync the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Some(p) = &self.shard_publisher {
            p.close();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.raft.shutdown().await;
        let store = Arc::clone(&self.store);
        let _ = candor_sim::spawn_blocking(move || store.sync()).await;
        info!("candor node stopped");
    }
}

#[cfg(test)]
mod label_tests {
    /// Metrics label the sequencer group by its id, which candor-telemetry keeps a copy of.
    #[test]
    fn telemetry_knows_the_sequencer_group() {
        assert_eq!(
            candor_telemetry::group_label(super::SEQUENCER_GROUP),
            "sequencer"
        );
        assert_eq!(candor_telemetry::group_label(3), "shard-3");
    }
}
