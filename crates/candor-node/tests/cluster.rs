//! The whole service as a 3-member cluster in one process, on a seeded fault-injecting
//! network (delay, loss, partitions, member restarts), many seeds.
//!
//! Each seed drives a steady publish load (new labels and updates, each call with an
//! idempotency key, retried on another member when one fails) while the seeded
//! schedule isolates and restarts members. Afterwards, on every member:
//!
//! * one signed head per epoch number, byte-identical on every member;
//! * every earlier head extends to the latest (consistency + inclusion);
//! * every SMT was merged by its deadline (the last head signed by the deadline holds
//!   the label at that version or later);
//! * each label's history verifies, versions are gap-free and every acknowledged leaf
//!   is in it (no acknowledged mutation lost).
//!
//! Midway through the schedule the signing keys are rotated to version 2 (through
//! whichever member leads the sequencer, under the faults of the moment): every member
//! must then record the same two configurations, and every head and SMT must verify
//! under the configuration in force for it.
//!
//! Raft snapshots are taken every 64 entries and the log purged behind them, so a
//! member that was down or cut off is usually sent a snapshot of the shard or of the
//! epoch log rather than the log itself.
//!
//! The same schedule runs on the **shared-state** layout (the FoundationDB deployment,
//! with one `MemStore` standing in for FoundationDB): three shard members and three
//! sequencer members as separate nodes (`--role shard`, `--role sequencer`), each with
//! its own Raft log store, every replica applying to the one shared state, and the
//! checks read through a [`StoreReader`] (the API role, which reads the store directly
//! and holds no group), as well as through every running shard member.
//!
//! These runs use real time on two threads: a seed replays the fault schedule, not the
//! interleaving. `CANDOR_CLUSTER_SEED=<seed>` replays one seed; `CANDOR_CLUSTER_SEEDS=<n>`
//! sets how many random seeds run (default 3); `CANDOR_TEST_LOG=info` prints the
//! members' logs.
//!
//! `whole_service_seeds_replay_the_exact_interleaving` runs the same schedule and checks
//! as a deterministic simulation (one thread, paused clock, the `candor_sim` seam), each
//! seed twice, and requires the two runs to agree on every Raft message, every SMT and
//! every head: there a seed replays the exact interleaving. `CANDOR_SIM_SEED=<seed>`
//! replays one; `CANDOR_SIM_SEEDS=<n>` adds that many random seeds to the fixed ones
//! (default 1).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::rotation::ConfigChain;
use candor_core::signed::{SignedHead, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_node::{
    KeyVersionPair, Node, NodeConfig, NodeKeys, PublishReceipt, PublishRequest, Publisher,
    SharedTopology, StoreReader, Topology, propose_rotation,
};
use candor_raft::rand::rngs::StdRng;
use candor_raft::rand::{RngExt, SeedableRng};
use candor_raft::testing::{MessageRecorder, first_divergence, on_virtual_clock};
use candor_raft::{FaultConfig, InProcessNetwork, RaftTuning};
use candor_sim::watch;
use candor_store::{MemStore, Store};
use candor_tree::{EpochLogStore, Forest, MapView};

const LABELS: usize = 60;

fn vrf() -> VrfSecretKey {
    VrfSecretKey::from_bytes(&[42; 32])
}

fn config() -> NodeConfig {
    let keys = NodeKeys {
        head: SigningKeyPair::from_seed(&[1; 32]),
        smt: SigningKeyPair::from_seed(&[2; 32]),
        vrf_public: vrf().public_key(),
    };
    let mut c = NodeConfig::new("unused", "cluster.test", keys);
    // Every member holds key version 2; the run rotates to it midway (`rotate`).
    c.key_versions = vec![KeyVersionPair {
        version: 2,
        head: Arc::new(SigningKeyPair::from_seed(&[5; 32])),
        smt: Arc::new(SigningKeyPair::from_seed(&[6; 32])),
    }];
    c.shard_bits = 2;
    c.epoch_interval = Duration::from_millis(200);
    c.seal_interval = Duration::from_millis(50);
    c.max_merge_delay = Duration::from_secs(10);
    c.tree_cache_bytes = 4 << 20;
    // Snapshot and purge often, so that a member restarted or cut off for a while is
    // sent a snapshot (the whole shard / epoch log, in several chunks) instead of the log.
    c.raft = RaftTuning {
        snapshot_after_entries: 64,
        keep_after_snapshot: 16,
        snapshot_chunk_bytes: 16 << 10,
        ..RaftTuning::default()
    };
    c
}

fn addr(id: u64) -> String {
    format!("inproc-{id}")
}

fn members(ids: std::ops::RangeInclusive<u64>) -> BTreeMap<u64, String> {
    ids.map(|i| (i, addr(i))).collect()
}

/// Which deployment the cluster models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `--role all` on the embedded store: 3 members, each with every group and its own
    /// store.
    CoLocated,
    /// Shared state (FoundationDB): shard members 1–3, sequencer members 4–6, one
    /// shared store, a Raft log store per member.
    Shared,
    /// Shared state with a placement: shard members 1–4, shards 0–1 on members 1–3 and
    /// shards 2–3 on members 2–4 (a member forwards writes of shards it does not host),
    /// sequencer members 5–7.
    SharedPlaced,
}

impl Layout {
    fn nodes(self) -> usize {
        match self {
            Layout::CoLocated => 3,
            Layout::Shared => 6,
            Layout::SharedPlaced => 7,
        }
    }

    /// Members that accept writes and serve reads (the first `writers()` nodes).
    fn writers(self) -> usize {
        match self {
            Layout::CoLocated | Layout::Shared => 3,
            Layout::SharedPlaced => 4,
        }
    }

    fn topology(self, id: u64, transport: Arc<dyn candor_raft::RaftTransport>) -> SharedTopology {
        let (shards, sequencer, placement) = match self {
            Layout::SharedPlaced => (
                members(1..=4),
                members(5..=7),
                BTreeMap::from([
                    (0, vec![1, 2, 3]),
                    (1, vec![1, 2, 3]),
                    (2, vec![2, 3, 4]),
                    (3, vec![2, 3, 4]),
                ]),
            ),
            _ => (members(1..=3), members(4..=6), BTreeMap::new()),
        };
        SharedTopology {
            node_id: id,
            addr: addr(id),
            shard_members: shards,
            sequencer_members: sequencer,
            shard_placement: placement,
            transport,
            // Each group is initialized by its smallest member; passing it to every
            // member on every start is safe (a no-op once the groups exist).
            bootstrap: true,
        }
    }
}

/// What the load generator publishes through, per member (None while it is down).
type Publishers = Arc<Mutex<Vec<Option<Arc<dyn Publisher>>>>>;

struct Cluster {
    layout: Layout,
    net: InProcessNetwork,
    /// Each node's own store (the whole state co-located; the Raft logs when shared).
    stores: Vec<Arc<dyn Store>>,
    shared: Arc<dyn Store>,
    nodes: Vec<Option<Node>>,
    publishers: Publishers,
}

impl Cluster {
    /// A cluster on a fresh network whose every message `recorder` sees.
    async fn new(seed: u64, layout: Layout, recorder: Arc<MessageRecorder>) -> Result<Self> {
        let n = layout.nodes();
        let net = InProcessNetwork::new(seed);
        net.set_hook(Some(recorder as Arc<dyn candor_raft::FaultHook>));
        let mut c = Cluster {
            layout,
            net,
            stores: (0..n)
                .map(|_| Arc::new(MemStore::new()) as Arc<dyn Store>)
                .collect(),
            shared: Arc::new(MemStore::new()),
            nodes: (0..n).map(|_| None).collect(),
            publishers: Arc::new(Mutex::new(vec![None; layout.writers()])),
        };
        for i in 0..n {
            c.start(i).await?;
        }
        Ok(c)
    }

    async fn start(&mut self, i: usize) -> Result<()> {
        let id = i as u64 + 1;
        let net = self.net.clone();
        let node = match self.layout {
            Layout::CoLocated => {
                let topology = Topology {
                    node_id: id,
                    addr: addr(id),
                    members: members(1..=3),
                    transport: self.net.endpoint(id),
                    bootstrap: id == 1,
                };
                Node::start_with(Arc::clone(&self.stores[i]), config(), topology, |r| {
                    net.register(r)
                })
                .await?
            }
            Layout::Shared | Layout::SharedPlaced => {
                let topology = self.layout.topology(id, self.net.endpoint(id));
                Node::start_shared(
                    Arc::clone(&self.stores[i]),
                    Arc::clone(&self.shared),
                    config(),
                    topology,
                    |r| net.register(r),
                )
                .await?
            }
        };
        if i < self.layout.writers() {
            self.publishers.lock().unwrap()[i] = Some(node.publisher());
        }
        self.nodes[i] = Some(node);
        Ok(())
    }

    async fn stop(&mut self, i: usize) {
        if i < self.layout.writers() {
            self.publishers.lock().unwrap()[i] = None;
        }
        if let Some(n) = self.nodes[i].take() {
            self.net.unregister(i as u64 + 1);
            n.shutdown().await;
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("member running")
    }

    /// The sequencer's leader as a running sequencer member sees it.
    fn sequencer_leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .flatten()
            .find_map(|n| n.sequencer_group())
            .and_then(|g| g.leader())
    }

    /// Shard 0's leader as a running shard member sees it.
    fn shard0_leader(&self) -> Option<u64> {
        self.nodes[..self.layout.writers()]
            .iter()
            .flatten()
            .find_map(|n| n.shard_groups().first())
            .and_then(|g| g.leader())
    }
}

/// What the checks read through: a member's trees, epoch log and readable heads, or a
/// [`StoreReader`]'s.
struct ReadPath {
    name: String,
    epochs: Arc<EpochLogStore>,
    forest: Forest,
    heads: watch::Receiver<Option<SignedHead>>,
}

impl ReadPath {
    fn of(name: String, node: &Node) -> Self {
        ReadPath {
            name,
            epochs: node.epochs(),
            forest: node.forest(),
            heads: node.heads(),
        }
    }
}

#[derive(Clone, Debug)]
struct Acked {
    label: usize,
    req: PublishRequest,
    receipt: PublishReceipt,
}

fn request(label: usize, value: String, key: String) -> PublishRequest {
    let l = format!("user-{label:03}@example.com");
    PublishRequest {
        tenant: "t".into(),
        idempotency_key: Some(key),
        index: vrf().evaluate(l.as_bytes()).0.index(),
        label: l.into_bytes(),
        value: value.into_bytes(),
    }
}

/// Publish `req` through any running member, retrying (same idempotency key) until one
/// acknowledges it or `deadline` passes.
async fn publish_any(
    publishers: &Publishers,
    req: PublishRequest,
    rng: &mut StdRng,
    deadline: tokio::time::Instant,
) -> Option<PublishReceipt> {
    let n = publishers.lock().unwrap().len();
    let mut attempt = rng.random_range(0..n);
    while tokio::time::Instant::now() < deadline {
        let p = publishers.lock().unwrap()[attempt % n].clone();
        attempt += 1;
        let Some(p) = p else { continue };
        let call = tokio::time::timeout(Duration::from_secs(5), p.publish(vec![req.clone()]));
        if let Ok(Ok(res)) = call.await
            && let Some(Ok(r)) = res.into_iter().next()
        {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// What a run produced. On the virtual clock ([`on_virtual_clock`]) two runs of one
/// seed must produce the same, byte for byte.
#[derive(Debug, PartialEq, Eq)]
struct Trace {
    /// Every Raft message in send order: virtual time, endpoints, group, kind, size.
    messages: Vec<String>,
    /// Every acknowledged publish, in acknowledgement order: label and receipt (the
    /// signed SMT and the leaf).
    acked: Vec<String>,
    /// Every signed head, encoded, as the first member holds them.
    heads: Vec<Vec<u8>>,
    /// Time the run took on its clock.
    elapsed_ms: u128,
}

async fn run_seed(seed: u64, layout: Layout) -> Result<Trace> {
    println!("{layout:?} cluster seed {seed} (replay with CANDOR_CLUSTER_SEED={seed})");
    let started = tokio::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let recorder = MessageRecorder::new();
    let mut cluster = Cluster::new(seed, layout, Arc::clone(&recorder)).await?;
    let nodes = layout.nodes();
    let cfg = cluster.node(0).config().clone();

    // The load: 4 callers, each publishing to random labels with a fresh key per call.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let mut load = Vec::new();
    for w in 0..4u64 {
        let publishers = Arc::clone(&cluster.publishers);
        let acked = Arc::clone(&acked);
        let stop = stop.clone();
        let mut wrng = StdRng::seed_from_u64(seed ^ (w + 1).wrapping_mul(0x9E37_79B9));
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !*stop.borrow() {
                let label = wrng.random_range(0..LABELS);
                let req = request(label, format!("w{w}-n{n}"), format!("w{w}-{n}"));
                n += 1;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                if let Some(receipt) =
                    publish_any(&publishers, req.clone(), &mut wrng, deadline).await
                {
                    acked.lock().unwrap().push(Acked {
                        label,
                        req,
                        receipt,
                    });
                }
            }
        }));
    }

    // The seeded fault schedule: at most one member down or cut off at a time, so a
    // quorum always exists.
    for step in 0..8 {
        let what = rng.random_range(0..6u32);
        let who = rng.random_range(0..nodes);
        match what {
            0 => {
                println!("  step {step}: restart member {}", who + 1);
                cluster.stop(who).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
                cluster.start(who).await?;
            }
            1 => {
                println!("  step {step}: isolate member {}", who + 1);
                cluster.net.isolate(who as u64 + 1);
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
                cluster.net.heal();
            }
            2 => {
                println!("  step {step}: lossy, slow network");
                cluster.net.set_faults(FaultConfig {
                    drop_request: 0.03,
                    drop_response: 0.03,
                    max_delay: Duration::from_millis(20),
                    ..FaultConfig::default()
                });
            }
            3 => {
                println!("  step {step}: clean network");
                cluster.net.set_faults(FaultConfig::default());
            }
            4 => {
                // Kill the sequencer's leader: the next leader continues the epochs.
                if let Some(l) = cluster.sequencer_leader() {
                    println!("  step {step}: restart the sequencer leader {l}");
                    cluster.stop(l as usize - 1).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    cluster.start(l as usize - 1).await?;
                }
            }
            _ => {
                // Kill shard 0's leader mid-load: in-flight writes are retried elsewhere
                // with their idempotency keys.
                if let Some(l) = cluster.shard0_leader() {
                    println!("  step {step}: restart shard 0's leader {l}");
                    cluster.stop(l as usize - 1).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    cluster.start(l as usize - 1).await?;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        if step == 3 {
            rotate(&cluster)
                .await
                .with_context(|| format!("seed {seed}"))?;
        }
    }
    cluster.net.heal();
    cluster.net.set_faults(FaultConfig::default());
    let _ = stop_tx.send(true);
    for l in load {
        l.await?;
    }
    if layout == Layout::SharedPlaced {
        // Every member takes writes for every shard, hosted or not (forwarded through
        // the replicas that host it).
        let publishers = cluster.publishers.lock().unwrap().clone();
        for (i, p) in publishers.iter().enumerate() {
            let p = p.as_ref().context("member down")?;
            let mut covered = std::collections::BTreeSet::new();
            for label in 0..LABELS {
                let req = request(label, format!("direct-{i}"), format!("direct-{i}-{label}"));
                let shard = candor_core::map::shard_of(&req.index, 2);
                if !covered.insert(shard) {
                    continue;
                }
                let res =
                    tokio::time::timeout(Duration::from_secs(30), p.publish(vec![req.clone()]))
                        .await
                        .with_context(|| format!("member {} shard {shard}: timed out", i + 1))??;
                let receipt = res
                    .into_iter()
                    .next()
                    .context("no result")?
                    .with_context(|| format!("member {} shard {shard}", i + 1))?;
                acked.lock().unwrap().push(Acked {
                    label,
                    req,
                    receipt,
                });
            }
            ensure!(covered.len() == 4, "labels cover every shard");
        }
    }
    let acked = acked.lock().unwrap().clone();
    println!("  {} mutations acknowledged", acked.len());
    ensure!(!acked.is_empty(), "seed {seed}: nothing was acknowledged");

    // Read paths: every member that serves reads (each member co-located; each shard
    // member and a store reader when shared).
    let mut paths: Vec<ReadPath> = (0..layout.writers())
        .map(|i| ReadPath::of(format!("member {}", i + 1), cluster.node(i)))
        .collect();
    let reader = match layout {
        Layout::Shared | Layout::SharedPlaced => {
            let public =
                StoreReader::stored_public_config(&*cluster.shared)?.context("public config")?;
            let r = StoreReader::open(Arc::clone(&cluster.shared), public, 4 << 20)?;
            paths.push(ReadPath {
                name: "store reader".into(),
                epochs: r.epochs(),
                forest: r.forest(),
                heads: r.heads(),
            });
            Some(r)
        }
        Layout::CoLocated => None,
    };
    for p in &mut paths {
        let head = wait_covering(p, &acked)
            .await
            .with_context(|| format!("seed {seed}, {}", p.name))?;
        check_member(p, &cfg, &head, &acked).with_context(|| format!("seed {seed}, {}", p.name))?;
    }
    // One head per epoch number: every read path holds the same bytes.
    let latest = paths
        .iter()
        .map(|p| p.epochs.latest_epoch())
        .min()
        .unwrap_or(0);
    for e in 1..=latest {
        let h0 = paths[0].epochs.head(e)?.context("head")?;
        for p in &paths[1..] {
            let h = p.epochs.head(e)?.context("head")?;
            ensure!(
                h.encode() == h0.encode(),
                "seed {seed}: two heads for epoch {e}"
            );
        }
    }
    let heads = (1..=latest)
        .map(|e| Ok(paths[0].epochs.head(e)?.context("head")?.encode()))
        .collect::<Result<Vec<_>>>()?;
    if let Some(r) = reader {
        r.shutdown().await;
    }
    for i in 0..nodes {
        cluster.stop(i).await;
    }
    Ok(Trace {
        messages: recorder.take(),
        acked: acked
            .iter()
            .map(|a| format!("{} {:?}", a.label, a.receipt))
            .collect(),
        heads,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

/// Rotates the signing keys to version 2 through whichever member leads the sequencer
/// (under the faults of the moment), retrying until the rotation is committed.
async fn rotate(cluster: &Cluster) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let group = cluster
            .sequencer_leader()
            .and_then(|l| cluster.nodes.get(l as usize - 1)?.as_ref())
            .and_then(|n| n.sequencer_group());
        if let Some(g) = group {
            match tokio::time::timeout(Duration::from_secs(5), propose_rotation(g, 2)).await {
                Ok(Ok(v)) => {
                    println!("  rotated the signing keys to version {v}");
                    return Ok(());
                }
                Ok(Err(e)) if e.to_string().contains("version 2 is active") => return Ok(()),
                _ => {}
            }
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no rotation within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until this member serves a head covering every acknowledged mutation.
async fn wait_covering(node: &mut ReadPath, acked: &[Acked]) -> Result<SignedHead> {
    let rx = &mut node.heads;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(head) = rx.borrow_and_update().clone() {
            let view = node.epochs.view(&node.forest, head.head.epoch)?;
            let mut covered = true;
            for a in acked {
                if view
                    .leaf(&a.req.index)?
                    .is_none_or(|l| l.version < a.receipt.leaf.version)
                {
                    covered = false;
                    break;
                }
            }
            if covered {
                return Ok(head);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no head covers every acknowledged mutation");
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    }
}

fn check_member(
    node: &ReadPath,
    cfg: &candor_core::signed::PublicConfig,
    last: &SignedHead,
    acked: &[Acked],
) -> Result<()> {
    let epochs = &node.epochs;
    let forest = &node.forest;
    // The configurations, verified from the first: the run rotated once.
    let chain = ConfigChain::verify(&epochs.configs()?, &cfg.digest())?;
    ensure!(chain.len() == 2, "{} configurations recorded", chain.len());
    let mut heads = Vec::new();
    for e in 1..=last.head.epoch {
        let h = epochs
            .head(e)?
            .with_context(|| format!("epoch {e} missing"))?;
        chain.verify_head(&h)?;
        if let Some(prev) = heads.last() {
            let p: &SignedHead = prev;
            ensure!(
                h.head.timestamp_ms >= p.head.timestamp_ms,
                "time went back at epoch {e}"
            );
        }
        heads.push(h);
    }
    // Every head extends to the last one.
    for h in &heads {
        let proof = HeadExtensionProof {
            consistency: epochs.consistency_proof(h.head.epoch, last.head.epoch)?,
            inclusion: epochs.inclusion_proof(h.head.epoch, last.head.epoch)?,
        };
        verify_head_extension(h, last, &proof)
            .with_context(|| format!("epoch {} extends to {}", h.head.epoch, last.head.epoch))?;
    }
    // Every SMT verifies and was merged by its deadline.
    let mut views: HashMap<u64, MapView> = HashMap::new();
    for a in acked {
        chain.verify_smt(&a.receipt.smt)?;
        let deadline = a.receipt.smt.smt.merge_deadline_ms;
        let k = heads.partition_point(|h| h.head.timestamp_ms <= deadline);
        ensure!(
            k > 0,
            "no head signed by the deadline of {:?}",
            a.receipt.smt.smt
        );
        let e = heads[k - 1].head.epoch;
        if let std::collections::hash_map::Entry::Vacant(v) = views.entry(e) {
            v.insert(epochs.view(forest, e)?);
        }
        let got = views[&e].leaf(&a.req.index)?;
        ensure!(
            got.is_some_and(|l| l.version >= a.receipt.leaf.version),
            "label {} version {} not merged by its deadline (epoch {e} has {:?})",
            a.label,
            a.receipt.leaf.version,
            got.map(|l| l.version)
        );
    }
    // Histories: gap-free, holding every acknowledged leaf.
    let view = epochs.view(forest, last.head.epoch)?;
    let mut by_label: BTreeMap<usize, Vec<&Acked>> = BTreeMap::new();
    for a in acked {
        by_label.entry(a.label).or_default().push(a);
    }
    for (label, list) in by_label {
        let req = &list[0].req;
        let (_, vrf_proof) = vrf().evaluate(&req.label);
        let proof = view.history_proof(&req.index, vrf_proof)?;
        let h = proof.verify(&cfg.vrf_key, &req.label, &last.head.map_root)?;
        for (i, v) in h.versions.iter().enumerate() {
            ensure!(v.version == i as u64 + 1, "label {label}: version gap");
        }
        for a in list {
            let v = h
                .versions
                .get(a.receipt.leaf.version as usize - 1)
                .with_context(|| {
                    format!("label {label} lost version {}", a.receipt.leaf.version)
                })?;
            ensure!(
                v.leaf == a.receipt.leaf,
                "label {label}: acknowledged leaf replaced"
            );
        }
    }
    Ok(())
}

fn init_log() {
    // `CANDOR_TEST_LOG=info` shows the members' logs (elections, snapshot installs).
    if let Ok(filter) = std::env::var("CANDOR_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

fn seeds(default: u64) -> Result<Vec<u64>> {
    Ok(match std::env::var("CANDOR_CLUSTER_SEED") {
        Ok(s) => vec![s.parse().context("CANDOR_CLUSTER_SEED must be a u64")?],
        Err(_) => {
            let n: u64 = std::env::var("CANDOR_CLUSTER_SEEDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default);
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64;
            (0..n)
                .map(|i| base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                .collect()
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_seeded_faults() -> Result<()> {
    init_log();
    for seed in seeds(3)? {
        run_seed(seed, Layout::CoLocated).await?;
    }
    Ok(())
}

/// Shard members with a placement (each hosting half of the shards, forwarding the
/// other half's writes), sequencer members apart, one shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_state_placed_cluster_survives_seeded_faults() -> Result<()> {
    init_log();
    for seed in seeds(1)? {
        run_seed(seed, Layout::SharedPlaced).await?;
    }
    Ok(())
}

/// Shard and sequencer members as separate nodes over one shared store, read through a
/// store reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_state_cluster_survives_seeded_faults() -> Result<()> {
    init_log();
    for seed in seeds(2)? {
        run_seed(seed, Layout::Shared).await?;
    }
    Ok(())
}

/// Waits (up to `within`) until `f` holds, polling.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// The newest epoch any running member serves.
fn newest_epoch(cluster: &Cluster) -> u64 {
    cluster
        .nodes
        .iter()
        .flatten()
        .filter_map(|n| n.heads().borrow().as_ref().map(|h| h.head.epoch))
        .max()
        .unwrap_or(0)
}

/// A member cut off from the others stops presenting its newest head as the
/// latest (its latest reads are UNAVAILABLE and its health NOT_SERVING follows
/// the same check), while the others stay current; once healed it is current
/// again. Both a follower of the sequencer and its leader are cut off in turn:
/// with pre-vote a cut-off follower keeps naming its old leader, and a cut-off
/// leader keeps leading, so neither ever reports "no leader".
///
/// On the virtual clock, so the time a cut-off member takes to stop is a property of
/// the rules, asserted: at most `max(STALE_INTERVALS epoch intervals, one election
/// timeout)` (both halves of the currency rule run from the cut) plus one epoch
/// interval (the newest head may be that old at the cut, and the check is polled).
#[test]
fn a_cut_off_member_stops_presenting_its_head_as_the_latest() -> Result<()> {
    init_log();
    on_virtual_clock(7, cut_off_member_stops_presenting_its_head())
}

async fn cut_off_member_stops_presenting_its_head() -> Result<()> {
    use candor_api::{ApiOptions, KtService};
    use candor_proto::candor::v1 as pb;
    use candor_proto::candor::v1::key_transparency_server::KeyTransparency;

    let cluster = Cluster::new(7, Layout::CoLocated, MessageRecorder::new()).await?;
    let cfg = config();
    let bound = (cfg.epoch_interval * candor_node::currency::STALE_INTERVALS)
        .max(cfg.raft.election_timeout_max)
        + cfg.epoch_interval;
    let all_current = |c: &Cluster| (0..3).all(|i| c.node(i).currency()().is_ok());
    ensure!(
        eventually(Duration::from_secs(30), || newest_epoch(&cluster) >= 3
            && all_current(&cluster))
        .await,
        "the cluster never became current"
    );
    let leader = cluster.sequencer_leader().context("a sequencer leader")?;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    for (role, cut) in [("follower", follower), ("leader", leader)] {
        let i = cut as usize - 1;
        let node = cluster.node(i);
        let svc = KtService::new(node.api_backend(), vrf(), ApiOptions::default())?;
        let latest = || async {
            svc.get_latest_epoch(tonic::Request::new(pb::GetLatestEpochRequest {}))
                .await
        };
        ensure!(
            latest().await.is_ok(),
            "member {cut} serves the latest head"
        );

        let started = tokio::time::Instant::now();
        let epoch_at_cut = newest_epoch(&cluster);
        cluster.net.isolate(cut);
        let current = node.currency();
        ensure!(
            eventually(Duration::from_secs(30), || current().is_err()).await,
            "isolated {role} {cut} still presents its head as the latest"
        );
        let took = started.elapsed();
        let why = current().unwrap_err();
        println!(
            "isolated {role} {cut}: not current after {} ms (virtual; bound {} ms), {} epochs \
             signed meanwhile by the others: {why}",
            took.as_millis(),
            bound.as_millis(),
            newest_epoch(&cluster).saturating_sub(epoch_at_cut)
        );
        ensure!(
            took <= bound,
            "isolated {role} {cut} presented its head as the latest for {} ms after the cut \
             (bound {} ms)",
            took.as_millis(),
            bound.as_millis()
        );
        let status = latest().await.expect_err("latest read of a cut-off member");
        ensure!(
            status.code() == tonic::Code::Unavailable,
            "cut-off member answered {status:?}"
        );
        // Reads at an explicit epoch do not claim to be the latest: still served.
        let served = node.heads().borrow().as_ref().map(|h| h.head.epoch);
        let at = svc
            .get_epoch(tonic::Request::new(pb::GetEpochRequest {
                epoch: served.context("a served head")?,
            }))
            .await;
        ensure!(at.is_ok(), "explicit-epoch read refused: {at:?}");
        // The other two go on signing and stay current.
        let before = newest_epoch(&cluster);
        ensure!(
            eventually(Duration::from_secs(30), || newest_epoch(&cluster)
                > before + 2
                && (1..=3).filter(|&id| id != cut).all(|id| cluster
                    .node(id as usize - 1)
                    .currency()(
                )
                .is_ok()))
            .await,
            "the members that can reach each other stopped being current"
        );

        cluster.net.heal();
        ensure!(
            eventually(Duration::from_secs(60), || all_current(&cluster)).await,
            "member {cut} did not become current after the partition healed: {:?}",
            current()
        );
        ensure!(
            latest().await.is_ok(),
            "member {cut} serves the latest again"
        );
    }
    let mut cluster = cluster;
    for i in 0..3 {
        cluster.stop(i).await;
    }
    Ok(())
}

/// Seeds for the replay test: a fixed set plus `CANDOR_SIM_SEEDS` random ones (default
/// 1), printed; `CANDOR_SIM_SEED=<n>` runs that one alone.
fn sim_seeds() -> Result<Vec<u64>> {
    if let Ok(s) = std::env::var("CANDOR_SIM_SEED") {
        return Ok(vec![s.parse().context("CANDOR_SIM_SEED must be a u64")?]);
    }
    let random: u64 = std::env::var("CANDOR_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut v = vec![1, 2];
    v.extend(seeds(random)?);
    Ok(v)
}

/// The whole service (3 members co-located, and the shared-state layout with
/// separate shard and sequencer members) as a deterministic simulation: one thread,
/// tokio's paused clock, SMT and head timestamps from the virtual wall clock, nonces
/// and openraft's draws from the seed ([`candor_sim`]). Each seed runs the fault
/// schedule of [`run_seed`] (with all its checks) twice, and the two runs must agree
/// on every Raft message (virtual time, endpoints, kind, size), every acknowledged
/// SMT, byte for byte, and every signed head. A failure prints where they part.
#[test]
fn whole_service_seeds_replay_the_exact_interleaving() -> Result<()> {
    init_log();
    for layout in [Layout::CoLocated, Layout::Shared] {
        for seed in sim_seeds()? {
            println!("simulation: {layout:?} seed {seed} (replay with CANDOR_SIM_SEED={seed})");
            let first = on_virtual_clock(seed, run_seed(seed, layout))?;
            println!(
                "  {} messages, {} publishes acknowledged, {} epochs, {} ms virtual",
                first.messages.len(),
                first.acked.len(),
                first.heads.len(),
                first.elapsed_ms
            );
            let second = on_virtual_clock(seed, run_seed(seed, layout))?;
            if let Some(d) = first_divergence(&first.messages, &second.messages) {
                bail!("{layout:?} seed {seed} did not replay exactly: {d}");
            }
            if let Some(d) = first_divergence(&first.acked, &second.acked) {
                bail!("{layout:?} seed {seed}: acknowledgements differ: {d}");
            }
            ensure!(
                first == second,
                "{layout:?} seed {seed} did not replay exactly (heads or virtual time differ)"
            );
        }
    }
    Ok(())
}
