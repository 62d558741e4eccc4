//! Online membership changes of a node's Raft groups: add a member, remove a member,
//! move one group's replica from one member to another.
//!
//! [`Membership`] (from [`Node::membership`](crate::Node::membership)) acts on the
//! replicas this node hosts, and only on groups this node leads: Raft membership changes
//! must be proposed by the leader. Everywhere else an operation fails with
//! [`NodeError::NotLeader`] naming the leader this replica knows of, so a caller (the
//! `candor.admin.v1.ClusterAdmin` service) can forward it.
//!
//! # Protocol of each change
//!
//! * **add**: the node joins as a learner (it receives the log but neither votes nor
//!   counts for quorums), so a new member never weakens availability while it copies the
//!   log; once the leader sees it within [`CatchUp::max_lag`] entries of its own last log
//!   index, it is promoted to voter (openraft's joint consensus: old and new voter sets
//!   must both agree during the switch).
//! * **remove**: the voter set without the node (or the learner dropped), refusing to
//!   leave a group with no voter. A leader that removes itself keeps leading until the
//!   change commits, then hands leadership to another voter (openraft's
//!   `removed_leader_step_down`).
//! * **move**: as add for the target, then one change that replaces the source by the
//!   target among the voters, so the voter count never drops during the move.
//!
//! Every operation is idempotent: it reads the current membership first and does only
//! what is missing, so a retry after a timeout or a lost leader completes the change.
//! Changes of one group on this node are serialized; a change already in progress (from
//! another node, or one cut short by a leader change) is waited for within the catch-up
//! timeout ([`NodeError::Conflict`] after it).
//!
//! # Catch-up
//!
//! A learner catches up from the leader's log, replaying the entries and rebuilding its
//! trees and epoch log exactly as the other replicas did; where the leader has compacted
//! the entries it needs, Raft sends it a snapshot of the group's state first. Either
//! way, the leader's replication progress is what [`CatchUp::max_lag`] is measured on.
//!
//! # Co-located layout
//!
//! With `candor serve --role all`, every member's API serves reads from its own replicas
//! and the sequencer leader reads the shard roots from its own replicas. A member that
//! does not replicate every group therefore serves reads only up to the last epoch it
//! can prove. A sequencer leader lacking a shard would leave it out of new epochs, so
//! the node's epoch ticker hands sequencer leadership to a voter of every shard group
//! instead, when it knows one ([`Membership::replicates_every_shard`],
//! [`Membership::sequencer_handoff_target`]); with no such voter it keeps making
//! epochs for the shards it holds. Moving single replicas is thus a tool for
//! transitions (e.g. draining a member group by group); a steady state keeps every
//! member in every group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use candor_raft::openraft::async_runtime::watch::WatchReceiver;
use candor_raft::openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use candor_raft::openraft::{BasicNode, ChangeMembers, Membership as RaftMembership, RaftMetrics};
use candor_raft::{
    BoxFuture, GroupId, NodeId, RaftGroup, ServerState, StateMachineLogic, TypeConfig,
};
use tokio::sync::Mutex;
use tracing::info;

use crate::{NodeError, SEQUENCER_GROUP};

/// Default of [`CatchUp::max_lag`].
pub const DEFAULT_MAX_LAG: u64 = 64;

/// Default of [`CatchUp::timeout`].
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to poll the leader's view while a learner catches up.
const POLL: Duration = Duration::from_millis(50);

/// When a learner is ready to vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// Promote once the learner holds the log up to within this many entries of the
    /// leader's last log index.
    pub max_lag: u64,
    /// Give up (the node stays a learner) after this long, per group. Also bounds the
    /// wait for a membership change already in progress.
    pub timeout: Duration,
}

impl Default for CatchUp {
    fn default() -> Self {
        Self {
            max_lag: DEFAULT_MAX_LAG,
            timeout: DEFAULT_CATCH_UP_TIMEOUT,
        }
    }
}

/// A member of a group as a replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Node id.
    pub node: NodeId,
    /// Raft address recorded in the membership.
    pub addr: String,
    /// Votes (in the latest voter set); otherwise a learner.
    pub voter: bool,
    /// Last log index the leader knows the member holds (only in a leader's view; the
    /// leader reports its own last log index).
    pub matched: Option<u64>,
}

/// One group as this node's replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// The group.
    pub group: GroupId,
    /// This node.
    pub reporter: NodeId,
    /// This replica's role.
    pub state: ServerState,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The latest membership (voters and learners), by node id. Empty on a replica that
    /// was never added to the group.
    pub members: Vec<MemberView>,
    /// A membership change is in progress (latest membership uncommitted or joint).
    pub changing: bool,
    /// Last log index held here.
    pub last_log_index: Option<u64>,
    /// Last index known committed here.
    pub committed: Option<u64>,
    /// Last index applied here.
    pub applied: Option<u64>,
}

impl GroupView {
    /// Whether this replica leads the group and may change its membership (a leader
    /// that removed itself only hands over).
    pub fn is_acting_leader(&self) -> bool {
        self.state == ServerState::Leader
            && self
                .members
                .iter()
                .any(|m| m.node == self.reporter && m.voter)
    }

    /// Whether `node` is a voter or learner of the latest membership.
    pub fn has_member(&self, node: NodeId) -> bool {
        self.members.iter().any(|m| m.node == node)
    }

    /// The leader's address, when the leader is known and in the membership.
    pub fn leader_addr(&self) -> Option<&str> {
        let l = self.leader?;
        self.members
            .iter()
            .find(|m| m.node == l)
            .map(|m| m.addr.as_str())
    }
}

/// A group after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChange {
    /// The group.
    pub group: GroupId,
    /// False when the group already had the requested membership.
    pub changed: bool,
    /// Voters afterwards.
    pub voters: BTreeSet<NodeId>,
    /// Learners afterwards.
    pub learners: BTreeSet<NodeId>,
    /// The leader that carried the change out (this node).
    pub leader: NodeId,
}

/// The membership a committed change produced.
type ChangeResult = Result<
    Option<RaftMembership<NodeId, BasicNode>>,
    RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
>;

/// A group's Raft handle, type-erased over its state machine.
trait Managed: Send + Sync {
    fn group(&self) -> GroupId;
    fn metrics(&self) -> RaftMetrics<TypeConfig>;
    fn add_learner(&self, node: NodeId, addr: String) -> BoxFuture<'static, ChangeResult>;
    fn change(&self, change: ChangeMembers<NodeId, BasicNode>) -> BoxFuture<'static, ChangeResult>;
    fn transfer_leader(&self, to: NodeId) -> BoxFuture<'static, ()>;
}

impl<L: StateMachineLogic> Managed for RaftGroup<L> {
    fn group(&self) -> GroupId {
        self.id()
    }

    fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft().metrics().borrow_watched().clone()
    }

    fn add_learner(&self, node: NodeId, addr: String) -> BoxFuture<'static, ChangeResult> {
        let raft = self.raft().clone();
        // Not blocking: catching up is watched by the caller, with its own bound.
        Box::pin(async move {
            raft.add_learner(node, BasicNode { addr }, false)
                .await
                .map(|r| r.membership)
        })
    }

    fn change(&self, change: ChangeMembers<NodeId, BasicNode>) -> BoxFuture<'static, ChangeResult> {
        let raft = self.raft().clone();
        // `retain = false`: a removed voter leaves the group instead of staying a learner.
        Box::pin(async move {
            raft.change_membership(change, false)
                .await
                .map(|r| r.membership)
        })
    }

    fn transfer_leader(&self, to: NodeId) -> BoxFuture<'static, ()> {
        let raft = self.raft().clone();
        Box::pin(async move {
            // Ignored by a non-leader; a stopped group has nothing to hand over.
            let _ = raft.trigger().transfer_leader(to).await;
        })
    }
}

struct Slot {
    group: Arc<dyn Managed>,
    /// Serializes this node's changes of the group.
    lock: Mutex<()>,
}

/// Membership operations on a node's groups. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    node: NodeId,
    slots: Arc<BTreeMap<GroupId, Slot>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.node)
            .field("groups", &self.slots.len())
            .finish()
    }
}

/// What a failed membership proposal means for the caller.
enum Failed {
    /// Another change is in progress or the leader has not committed in its term yet.
    Busy(String),
    Final(NodeError),
}

fn last_voters(m: &RaftMetrics<TypeConfig>) -> BTreeSet<NodeId> {
    m.membership_config
        .membership()
        .get_joint_config()
        .last()
        .cloned()
        .unwrap_or_default()
}

/// Whether `node` belongs to the latest membership `m` knows: a voter of its newest
/// voter set, or a learner. A replica removed by a joint change sees the joint
/// configuration at most, whose newest set no longer holds it.
fn holds(m: &RaftMetrics<TypeConfig>, node: NodeId) -> bool {
    let membership = m.membership_config.membership();
    if last_voters(m).contains(&node) {
        return true;
    }
    membership.get_node(&node).is_some()
        && !membership
            .get_joint_config()
            .iter()
            .any(|set| set.contains(&node))
}

fn view_of(m: &RaftMetrics<TypeConfig>, group: GroupId) -> GroupView {
    let membership = m.membership_config.membership();
    let voters = last_voters(m);
    let leading = m.state == ServerState::Leader;
    let members = membership
        .nodes()
        .map(|(id, n)| MemberView {
            node: *id,
            addr: n.addr.clone(),
            voter: voters.contains(id),
            matched: if !leading {
                None
            } else if *id == m.id {
                m.last_log_index
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
            },
        })
        .collect();
    GroupView {
        group,
        reporter: m.id,
        state: m.state,
        leader: m.current_leader,
        term: m.current_term,
        members,
        changing: m.membership_config != m.committed_membership_config
            || membership.get_joint_config().len() > 1,
        last_log_index: m.last_log_index,
        committed: m.local_committed.map(|l| l.index),
        applied: m.last_applied.map(|l| l.index),
    }
}

fn change_of(m: &RaftMetrics<TypeConfig>, group: GroupId, changed: bool) -> GroupChange {
    change_from(m.membership_config.membership(), group, changed, m.id)
}

fn change_from(
    membership: &RaftMembership<NodeId, BasicNode>,
    group: GroupId,
    changed: bool,
    leader: NodeId,
) -> GroupChange {
    let voters = membership
        .get_joint_config()
        .last()
        .cloned()
        .unwrap_or_default();
    let learners = membership
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| !voters.contains(id))
        .collect();
    GroupChange {
        group,
        changed,
        voters,
        learners,
        leader,
    }
}

/// Checks a node id and a Raft address. The address format belongs to the transport
/// (the gRPC admin service checks `host:port`); here it only has to be non-blank.
fn check_node(node: NodeId, addr: Option<&str>) -> Result<(), NodeError> {
    if node == 0 {
        return Err(NodeError::InvalidArgument("node id must be > 0".into()));
    }
    if let Some(a) = addr
        && (a.is_empty() || a.chars().any(char::is_whitespace))
    {
        return Err(NodeError::InvalidArgument(format!(
            "raft address {a:?} is empty or contains whitespace"
        )));
    }
    Ok(())
}

impl Membership {
    pub(crate) fn new<S: StateMachineLogic, Q: StateMachineLogic>(
        node: NodeId,
        shards: &[RaftGroup<S>],
        sequencer: Option<&RaftGroup<Q>>,
    ) -> Self {
        let mut slots = BTreeMap::new();
        let mut put = |g: Arc<dyn Managed>| {
            slots.insert(
                g.group(),
                Slot {
                    group: g,
                    lock: Mutex::new(()),
                },
            );
        };
        for s in shards {
            put(Arc::new(s.clone()));
        }
        if let Some(q) = sequencer {
            put(Arc::new(q.clone()));
        }
        Self {
            node,
            slots: Arc::new(slots),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// Every group this node hosts, ascending.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.slots.keys().copied().collect()
    }

    /// `"sequencer"` for the sequencer group, `"shard"` otherwise.
    pub fn kind(group: GroupId) -> &'static str {
        if group.0 == SEQUENCER_GROUP {
            "sequencer"
        } else {
            "shard"
        }
    }

    fn slot(&self, group: GroupId) -> Result<&Slot, NodeError> {
        self.slots.get(&group).ok_or_else(|| {
            NodeError::InvalidArgument(format!("group {} is not hosted here", group.0))
        })
    }

    /// This replica's view of `group`.
    pub fn view(&self, group: GroupId) -> Result<GroupView, NodeError> {
        Ok(view_of(&self.slot(group)?.group.metrics(), group))
    }

    /// This node's view of every group, ascending.
    pub fn status(&self) -> Vec<GroupView> {
        self.slots
            .iter()
            .map(|(g, s)| view_of(&s.group.metrics(), *g))
            .collect()
    }

    /// `node`'s Raft address as recorded in the membership of any group hosted here.
    pub fn address_of(&self, node: NodeId) -> Option<String> {
        self.slots.values().find_map(|s| {
            s.group
                .metrics()
                .membership_config
                .membership()
                .get_node(&node)
                .map(|n| n.addr.clone())
        })
    }

    fn shard_slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots
            .iter()
            .filter(|(g, _)| g.0 != SEQUENCER_GROUP)
            .map(|(_, s)| s)
    }

    /// Whether this node holds a current replica of every shard group (it is in each
    /// one's latest membership as its replica knows it). The sequencer leader builds
    /// epochs from its own shard replicas, so it should.
    pub fn replicates_every_shard(&self) -> bool {
        self.shard_slots()
            .all(|s| holds(&s.group.metrics(), self.node))
    }

    /// Another voter of the sequencer group that, as far as this node can tell, votes
    /// in every shard group: where a sequencer leader lacking a shard replica should
    /// hand leadership.
    pub fn sequencer_handoff_target(&self) -> Option<NodeId> {
        let seq = self.slots.get(&GroupId(SEQUENCER_GROUP))?;
        let mut candidates = last_voters(&seq.group.metrics());
        candidates.remove(&self.node);
        for s in self.shard_slots() {
            let voters = last_voters(&s.group.metrics());
            candidates.retain(|c| voters.contains(c));
        }
        candidates.into_iter().next()
    }

    /// Ask the sequencer group to hand leadership to `to` (ignored unless this node
    /// leads it).
    pub async fn transfer_sequencer(&self, to: NodeId) {
        if let Some(seq) = self.slots.get(&GroupId(SEQUENCER_GROUP)) {
            seq.group.transfer_leader(to).await;
        }
    }

    /// The metrics of `group`, if this replica leads it.
    ///
    /// A leader that removed itself keeps leading until it hands over; it must not
    /// propose further changes (openraft does not support that), so it counts as not
    /// leading, with no leader known yet.
    fn leading(&self, slot: &Slot) -> Result<RaftMetrics<TypeConfig>, NodeError> {
        let m = slot.group.metrics();
        if m.state == ServerState::Leader && last_voters(&m).contains(&self.node) {
            return Ok(m);
        }
        let leader = m.current_leader.filter(|&l| l != self.node);
        Err(NodeError::NotLeader {
            group: slot.group.group().0,
            leader,
            leader_addr: leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            }),
        })
    }

    fn classify(
        &self,
        group: GroupId,
        e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    ) -> Failed {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                Failed::Final(NodeError::NotLeader {
                    group: group.0,
                    leader: f.leader_id.filter(|&l| l != self.node),
                    leader_addr: f.leader_node.map(|n| n.addr),
                })
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                e @ (ChangeMembershipError::InProgress(_)
                | ChangeMembershipError::UncommittedLeaderLog(_)),
            )) => Failed::Busy(e.to_string()),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                e @ ChangeMembershipError::EmptyMembership(_),
            )) => Failed::Final(NodeError::FailedPrecondition(format!(
                "group {}: {e}",
                group.0
            ))),
            other => Failed::Final(NodeError::Raft(format!("group {}: {other}", group.0))),
        }
    }

    /// Run `op` until it is not refused as busy, up to `deadline`.
    async fn propose(
        &self,
        group: GroupId,
        deadline: tokio::time::Instant,
        op: impl Fn() -> BoxFuture<'static, ChangeResult>,
    ) -> Result<Option<RaftMembership<NodeId, BasicNode>>, NodeError> {
        loop {
            let r = tokio::time::timeout_at(deadline, op()).await;
            let e = match r {
                Ok(Ok(m)) => return Ok(m),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(NodeError::Raft(format!(
                        "group {}: the membership change did not commit in time; \
                         repeat the request to complete it",
                        group.0
                    )));
                }
            };
            match self.classify(group, e) {
                Failed::Final(e) => return Err(e),
                Failed::Busy(why) => {
                    if tokio::time::Instant::now() + POLL >= deadline {
                        return Err(NodeError::Conflict {
                            group: group.0,
                            detail: why,
                        });
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// The group after a committed change: the membership the change produced (the
    /// metrics may not show it yet), else the replica's current one.
    fn changed(
        &self,
        slot: &Slot,
        group: GroupId,
        after: Option<RaftMembership<NodeId, BasicNode>>,
    ) -> GroupChange {
        match after {
            Some(m) => change_from(&m, group, true, self.node),
            None => change_of(&slot.group.metrics(), group, true),
        }
    }

    /// Add `node` as a learner if it is not a member yet; refuse an address conflict.
    async fn ensure_learner(
        &self,
        slot: &Slot,
        m: &RaftMetrics<TypeConfig>,
        node: NodeId,
        addr: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), NodeError> {
        let group = slot.group.group();
        match m.membership_config.membership().get_node(&node) {
            Some(n) if n.addr != addr => Err(NodeError::FailedPrecondition(format!(
                "group {}: node {node} is a member with address {:?}, not {addr:?}",
                group.0, n.addr
            ))),
            Some(_) => Ok(()),
            None => {
                info!(group = group.0, node, addr, "adding learner");
                let g = Arc::clone(&slot.group);
                let addr = addr.to_string();
                self.propose(group, deadline, || g.add_learner(node, addr.clone()))
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Wait until the leader sees `node` within `max_lag` entries of its last log index.
    async fn wait_caught_up(
        &self,
        slot: &Slot,
        node: NodeId,
        max_lag: u64,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let group = slot.group.group();
        loop {
            let m = self.leading(slot)?;
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&node).cloned().flatten())
                .map(|l| l.index);
            if matched.unwrap_or(0).saturating_add(max_lag) >= last {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::CatchUpTimeout {
                    group: group.0,
                    node,
                    matched,
                    last,
                    timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Add `node` (at `addr`) to `group` as a learner, wait until it caught up, then make
    /// it a voter. Idempotent; this node must lead the group.
    pub async fn add_member(
        &self,
        group: GroupId,
        node: NodeId,
        addr: &str,
        catch_up: CatchUp,
    ) -> Result<GroupChange, NodeError> {
        check_node(node, Some(addr))?;
        let slot = self.slot(group)?;
        let _serial = slot.lock.lock().await;
        let deadline = tokio::time::Instant::now() + catch_up.timeout;
        let m = self.leading(slot)?;
        if last_voters(&m).contains(&node) {
            if let Some(n) = m.membership_config.membership().get_node(&node)
                && n.addr != addr
            {
                return Err(NodeError::FailedPrecondition(format!(
                    "group {}: node {node} is a voter with address {:?}, not {addr:?}",
                    group.0, n.addr
                )));
            }
            return Ok(change_of(&m, group, false));
        }
        self.ensure_learner(slot, &m, node, addr, deadline).await?;
        self.wait_caught_up(slot, node, catch_up.max_lag, deadline, catch_up.timeout)
            .await?;
        info!(group = group.0, node, "promoting learner to voter");
        let g = Arc::clone(&slot.group);
        let after = self
            .propose(group, deadline, || {
                g.change(ChangeMembers::AddVoterIds(BTreeSet::from([node])))
            })
            .await?;
        Ok(self.changed(slot, group, after))
    }

    /// Remove `node` (voter or learner) from `group`; refuses to remove the last voter.
    /// Unchanged when `node` is not a member. This node must lead the group.
    pub async fn remove_member(
        &self,
        group: GroupId,
        node: NodeId,
        timeout: Duration,
    ) -> Result<GroupChange, NodeError> {
        check_node(node, None)?;
        let slot = self.slot(group)?;
        let _serial = slot.lock.lock().await;
        let deadline = tokio::time::Instant::now() + timeout;
        let m = self.leading(slot)?;
        let voters = last_voters(&m);
        let change = if voters.contains(&node) {
            if voters.len() == 1 {
                return Err(NodeError::FailedPrecondition(format!(
                    "group {}: node {node} is its only voter; add another member first",
                    group.0
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else if m.membership_config.membership().get_node(&node).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        } else {
            return Ok(change_of(&m, group, false));
        };
        info!(group = group.0, node, "removing member");
        let g = Arc::clone(&slot.group);
        let after = self
            .propose(group, deadline, || g.change(change.clone()))
            .await?;
        Ok(self.changed(slot, group, after))
    }

    /// Move `group`'s replica from voter `from` to `to` (at `to_addr`, or the address
    /// recorded for `to` in any group here): `to` joins as a learner, catches up, then
    /// replaces `from` among the voters in one change. Idempotent; this node must lead
    /// the group.
    pub async fn move_replica(
        &self,
        group: GroupId,
        from: NodeId,
        to: NodeId,
        to_addr: Option<&str>,
        catch_up: CatchUp,
    ) -> Result<GroupChange, NodeError> {
        check_node(from, None)?;
        check_node(to, to_addr)?;
        if from == to {
            return Err(NodeError::InvalidArgument(
                "the source and target of a move must differ".into(),
            ));
        }
        let slot = self.slot(group)?;
        let to_addr = match to_addr {
            Some(a) => a.to_string(),
            None => self.address_of(to).ok_or_else(|| {
                NodeError::FailedPrecondition(format!(
                    "no group here knows node {to}'s address; give it explicitly"
                ))
            })?,
        };
        let _serial = slot.lock.lock().await;
        let deadline = tokio::time::Instant::now() + catch_up.timeout;
        let m = self.leading(slot)?;
        let voters = last_voters(&m);
        let membership = m.membership_config.membership();
        if voters.contains(&to) && membership.get_node(&from).is_none() {
            return Ok(change_of(&m, group, false));
        }
        if !voters.contains(&from) {
            return Err(NodeError::FailedPrecondition(format!(
                "group {}: node {from} is not a voter (voters: {voters:?})",
                group.0
            )));
        }
        self.ensure_learner(slot, &m, to, &to_addr, deadline)
            .await?;
        if !voters.contains(&to) {
            self.wait_caught_up(slot, to, catch_up.max_lag, deadline, catch_up.timeout)
                .await?;
        }
        let mut next = voters;
        next.remove(&from);
        next.insert(to);
        info!(group = group.0, from, to, "moving replica");
        let g = Arc::clone(&slot.group);
        let after = self
            .propose(group, deadline, || {
                g.change(ChangeMembers::ReplaceAllVoters(next.clone()))
            })
            .await?;
        Ok(self.changed(slot, group, after))
    }
}

/// The epoch ticker of a node: every `interval`, if this node leads the sequencer group,
/// propose the next epoch ([`candor_sequencer::propose_epoch`]). A leader that no longer
/// replicates every shard (after a replica move) would leave those shards out of new
/// epochs, so it hands the sequencer to a voter that does instead, when one is known.
pub(crate) fn spawn_epoch_ticker(
    group: RaftGroup<crate::SequencerLogic>,
    forest: candor_tree::Forest,
    membership: Membership,
    local_shards: Vec<LocalShard>,
    interval: Duration,
    activate_key_version: Option<u32>,
    cancel: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use tracing::Instrument as _;
    tokio::spawn(async move {
        let node = membership.node_id();
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = false;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if group.leader() != Some(node) {
                leading = false;
                continue;
            }
            if !leading {
                // Newly the sequencer leader (a restart included): seal what the local
                // shards hold pending before the first epoch, so that epoch merges
                // every mutation acknowledged before (on one node: all of them).
                leading = true;
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = seal_local_shards(node, &local_shards, interval) => {}
                }
            }
            if !membership.replicates_every_shard()
                && let Some(to) = membership.sequencer_handoff_target()
            {
                tracing::warn!(
                    to,
                    "this node lacks a shard replica: handing sequencer leadership over"
                );
                membership.transfer_sequencer(to).await;
                continue;
            }
            if let Some(target) = activate_key_version {
                let active = group.read(|l| l.key_version()).await.unwrap_or(target);
                if target > active {
                    // One version at a time; the next epoch is the first under it.
                    match crate::propose_rotation(&group, active + 1).await {
                        Ok(v) => tracing::info!(version = v, "key version activated"),
                        Err(e) => {
                            tracing::error!(error = %e, version = active + 1, "key rotation failed")
                        }
                    }
                } else if target < active {
                    tracing::debug!(
                        target,
                        active,
                        "a newer key version is active than configured"
                    );
                }
            }
            let span = tracing::info_span!("epoch");
            let r = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = crate::propose_epoch(&group, &forest).instrument(span) => r,
            };
            match r {
                // Quiet steady state: no line per epoch at INFO.
                Ok(e) => tracing::debug!(epoch = e, "epoch committed"),
                Err(e) => tracing::warn!(error = %e, "epoch proposal failed"),
            }
        }
    })
}

/// A shard group hosted here, with its pending-label counter.
pub(crate) type LocalShard = (
    u32,
    RaftGroup<candor_shard::ShardLogic>,
    Arc<std::sync::atomic::AtomicUsize>,
);

/// Seals every local shard that has pending labels and is led here, waiting up to
/// `bound` for a shard group that has no leader yet (groups elect independently
/// after a restart). Shards led elsewhere are sealed by their own leaders.
async fn seal_local_shards(node: NodeId, shards: &[LocalShard], bound: Duration) {
    use std::sync::atomic::Ordering;
    let deadline = tokio::time::Instant::now() + bound.max(Duration::from_secs(1));
    for (shard, group, pending) in shards {
        if pending.load(Ordering::Relaxed) == 0 {
            continue;
        }
        while group.leader().is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if candor_shard::seal_pending(node, *shard, group, pending)
            .await
            .is_some()
        {
            tracing::debug!(shard, "sealed before the first epoch as leader");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Node, NodeConfig, NodeKeys, Topology};
    use candor_core::signed::SigningKeyPair;
    use candor_core::vrf::VrfSecretKey;
    use candor_raft::{InProcessNetwork, RaftTuning};
    use candor_store::{MemStore, Store};

    fn config() -> NodeConfig {
        let keys = NodeKeys {
            head: SigningKeyPair::from_seed(&[1; 32]),
            smt: SigningKeyPair::from_seed(&[2; 32]),
            vrf_public: VrfSecretKey::from_bytes(&[42; 32]).public_key(),
        };
        let mut c = NodeConfig::new("unused", "membership.test", keys);
        c.shard_bits = 1;
        c.epoch_interval = Duration::from_millis(100);
        c.seal_interval = Duration::from_millis(50);
        c.tree_cache_bytes = 1 << 20;
        // Catch-up from the log: keep every entry.
        c.raft = RaftTuning {
            snapshot_after_entries: 1 << 40,
            keep_after_snapshot: 1 << 40,
            ..RaftTuning::default()
        };
        c
    }

    fn addr(id: NodeId) -> String {
        format!("inproc-{id}")
    }

    async fn start(net: &InProcessNetwork, id: NodeId, members: &[NodeId]) -> Node {
        let topology = Topology {
            node_id: id,
            addr: addr(id),
            members: members.iter().map(|&m| (m, addr(m))).collect(),
            transport: net.endpoint(id),
            bootstrap: id == 1,
        };
        let net = net.clone();
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        Node::start_with(store, config(), topology, |r| net.register(r))
            .await
            .unwrap()
    }

    /// The node leading `group`, polled (bounded).
    async fn leader<'a>(nodes: &'a [&'a Node], group: GroupId) -> &'a Node {
        for _ in 0..400 {
            for n in nodes {
                if n.membership().view(group).unwrap().is_acting_leader() {
                    return n;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no leader for {group}");
    }

    /// Run `op` on `group`'s leader, again on the new one when leadership moves in
    /// between (as the admin service does).
    async fn on_leader<F, Fut>(nodes: &[&Node], group: GroupId, op: F) -> GroupChange
    where
        F: Fn(Membership) -> Fut,
        Fut: std::future::Future<Output = Result<GroupChange, NodeError>>,
    {
        for _ in 0..40 {
            let l = leader(nodes, group).await;
            match op(l.membership()).await {
                Ok(c) => return c,
                Err(NodeError::NotLeader { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{group}: {e}"),
            }
        }
        panic!("{group}: leadership never settled");
    }

    fn voters(c: &GroupChange) -> Vec<NodeId> {
        c.voters.iter().copied().collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_member_refusals() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let node = Node::start_on(store, config()).await.unwrap();
        let m = node.membership();
        assert_eq!(m.group_ids().len(), 3);
        let g = GroupId(0);
        // The only voter is never removed.
        let e = m.remove_member(g, 1, Duration::from_secs(5)).await;
        assert!(matches!(e, Err(NodeError::FailedPrecondition(_))), "{e:?}");
        // Bad input.
        let e = m.add_member(g, 0, "inproc-9:1", CatchUp::default()).await;
        assert!(matches!(e, Err(NodeError::InvalidArgument(_))), "{e:?}");
        let e = m.add_member(g, 9, "", CatchUp::default()).await;
        assert!(matches!(e, Err(NodeError::InvalidArgument(_))), "{e:?}");
        let e = m.add_member(GroupId(7), 9, "h:1", CatchUp::default()).await;
        assert!(matches!(e, Err(NodeError::InvalidArgument(_))), "{e:?}");
        let e = m.move_replica(g, 1, 1, None, CatchUp::default()).await;
        assert!(matches!(e, Err(NodeError::InvalidArgument(_))), "{e:?}");
        let e = m.move_replica(g, 1, 9, None, CatchUp::default()).await;
        assert!(matches!(e, Err(NodeError::FailedPrecondition(_))), "{e:?}");
        // Already a voter (same address): unchanged; another address: refused.
        let c = m
            .add_member(g, 1, "inproc-1", CatchUp::default())
            .await
            .unwrap();
        assert!(!c.changed);
        let e = m.add_member(g, 1, "h:1", CatchUp::default()).await;
        assert!(matches!(e, Err(NodeError::FailedPrecondition(_))), "{e:?}");
        // Not a member: nothing to remove.
        let c = m.remove_member(g, 5, Duration::from_secs(5)).await.unwrap();
        assert!(!c.changed);
        assert_eq!(voters(&c), [1]);
        // A learner that never answers does not catch up in time and stays a learner.
        let e = m
            .add_member(
                g,
                9,
                "inproc-9",
                CatchUp {
                    max_lag: 0,
                    timeout: Duration::from_millis(300),
                },
            )
            .await;
        assert!(
            matches!(e, Err(NodeError::CatchUpTimeout { node: 9, .. })),
            "{e:?}"
        );
        let v = m.view(g).unwrap();
        assert!(v.members.iter().any(|x| x.node == 9 && !x.voter), "{v:?}");
        // Dropping the learner again.
        let c = m.remove_member(g, 9, Duration::from_secs(5)).await.unwrap();
        assert!(c.changed && c.learners.is_empty());
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn add_move_and_remove_in_process() {
        let net = InProcessNetwork::new(7);
        let n1 = start(&net, 1, &[1, 2, 3]).await;
        let n2 = start(&net, 2, &[1, 2, 3]).await;
        let n3 = start(&net, 3, &[1, 2, 3]).await;
        // A joining member: idle, no heads, no membership.
        let n4 = start(&net, 4, &[1, 2, 3, 4]).await;
        assert!(n4.heads().borrow().is_none());
        assert!(
            n4.membership()
                .status()
                .iter()
                .all(|v| v.members.is_empty())
        );

        let groups = n1.membership().group_ids();
        let founders = [&n1, &n2, &n3];
        for &g in &groups {
            let l = leader(&founders, g).await;
            // Everyone else refuses, naming the leader (once heartbeats told them).
            for n in founders.iter().filter(|n| n.raft().id() != l.raft().id()) {
                for _ in 0..400 {
                    if n.membership().view(g).unwrap().leader == Some(l.raft().id()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                match n
                    .membership()
                    .add_member(g, 4, "inproc-4", CatchUp::default())
                    .await
                {
                    Err(NodeError::NotLeader {
                        leader: Some(id),
                        leader_addr: Some(a),
                        ..
                    }) => {
                        assert_eq!(id, l.raft().id());
                        assert_eq!(a, addr(id));
                    }
                    other => panic!("expected NotLeader, got {other:?}"),
                }
            }
            let c = on_leader(&founders, g, |m| async move {
                m.add_member(g, 4, "inproc-4", CatchUp::default()).await
            })
            .await;
            assert!(c.changed);
            assert_eq!(voters(&c), [1, 2, 3, 4]);
            let again = on_leader(&founders, g, |m| async move {
                m.add_member(g, 4, "inproc-4", CatchUp::default()).await
            })
            .await;
            assert!(!again.changed);
        }
        // Node 4 now serves heads of its own replicas.
        let mut heads = n4.heads();
        tokio::time::timeout(Duration::from_secs(30), heads.wait_for(|h| h.is_some()))
            .await
            .expect("node 4 serves a head")
            .unwrap();

        // Move shard 0's replica away from the sequencer leader S (4 is a voter already:
        // the move only drops S). S then hands the sequencer over.
        let all = [&n1, &n2, &n3, &n4];
        let seq = GroupId(SEQUENCER_GROUP);
        let s = leader(&all, seq).await.raft().id();
        let g0 = GroupId(0);
        let c = on_leader(&all, g0, |m| async move {
            m.move_replica(g0, s, 4, None, CatchUp::default()).await
        })
        .await;
        assert!(!c.voters.contains(&s) && c.voters.contains(&4), "{c:?}");
        let mut handed = false;
        for _ in 0..400 {
            let n = leader(&all, seq).await;
            if n.raft().id() != s {
                assert!(n.membership().replicates_every_shard());
                handed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(handed, "sequencer leader {s} kept leading without shard 0");
        let again = on_leader(&all, g0, |m| async move {
            m.move_replica(g0, s, 4, None, CatchUp::default()).await
        })
        .await;
        assert!(!again.changed);
        // Move it back to S (its old replica catches up): learner, catch-up, swap.
        let c = on_leader(&all, g0, |m| async move {
            m.move_replica(g0, 4, s, None, CatchUp::default()).await
        })
        .await;
        assert!(c.changed);
        assert_eq!(voters(&c), [1, 2, 3]);

        // Remove node 1 everywhere (also where it leads).
        for &g in &groups {
            let c = on_leader(&all, g, |m| async move {
                m.remove_member(g, 1, Duration::from_secs(10)).await
            })
            .await;
            assert!(c.changed);
            assert!(!c.voters.contains(&1) && !c.learners.contains(&1));
        }
        // The remaining members still take writes (through node 4) and make epochs.
        let before = n4.heads().borrow().as_ref().map_or(0, |h| h.head.epoch);
        let label = b"alice@example.com".to_vec();
        let req = crate::PublishRequest {
            tenant: "t".into(),
            idempotency_key: Some("k1".into()),
            index: VrfSecretKey::from_bytes(&[42; 32])
                .evaluate(&label)
                .0
                .index(),
            label,
            value: b"v1".to_vec(),
        };
        let mut published = false;
        for _ in 0..100 {
            if let Ok(r) = n4.publisher().publish(vec![req.clone()]).await
                && r.iter().all(Result::is_ok)
            {
                published = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(published, "no write accepted without node 1");
        let mut heads = n4.heads();
        tokio::time::timeout(
            Duration::from_secs(30),
            heads.wait_for(|h| h.as_ref().is_some_and(|h| h.head.epoch > before)),
        )
        .await
        .expect("epochs continue without node 1")
        .unwrap();
        for n in [n1, n2, n3, n4] {
            n.shutdown().await;
        }
    }
}
