//! `candor serve`: the configuration of a member handed to
//! [`candor_node::member`] (which runs the Raft port: transport and cluster admin),
//! and `--role api`'s front door. A member is the same process as `candor dev`'s,
//! except that every group is replicated through the gRPC Raft transport, keys come
//! from the shared keys directory, and groups are initialized only by the `bootstrap`
//! member. A member started without `--bootstrap` that is not yet in the groups'
//! membership waits, idle and not ready, until it is added.

use anyhow::Context;
use candor_node::member::{MemberOptions, RaftServer, SharedMembers};
use candor_node::{Node, NodeConfig};
use candor_raft::grpc::GrpcConfig;
use tokio::net::TcpListener;

use crate::config::Config;

/// The Raft port settings of this member; TLS files are checked before anything
/// binds or starts (a bad file fails the start-up).
fn member_options(config: &Config) -> anyhow::Result<MemberOptions> {
    let c = &config.cluster;
    Ok(MemberOptions {
        node_id: c.node_id,
        raft_listen: c.raft_listen,
        bootstrap: c.bootstrap,
        grpc: GrpcConfig {
            tls: crate::tls::cluster_tls(config)?,
            ..GrpcConfig::default()
        },
    })
}

/// Bind the Raft listener, start the node and serve its Raft RPCs.
pub async fn start_member(
    config: &Config,
    node_config: NodeConfig,
) -> anyhow::Result<(Node, RaftServer)> {
    let members = config
        .cluster
        .members
        .iter()
        .map(|m| (m.id, m.raft_addr.clone()))
        .collect();
    candor_node::member::start_member(member_options(config)?, members, node_config)
        .await
        .context("starting the node")
}

/// `candor serve --role shard|sequencer|all` with a shared store (`store.backend =
/// "fdb"`): the groups this member hosts per `cluster.members`, their state in the
/// shared store, their Raft logs in the embedded store under `data_dir`.
pub async fn start_shared_member(
    config: &Config,
    node_config: NodeConfig,
) -> anyhow::Result<(Node, RaftServer)> {
    let c = &config.cluster;
    let addr = c
        .members
        .iter()
        .find(|m| m.id == c.node_id)
        .map(|m| m.raft_addr.clone())
        .context("cluster.node_id is not among cluster.members")?;
    let (shard_members, sequencer_members) = config.member_sets();
    let members = SharedMembers {
        addr,
        shard_members,
        sequencer_members,
        shard_placement: config.placement()?,
    };
    let shared = crate::shared::open_shared_store(config).await?;
    let options = member_options(config)?;
    candor_node::member::start_shared_member(options, members, shared, node_config)
        .await
        .context("starting the node")
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
    // No cache to size: the budget is exported for the memory alert only.
    candor_telemetry::metrics().memory_budget(config.memory.budget_bytes);
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
