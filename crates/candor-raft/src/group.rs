//! [`RaftNode`] (one per process: log store, transport, group registry) and
//! [`RaftGroup`] (a handle on one running group).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, InitializeError, LinearizableReadError, RaftError};
use openraft::{BasicNode, Raft, ReadPolicy, ServerState};

use crate::Error;
use crate::log_store::{GroupLogStore, IoMode, LogDb};
use crate::network::{
    BoxFuture, ClientWriteReply, ClientWriteRpc, ClientWriteRpcRef, NetworkFactory, RaftTransport,
    RejectReason, Rejected, RpcKind, SnapshotChunk, SnapshotChunkReply, SnapshotRpc,
    TransportError, serve,
};
use crate::state_machine::{StateMachine, StateMachineLogic, recv_append, recv_clear, recv_data};
use crate::step_aside::{LeaderSample, StepAside, StepAsideTuning};
use crate::types::{
    GroupId, LogId, NodeId, Request, SnapshotMeta, TypeConfig, Vote, decode, encode,
};

/// Key prefix of the Raft log inside the node's store.
pub const DEFAULT_KEY_PREFIX: &[u8] = b"\x00raft/";

/// Default largest piece of a snapshot transfer: 4 MiB.
pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;

/// Timing and sizing knobs shared by every group of a node.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// Build a snapshot (and allow purging the log) after this many applied entries.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log after a snapshot (lets slow followers catch up by log).
    pub keep_after_snapshot: u64,
    /// Largest piece of a snapshot transfer ([`RpcKind::SnapshotChunk`]); must fit the
    /// transport's message limit with room for the metadata.
    pub snapshot_chunk_bytes: usize,
    /// Deadline of one non-final snapshot piece (openraft's `install_snapshot_timeout`).
    pub snapshot_chunk_timeout: Duration,
    /// Deadline of the final snapshot piece, which includes installing the snapshot on
    /// the receiver (hundreds of MB for a big shard).
    pub snapshot_install_timeout: Duration,
    /// Most entries in one AppendEntries message.
    pub max_payload_entries: u64,
    /// Pre-vote: a node that cannot win (partitioned, restarted, behind) asks before it
    /// bumps its term, so it cannot depose a healthy leader when it comes back.
    pub pre_vote: bool,
    /// Bound on one [`RaftGroup::write`] call: redirects, leader elections and the
    /// leader's commit all have to fit in it.
    pub forward_timeout: Duration,
    /// When a leader that its followers hear but cannot answer well (inbound drops, a
    /// slow link) hands its leadership over (see [`crate::step_aside`]). `None`: never.
    pub step_aside: Option<StepAsideTuning>,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            snapshot_after_entries: 50_000,
            keep_after_snapshot: 10_000,
            snapshot_chunk_bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES,
            snapshot_chunk_timeout: Duration::from_secs(10),
            snapshot_install_timeout: Duration::from_secs(300),
            max_payload_entries: 1024,
            pre_vote: true,
            forward_timeout: Duration::from_secs(5),
            step_aside: Some(StepAsideTuning::default()),
        }
    }
}

impl RaftTuning {
    fn to_openraft(&self) -> Result<openraft::Config, Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let cfg = openraft::Config {
            cluster_name: "candor".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes.max(1) as u64,
            install_snapshot_timeout: ms(self.snapshot_chunk_timeout).max(1),
            max_payload_entries: self.max_payload_entries,
            enable_pre_vote: Some(self.pre_vote),
            ..Default::default()
        };
        cfg.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

/// Identity and settings of this process as a Raft node.
#[derive(Clone, Debug)]
pub struct RaftNodeConfig {
    /// This node's id; stable across restarts.
    pub node_id: NodeId,
    /// The address peers use to reach this node (recorded in memberships).
    pub addr: String,
    /// Timing knobs.
    pub tuning: RaftTuning,
    /// Prefix of every Raft key in the store.
    pub key_prefix: Vec<u8>,
    /// Where store work runs: threads (servers) or inline (simulation).
    pub io: IoMode,
}

impl RaftNodeConfig {
    /// Defaults for `node_id` at `addr`.
    pub fn new(node_id: NodeId, addr: impl Into<String>) -> Self {
        Self {
            node_id,
            addr: addr.into(),
            tuning: RaftTuning::default(),
            key_prefix: DEFAULT_KEY_PREFIX.to_vec(),
            io: IoMode::Threads,
        }
    }
}

/// Server-side entry of one group, type-erased over its state machine.
trait GroupService: Send + Sync {
    fn handle(
        &self,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Rejected>>;
    fn shutdown(&self) -> BoxFuture<'static, ()>;
    fn metrics(&self) -> GroupMetrics;
}

struct GroupEntry<L: StateMachineLogic> {
    group: GroupId,
    raft: Raft<TypeConfig, StateMachine<L>>,
    max_payload: usize,
    log: GroupLogStore,
    /// The snapshot transfer being received, if any (one at a time per group).
    receiving: Arc<tokio::sync::Mutex<Option<Receiving>>>,
    /// When a leader last reached this replica (see [`LeaderContact`]).
    contact: Arc<LeaderContact>,
}

/// When this replica last accepted an AppendEntries from a leader (a heartbeat
/// or entries, of a term not older than its own). With pre-vote a follower cut
/// off from its leader stays a follower that still names it: this is how it
/// can tell that nobody has reached it for a while.
/// It also keeps the highest leader commit index those messages carried, so a
/// follower knows how far behind its leader it is, and when the current run
/// of contact began: a link that comes back after a cut first delivers what
/// TCP queued during it (the multi-host test saw requests 13 s old arrive
/// 7 s after a partition healed), so a message's arrival alone does not say
/// that the leader's word is fresh.
#[derive(Debug)]
pub(crate) struct LeaderContact {
    /// A silence longer than this ends a run of contact.
    max_gap: Duration,
    last: std::sync::Mutex<Option<Contact>>,
}

#[derive(Debug, Clone, Copy)]
struct Contact {
    at: tokio::time::Instant,
    run_since: tokio::time::Instant,
    committed: Option<u64>,
}

/// One reading of a [`LeaderContact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContactReading {
    /// Time since the last contact.
    pub(crate) age: Duration,
    /// Time since the current run of contact began.
    pub(crate) run: Duration,
    /// The highest leader commit index received.
    pub(crate) committed: Option<u64>,
}

impl LeaderContact {
    /// A run of contact ends at a silence longer than `max_gap`.
    pub(crate) fn new(max_gap: Duration) -> Self {
        Self {
            max_gap,
            last: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn touch(&self, leader_committed: Option<u64>) {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (run_since, committed) = match *last {
            Some(c) if now.saturating_duration_since(c.at) <= self.max_gap => {
                // Concurrent requests finish in any order: an older, lower
                // commit index must not hide a newer one. (A commit index
                // never goes back, so the highest one seen is a lower bound.)
                (c.run_since, c.committed.max(leader_committed))
            }
            Some(c) => (now, c.committed.max(leader_committed)),
            None => (now, leader_committed),
        };
        *last = Some(Contact {
            at: now,
            run_since,
            committed,
        });
    }

    /// The last contact, if any.
    pub(crate) fn last(&self) -> Option<ContactReading> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.map(|c| ContactReading {
            age: c.at.elapsed(),
            run: c.run_since.elapsed(),
            committed: c.committed,
        })
    }
}

/// A snapshot transfer in progress on the receiving side.
struct Receiving {
    vote: Vote,
    meta: SnapshotMeta,
    total: u64,
    next_offset: u64,
    chunks: u32,
}

/// Stage one piece of a snapshot transfer; install when it completes (see the
/// "Snapshot transfer" docs of [`crate::network`]).
async fn receive_snapshot_chunk<L: StateMachineLogic>(
    raft: &Raft<TypeConfig, StateMachine<L>>,
    log: &GroupLogStore,
    receiving: &tokio::sync::Mutex<Option<Receiving>>,
    req: SnapshotChunk,
) -> Result<SnapshotChunkReply, Rejected> {
    let unavailable = |e: std::io::Error| {
        Rejected::new(RejectReason::Unavailable, format!("stage snapshot: {e}"))
    };
    let len = req.data.len() as u64;
    if req
        .offset
        .checked_add(len)
        .is_none_or(|end| end > req.total)
    {
        return Err(Rejected::new(
            RejectReason::Malformed,
            "snapshot piece beyond the announced length",
        ));
    }
    let mut slot = receiving.lock().await;
    if req.offset == 0 {
        let l = log.clone();
        blocking_io(log, move || recv_clear(&l))
            .await
            .map_err(unavailable)?;
        *slot = Some(Receiving {
            vote: req.vote,
            meta: req.meta.clone(),
            total: req.total,
            next_offset: 0,
            chunks: 0,
        });
    }
    let Some(r) = slot.as_mut() else {
        return Ok(SnapshotChunkReply::Mismatch(
            "no snapshot transfer in progress".into(),
        ));
    };
    if r.vote != req.vote || r.meta != req.meta || r.total != req.total {
        return Ok(SnapshotChunkReply::Mismatch(
            "another snapshot transfer is in progress".into(),
        ));
    }
    if r.next_offset != req.offset {
        return Ok(SnapshotChunkReply::Mismatch(format!(
            "expected offset {}, got {}",
            r.next_offset, req.offset
        )));
    }
    let (l, first, data) = (log.clone(), r.chunks, req.data);
    let added = blocking_io(log, move || recv_append(&l, first, &data))
        .await
        .map_err(unavailable)?;
    r.chunks += added;
    r.next_offset += len;
    if r.next_offset < r.total {
        return Ok(SnapshotChunkReply::Ack);
    }
    let (total, chunks) = (r.total, r.chunks);
    let l = log.clone();
    let data = blocking_io(log, move || recv_data(&l, total, chunks))
        .await
        .map_err(unavailable)?;
    *slot = None;
    let snapshot = openraft::storage::Snapshot {
        meta: req.meta,
        snapshot: data,
    };
    let resp = raft
        .install_full_snapshot(req.vote, snapshot)
        .await
        .map_err(|e| Rejected::new(RejectReason::Unavailable, format!("raft: {e}")))?;
    // The install copied what it needed (and no other transfer could start meanwhile:
    // the slot is still locked).
    let l = log.clone();
    blocking_io(log, move || recv_clear(&l))
        .await
        .map_err(unavailable)?;
    Ok(SnapshotChunkReply::Done(resp))
}

async fn blocking_io<T: Send + 'static>(
    log: &GroupLogStore,
    f: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static,
) -> Result<T, std::io::Error> {
    crate::log_store::run_io(log.io_mode(), f).await
}

impl<L: StateMachineLogic> GroupService for GroupEntry<L> {
    fn metrics(&self) -> GroupMetrics {
        metrics_of(&self.raft, self.group, &self.contact)
    }

    fn handle(
        &self,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Rejected>> {
        let raft = self.raft.clone();
        let (group, max_payload) = (self.group, self.max_payload);
        let (log, receiving) = (self.log.clone(), Arc::clone(&self.receiving));
        let contact = Arc::clone(&self.contact);
        Box::pin(async move {
            match kind {
                RpcKind::SnapshotChunk => {
                    let req: SnapshotChunk = decode(&payload).map_err(|e| {
                        Rejected::new(
                            RejectReason::Malformed,
                            format!("decode snapshot piece: {e}"),
                        )
                    })?;
                    let reply = receive_snapshot_chunk(&raft, &log, &receiving, req).await?;
                    return encode(&reply).map_err(|e| {
                        Rejected::new(RejectReason::Unavailable, format!("encode reply: {e}"))
                    });
                }
                RpcKind::FullSnapshot => {
                    // An older sender: the whole snapshot as one piece.
                    let req: SnapshotRpc = decode(&payload).map_err(|e| {
                        Rejected::new(RejectReason::Malformed, format!("decode snapshot: {e}"))
                    })?;
                    let piece = SnapshotChunk {
                        vote: req.vote,
                        meta: req.meta,
                        offset: 0,
                        total: req.data.len() as u64,
                        data: req.data,
                    };
                    return match receive_snapshot_chunk(&raft, &log, &receiving, piece).await? {
                        SnapshotChunkReply::Done(resp) => encode(&resp).map_err(|e| {
                            Rejected::new(RejectReason::Unavailable, format!("encode reply: {e}"))
                        }),
                        other => Err(Rejected::new(
                            RejectReason::Unavailable,
                            format!("snapshot not installed: {other:?}"),
                        )),
                    };
                }
                RpcKind::ClientWrite => {}
                _ => return serve(&raft, kind, &payload, &contact).await,
            }
            let req: ClientWriteRpc = decode(&payload).map_err(|e| {
                Rejected::new(RejectReason::Malformed, format!("decode client-write: {e}"))
            })?;
            let reply = match propose(&raft, group, max_payload, req.data).await {
                Ok(r) => ClientWriteReply::Applied(r),
                Err(Error::ForwardToLeader {
                    leader,
                    leader_addr,
                    ..
                }) => ClientWriteReply::NotLeader {
                    leader,
                    leader_addr,
                },
                Err(Error::TooLarge { size, limit }) => ClientWriteReply::TooLarge {
                    size: size as u64,
                    limit: limit as u64,
                },
                Err(Error::Indeterminate { detail, .. }) => ClientWriteReply::Indeterminate(detail),
                Err(Error::Stopped { detail, .. }) => ClientWriteReply::Stopped(detail),
                Err(e) => ClientWriteReply::Failed(e.to_string()),
            };
            encode(&reply)
                .map_err(|e| Rejected::new(RejectReason::Unavailable, format!("encode reply: {e}")))
        })
    }
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let raft = self.raft.clone();
        Box::pin(async move {
            let _ = raft.shutdown().await;
        })
    }
}

/// A group's registry slot. `Starting` reserves the id while its Raft is being built, so
/// two concurrent starts of one group can never both run on the same log.
#[derive(Clone)]
enum Slot {
    Starting,
    Running(Arc<dyn GroupService>),
}

struct NodeInner {
    config: RaftNodeConfig,
    raft_config: Arc<openraft::Config>,
    db: LogDb,
    transport: Arc<dyn RaftTransport>,
    groups: RwLock<BTreeMap<GroupId, Slot>>,
}

/// One process's Raft node: hosts any number of groups over one log store and one transport.
///
/// Cloning is cheap (shared handle).
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<NodeInner>,
}

/// A weak reference to a [`RaftNode`], for transports that must not keep it alive.
#[derive(Clone)]
pub struct WeakRaftNode {
    inner: Weak<NodeInner>,
}

impl WeakRaftNode {
    /// The node, if it still exists.
    pub fn upgrade(&self) -> Option<RaftNode> {
        self.inner.upgrade().map(|inner| RaftNode { inner })
    }
}

impl RaftNode {
    /// Create a node whose Raft logs live in `kv` (shared by all its groups) and whose
    /// RPCs leave through `transport`.
    pub fn new(
        config: RaftNodeConfig,
        kv: Arc<dyn candor_store::Store>,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Self, Error> {
        let raft_config = Arc::new(config.tuning.to_openraft()?);
        let db = LogDb::open_with(kv, &config.key_prefix, config.io)
            .map_err(|e| Error::Config(format!("cannot start the log syncer: {e}")))?;
        Ok(Self {
            inner: Arc::new(NodeInner {
                config,
                raft_config,
                db,
                transport,
                groups: RwLock::new(BTreeMap::new()),
            }),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// This node's address.
    pub fn addr(&self) -> &str {
        &self.inner.config.addr
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakRaftNode {
        WeakRaftNode {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Groups running on this node.
    pub fn group_ids(&self) -> Vec<GroupId> {
        let mut v: Vec<GroupId> = self.read_groups().keys().copied().collect();
        v.sort();
        v
    }

    /// Metrics of every running group on this node, by ascending group id.
    pub fn group_metrics(&self) -> Vec<GroupMetrics> {
        let services: Vec<Arc<dyn GroupService>> = self
            .read_groups()
            .values()
            .filter_map(|s| match s {
                Slot::Running(g) => Some(Arc::clone(g)),
                Slot::Starting => None,
            })
            .collect();
        let mut v: Vec<GroupMetrics> = services.iter().map(|g| g.metrics()).collect();
        v.sort_by_key(|m| m.group);
        v
    }

    fn read_groups(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<GroupId, Slot>> {
        self.inner.groups.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_groups(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<GroupId, Slot>> {
        self.inner.groups.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Start (or restart, from the store) group `group` on this node with `logic` as its
    /// state machine. A new group stays idle until [`RaftGroup::initialize`] is called on
    /// one of its members (or it is added to an existing group's membership).
    pub async fn start_group<L: StateMachineLogic>(
        &self,
        group: GroupId,
        logic: L,
    ) -> Result<RaftGroup<L>, Error> {
        match self.write_groups().entry(group) {
            Entry::Occupied(_) => return Err(Error::GroupExists(group)),
            Entry::Vacant(v) => {
                v.insert(Slot::Starting);
            }
        }
        // Frees the reservation if building fails or this future is dropped midway.
        let reservation = Reservation { node: self, group };
        let (raft, sm) = self.build_group(group, logic).await?;
        std::mem::forget(reservation);
        let max_payload = self.inner.db.group(group).max_payload_bytes();
        let contact = Arc::new(LeaderContact::new(
            self.inner.config.tuning.election_timeout_max,
        ));
        let entry = Arc::new(GroupEntry {
            group,
            raft: raft.clone(),
            max_payload,
            log: self.inner.db.group(group),
            receiving: Arc::new(tokio::sync::Mutex::new(None)),
            contact: Arc::clone(&contact),
        });
        if let Some(rule) = self.inner.config.tuning.step_aside.clone() {
            let every = self.inner.config.tuning.heartbeat_interval;
            tokio::spawn(watch_leadership(Arc::downgrade(&entry), rule, every));
        }
        self.write_groups().insert(group, Slot::Running(entry));
        Ok(RaftGroup {
            group,
            node: self.clone(),
            raft,
            sm,
            max_payload,
            contact,
        })
    }

    async fn build_group<L: StateMachineLogic>(
        &self,
        group: GroupId,
        logic: L,
    ) -> Result<
        (
            Raft<TypeConfig, StateMachine<L>>,
            Arc<crate::state_machine::Shared<L>>,
        ),
        Error,
    > {
        let log_store = self.inner.db.group(group);
        let sm = StateMachine::new(logic, log_store.clone())?;
        let sm_shared = Arc::clone(&sm.shared);
        let network = NetworkFactory::new(
            Arc::clone(&self.inner.transport),
            self.id(),
            group,
            self.inner.config.tuning.snapshot_install_timeout,
            self.inner.config.io,
        );
        let raft = Raft::new(
            self.id(),
            Arc::clone(&self.inner.raft_config),
            network,
            log_store,
            sm,
        )
        .await
        .map_err(|e| Error::Stopped {
            group,
            detail: e.to_string(),
        })?;
        Ok((raft, sm_shared))
    }

    /// Start `group` and, if it has no state yet, bootstrap it with `members`
    /// ([`Self::start_group`] + [`RaftGroup::initialize`]).
    pub async fn create_group<L: StateMachineLogic>(
        &self,
        group: GroupId,
        logic: L,
        members: BTreeMap<NodeId, String>,
    ) -> Result<RaftGroup<L>, Error> {
        let g = self.start_group(group, logic).await?;
        if let Err(e) = g.initialize(members).await {
            g.shutdown().await;
            return Err(e);
        }
        Ok(g)
    }

    /// Handle an incoming RPC for `group`: what a transport's server side calls. Errors
    /// are [`TransportError::Remote`]; see [`Self::serve_rpc`] for the precise reason.
    pub fn handle_rpc(
        &self,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let fut = self.serve_rpc(group, kind, payload);
        Box::pin(async move { fut.await.map_err(TransportError::from) })
    }

    /// [`Self::handle_rpc`] with the reason of a refusal, so a server can map it to a
    /// precise status (the gRPC server does). The returned future does not keep the
    /// node alive.
    pub fn serve_rpc(
        &self,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Rejected>> {
        let svc = self.read_groups().get(&group).cloned();
        match svc {
            Some(Slot::Running(svc)) => svc.handle(kind, payload),
            Some(Slot::Starting) => Box::pin(async move {
                Err(Rejected::new(
                    RejectReason::Unavailable,
                    format!("group {group} is starting on node"),
                ))
            }),
            None => Box::pin(async move {
                Err(Rejected::new(
                    RejectReason::UnknownGroup,
                    format!("group {group} is not running here"),
                ))
            }),
        }
    }

    /// Stop every group on this node.
    pub async fn shutdown(&self) {
        // In group order (a BTreeMap): a simulation replays shutdowns exactly.
        let all: Vec<Arc<dyn GroupService>> = std::mem::take(&mut *self.write_groups())
            .into_values()
            .filter_map(|slot| match slot {
                Slot::Running(g) => Some(g),
                Slot::Starting => None,
            })
            .collect();
        for g in all {
            g.shutdown().await;
        }
    }

    fn remove_group(&self, group: GroupId) {
        self.write_groups().remove(&group);
    }
}

/// Interpret a forwarded write's reply: `Ok(Some)` applied, `Ok(None)` not the leader
/// (retry), `Err` final.
fn forwarded_reply(group: GroupId, from: NodeId, bytes: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let indeterminate = |detail: String| Error::Indeterminate { group, detail };
    match decode::<ClientWriteReply>(bytes) {
        Ok(ClientWriteReply::Applied(r)) => Ok(Some(r)),
        Ok(ClientWriteReply::NotLeader { .. }) => Ok(None),
        Ok(ClientWriteReply::TooLarge { size, limit }) => Err(Error::TooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        }),
        Ok(ClientWriteReply::Indeterminate(d)) => Err(indeterminate(format!("leader {from}: {d}"))),
        Ok(ClientWriteReply::Stopped(d)) => Err(indeterminate(format!(
            "leader {from} stopped during the write: {d}"
        ))),
        Ok(ClientWriteReply::Failed(d)) => Err(indeterminate(format!("leader {from}: {d}"))),
        // The request was delivered, so it may have been applied.
        Err(e) => Err(indeterminate(format!("undecodable reply from {from}: {e}"))),
    }
}

/// What one forwarded write attempt came to.
enum Forwarded {
    /// Applied by the target (the leader): its response.
    Applied(Vec<u8>),
    /// Not proposed; try again. `hint`: the leader the target named (not itself).
    Retry {
        hint: Option<(NodeId, Option<String>)>,
        why: String,
        /// The target answered (a redirect): some replica is reachable.
        reached: bool,
    },
}

/// Sends one forwarded write ([`RpcKind::ClientWrite`], `payload` already encoded) to
/// node `id` at `addr` and reads what came of it. Errors are final: `Indeterminate`
/// when the request may have been applied, `TooLarge`.
async fn forward_once(
    node: &RaftNode,
    group: GroupId,
    id: NodeId,
    addr: &str,
    payload: Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<Forwarded, Error> {
    let send = node
        .inner
        .transport
        .send(id, addr, group, RpcKind::ClientWrite, payload);
    match tokio::time::timeout_at(deadline, send).await {
        Err(_) => Err(Error::Indeterminate {
            group,
            detail: format!("no reply from node {id} before the forward deadline"),
        }),
        Ok(Ok(bytes)) => match forwarded_reply(group, id, &bytes)? {
            Some(r) => Ok(Forwarded::Applied(r)),
            None => Ok(Forwarded::Retry {
                hint: match decode(&bytes) {
                    Ok(ClientWriteReply::NotLeader {
                        leader,
                        leader_addr,
                    }) => leader.filter(|&l| l != id).map(|l| (l, leader_addr)),
                    _ => None,
                },
                why: format!("node {id} is not the leader"),
                reached: true,
            }),
        },
        // Never delivered to the group: safe to try again.
        Ok(Err(TransportError::Unreachable(m))) => Ok(Forwarded::Retry {
            hint: None,
            why: format!("node {id}: {m}"),
            reached: false,
        }),
        // Refused by a live node before reaching the group (e.g. still starting).
        Ok(Err(TransportError::Remote(m))) => Ok(Forwarded::Retry {
            hint: None,
            why: format!("node {id}: {m}"),
            reached: true,
        }),
        Ok(Err(e @ (TransportError::Timeout | TransportError::Network(_)))) => {
            Err(Error::Indeterminate {
                group,
                detail: format!("forward to node {id}: {e}"),
            })
        }
    }
}

/// A group this node does **not** host, written to through the replicas that do (a
/// shared-state member whose placement leaves a shard to other members): writes go to
/// the group's leader over the transport ([`RpcKind::ClientWrite`]), found by asking
/// the replicas and following their redirects. The same contract as
/// [`RaftGroup::write`].
#[derive(Clone)]
pub struct RemoteGroup {
    group: GroupId,
    node: RaftNode,
    replicas: Arc<Vec<(NodeId, String)>>,
    /// The leader last seen (tried first).
    leader: Arc<std::sync::Mutex<Option<(NodeId, String)>>>,
    max_payload: usize,
}

impl std::fmt::Debug for RemoteGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteGroup")
            .field("group", &self.group)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl RemoteGroup {
    /// `replicas`: the nodes hosting `group`, with their Raft addresses (non-empty).
    pub fn new(
        node: &RaftNode,
        group: GroupId,
        replicas: Vec<(NodeId, String)>,
    ) -> Result<RemoteGroup, Error> {
        if replicas.is_empty() {
            return Err(Error::Config(format!(
                "group {group}: no replica to write through"
            )));
        }
        Ok(RemoteGroup {
            group,
            max_payload: node.inner.db.group(group).max_payload_bytes(),
            node: node.clone(),
            replicas: Arc::new(replicas),
            leader: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Largest payload [`RemoteGroup::write`] accepts.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload
    }

    fn remember(&self, leader: Option<(NodeId, String)>) {
        if let Ok(mut g) = self.leader.lock() {
            *g = leader;
        }
    }

    /// Propose `data` to the group through its leader and return the applied response.
    /// Errors as [`RaftGroup::write`]'s: `Timeout` (not proposed), `Indeterminate` (may
    /// have been applied: retry with the idempotency key), `TooLarge`.
    pub async fn write(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        if data.len() > self.max_payload {
            return Err(Error::TooLarge {
                size: data.len(),
                limit: self.max_payload,
            });
        }
        let timeout = self.node.inner.config.tuning.forward_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let payload = encode(&ClientWriteRpcRef { data: &data })?;
        let mut hint: Option<(NodeId, String)> = self.leader.lock().ok().and_then(|g| g.clone());
        let mut next = 0usize;
        let mut hops_since_sleep = 0u32;
        let mut backoff = FORWARD_MIN_BACKOFF;
        let mut last;
        loop {
            let (id, addr) = match hint.take() {
                Some(t) => t,
                None => {
                    let t = self.replicas[next % self.replicas.len()].clone();
                    next += 1;
                    t
                }
            };
            let mut redirected = false;
            match forward_once(&self.node, self.group, id, &addr, payload.clone(), deadline).await?
            {
                Forwarded::Applied(r) => {
                    self.remember(Some((id, addr)));
                    return Ok(r);
                }
                Forwarded::Retry { hint: h, why, .. } => {
                    last = why;
                    self.remember(None);
                    if let Some((l, Some(a))) = h {
                        hint = Some((l, a));
                        redirected = true;
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "group {}: no leader accepted the write within {timeout:?} ({last}); \
                     not proposed",
                    self.group
                )));
            }
            // Follow a redirect at once (a couple of hops), and try each replica once
            // before backing off.
            if (redirected && hops_since_sleep < 2)
                || (!redirected && !next.is_multiple_of(self.replicas.len()))
            {
                hops_since_sleep += 1;
                continue;
            }
            hops_since_sleep = 0;
            tokio::time::sleep_until((now + backoff).min(deadline)).await;
            backoff = (backoff * 2).min(FORWARD_MAX_BACKOFF);
        }
    }
}

/// First pause of [`RaftGroup::write`] while no leader is known; doubles up to the max.
const FORWARD_MIN_BACKOFF: Duration = Duration::from_millis(10);
const FORWARD_MAX_BACKOFF: Duration = Duration::from_millis(200);

fn forward_error(group: GroupId, f: &openraft::errors::ForwardToLeader<TypeConfig>) -> Error {
    Error::ForwardToLeader {
        group,
        leader: f.leader_id,
        leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
    }
}

fn write_error(group: GroupId, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward_error(group, &f),
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => Error::Indeterminate {
            group,
            detail: f.to_string(),
        },
        RaftError::APIError(e) => Error::Membership {
            group,
            detail: e.to_string(),
        },
        RaftError::Fatal(f) => Error::Stopped {
            group,
            detail: f.to_string(),
        },
    }
}

/// Propose `data` on this replica (which must lead) and wait for it to be applied.
async fn propose<L: StateMachineLogic>(
    raft: &Raft<TypeConfig, StateMachine<L>>,
    group: GroupId,
    max_payload: usize,
    data: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    // An entry the store refuses would fail the append and stop the group: refuse it
    // here instead.
    if data.len() > max_payload {
        return Err(Error::TooLarge {
            size: data.len(),
            limit: max_payload,
        });
    }
    raft.client_write(Request(data))
        .await
        .map(|r| r.data.0)
        .map_err(|e| write_error(group, e))
}

struct Reservation<'a> {
    node: &'a RaftNode,
    group: GroupId,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.node.remove_group(self.group);
    }
}

/// A point-in-time view of a group's Raft state on this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetrics {
    /// The group.
    pub group: GroupId,
    /// This replica's node id.
    pub node: NodeId,
    /// Current term.
    pub current_term: u64,
    /// Known leader, if any.
    pub leader: Option<NodeId>,
    /// This replica's role.
    pub state: ServerState,
    /// Last log index on this replica.
    pub last_log_index: Option<u64>,
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Last committed log id known here.
    pub committed: Option<LogId>,
    /// Last log id covered by this replica's current snapshot.
    pub snapshot: Option<LogId>,
    /// Last purged log id (the log starts after it).
    pub purged: Option<LogId>,
    /// Voters in the current membership.
    pub voters: BTreeSet<NodeId>,
    /// Why this replica stopped (a storage failure such as a full disk, a corrupt
    /// record), if it did: it applies nothing more until the process restarts.
    pub stopped: Option<String>,
    /// On the leader: the highest log index known replicated to each node
    /// (itself included); empty on followers.
    pub replication: BTreeMap<NodeId, u64>,
    /// On the leader of a group with more than one voter: how long ago a quorum
    /// last acknowledged it (a healthy leader hears from one every heartbeat).
    /// `None` on followers, on a sole voter, or before the first acknowledgement.
    pub quorum_ack_age: Option<Duration>,
    /// On a follower: how long ago a leader last reached it with an
    /// AppendEntries it accepted (heartbeats included). `None` on the leader,
    /// and before any leader has reached this replica since it started.
    pub leader_contact_age: Option<Duration>,
    /// On a follower: how long its leader has been reaching it without a
    /// silence longer than an election timeout. Right after a cut heals the
    /// first messages may be ones queued during it, so until this run is an
    /// election timeout old the leader's word may be stale.
    pub leader_contact_run: Option<Duration>,
    /// On a follower: the highest leader commit index its accepted
    /// AppendEntries carried (how far this replica's applied index is behind
    /// its leader).
    pub leader_committed: Option<u64>,
}

/// A handle on one group running on this node. Cloning is cheap.
pub struct RaftGroup<L: StateMachineLogic> {
    group: GroupId,
    node: RaftNode,
    raft: Raft<TypeConfig, StateMachine<L>>,
    sm: Arc<crate::state_machine::Shared<L>>,
    max_payload: usize,
    contact: Arc<LeaderContact>,
}

impl<L: StateMachineLogic> Clone for RaftGroup<L> {
    fn clone(&self) -> Self {
        Self {
            group: self.group,
            node: self.node.clone(),
            raft: self.raft.clone(),
            sm: Arc::clone(&self.sm),
            max_payload: self.max_payload,
            contact: Arc::clone(&self.contact),
        }
    }
}

impl<L: StateMachineLogic> RaftGroup<L> {
    /// Largest payload [`Self::client_write`] accepts.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload
    }

    /// The group id.
    pub fn id(&self) -> GroupId {
        self.group
    }

    /// The underlying openraft handle (escape hatch).
    pub fn raft(&self) -> &Raft<TypeConfig, StateMachine<L>> {
        &self.raft
    }

    fn stopped(&self, e: impl std::fmt::Display) -> Error {
        Error::Stopped {
            group: self.group,
            detail: e.to_string(),
        }
    }

    fn forward(&self, f: &openraft::errors::ForwardToLeader<TypeConfig>) -> Error {
        forward_error(self.group, f)
    }

    fn write_err(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        write_error(self.group, e)
    }

    /// Bootstrap the group with `members` (node id → address). Call it on one member of a
    /// brand-new group (calling it on several with the same members is also safe). A
    /// no-op on a group that already has state.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), Error> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| self.stopped(e))?
        {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e @ InitializeError::NotInMembers(_))) => {
                Err(Error::Membership {
                    group: self.group,
                    detail: e.to_string(),
                })
            }
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Propose `data`; returns the state machine's response once the entry is committed
    /// and applied here. Only the leader accepts writes ([`Error::ForwardToLeader`]
    /// otherwise).
    pub async fn client_write(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        propose(&self.raft, self.group, self.max_payload, data).await
    }

    /// Propose `data` through whichever replica leads the group: locally when this node
    /// leads, otherwise forwarded to the known leader over the node's transport
    /// ([`RpcKind::ClientWrite`]). Follows redirects and leader elections, backing off
    /// briefly while no leader is known, all within [`RaftTuning::forward_timeout`].
    ///
    /// Outcomes (the contract callers build exactly-once on):
    ///
    /// * `Ok(response)`: committed and applied on the leader, exactly once by this call;
    ///   `response` is the state machine's. This replica may apply it a little later
    ///   (use [`Self::wait_for_applied`] or [`Self::ensure_linearizable`] to read it here).
    /// * [`Error::Indeterminate`] (and [`Error::Stopped`]): the entry may or may not have
    ///   been committed, e.g. a forwarded write whose reply was lost or came too late,
    ///   or a leader that lost leadership after appending it. It may still be applied
    ///   later. `write` never retries such a write itself; a caller that retries must
    ///   make the retry idempotent (the shard publisher deduplicates by its own
    ///   idempotency keys), because the retry can be applied in addition to the first.
    /// * [`Error::Timeout`]: no replica accepted the write before the deadline, or none
    ///   was reachable for two election timeouts, or this follower's leader has not
    ///   reached it for as long (this replica is cut off); it was not proposed (only
    ///   provably undelivered attempts are retried internally: redirects,
    ///   unreachable targets, requests refused before reaching the group).
    /// * [`Error::QuorumNotEnough`]: this replica leads but has not heard from a quorum
    ///   for two election timeouts; not proposed. (A write already proposed when that
    ///   happens, or forwarded to a leader that is then replaced by an election seen
    ///   here or stops reaching this replica, ends at once as
    ///   [`Error::Indeterminate`], not at the deadline.)
    /// * [`Error::TooLarge`]: refused, not proposed.
    pub async fn write(&self, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        if data.len() > self.max_payload {
            return Err(Error::TooLarge {
                size: data.len(),
                limit: self.max_payload,
            });
        }
        let deadline = tokio::time::Instant::now() + self.node.inner.config.tuning.forward_timeout;
        let me = self.node.id();
        let mut encoded: Option<Vec<u8>> = None;
        // A leader named by a redirect, tried before our own (maybe staler) view.
        let mut hint: Option<(NodeId, Option<String>)> = None;
        let mut hops_since_sleep = 0u32;
        let mut backoff = FORWARD_MIN_BACKOFF;
        let mut last = String::from("no leader known");
        // Since when no attempt has reached a live replica (see the fail-fast below).
        let mut cut_off_since: Option<tokio::time::Instant> = None;
        loop {
            let target = hint.take().or_else(|| self.leader_hint());
            // Whether this attempt got an answer from some replica.
            let mut reached = false;
            match target {
                Some((id, _)) if id == me => {
                    reached = true;
                    // A leader cut off from its quorum cannot commit: refuse before
                    // proposing (safe to retry elsewhere) rather than hang to the deadline.
                    if let Some(age) = self.quorum_silence() {
                        return Err(Error::QuorumNotEnough {
                            group: self.group,
                            detail: format!(
                                "node {me} leads but has heard from no quorum for {} ms; \
                                 not proposed",
                                age.as_millis()
                            ),
                        });
                    }
                    let commit = tokio::time::timeout_at(deadline, self.client_write(data.clone()));
                    let out = tokio::select! {
                        // Polled in order, not at random: a simulation seed replays exactly.
                        biased;
                        out = commit => out,
                        age = self.silent_for(Self::quorum_silence) => {
                            return Err(Error::Indeterminate {
                                group: self.group,
                                detail: format!(
                                    "node {me} lost its quorum ({} ms without an \
                                     acknowledgement) while committing the write",
                                    age.as_millis()
                                ),
                            });
                        }
                    };
                    match out {
                        Err(_) => {
                            return Err(Error::Indeterminate {
                                group: self.group,
                                detail: "no commit by this leader before the forward deadline"
                                    .into(),
                            });
                        }
                        Ok(Ok(r)) => return Ok(r),
                        // Not proposed: this replica is no longer the leader.
                        Ok(Err(Error::ForwardToLeader {
                            leader,
                            leader_addr,
                            ..
                        })) => {
                            last = format!("node {me} is not the leader");
                            hint = leader.filter(|&l| l != me).map(|l| (l, leader_addr));
                        }
                        Ok(Err(e)) => return Err(e),
                    }
                }
                Some((id, Some(addr))) => {
                    // A follower its leader has not reached for two election timeouts
                    // is cut off (an election among the others would have ended by
                    // now): refuse before sending, rather than wait on a dead link.
                    if let Some(age) = self.leader_silence() {
                        return Err(Error::Timeout(format!(
                            "group {}: node {me} has not heard from leader {id} for {} ms \
                             (cut off); not proposed",
                            self.group,
                            age.as_millis()
                        )));
                    }
                    let payload = match &encoded {
                        Some(p) => p.clone(),
                        None => {
                            let p = encode(&ClientWriteRpcRef { data: &data })?;
                            encoded = Some(p.clone());
                            p
                        }
                    };
                    let term = self.raft.metrics().borrow_watched().current_term;
                    let sent = forward_once(&self.node, self.group, id, &addr, payload, deadline);
                    // The target may have been deposed while it holds the write: once
                    // this replica sees another leader in a later term, the target can
                    // no longer answer for it. The outcome is unknown (it may have been
                    // replicated before the election); say so now, not at the deadline.
                    let out = tokio::select! {
                        // Polled in order, not at random: a simulation seed replays exactly.
                        biased;
                        out = sent => out?,
                        (new, new_term) = self.leader_replaced(id, term) => {
                            return Err(Error::Indeterminate {
                                group: self.group,
                                detail: format!(
                                    "leader {id} was replaced by node {new} (term {new_term}) \
                                     while the forwarded write was in flight"
                                ),
                            });
                        }
                        age = self.silent_for(Self::leader_silence) => {
                            return Err(Error::Indeterminate {
                                group: self.group,
                                detail: format!(
                                    "node {me} lost contact with leader {id} ({} ms without \
                                     a heartbeat) while the forwarded write was in flight",
                                    age.as_millis()
                                ),
                            });
                        }
                    };
                    match out {
                        Forwarded::Applied(r) => return Ok(r),
                        Forwarded::Retry {
                            hint: h,
                            why,
                            reached: r,
                        } => {
                            last = why;
                            hint = h;
                            reached = r;
                        }
                    }
                }
                Some((id, None)) => last = format!("leader {id} has no known address"),
                None => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "group {}: no leader accepted the write within {:?} ({last}); not proposed",
                    self.group, self.node.inner.config.tuning.forward_timeout
                )));
            }
            // A member cut off from the others (no leader known, or none reachable)
            // fails fast, nothing proposed, instead of waiting out the deadline; an
            // election among reachable members finishes well within this bound.
            if reached {
                cut_off_since = None;
            } else {
                let since = *cut_off_since.get_or_insert(now);
                let bound = 2 * self.node.inner.config.tuning.election_timeout_max;
                if hint.is_none() && now.duration_since(since) >= bound {
                    return Err(Error::Timeout(format!(
                        "group {}: no leader reachable for {} ms ({last}); not proposed",
                        self.group,
                        now.duration_since(since).as_millis()
                    )));
                }
            }
            // Follow a fresh redirect at once, but not endlessly: two replicas with stale
            // views could bounce the write between them.
            if hint.is_some() && hops_since_sleep < 2 {
                hops_since_sleep += 1;
                continue;
            }
            hops_since_sleep = 0;
            tracing::debug!(group = %self.group, %last, "write: waiting for a leader");
            tokio::time::sleep_until((now + backoff).min(deadline)).await;
            backoff = (backoff * 2).min(FORWARD_MAX_BACKOFF);
        }
    }

    /// How long this replica, as leader, has gone without a quorum acknowledging it,
    /// if that is longer than an election timeout (a healthy leader hears from a
    /// quorum every heartbeat). `None` when not leading or not yet acknowledged.
    fn quorum_silence(&self) -> Option<Duration> {
        let age = quorum_ack_age(&self.raft.metrics().borrow_watched())?;
        // Twice the election timeout: metrics are published asynchronously, so a
        // busy but healthy leader's stamp can lag a little.
        (age > 2 * self.node.inner.config.tuning.election_timeout_max).then_some(age)
    }

    /// How long this replica, as a follower, has gone without its leader reaching it,
    /// if that is longer than two election timeouts (see [`Self::quorum_silence`]).
    /// `None` when leading, with no leader known, or before any contact.
    fn leader_silence(&self) -> Option<Duration> {
        {
            let rx = self.raft.metrics();
            let m = rx.borrow_watched();
            if m.current_leader.is_none_or(|l| l == m.id) {
                return None;
            }
        }
        let age = self.contact.last()?.age;
        (age > 2 * self.node.inner.config.tuning.election_timeout_max).then_some(age)
    }

    /// Resolves when `silence` (one of the two above) reports one, checked every
    /// heartbeat: silence publishes no metrics change to wait on.
    async fn silent_for(&self, silence: fn(&Self) -> Option<Duration>) -> Duration {
        let every = self
            .node
            .inner
            .config
            .tuning
            .heartbeat_interval
            .max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            if let Some(age) = silence(self) {
                return age;
            }
        }
    }

    /// Resolves once this replica sees a leader other than `from` in a term after
    /// `term`: `from` has been deposed and cannot commit what it still holds.
    async fn leader_replaced(&self, from: NodeId, term: u64) -> (NodeId, u64) {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_watched();
                if let Some(l) = m.current_leader
                    && l != from
                    && m.current_term > term
                {
                    return (l, m.current_term);
                }
            }
            if rx.changed().await.is_err() {
                // The group stopped: the forward's own outcome decides.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The leader this replica knows of, with its address from the membership.
    fn leader_hint(&self) -> Option<(NodeId, Option<String>)> {
        // Read in place: cloning the whole metrics on every write would be wasteful.
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone());
        Some((leader, addr))
    }

    /// The leader this replica knows of and its address (from the group membership), if
    /// both are known. Where [`Self::write`] would send a write.
    pub fn leader_addr(&self) -> Option<(NodeId, String)> {
        let (id, addr) = self.leader_hint()?;
        Some((id, addr?))
    }

    /// Confirm leadership with a quorum (ReadIndex) and wait until this replica has
    /// applied everything committed before the call: reads of the state machine made
    /// afterwards (e.g. through [`Self::read`]) are linearizable. Returns the read log id.
    pub async fn ensure_linearizable(&self) -> Result<LogId, Error> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read_log_id) => Ok(*read_log_id.log_id()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(self.forward(&f))
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q))) => {
                Err(Error::QuorumNotEnough {
                    group: self.group,
                    detail: q.to_string(),
                })
            }
            Err(RaftError::Fatal(f)) => Err(self.stopped(f)),
        }
    }

    /// Run `f` on the state machine logic (serialized with apply). Not linearizable by
    /// itself: call [`Self::ensure_linearizable`] first for that.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&L) -> R + Send + 'static,
    ) -> Result<R, Error> {
        StateMachine::with_logic(Arc::clone(&self.sm), f)
            .await
            .map_err(|e| self.stopped(e))
    }

    /// The leader this replica currently knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Current Raft metrics of this replica.
    pub fn metrics(&self) -> GroupMetrics {
        metrics_of(&self.raft, self.group, &self.contact)
    }

    /// Wait until some leader is known, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, Error> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
            .map_err(|e| Error::Timeout(format!("group {}: {e}", self.group)))?;
        m.current_leader
            .ok_or_else(|| Error::Timeout(format!("group {}: no leader", self.group)))
    }

    /// Wait until this replica has applied index `index` or beyond, up to `timeout`.
    pub async fn wait_for_applied(&self, index: u64, timeout: Duration) -> Result<(), Error> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied")
            .await
            .map(|_| ())
            .map_err(|e| Error::Timeout(format!("group {}: {e}", self.group)))
    }

    /// Add `node` as a learner (replicated to, not voting). Waits until it caught up.
    pub async fn add_learner(&self, node: NodeId, addr: String) -> Result<(), Error> {
        self.raft
            .add_learner(node, BasicNode { addr }, true)
            .await
            .map(|_| ())
            .map_err(|e| self.write_err(e))
    }

    /// Replace the voter set (members not yet learners must be added first).
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), Error> {
        self.raft
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(|e| self.write_err(e))
    }

    /// Stop this group on this node (its state stays in the store for a restart).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        // Only now may the same group be started again on this node.
        self.node.remove_group(self.group);
    }
}

/// Runs the step-aside rule ([`crate::step_aside`]) on one group every `every` until
/// the group leaves its node (the node holds the only strong reference).
async fn watch_leadership<L: StateMachineLogic>(
    entry: Weak<GroupEntry<L>>,
    tuning: StepAsideTuning,
    every: Duration,
) {
    let origin = tokio::time::Instant::now();
    let mut rule = StepAside::new(tuning);
    loop {
        tokio::time::sleep(every.max(Duration::from_millis(10))).await;
        let Some(g) = entry.upgrade() else { return };
        let handover = {
            let rx = g.raft.metrics();
            let m = rx.borrow_watched();
            if m.running_state.is_err() {
                return;
            }
            let leading = m.state == ServerState::Leader;
            // Built only on a leader (empty ones do not allocate): followers sample
            // every heartbeat too.
            let (voters, replication) = if leading {
                (
                    m.membership_config.membership().voter_ids().collect(),
                    replication_of(&m),
                )
            } else {
                (BTreeSet::new(), BTreeMap::new())
            };
            let sample = LeaderSample {
                me: m.id,
                term: m.current_term,
                leading,
                quorum_ack_age: quorum_ack_age(&m),
                voters: &voters,
                replication: &replication,
                last_log_index: m.last_log_index.unwrap_or(0),
                committed: m.local_committed.as_ref().map_or(0, |l| l.index()),
            };
            rule.observe(origin.elapsed(), &sample)
                .map(|to| (to, sample.quorum_ack_age, m.current_term))
        };
        if let Some((to, age, term)) = handover {
            tracing::warn!(
                group = %g.group,
                term,
                to,
                quorum_ack_age_ms = age.map(|a| a.as_millis() as u64),
                "leader stepping aside: a quorum acknowledged it or committed its entries \
                 slowly for a whole window (inbound drops or a slow link here); \
                 transferring leadership"
            );
            candor_telemetry::metrics().raft_step_aside(g.group.0);
            if let Err(e) = g.raft.trigger().transfer_leader(to).await {
                tracing::debug!(group = %g.group, error = %e, "transfer not submitted");
            }
        }
    }
}

/// On a leader: the highest log index known replicated to each node.
fn replication_of(m: &openraft::RaftMetrics<TypeConfig>) -> BTreeMap<NodeId, u64> {
    m.replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index())))
                .collect()
        })
        .unwrap_or_default()
}

/// On a leader of more than one voter: how long ago a quorum last acknowledged
/// it (see [`GroupMetrics::quorum_ack_age`]).
fn quorum_ack_age(m: &openraft::RaftMetrics<TypeConfig>) -> Option<Duration> {
    let acked = m.last_quorum_acked.as_ref()?;
    // A sole voter is its own quorum: openraft never refreshes its ack time.
    if m.membership_config.membership().voter_ids().count() <= 1 {
        return None;
    }
    Some(openraft::Instant::elapsed(&**acked))
}

/// A snapshot of `raft`'s metrics as [`GroupMetrics`].
fn metrics_of<L: StateMachineLogic>(
    raft: &Raft<TypeConfig, StateMachine<L>>,
    group: GroupId,
    contact: &LeaderContact,
) -> GroupMetrics {
    let m = raft.metrics().borrow_watched().clone();
    let quorum_ack_age = quorum_ack_age(&m);
    let contact = match m.current_leader {
        Some(l) if l != m.id => contact.last(),
        _ => None,
    };
    GroupMetrics {
        group,
        node: m.id,
        current_term: m.current_term,
        leader: m.current_leader,
        state: m.state,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied,
        committed: m.local_committed,
        snapshot: m.snapshot,
        purged: m.purged,
        voters: m.membership_config.membership().voter_ids().collect(),
        stopped: m.running_state.as_ref().err().map(|f| f.to_string()),
        replication: replication_of(&m),
        quorum_ack_age,
        leader_contact_age: contact.map(|c| c.age),
        leader_contact_run: contact.map(|c| c.run),
        leader_committed: contact.and_then(|c| c.committed),
    }
}

#[cfg(test)]
mod contact_tests {
    use super::*;

    const GAP: Duration = Duration::from_millis(600);

    /// What a link that comes back after a cut delivers first: a message
    /// queued during the cut, with the commit index of the cut's start.
    #[tokio::test(start_paused = true)]
    async fn a_run_of_contact_restarts_after_a_silence_and_keeps_the_highest_commit() {
        let contact = LeaderContact::new(GAP);
        assert_eq!(contact.last(), None);
        contact.touch(Some(100));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(50)).await;
            contact.touch(Some(101));
        }
        let c = contact.last().unwrap();
        assert_eq!(
            (c.age, c.run, c.committed),
            (Duration::ZERO, Duration::from_millis(500), Some(101))
        );
        // Cut for 7 s; then a stale message arrives first.
        tokio::time::advance(Duration::from_secs(7)).await;
        contact.touch(Some(100));
        let c = contact.last().unwrap();
        assert_eq!((c.run, c.committed), (Duration::ZERO, Some(101)));
        // The fresh messages follow; one finishing late does not lower the index.
        tokio::time::advance(Duration::from_millis(5)).await;
        contact.touch(Some(160));
        contact.touch(Some(101));
        let c = contact.last().unwrap();
        assert_eq!((c.run, c.committed), (Duration::from_millis(5), Some(160)));
        // Contact every heartbeat, up to the gap, keeps the run going.
        tokio::time::advance(GAP).await;
        contact.touch(None);
        assert_eq!(contact.last().unwrap().run, GAP + Duration::from_millis(5));
    }
}
