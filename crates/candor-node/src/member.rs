//! A cluster member's process around its node (`candor serve --role all|shard|sequencer`):
//! the Raft tuning of members, and the member's internal gRPC server on the Raft port
//! (`candor.raft.v1.RaftTransport` and the cluster admin service, [`crate::admin`]),
//! started as soon as the Raft node exists, before its groups (peers need the Raft
//! service while groups start). With TLS in [`GrpcConfig::tls`] the port is mutual
//! TLS and outgoing Raft and admin calls present the member's certificate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use candor_raft::grpc::{GrpcConfig, GrpcTransport};
use candor_raft::{NodeId, RaftTuning};
use candor_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Node, NodeConfig, NodeError, RaftNode, RaftTransport, SharedTopology, Topology};

/// The member's internal gRPC server (Raft transport and cluster admin).
pub struct RaftServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RaftServer {
    /// Stop accepting Raft RPCs and wait for the server to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "raft server failed"),
            Err(e) => tracing::warn!(error = %e, "raft server task failed"),
        }
    }
}

/// Where and how a member serves its Raft port.
#[derive(Clone, Debug)]
pub struct MemberOptions {
    /// This member's Raft node id.
    pub node_id: NodeId,
    /// The Raft port to listen on (`cluster.raft_listen`).
    pub raft_listen: SocketAddr,
    /// Whether this member initializes the groups (`--bootstrap`).
    pub bootstrap: bool,
    /// The gRPC transport's settings, TLS included (checked before anything binds).
    pub grpc: GrpcConfig,
}

/// Raft tuning of cluster members.
pub fn cluster_raft_tuning() -> RaftTuning {
    // A snapshot copies the whole shard (or epoch log) so that a member that fell
    // behind the log, or lost its disk, can be sent the state: build one every 20,000
    // entries and keep 5,000 more, so a member down briefly still catches up from the
    // log (see docs/operations.md). With a shared store snapshots carry only an index.
    RaftTuning {
        snapshot_after_entries: 20_000,
        keep_after_snapshot: 5_000,
        ..RaftTuning::default()
    }
}

/// A member replicating every group over its own embedded store: `members` maps each
/// member's node id to its Raft address (this member's included).
pub async fn start_member(
    options: MemberOptions,
    members: BTreeMap<u64, String>,
    node_config: NodeConfig,
) -> Result<(Node, RaftServer), NodeError> {
    let addr = members
        .get(&options.node_id)
        .cloned()
        .ok_or_else(|| NodeError::Config("cluster.node_id is not among cluster.members".into()))?;
    let store = Node::open_store(&node_config).await?;
    let (node_id, bootstrap) = (options.node_id, options.bootstrap);
    start_raft_member(options, async move |transport, on_raft| {
        let topology = Topology {
            node_id,
            addr,
            members,
            transport,
            bootstrap,
        };
        Node::start_with(store, node_config, topology, on_raft).await
    })
    .await
}

/// Which members host which groups of a shared-state deployment.
#[derive(Clone, Debug)]
pub struct SharedMembers {
    /// This member's Raft address.
    pub addr: String,
    /// Members hosting shard groups, with their Raft addresses.
    pub shard_members: BTreeMap<u64, String>,
    /// Members hosting the sequencer group.
    pub sequencer_members: BTreeMap<u64, String>,
    /// Shard → the members hosting it (empty: every shard member hosts every shard).
    pub shard_placement: BTreeMap<u32, Vec<u64>>,
}

/// A member of a shared-state deployment: the groups it hosts per `members`, their
/// state in `shared`, their Raft logs in the embedded store of `node_config`.
pub async fn start_shared_member(
    options: MemberOptions,
    members: SharedMembers,
    shared: Arc<dyn Store>,
    node_config: NodeConfig,
) -> Result<(Node, RaftServer), NodeError> {
    let local = Node::open_store(&node_config).await?;
    let (node_id, bootstrap) = (options.node_id, options.bootstrap);
    start_raft_member(options, async move |transport, on_raft| {
        let topology = SharedTopology {
            node_id,
            addr: members.addr,
            shard_members: members.shard_members,
            sequencer_members: members.sequencer_members,
            shard_placement: members.shard_placement,
            transport,
            bootstrap,
        };
        Node::start_shared(local, shared, node_config, topology, on_raft).await
    })
    .await
}

/// What every member does around starting its node: the Raft and admin server
/// (started as soon as the Raft node exists, before its groups).
async fn start_raft_member(
    options: MemberOptions,
    start: impl AsyncFnOnce(
        Arc<dyn RaftTransport>,
        Box<dyn FnOnce(&RaftNode) + Send + '_>,
    ) -> Result<Node, NodeError>,
) -> Result<(Node, RaftServer), NodeError> {
    let MemberOptions {
        node_id,
        raft_listen,
        grpc,
        ..
    } = options;
    let builder = candor_raft::grpc::server_builder(&grpc)
        .map_err(|e| NodeError::Config(format!("cluster port TLS: {e}")))?;
    let listener = TcpListener::bind(raft_listen).await.map_err(|e| {
        NodeError::Config(format!(
            "cannot listen on {raft_listen} (cluster.raft_listen): {e}"
        ))
    })?;
    let transport: Arc<dyn RaftTransport> = Arc::new(GrpcTransport::new(node_id, grpc.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = None;
    // The admin service shares the Raft port; it answers UNAVAILABLE until the node
    // exists (peers need the Raft service earlier, while groups start).
    let admin = crate::admin::AdminService::new().with_tls(grpc.tls.clone());
    let on_raft = {
        let (admin, grpc, server) = (admin.clone(), grpc.clone(), &mut server);
        Box::new(move |raft: &RaftNode| {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let mut builder = builder;
            let router = builder
                .add_service(candor_telemetry::traced_continue_only(
                    candor_raft::grpc::raft_service(raft, &grpc),
                ))
                .add_service(candor_telemetry::traced(
                    admin.into_service(grpc.max_message_bytes),
                ));
            *server = Some(tokio::spawn(router.serve_with_incoming_shutdown(
                incoming,
                async {
                    let _ = stopped.await;
                },
            )));
        })
    };
    let node = start(transport, on_raft).await?;
    admin.set(node.membership());
    let task = server.ok_or_else(|| NodeError::Raft("the Raft server did not start".into()))?;
    tracing::info!(node = node_id, raft_listen = %raft_listen, mtls = grpc.tls.is_some(), "raft transport and cluster admin serving");
    Ok((node, RaftServer { stop, task }))
}

/// The shard placement from each shard member's `shards` setting (`"0-7,12"`; `None`:
/// every shard): the members hosting each of the `count` shards, or an empty map when
/// no member restricts its shards (every shard member hosts every shard). Every shard
/// must be placed.
pub fn placement(
    count: u32,
    members: &[(u64, Option<&str>)],
) -> Result<BTreeMap<u32, Vec<u64>>, NodeError> {
    if members.iter().all(|(_, s)| s.is_none()) {
        return Ok(BTreeMap::new());
    }
    let mut sets = Vec::new();
    for &(id, spec) in members {
        let set = match spec {
            None => (0..count).collect(),
            Some(spec) => parse_shard_set(spec, count).map_err(|e| {
                NodeError::Config(format!("cluster member {id}: shards = {spec:?}: {e}"))
            })?,
        };
        sets.push((id, set));
    }
    let mut out = BTreeMap::new();
    for s in 0..count {
        let ids: Vec<u64> = sets
            .iter()
            .filter(|(_, set)| set.contains(&s))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Err(NodeError::Config(format!(
                "shard {s} is placed on no member (cluster.members[].shards)"
            )));
        }
        out.insert(s, ids);
    }
    Ok(out)
}

/// `"0-7,12"` → {0..=7, 12}, each below `count`.
fn parse_shard_set(spec: &str, count: u32) -> Result<std::collections::BTreeSet<u32>, String> {
    let mut out = std::collections::BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |x: &str| -> Result<u32, String> {
            x.trim()
                .parse()
                .map_err(|_| format!("{x:?} is not a shard number"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b || b >= count {
            return Err(format!("{part:?} is not a range of shards below {count}"));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err("no shard listed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_shard_set;

    #[test]
    fn shard_sets() {
        let s = parse_shard_set("0-3, 7,9-9", 16).unwrap();
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 7, 9]);
        for bad in ["", "3-1", "0-16", "x", "1-"] {
            assert!(parse_shard_set(bad, 16).is_err(), "{bad}");
        }
    }
}
