//! `candor.admin.v1.ClusterAdmin` (`proto/candor/v1/admin.proto`): membership changes
//! and status, served on the member's Raft port.
//!
//! The member that receives a change runs it for every group it leads
//! ([`crate::membership`]) and forwards it, one group per call and marked
//! `forwarded`, to the leader of every other group over this same service (the
//! leader's address comes from the group's membership). A forwarded call that reaches
//! a non-leader is refused with `FAILED_PRECONDITION` and the metadata key
//! [`LEADER_METADATA_KEY`]; the receiving member then retries with the leader it
//! learns, a few times, before giving up. Groups are handled concurrently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::membership::{CatchUp, DEFAULT_CATCH_UP_TIMEOUT, DEFAULT_MAX_LAG, GroupView};
use crate::{Membership, NodeError};
use candor_proto::admin::v1 as pb;
use candor_raft::tls::TlsConfig;
use candor_raft::{GroupId, NodeId};
use pb::cluster_admin_client::ClusterAdminClient;
use pb::cluster_admin_server::{ClusterAdmin, ClusterAdminServer};
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// Metadata key on a `FAILED_PRECONDITION` refusing a forwarded change because this
/// member does not lead the group: `ID=ADDR` of the leader it knows, `ID=` without its
/// address, or `unknown`.
pub const LEADER_METADATA_KEY: &str = "candor-admin-leader";

/// Attempts per group of the receiving member (each after a leader change or while
/// no leader is known).
const ATTEMPTS: u32 = 8;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Bound on a removal (it needs no catch-up).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on asking a peer for its status.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on connecting to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The service. The node is set once it has started ([`AdminService::set`]); until
/// then every call is `UNAVAILABLE`.
#[derive(Clone, Default)]
pub struct AdminService {
    membership: Arc<OnceLock<Membership>>,
    /// Mutual TLS for calls to other members (`tls.cluster`).
    tls: Option<TlsConfig>,
}

impl AdminService {
    /// A service waiting for its node.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call other members over mutual TLS with `tls` (their admin service shares the
    /// Raft port, so it is the member's cluster identity).
    pub fn with_tls(mut self, tls: Option<TlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Serve `membership` from now on.
    pub fn set(&self, membership: Membership) {
        let _ = self.membership.set(membership);
    }

    /// Wrapped for `tonic::transport::Server::add_service`, with `max_message_bytes`
    /// as the limit both ways.
    pub fn into_service(self, max_message_bytes: usize) -> ClusterAdminServer<Self> {
        ClusterAdminServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    fn membership(&self) -> Result<Membership, Status> {
        self.membership
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("the node is starting"))
    }
}

/// One requested change, applied per group.
#[derive(Clone, Debug)]
enum Op {
    Add {
        node: NodeId,
        addr: String,
        catch_up: CatchUp,
    },
    Remove {
        node: NodeId,
    },
    Move {
        from: NodeId,
        to: NodeId,
        to_addr: Option<String>,
        catch_up: CatchUp,
    },
}

impl Op {
    /// Bound on one group's change (forwarded calls get a little more).
    fn timeout(&self) -> Duration {
        match self {
            Op::Add { catch_up, .. } | Op::Move { catch_up, .. } => catch_up.timeout,
            Op::Remove { .. } => REMOVE_TIMEOUT,
        }
    }

    async fn run_local(
        &self,
        m: &Membership,
        group: GroupId,
    ) -> Result<crate::membership::GroupChange, NodeError> {
        match self {
            Op::Add {
                node,
                addr,
                catch_up,
            } => m.add_member(group, *node, addr, *catch_up).await,
            Op::Remove { node } => m.remove_member(group, *node, REMOVE_TIMEOUT).await,
            Op::Move {
                from,
                to,
                to_addr,
                catch_up,
            } => {
                m.move_replica(group, *from, *to, to_addr.as_deref(), *catch_up)
                    .await
            }
        }
    }

    async fn forward(
        &self,
        addr: &str,
        group: GroupId,
        tls: Option<&TlsConfig>,
    ) -> Result<pb::GroupChange, Status> {
        let mut client = connect(addr, tls).await?;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.timeout() + Duration::from_secs(10);
        let resp = match self {
            Op::Add {
                node,
                addr,
                catch_up,
            } => {
                let mut req = Request::new(pb::AddMemberRequest {
                    node_id: *node,
                    raft_addr: addr.clone(),
                    groups: vec![group.0],
                    max_lag: catch_up.max_lag,
                    catch_up_timeout_ms: ms(catch_up.timeout),
                    forwarded: true,
                });
                req.set_timeout(deadline);
                client.add_member(req).await?
            }
            Op::Remove { node } => {
                let mut req = Request::new(pb::RemoveMemberRequest {
                    node_id: *node,
                    groups: vec![group.0],
                    forwarded: true,
                });
                req.set_timeout(deadline);
                client.remove_member(req).await?
            }
            Op::Move {
                from,
                to,
                to_addr,
                catch_up,
            } => {
                let mut req = Request::new(pb::MoveReplicaRequest {
                    group: group.0,
                    from_node: *from,
                    to_node: *to,
                    to_raft_addr: to_addr.clone().unwrap_or_default(),
                    max_lag: catch_up.max_lag,
                    catch_up_timeout_ms: ms(catch_up.timeout),
                    forwarded: true,
                });
                req.set_timeout(deadline);
                client.move_replica(req).await?
            }
        };
        resp.into_inner()
            .groups
            .into_iter()
            .find(|g| g.group == group.0)
            .ok_or_else(|| Status::internal(format!("the leader did not report group {group}")))
    }
}

async fn connect(
    addr: &str,
    tls: Option<&TlsConfig>,
) -> Result<ClusterAdminClient<Channel>, Status> {
    let uri = candor_raft::grpc::endpoint_uri_with(addr, tls.is_some())
        .map_err(|e| Status::unavailable(format!("leader address: {e}")))?;
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Status::unavailable(format!("leader address {addr:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_tls())
            .map_err(|e| Status::unavailable(format!("TLS settings for {addr}: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach {addr}: {e}")))?;
    Ok(ClusterAdminClient::new(channel))
}

/// The gRPC status of a refused or failed change.
fn status_of(e: NodeError) -> Status {
    let msg = e.to_string();
    match e {
        NodeError::InvalidArgument(_) => Status::invalid_argument(msg),
        NodeError::NotFound(_) => Status::not_found(msg),
        NodeError::FailedPrecondition(_) => Status::failed_precondition(msg),
        NodeError::NotLeader {
            leader,
            leader_addr,
            ..
        } => {
            let mut s = Status::failed_precondition(msg);
            let hint = match (leader, leader_addr) {
                (Some(l), Some(a)) => format!("{l}={a}"),
                (Some(l), None) => format!("{l}="),
                _ => "unknown".into(),
            };
            if let Ok(v) = hint.parse() {
                s.metadata_mut().insert(LEADER_METADATA_KEY, v);
            }
            s
        }
        NodeError::CatchUpTimeout { .. } => Status::deadline_exceeded(msg),
        NodeError::Conflict { .. } => Status::aborted(msg),
        _ => Status::unavailable(msg),
    }
}

/// The leader named by a not-the-leader refusal, if the status is one.
fn not_leader_hint(s: &Status) -> Option<Option<(NodeId, String)>> {
    if s.code() != Code::FailedPrecondition {
        return None;
    }
    let v = s.metadata().get(LEADER_METADATA_KEY)?.to_str().ok()?;
    Some(v.split_once('=').and_then(|(id, addr)| {
        let id = id.parse().ok()?;
        (!addr.is_empty()).then(|| (id, addr.to_string()))
    }))
}

fn to_pb_change(c: crate::membership::GroupChange) -> pb::GroupChange {
    pb::GroupChange {
        group: c.group.0,
        changed: c.changed,
        voters: c.voters.into_iter().collect(),
        learners: c.learners.into_iter().collect(),
        leader: c.leader,
    }
}

/// Run `op` on one group: locally when this member leads it, else on its leader.
async fn run_group(
    m: Membership,
    op: Arc<Op>,
    group: GroupId,
    forwarded: bool,
    tls: Option<TlsConfig>,
) -> Result<pb::GroupChange, Status> {
    if forwarded {
        return op
            .run_local(&m, group)
            .await
            .map(to_pb_change)
            .map_err(status_of);
    }
    let mut last = Status::unavailable(format!("group {}: no leader known", group.0));
    let mut hint: Option<(NodeId, String)> = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let target = match hint.take() {
            Some(h) => Some(h),
            None => match op.run_local(&m, group).await {
                Ok(c) => return Ok(to_pb_change(c)),
                Err(NodeError::NotLeader {
                    leader: Some(l),
                    leader_addr: Some(a),
                    ..
                }) => Some((l, a)),
                Err(e @ NodeError::NotLeader { .. }) => {
                    last = status_of(e);
                    None
                }
                Err(e) => return Err(status_of(e)),
            },
        };
        let Some((leader, addr)) = target else {
            continue;
        };
        match op.forward(&addr, group, tls.as_ref()).await {
            Ok(c) => return Ok(c),
            Err(s) => match not_leader_hint(&s) {
                Some(next) => {
                    hint = next.filter(|(l, _)| *l != leader && *l != m.node_id());
                    last = s;
                }
                None if s.code() == Code::Unavailable => last = s,
                None => return Err(s),
            },
        }
    }
    Err(Status::new(
        last.code(),
        format!(
            "group {}: gave up after {ATTEMPTS} attempts: {}",
            group.0,
            last.message()
        ),
    ))
}

/// Run `op` on every group concurrently; OK only if every group succeeded.
async fn run_all(
    m: Membership,
    op: Op,
    groups: Vec<GroupId>,
    forwarded: bool,
    tls: Option<TlsConfig>,
) -> Result<pb::ChangeResponse, Status> {
    let op = Arc::new(op);
    let mut set = JoinSet::new();
    for g in groups {
        let (m, op, tls) = (m.clone(), Arc::clone(&op), tls.clone());
        set.spawn(async move { (g, run_group(m, op, g, forwarded, tls).await) });
    }
    let mut results: BTreeMap<u64, Result<pb::GroupChange, Status>> = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((g, r)) => {
                results.insert(g.0, r);
            }
            Err(e) => return Err(Status::internal(format!("a group task failed: {e}"))),
        }
    }
    let mut ok = Vec::new();
    let mut failed: Vec<(u64, Status)> = Vec::new();
    for (g, r) in results {
        match r {
            Ok(c) => ok.push(c),
            Err(s) => failed.push((g, s)),
        }
    }
    // A forwarded call covers one group: pass its status through unwrapped.
    if forwarded && ok.is_empty() && failed.len() == 1 {
        return Err(failed.remove(0).1);
    }
    if let Some((_, first)) = failed.first() {
        let msg = failed
            .iter()
            .map(|(g, s)| format!("group {g}: {}", s.message()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Status::new(
            first.code(),
            format!(
                "{} of {} groups failed (repeat the request to complete it): {msg}",
                failed.len(),
                failed.len() + ok.len()
            ),
        ));
    }
    Ok(pb::ChangeResponse { groups: ok })
}

/// The requested groups (all hosted ones when empty), each hosted here.
fn groups_of(m: &Membership, requested: &[u64]) -> Result<Vec<GroupId>, Status> {
    let hosted: BTreeSet<GroupId> = m.group_ids().into_iter().collect();
    if requested.is_empty() {
        return Ok(hosted.into_iter().collect());
    }
    let mut out = BTreeSet::new();
    for &g in requested {
        if !hosted.contains(&GroupId(g)) {
            return Err(Status::invalid_argument(format!(
                "group {g} is not hosted by this member"
            )));
        }
        out.insert(GroupId(g));
    }
    Ok(out.into_iter().collect())
}

fn catch_up(max_lag: u64, timeout_ms: u64) -> CatchUp {
    CatchUp {
        max_lag: if max_lag == 0 {
            DEFAULT_MAX_LAG
        } else {
            max_lag
        },
        timeout: if timeout_ms == 0 {
            DEFAULT_CATCH_UP_TIMEOUT
        } else {
            Duration::from_millis(timeout_ms)
        },
    }
}

fn check_addr(addr: &str, tls: bool) -> Result<(), Status> {
    candor_raft::grpc::endpoint_uri_with(addr, tls)
        .map(|_| ())
        .map_err(|e| Status::invalid_argument(format!("raft address: {e}")))
}

/// This member's own view, with its applied index on its own entry.
fn local_status(m: &Membership) -> pb::StatusResponse {
    let me = m.node_id();
    pb::StatusResponse {
        node_id: me,
        groups: m
            .status()
            .into_iter()
            .map(|v| to_pb_group(&v, me))
            .collect(),
        unreachable: Vec::new(),
    }
}

fn to_pb_group(v: &GroupView, me: NodeId) -> pb::GroupStatus {
    pb::GroupStatus {
        group: v.group.0,
        kind: Membership::kind(v.group).into(),
        reported_by: v.reporter,
        leader: v.leader.unwrap_or(0),
        term: v.term,
        members: v
            .members
            .iter()
            .map(|mv| pb::Member {
                node_id: mv.node,
                raft_addr: mv.addr.clone(),
                role: if mv.voter {
                    pb::MemberRole::Voter
                } else {
                    pb::MemberRole::Learner
                } as i32,
                matched_index: mv.matched,
                applied_index: if mv.node == me { v.applied } else { None },
            })
            .collect(),
        changing: v.changing,
        last_log_index: v.last_log_index.unwrap_or(0),
        committed: v.committed.unwrap_or(0),
    }
}

/// Every member's own view merged: the leader's view of each group when the leader
/// answered, each member's own applied index.
async fn merged_status(m: &Membership, tls: Option<&TlsConfig>) -> pb::StatusResponse {
    let mine = local_status(m);
    let me = m.node_id();
    let mut peers: BTreeMap<NodeId, String> = BTreeMap::new();
    for g in &mine.groups {
        for mem in &g.members {
            if mem.node_id != me {
                peers
                    .entry(mem.node_id)
                    .or_insert_with(|| mem.raft_addr.clone());
            }
        }
    }
    let mut set = JoinSet::new();
    for (id, addr) in peers {
        let tls = tls.cloned();
        set.spawn(async move {
            let r = tokio::time::timeout(PEER_STATUS_TIMEOUT, async {
                let mut c = connect(&addr, tls.as_ref()).await?;
                c.status(pb::StatusRequest { local_only: true })
                    .await
                    .map(Response::into_inner)
            })
            .await;
            (id, r.ok().and_then(Result::ok))
        });
    }
    let mut views: BTreeMap<NodeId, pb::StatusResponse> = BTreeMap::new();
    let mut unreachable = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((id, Some(s))) => {
                views.insert(id, s);
            }
            Ok((id, None)) => unreachable.push(id),
            Err(_) => {}
        }
    }
    views.insert(me, mine.clone());
    unreachable.sort_unstable();
    let groups = mine
        .groups
        .iter()
        .map(|own| {
            // The leader's view knows every member's replication progress.
            let mut g = views
                .get(&own.leader)
                .and_then(|v| v.groups.iter().find(|x| x.group == own.group))
                .filter(|x| x.leader == x.reported_by)
                .cloned()
                .unwrap_or_else(|| own.clone());
            for mem in &mut g.members {
                mem.applied_index = views
                    .get(&mem.node_id)
                    .and_then(|v| v.groups.iter().find(|x| x.group == own.group))
                    .and_then(|x| x.members.iter().find(|y| y.node_id == mem.node_id))
                    .and_then(|y| y.applied_index);
            }
            g
        })
        .collect();
    pb::StatusResponse {
        node_id: me,
        groups,
        unreachable,
    }
}

#[tonic::async_trait]
impl ClusterAdmin for AdminService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let m = self.membership()?;
        let resp = if request.into_inner().local_only {
            local_status(&m)
        } else {
            merged_status(&m, self.tls.as_ref()).await
        };
        Ok(Response::new(resp))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let m = self.membership()?;
        let r = request.into_inner();
        if r.node_id == 0 {
            return Err(Status::invalid_argument("node_id must be > 0"));
        }
        check_addr(&r.raft_addr, self.tls.is_some())?;
        let groups = groups_of(&m, &r.groups)?;
        tracing::info!(node = r.node_id, addr = %r.raft_addr, groups = groups.len(), forwarded = r.forwarded, "admin: add member");
        let op = Op::Add {
            node: r.node_id,
            addr: r.raft_addr,
            catch_up: catch_up(r.max_lag, r.catch_up_timeout_ms),
        };
        run_all(m, op, groups, r.forwarded, self.tls.clone())
            .await
            .map(Response::new)
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let m = self.membership()?;
        let r = request.into_inner();
        if r.node_id == 0 {
            return Err(Status::invalid_argument("node_id must be > 0"));
        }
        let groups = groups_of(&m, &r.groups)?;
        // Guard against a mistyped id; forwarded calls were checked by their sender.
        if !r.forwarded {
            let known = groups
                .iter()
                .any(|g| m.view(*g).is_ok_and(|v| v.has_member(r.node_id)));
            if !known {
                return Err(Status::not_found(format!(
                    "node {} is a member of none of the requested groups \
                     (unknown id, or already removed)",
                    r.node_id
                )));
            }
        }
        tracing::info!(
            node = r.node_id,
            groups = groups.len(),
            forwarded = r.forwarded,
            "admin: remove member"
        );
        let op = Op::Remove { node: r.node_id };
        run_all(m, op, groups, r.forwarded, self.tls.clone())
            .await
            .map(Response::new)
    }

    async fn move_replica(
        &self,
        request: Request<pb::MoveReplicaRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let m = self.membership()?;
        let r = request.into_inner();
        if r.from_node == 0 || r.to_node == 0 {
            return Err(Status::invalid_argument(
                "from_node and to_node must be > 0",
            ));
        }
        if r.from_node == r.to_node {
            return Err(Status::invalid_argument(
                "from_node and to_node must differ",
            ));
        }
        let to_addr = if !r.to_raft_addr.is_empty() {
            check_addr(&r.to_raft_addr, self.tls.is_some())?;
            Some(r.to_raft_addr)
        } else if r.forwarded {
            None
        } else {
            // Resolved here: the group's leader may host no group that knows `to`.
            Some(m.address_of(r.to_node).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "no group on member {} knows node {}'s address; pass to_raft_addr",
                    m.node_id(),
                    r.to_node
                ))
            })?)
        };
        let groups = groups_of(&m, &[r.group])?;
        tracing::info!(
            group = r.group,
            from = r.from_node,
            to = r.to_node,
            forwarded = r.forwarded,
            "admin: move replica"
        );
        let op = Op::Move {
            from: r.from_node,
            to: r.to_node,
            to_addr,
            catch_up: catch_up(r.max_lag, r.catch_up_timeout_ms),
        };
        run_all(m, op, groups, r.forwarded, self.tls.clone())
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_status_round_trips_the_hint() {
        let s = status_of(NodeError::NotLeader {
            group: 3,
            leader: Some(2),
            leader_addr: Some("127.0.0.2:8701".into()),
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            not_leader_hint(&s),
            Some(Some((2, "127.0.0.2:8701".to_string())))
        );
        let s = status_of(NodeError::NotLeader {
            group: 3,
            leader: None,
            leader_addr: None,
        });
        assert_eq!(not_leader_hint(&s), Some(None));
        // Other refusals carry no hint.
        let s = status_of(NodeError::FailedPrecondition("x".into()));
        assert_eq!(not_leader_hint(&s), None);
    }

    #[test]
    fn error_codes() {
        let code = |e| status_of(e).code();
        assert_eq!(
            code(NodeError::InvalidArgument("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(code(NodeError::NotFound("x".into())), Code::NotFound);
        assert_eq!(
            code(NodeError::CatchUpTimeout {
                group: 0,
                node: 4,
                matched: None,
                last: 9,
                timeout: Duration::from_secs(1)
            }),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code(NodeError::Conflict {
                group: 0,
                detail: "x".into()
            }),
            Code::Aborted
        );
        assert_eq!(code(NodeError::Raft("x".into())), Code::Unavailable);
    }

    #[test]
    fn catch_up_defaults() {
        assert_eq!(catch_up(0, 0), CatchUp::default());
        assert_eq!(
            catch_up(5, 1000),
            CatchUp {
                max_lag: 5,
                timeout: Duration::from_secs(1)
            }
        );
    }
}
