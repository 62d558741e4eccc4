//! `candor dev` (every role in one process on the embedded store) and
//! `candor serve --role all` (one member of a cluster: the same process, with
//! every group replicated on every member over the gRPC Raft transport).

use std::time::Duration;

use anyhow::Context;
use candor_api::{ApiOptions, KtService, Tenant, hash_token};
use candor_core::signed::{PublicConfig, PublicKey};
use candor_node::{Node, NodeConfig, NodeKeys};
use tokio::net::TcpListener;

use crate::config::{Config, StoreBackend, parse_hex32};
use candor_node::keys;

pub use candor_node::keys::{CONFIG_FILE, write_public_config};

/// Which process to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `candor dev`: one member, keys generated on first start.
    Dev,
    /// `candor serve --role all`: a member of `config.cluster`.
    Cluster,
}

pub async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    if mode == Mode::Cluster {
        config.cluster.validate()?;
    }
    keys::ensure_private_dir(&config.data_dir)?;
    let data_dir = config
        .data_dir
        .canonicalize()
        .unwrap_or(config.data_dir.clone());
    // Cluster members share the keys (and the dev token) from one directory.
    let shared_dir = config
        .cluster
        .keys_dir
        .clone()
        .unwrap_or_else(|| keys::keys_dir(&data_dir));
    let keys = match mode {
        Mode::Dev => {
            let (keys, new_keys) = keys::load_or_generate(&data_dir)?;
            if new_keys {
                tracing::info!(dir = %keys::keys_dir(&data_dir).display(), "generated new keys");
            }
            keys
        }
        Mode::Cluster => keys::load_existing(&shared_dir)?,
    };

    let mut tenants = Vec::new();
    for t in &config.api.tenants {
        tenants.push(Tenant {
            name: t.name.clone(),
            token_hash: parse_hex32(&t.token_hash)?,
        });
    }
    // A production member accepts no dev token unless asked.
    let token = if config.api.dev_token.unwrap_or(mode == Mode::Dev) {
        let token_dir = match mode {
            Mode::Dev => &data_dir,
            Mode::Cluster => &shared_dir,
        };
        let (token, _) = keys::load_or_generate_token(token_dir, candor_api::generate_token)?;
        tenants.push(Tenant {
            name: "dev".into(),
            token_hash: hash_token(&token),
        });
        Some(token)
    } else {
        None
    };
    let auditor_keys = auditor_keys(&config)?;

    // TLS files are checked, and the port bound, before the node starts.
    let api_tls = crate::tls::api_server_tls(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;

    let mut node_config = NodeConfig::new(
        &data_dir,
        config.namespace.clone(),
        NodeKeys {
            head: keys.head,
            smt: keys.smt,
            vrf_public: keys.vrf.public_key(),
        },
    );
    let key_dir = match mode {
        Mode::Dev => keys::keys_dir(&data_dir),
        Mode::Cluster => shared_dir.clone(),
    };
    node_config.key_versions = keys::load_versions(&key_dir)?;
    node_config.activate_key_version = Some(
        config
            .signing_key_version
            .unwrap_or(node_config.key_versions.len() as u32 + 1),
    );
    if let Some(v) = config.signing_key_version
        && v > node_config.key_versions.len() as u32 + 1
    {
        anyhow::bail!(
            "signing_key_version = {v}, but {} holds key versions up to {}",
            key_dir.display(),
            node_config.key_versions.len() + 1
        );
    }
    node_config.shard_bits = config.shard_bits();
    node_config.epoch_interval = Duration::from_millis(config.epoch_interval_ms);
    node_config.max_merge_delay = Duration::from_millis(config.max_merge_delay_ms);
    node_config.seal_interval = Duration::from_millis(config.seal_interval_ms);
    let memory = config.memory_plan()?;
    tracing::info!(
        budget_mib = memory.budget_bytes >> 20,
        fixed_mib = memory.fixed_bytes >> 20,
        expected_mib = memory.expected_bytes() >> 20,
        "memory plan: {}",
        memory.describe()
    );
    candor_telemetry::metrics().memory_budget(memory.budget_bytes);
    node_config.tree_cache_bytes = memory.tree_cache_bytes;
    node_config.store.cache_bytes = memory.block_cache_bytes;
    node_config.store.memtable_bytes = memory.memtable_bytes;
    node_config.shard.idempotency_max_age_ms = config.api.limits.idempotency_retention_ms;
    let (node, raft_server) = match mode {
        Mode::Dev => (
            Node::start(node_config)
                .await
                .context("starting the node")?,
            None,
        ),
        Mode::Cluster => {
            node_config.raft = candor_node::member::cluster_raft_tuning();
            let (node, server) = match config.store.backend {
                StoreBackend::Embedded => crate::serve::start_member(&config, node_config).await?,
                StoreBackend::Fdb => {
                    crate::serve::start_shared_member(&config, node_config).await?
                }
            };
            (node, Some(server))
        }
    };
    let public: PublicConfig = node.config().clone();
    write_public_config(&data_dir, &public)?;
    node.register_telemetry(&data_dir);
    crate::telemetry::serve_metrics(&config, node.readiness()).await?;

    let backend = node.api_backend();
    let options = ApiOptions {
        limits: config.api.limits.clone(),
        tenants,
        auditor_keys,
        vrf_cache_entries: memory.vrf_cache_entries,
        view_cache_epochs: config.api.view_cache_epochs,
    };
    let service = KtService::new(backend, keys.vrf, options)?;

    print_banner(
        mode,
        &format!(
            "{}://{addr}",
            if api_tls.is_some() { "https" } else { "http" }
        ),
        &data_dir,
        &public,
        token.as_deref().map(String::as_str),
    );
    tracing::info!(
        listen = %addr,
        namespace = %public.namespace,
        shards = 1u32 << public.shard_bits,
        epoch = node.epochs().latest_epoch(),
        config_digest = %hex::encode(public.digest()),
        "candor serving"
    );

    // A group that stopped (a full disk, a corrupt record) applies nothing more:
    // exit so that the supervisor restarts the process, which replays the log,
    // instead of serving an old state as current.
    let (stopped_tx, mut stopped_rx) = tokio::sync::oneshot::channel();
    let group_stopped = node.group_stopped();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            (group, why) = group_stopped => {
                tracing::error!(group = %group, reason = %why, "a Raft group stopped: exiting so that a restart replays its log");
                let _ = stopped_tx.send(format!("group {group} stopped: {why}"));
            }
        }
    };
    let served = candor_api::serve_tls(listener, service, api_tls, shutdown).await;
    if let Ok(why) = stopped_rx.try_recv() {
        // No orderly shutdown: the group's state is what the log will rebuild.
        anyhow::bail!("{why}; exiting so that a restart replays the Raft log");
    }
    if let Some(s) = raft_server {
        s.stop().await;
    }
    node.shutdown().await;
    served.context("gRPC server failed")?;
    tracing::info!("candor stopped");
    Ok(())
}

/// `api.auditor_keys`, parsed.
pub fn auditor_keys(config: &Config) -> anyhow::Result<Vec<PublicKey>> {
    config
        .api
        .auditor_keys
        .iter()
        .map(|k| Ok(parse_hex32(k).map(PublicKey)?))
        .collect()
}

fn print_banner(
    mode: Mode,
    target: &str,
    data_dir: &std::path::Path,
    public: &PublicConfig,
    token: Option<&str>,
) {
    let digest = hex::encode(public.digest());
    let dir = data_dir.display();
    let mut s = String::new();
    match mode {
        Mode::Dev => s.push_str("\ncandor dev is running\n"),
        Mode::Cluster => s.push_str("\ncandor serve (cluster member) is running\n"),
    }
    s.push_str(&format!("  target:        {target}\n"));
    s.push_str(&format!("  namespace:     {}\n", public.namespace));
    s.push_str(&format!("  config digest: {digest}\n"));
    s.push_str(&format!("  pinned config: {dir}/{CONFIG_FILE}\n"));
    // The token itself is a secret: never printed or logged, only its file named.
    if token.is_some() {
        s.push_str(&format!(
            "  dev token:     in {dir}/dev-token (mode 0600)\n"
        ));
    }
    s.push_str("\nTry (every answer is verified against the pinned configuration):\n");
    let tok = if token.is_some() {
        format!("\"$(cat {dir}/dev-token)\"")
    } else {
        "<TOKEN>".to_owned()
    };
    // Over TLS the commands also need the CA that issued the API certificate.
    let target = &if target.starts_with("https://") {
        format!("{target} --tls-ca <CA.crt>")
    } else {
        target.to_string()
    };
    s.push_str(&format!(
        "  candor publish --target {target} --token {tok} --config-digest {digest} --wait alice 'alice-key-1'\n"
    ));
    s.push_str(&format!(
        "  candor lookup  --target {target} --config-digest {digest} alice\n"
    ));
    s.push_str(&format!(
        "  candor history --target {target} --config-digest {digest} alice\n"
    ));
    s.push_str(&format!(
        "  candor audit   --target {target} --config-digest {digest}\n"
    ));
    s.push_str("Stop with Ctrl-C.\n");
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
