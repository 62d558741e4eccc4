//! `candor serve --role all`: one member of a cluster. The process is the
//! same as `candor dev`'s, except that every group is replicated on every
//! member through the gRPC Raft transport (`candor.raft.v1.RaftTransport`,
//! served on `cluster.raft_listen`), keys come from the shared keys
//! directory, and groups are initialized only by the `bootstrap` member.
//! The same port serves `candor.admin.v1.ClusterAdmin` (membership changes,
//! [`crate::admin`]). A member started without `--bootstrap` that is not yet
//! in the groups' membership waits, idle and not ready, until it is added.
//!
//! With `tls.cluster` the Raft port (transport and admin) is mutual TLS, and outgoing
//! Raft and admin calls present the member's certificate ([`crate::tls`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use candor_node::{
    DevNode, NodeConfig, NodeError, RaftNode, RaftTransport, SharedTopology, Topology,
};
use candor_raft::RaftTuning;
use candor_raft::grpc::{GrpcConfig, GrpcTransport};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;

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

/// Bind the Raft listener, start the node and serve its Raft RPCs.
pub async fn start_member(
    config: &Config,
    node_config: NodeConfig,
) -> anyhow::Result<(DevNode, RaftServer)> {
    let c = &config.cluster;
    let members: BTreeMap<u64, String> = c
        .members
        .iter()
        .map(|m| (m.id, m.raft_addr.clone()))
        .collect();
    let addr = members
        .get(&c.node_id)
        .cloned()
        .context("cluster.node_id is not among cluster.members")?;
    let store = DevNode::open_store(&node_config)
        .await
        .context("opening the store")?;
    let bootstrap = c.bootstrap;
    let node_id = c.node_id;
    start_raft_member(config, async move |transport, on_raft| {
        let topology = Topology {
            node_id,
            addr,
            members,
            transport,
            bootstrap,
        };
        DevNode::start_with(store, node_config, topology, on_raft).await
    })
    .await
}

/// `candor serve --role shard|sequencer|all` with a shared store (`store.backend =
/// "fdb"`): the groups this member hosts per `cluster.members`, their state in the
/// shared store, their Raft logs in the embedded store under `data_dir`.
pub async fn start_shared_member(
    config: &Config,
    node_config: NodeConfig,
) -> anyhow::Result<(DevNode, RaftServer)> {
    let c = &config.cluster;
    let addr = c
        .members
        .iter()
        .find(|m| m.id == c.node_id)
        .map(|m| m.raft_addr.clone())
        .context("cluster.node_id is not among cluster.members")?;
    let (shard_members, sequencer_members) = crate::shared::member_sets(config);
    let shard_placement = crate::shared::placement(config)?;
    let shared = crate::shared::open_shared_store(config).await?;
    let local = DevNode::open_store(&node_config)
        .await
        .context("opening the embedded store (Raft logs)")?;
    let bootstrap = c.bootstrap;
    let node_id = c.node_id;
    start_raft_member(config, async move |transport, on_raft| {
        let topology = SharedTopology {
            node_id,
            addr,
            shard_members,
            sequencer_members,
            shard_placement,
            transport,
            bootstrap,
        };
        DevNode::start_shared(local, shared, node_config, topology, on_raft).await
    })
    .await
}

/// What every member does around starting its node: Raft tuning, TLS, the Raft and
/// admin server (started as soon as the Raft node exists, before its groups).
async fn start_raft_member(
    config: &Config,
    start: impl AsyncFnOnce(
        Arc<dyn RaftTransport>,
        Box<dyn FnOnce(&RaftNode) + Send + '_>,
    ) -> Result<DevNode, NodeError>,
) -> anyhow::Result<(DevNode, RaftServer)> {
    let c = &config.cluster;
    // Checked before anything binds or starts: a bad file fails the start-up.
    let grpc = GrpcConfig {
        tls: crate::tls::cluster_tls(config)?,
        ..GrpcConfig::default()
    };
    let builder = candor_raft::grpc::server_builder(&grpc).context("cluster port TLS")?;
    let listener = TcpListener::bind(c.raft_listen)
        .await
        .with_context(|| format!("cannot listen on {} (cluster.raft_listen)", c.raft_listen))?;
    let transport: Arc<dyn RaftTransport> = Arc::new(GrpcTransport::new(c.node_id, grpc.clone()));
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
    let node = start(transport, on_raft)
        .await
        .context("starting the node")?;
    admin.set(node.membership());
    let task = server.context("the Raft server did not start")?;
    tracing::info!(node = c.node_id, raft_listen = %c.raft_listen, mtls = grpc.tls.is_some(), "raft transport and cluster admin serving");
    Ok((node, RaftServer { stop, task }))
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

/// The forwarding client of `--role api` towards `cluster.upstreams` (`what` names
/// them in the error when there are none).
pub fn upstream_proxy(config: &Config, what: &str) -> anyhow::Result<candor_api::ApiProxy> {
    if config.cluster.upstreams.is_empty() {
        anyhow::bail!(
            "--role api needs {what}: --upstream http://HOST:PORT (repeat for each) or \
             cluster.upstreams"
        );
    }
    Ok(candor_api::ApiProxy::new(candor_api::ProxyOptions {
        upstreams: config.cluster.upstreams.clone(),
        max_message_bytes: config.api.limits.max_message_bytes as usize,
        tls: crate::tls::upstream_tls(config)?,
        ..candor_api::ProxyOptions::default()
    })?)
}

/// `candor serve --role api`: the stateless front door. Forwards every call to
/// the `cluster.upstreams` members; keeps no state, holds no key.
pub async fn run_api_proxy(config: Config) -> anyhow::Result<()> {
    let upstreams = config.cluster.upstreams.clone();
    let proxy = upstream_proxy(&config, "the members' API addresses")?;
    let server_tls = crate::tls::api_server_tls(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, ?upstreams, "candor api (stateless) serving");
    // Stateless: ready as soon as it serves (each call finds a live member).
    crate::telemetry::serve_metrics(&config, std::sync::Arc::new(|| Ok(()))).await?;
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "candor serve --role api is running\n  target:    {scheme}://{addr}\n  upstreams: {}",
        upstreams.join(", ")
    );
    candor_api::serve_proxy_tls(listener, proxy, server_tls, crate::dev::shutdown_signal())
        .await
        .context("gRPC server failed")?;
    tracing::info!("candor api stopped");
    Ok(())
}
