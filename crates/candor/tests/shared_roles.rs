//! The roles of a shared-state (FoundationDB) deployment as separate nodes, end to end
//! over gRPC, in one process (one `MemStore` stands in for FoundationDB, which cannot
//! run here; the FoundationDB backend passes the same store conformance suite):
//!
//! * three shard members (`--role shard`): the shard groups, each serving the API;
//! * three sequencer members (`--role sequencer`): the sequencer group;
//! * an API node (`--role api`): no group, no signing key; it reads trees and epochs
//!   straight from the shared store ([`StoreReader`]) and forwards writes to the shard
//!   members' APIs.
//!
//! The SDK talks only to the API node: publishes verify their SMTs and merge by the
//! deadline, lookups and histories verify, through a SIGKILL-like stop of shard 0's
//! leader and then of the sequencer's leader; the later heads extend the earlier ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use candor_api::{ApiOptions, ApiProxy, Backend, KtService, ProxyOptions, Tenant, hash_token};
use candor_client::{Client, PinnedConfig};
use candor_core::signed::SigningKeyPair;
use candor_core::vrf::VrfSecretKey;
use candor_node::{NoShards, Node, NodeConfig, NodeKeys, SharedTopology, StoreReader};
use candor_raft::InProcessNetwork;
use candor_store::{MemStore, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "shared-roles-token";

fn vrf() -> VrfSecretKey {
    VrfSecretKey::from_bytes(&[42; 32])
}

fn config() -> NodeConfig {
    let keys = NodeKeys {
        head: SigningKeyPair::from_seed(&[1; 32]),
        smt: SigningKeyPair::from_seed(&[2; 32]),
        vrf_public: vrf().public_key(),
    };
    let mut c = NodeConfig::new("unused", "shared.roles.test", keys);
    c.shard_bits = 2;
    c.epoch_interval = Duration::from_millis(200);
    c.seal_interval = Duration::from_millis(50);
    c.max_merge_delay = Duration::from_secs(10);
    c.tree_cache_bytes = 4 << 20;
    c
}

fn options() -> ApiOptions {
    ApiOptions {
        tenants: vec![Tenant {
            name: "t".into(),
            token_hash: hash_token(TOKEN),
        }],
        ..ApiOptions::default()
    }
}

fn members(ids: std::ops::RangeInclusive<u64>) -> BTreeMap<u64, String> {
    ids.map(|i| (i, format!("inproc-{i}"))).collect()
}

/// A gRPC API server on an ephemeral port.
struct Served {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    async fn start(service: KtService, port: u16) -> Result<Served> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(candor_api::serve(listener, service, async {
            let _ = stopped.await;
        }));
        Ok(Served { url, stop, task })
    }

    /// An API node: reads answered locally, writes forwarded to the members.
    async fn start_front_door(proxy: ApiProxy, port: u16) -> Result<Served> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(candor_api::serve_proxy(listener, proxy, async {
            let _ = stopped.await;
        }));
        Ok(Served { url, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Deployment {
    net: InProcessNetwork,
    shared: Arc<dyn Store>,
    local: Vec<Arc<dyn Store>>,
    nodes: Vec<Option<(Node, Option<Served>)>>,
    /// Fixed API ports of the shard members (the API node's upstreams).
    ports: Vec<u16>,
}

impl Deployment {
    async fn start(&mut self, i: usize) -> Result<()> {
        let id = i as u64 + 1;
        let net = self.net.clone();
        let topology = SharedTopology {
            node_id: id,
            addr: format!("inproc-{id}"),
            shard_members: members(1..=3),
            sequencer_members: members(4..=6),
            shard_placement: BTreeMap::new(),
            transport: self.net.endpoint(id),
            bootstrap: id == 1 || id == 4,
        };
        let node = Node::start_shared(
            Arc::clone(&self.local[i]),
            Arc::clone(&self.shared),
            config(),
            topology,
            |r| net.register(r),
        )
        .await?;
        // Shard members serve the API (writes are ordered and signed there).
        let served = if i < 3 {
            let backend = node.api_backend();
            let svc = KtService::new(backend, vrf(), options())?;
            Some(Served::start(svc, self.ports[i]).await?)
        } else {
            None
        };
        self.nodes[i] = Some((node, served));
        Ok(())
    }

    /// Stops a node at once (its in-flight calls fail; its Raft peers see it vanish).
    async fn kill(&mut self, i: usize) {
        if let Some((node, served)) = self.nodes[i].take() {
            self.net.unregister(i as u64 + 1);
            if let Some(s) = served {
                s.stop().await;
            }
            node.shutdown().await;
        }
    }

    fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].as_ref().map(|(n, _)| n)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_as_separate_nodes_over_a_shared_store() -> Result<()> {
    let mut d = Deployment {
        net: InProcessNetwork::new(7),
        shared: Arc::new(MemStore::new()),
        local: (0..6)
            .map(|_| Arc::new(MemStore::new()) as Arc<dyn Store>)
            .collect(),
        nodes: (0..6).map(|_| None).collect(),
        ports: (0..3).map(|_| free_port()).collect(),
    };
    for i in 0..6 {
        d.start(i).await?;
    }
    // The API node: reads from the store, no group, no signing key.
    // It needs the VRF secret and the store: the public configuration (signing keys'
    // public halves) is the one the members recorded there.
    let public = StoreReader::stored_public_config(&*d.shared)?.context("public config")?;
    let reader = StoreReader::open(Arc::clone(&d.shared), public.clone(), 4 << 20)?;
    let backend = Backend {
        publisher: Arc::new(NoShards),
        cosignatures: reader.cosignature_log(),
        forest: reader.forest(),
        epochs: reader.epochs(),
        heads: reader.heads(),
        currency: None,
        config: public.clone(),
        label_vrfs: Some(Arc::clone(&d.shared)),
    };
    let upstreams = d
        .ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let proxy = ApiProxy::new(ProxyOptions {
        upstreams,
        call_timeout: Duration::from_secs(10),
        ..ProxyOptions::default()
    })?;
    let api = proxy.with_local_reads(KtService::new(backend, vrf(), options())?);
    let api = Served::start_front_door(api, 0).await?;

    // Ready once the first epoch is readable from the store (health turns SERVING then).
    tokio::time::timeout(
        Duration::from_secs(60),
        reader.heads().wait_for(|h| h.is_some()),
    )
    .await
    .context("no epoch signed in time")??;
    let pinned = PinnedConfig::from_config_bytes(&public.encode())?;
    let client = Client::connect(api.url.clone(), pinned)
        .await?
        .with_token(TOKEN)?;

    let mut published = Vec::new();
    let round = |tag: &'static str| {
        let client = &client;
        async move {
            let mut out = Vec::new();
            for i in 0..12u32 {
                let label = format!("user-{i}@example.com").into_bytes();
                let value = format!("{tag}-key-{i}").into_bytes();
                let p =
                    tokio::time::timeout(Duration::from_secs(60), client.publish(&label, &value))
                        .await
                        .context("publish timed out")??;
                out.push((label, value, p));
            }
            anyhow::Ok(out)
        }
    };
    published.extend(round("a").await?);
    let first_head = client.latest_head().await?;

    // Kill shard 0's leader (a shard member): writes go on through the others.
    let leader = d
        .node(0)
        .and_then(|n| n.shard_groups()[0].leader())
        .context("shard 0 has a leader")?;
    println!("killing shard 0's leader: node {leader}");
    d.kill(leader as usize - 1).await;
    published.extend(round("b").await?);

    // Kill the sequencer's leader: the epochs go on, signed by another member.
    let seq_leader = (3..6)
        .find_map(|i| {
            d.node(i)
                .and_then(|n| n.sequencer_group())
                .and_then(|g| g.leader())
        })
        .context("the sequencer has a leader")?;
    println!("killing the sequencer's leader: node {seq_leader}");
    let before = client.latest_head().await?.head.epoch;
    let killed = std::time::Instant::now();
    d.kill(seq_leader as usize - 1).await;
    // Failover as the API node sees it: the next epoch readable from the store.
    let mut heads = reader.heads();
    tokio::time::timeout(
        Duration::from_secs(60),
        heads.wait_for(|h| h.as_ref().is_some_and(|h| h.head.epoch > before)),
    )
    .await
    .context("no epoch after the sequencer leader was killed")??;
    println!(
        "failover: sequencer leader killed -> next epoch readable on the api node in {:?}",
        killed.elapsed()
    );
    published.extend(round("c").await?);

    // Every SMT is honoured, as seen through the API node.
    for (label, _, p) in &published {
        let ev = tokio::time::timeout(
            Duration::from_secs(60),
            client.wait_merged(label, &p.smt, Duration::from_millis(100)),
        )
        .await
        .context("merge wait timed out")??;
        ensure!(ev.epoch() > 0);
    }
    let last = client.latest_head().await?;
    ensure!(
        last.head.epoch > before,
        "no epoch after the sequencer leader was killed"
    );
    // The latest value of each label is what the last round published.
    for (label, value, _) in published.iter().skip(24) {
        let l = client.lookup(label, None).await?;
        ensure!(
            l.value() == Some(value.as_slice()),
            "lookup of {:?} through the API node",
            String::from_utf8_lossy(label)
        );
        let h = client.history(label).await?;
        ensure!(h.versions().len() == 3, "three versions per label");
    }
    // The first head extends to the latest one (consistency + inclusion, verified).
    client.observe_head(&first_head).await?;
    client.observe_head(&last).await?;

    api.stop().await;
    reader.shutdown().await;
    for i in 0..6 {
        d.kill(i).await;
    }
    Ok(())
}
