//! `--embedded`: an in-process `candor dev` (every role, embedded store in a temporary
//! directory, fresh keys, one bench tenant) serving gRPC on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use candor_api::{ApiOptions, KtService, Tenant, generate_token, hash_token};
use candor_core::signed::{PublicConfig, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_node::{Node, NodeConfig, NodeKeys};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::BenchError;

/// How long the node may take to sign its first epoch.
const FIRST_EPOCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A running embedded service. [`EmbeddedService::stop`] shuts it down; dropping it
/// without stopping removes the directory but leaves the tasks to the runtime's end.
pub struct EmbeddedService {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The service's public configuration (what the bench pins).
    pub config: PublicConfig,
    /// The bench tenant's bearer token.
    pub token: String,
    node: Option<Node>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    // Last: removed after the node has stopped using it.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for EmbeddedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedService")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn embedded_err(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |e| BenchError::Embedded(format!("{what}: {e}"))
}

impl EmbeddedService {
    /// Starts the node (`2^shard_bits` shards, `epoch_interval`, defaults otherwise, as
    /// `candor dev`) and the API on an ephemeral port, and waits for the first epoch.
    pub async fn start(shard_bits: u8, epoch_interval: Duration) -> Result<Self, BenchError> {
        let dir = match std::env::var_os("CANDOR_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .map_err(|e| BenchError::Embedded(format!("temporary directory: {e}")))?;
        let vrf = VrfSecretKey::generate();
        let keys = NodeKeys {
            head: SigningKeyPair::generate(),
            smt: SigningKeyPair::generate(),
            vrf_public: vrf.public_key(),
        };
        let mut node_config = NodeConfig::new(dir.path(), "candor-bench", keys);
        node_config.shard_bits = shard_bits;
        node_config.epoch_interval = epoch_interval;
        let node = Node::start(node_config)
            .await
            .map_err(|e| embedded_err("starting the node")(e.to_string()))?;
        let config = node.config().clone();
        let mut heads = node.heads();
        let first = tokio::time::timeout(FIRST_EPOCH_TIMEOUT, heads.wait_for(|h| h.is_some()));
        match first.await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(BenchError::Embedded("the node stopped".into())),
            Err(_) => {
                return Err(BenchError::Embedded(format!(
                    "no epoch signed within {FIRST_EPOCH_TIMEOUT:?}"
                )));
            }
        }

        let token = generate_token();
        let backend = node.api_backend();
        let options = ApiOptions {
            tenants: vec![Tenant {
                name: "bench".into(),
                token_hash: hash_token(&token),
            }],
            // One tenant at full speed is the point of the benchmark.
            limits: candor_api::Limits {
                tenant_items_per_second: 0,
                ..candor_api::Limits::default()
            },
            ..ApiOptions::default()
        };
        let service = KtService::new(backend, vrf, options)
            .map_err(|e| embedded_err("starting the API")(e.to_string()))?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| embedded_err("binding 127.0.0.1")(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| embedded_err("listener address")(e.to_string()))?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(candor_api::serve(listener, service, async move {
            let _ = rx.await;
        }));
        Ok(EmbeddedService {
            endpoint: format!("http://{addr}"),
            config,
            token,
            node: Some(node),
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        })
    }

    /// Stops the API (draining calls in flight), then the node.
    pub async fn stop(mut self) -> Result<(), BenchError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = match self.server.take() {
            Some(h) => h.await,
            None => Ok(Ok(())),
        };
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BenchError::Embedded(format!("gRPC server: {e}"))),
            Err(e) => Err(BenchError::Embedded(format!("gRPC server task: {e}"))),
        }
    }
}
