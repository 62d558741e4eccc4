//! Shared-state deployments (`store.backend = "fdb"`): the groups' state lives once, in
//! FoundationDB, and the roles run as separate processes.
//!
//! * `--role shard`: hosts every shard group (orders writes, signs SMTs, seals) and
//!   serves the API; `--role sequencer`: hosts the sequencer group (signs epochs);
//!   `--role all`: both. Which member hosts what comes from `cluster.members`
//!   (`role` of each entry); every member keeps its Raft logs in its own embedded store
//!   under `data_dir`.
//! * `--role api`: no group and no signing key. It reads the public configuration the
//!   members recorded in the store, serves every read straight from the store at a
//!   signed epoch and forwards writes to `cluster.upstreams` (the shard members' APIs).
//!   It needs only the VRF secret (`keys_dir/vrf.key`).
//!
//! See `docs/operations.md`, "Shared-state deployments".

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use candor_api::{ApiOptions, Backend, KtService};
use candor_node::{NoShards, StoreReader};
use candor_store::Store;
use tokio::net::TcpListener;

use crate::config::{Config, StoreBackend};

/// Opens the shared store `config.store` names.
pub async fn open_shared_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.backend {
        StoreBackend::Embedded => bail!(
            "the shard, sequencer and api roles over a shared store need store.backend = \
             \"fdb\" (FoundationDB); on the embedded store run members with --role all"
        ),
        StoreBackend::Fdb => open_fdb(config).await,
    }
}

#[cfg(feature = "fdb")]
async fn open_fdb(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let cluster_file = config.store.fdb_cluster_file.clone();
    let namespace = config.namespace.clone();
    // Opening connects and checks the keyspace: blocking calls.
    let store = tokio::task::spawn_blocking(move || {
        candor_store_fdb::FdbStore::open(cluster_file.as_deref(), &namespace)
    })
    .await
    .context("FoundationDB open task failed")?
    .with_context(|| {
        format!(
            "opening FoundationDB (cluster file: {})",
            config
                .store
                .fdb_cluster_file
                .as_ref()
                .map_or("the default".to_string(), |p| p.display().to_string())
        )
    })?;
    tracing::info!(namespace = %config.namespace, "FoundationDB store open");
    Ok(Arc::new(store))
}

#[cfg(not(feature = "fdb"))]
async fn open_fdb(_config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    bail!(
        "store.backend = \"fdb\" needs a candor binary built with FoundationDB support: \
         cargo build --release -p candor --features fdb (building needs libclang, running \
         needs the FoundationDB 7.3 client library libfdb_c)"
    )
}

/// `candor serve --role api` on a shared store: reads from the store, writes forwarded.
pub async fn run_api_reader(config: Config) -> anyhow::Result<()> {
    crate::telemetry::serve_metrics(&config, std::sync::Arc::new(|| Ok(()))).await?;
    let upstreams = config.cluster.upstreams.clone();
    let proxy =
        crate::serve::upstream_proxy(&config, "the shard members' API addresses for writes")?;
    let keys_dir = config
        .cluster
        .keys_dir
        .clone()
        .unwrap_or_else(|| candor_node::keys::keys_dir(&config.data_dir));
    let vrf = candor_node::keys::load_vrf(&keys_dir)?;
    let server_tls = crate::tls::api_server_tls(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;

    let store = open_shared_store(&config).await?;
    // The members record the public configuration when they start; wait for the first.
    let public = StoreReader::wait_for_public_config(&*store, Duration::from_secs(300)).await?;
    if public.namespace != config.namespace {
        bail!(
            "the store belongs to namespace {:?}, this configuration says {:?}",
            public.namespace,
            config.namespace
        );
    }
    // This role hosts no Raft group.
    let memory = candor_node::memory::MemoryPlan::new(&config, 0)?;
    candor_telemetry::metrics().memory_budget(memory.budget_bytes);
    let reader = StoreReader::open(Arc::clone(&store), public.clone(), memory.tree_cache_bytes)
        .context("opening the store for reading")?;
    let backend = Backend {
        publisher: Arc::new(NoShards),
        cosignatures: reader.cosignature_log(),
        forest: reader.forest(),
        epochs: reader.epochs(),
        heads: reader.heads(),
        currency: None,
        config: public.clone(),
        // Lookups read the members' records; this role publishes nothing, so
        // it never writes them.
        label_vrfs: Some(Arc::clone(&store)),
    };
    let options = ApiOptions {
        limits: config.api.limits.clone(),
        vrf_cache_entries: memory.vrf_cache_entries,
        view_cache_epochs: config.api.view_cache_epochs,
        auditor_keys: crate::dev::auditor_keys(&config)?,
        ..ApiOptions::default()
    };
    let service = KtService::new(backend, vrf, options)
        .context("the VRF key does not belong to the configuration in the store")?;
    // Reads from the shared store here; writes forwarded to the shard members.
    let front = proxy.with_local_reads(service);
    crate::dev::write_public_config(&config.data_dir, &public)?;
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(listen = %addr, ?upstreams, "candor api (reads from the shared store) serving");
    println!(
        "candor serve --role api is running (reads: the shared store; writes: {})\n  \
         target:        {scheme}://{addr}\n  config digest: {}",
        upstreams.join(", "),
        hex::encode(public.digest())
    );
    let served =
        candor_api::serve_proxy_tls(listener, front, server_tls, crate::dev::shutdown_signal())
            .await;
    reader.shutdown().await;
    served.context("gRPC server failed")?;
    tracing::info!("candor api stopped");
    Ok(())
}
