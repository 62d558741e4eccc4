//! Deterministic simulation: Raft groups on a virtual clock, where a seed
//! replays the exact interleaving, not only the fault schedule.
//!
//! Each run is set up to be deterministic:
//! * one thread: a tokio current-thread runtime;
//! * virtual time: the clock is paused, so timers fire in a fixed order and
//!   a 20 s partition takes no wall time;
//! * no other thread: nodes run with `IoMode::Inline` over in-memory
//!   `CrashStore`s;
//! * randomness from the seed: the network's fault RNG, the nemesis and
//!   writers' RNGs, and openraft's own draws (election timeouts) through
//!   `candor_raft::sim::seed_thread`.
//!
//! What a run does:
//! * three nodes run two groups;
//! * writers append through whichever replica they hold, and forwarded writes
//!   cross the lossy, delaying network;
//! * a seeded nemesis isolates nodes, cuts partitions and crashes a node. A
//!   crash keeps only what its store synced; the node restarts from that;
//! * after healing, every replica of every group holds the same log, and it
//!   has every acknowledged write at its acknowledged position.
//!
//! The replay check: every seed runs twice. The two runs must agree on
//! everything:
//! * every message in send order: virtual time, endpoints, group, kind,
//!   size (a failure prints where the two runs part);
//! * the outcome of every write;
//! * the final logs;
//! * the virtual time taken.
//!
//! Seeds: a fixed set, plus `CANDOR_SIM_SEEDS` random ones (default 2),
//! printed. `CANDOR_SIM_SEED=<n>` runs that one seed alone.

mod common;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candor_raft::rand::rngs::StdRng;
use candor_raft::rand::{RngExt, SeedableRng};
use candor_raft::testing::AppendLog;
use candor_raft::{
    CrashStore, FaultConfig, FaultHook, GroupId, InProcessNetwork, IoMode, MessageInfo, NodeId,
    RaftGroup, RaftNode, RaftNodeConfig, Verdict,
};
use candor_store::Store;
use common::{Outcome, addr, forward_write, members, sm_prefix};

const GROUPS: [GroupId; 2] = [GroupId(1), GroupId(2)];
const NODES: [NodeId; 3] = [1, 2, 3];
const WRITERS_PER_GROUP: usize = 3;
const WRITES_PER_WRITER: usize = 25;

/// Records every message (virtual time since the start, endpoints, group,
/// kind, size) into a digest and a count; decides nothing.
struct Recorder {
    start: tokio::time::Instant,
    trace: Mutex<Vec<String>>,
}

impl FaultHook for Recorder {
    fn decide(&self, m: &MessageInfo, _rng: &mut StdRng) -> Option<Verdict> {
        let line = format!(
            "{:>9}us {}->{} g{} {:?} {}B",
            self.start.elapsed().as_micros(),
            m.from,
            m.to,
            m.group.0,
            m.kind,
            m.len
        );
        self.trace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        None
    }
}

/// Per group: each write's payload and its position if acknowledged (None:
/// outcome unknown).
type Outcomes = BTreeMap<u64, Vec<(Vec<u8>, Option<u64>)>>;

/// What one run produced; two runs of a seed must be equal.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    /// Every message in send order (compared first: it shows where two runs part).
    messages: Vec<String>,
    outcomes: Outcomes,
    /// Per group: digest and length of the final log.
    logs: BTreeMap<u64, (u64, usize)>,
    virtual_ms: u128,
    faults: Vec<String>,
}

struct SimNode {
    kv: Arc<CrashStore>,
    node: RaftNode,
    groups: BTreeMap<u64, RaftGroup<AppendLog>>,
}

/// The live group handles, shared by writers: a crash replaces a node's.
type Handles = Arc<Mutex<BTreeMap<(NodeId, u64), RaftGroup<AppendLog>>>>;

async fn start(net: &InProcessNetwork, id: NodeId, kv: Arc<CrashStore>) -> SimNode {
    let dyn_kv: Arc<dyn Store> = Arc::clone(&kv) as Arc<dyn Store>;
    let mut config = RaftNodeConfig::new(id, addr(id));
    config.io = IoMode::Inline;
    let node = RaftNode::new(config, dyn_kv, net.endpoint(id)).expect("raft node");
    net.register(&node);
    let mut groups = BTreeMap::new();
    for g in GROUPS {
        let kv: Arc<dyn Store> = Arc::clone(&kv) as Arc<dyn Store>;
        let logic = AppendLog::open(kv, &sm_prefix(g)).expect("open logic");
        groups.insert(g.0, node.start_group(g, logic).await.expect("start group"));
    }
    SimNode { kv, node, groups }
}

fn digest(items: &[Vec<u8>]) -> u64 {
    let mut h = DefaultHasher::new();
    items.hash(&mut h);
    h.finish()
}

async fn scenario(seed: u64) -> Run {
    let started = tokio::time::Instant::now();
    let net = InProcessNetwork::new(seed);
    let recorder = Arc::new(Recorder {
        start: started,
        trace: Mutex::new(Vec::new()),
    });
    net.set_hook(Some(Arc::clone(&recorder) as Arc<dyn FaultHook>));
    net.set_faults(FaultConfig {
        drop_request: 0.03,
        drop_response: 0.03,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(15),
    });

    let mut nodes: BTreeMap<NodeId, SimNode> = BTreeMap::new();
    for id in NODES {
        nodes.insert(id, start(&net, id, Arc::new(CrashStore::new())).await);
    }
    for g in GROUPS {
        nodes[&1].groups[&g.0]
            .initialize(members(&NODES))
            .await
            .expect("initialize");
    }
    let handles: Handles = Arc::new(Mutex::new(
        nodes
            .iter()
            .flat_map(|(id, n)| n.groups.iter().map(move |(g, h)| ((*id, *g), h.clone())))
            .collect(),
    ));

    // Writers: each sticks to one replica (forwarding to the leader) and never
    // retries a write whose outcome is unknown.
    let mut writers = Vec::new();
    for g in GROUPS {
        for w in 0..WRITERS_PER_GROUP {
            let handles = Arc::clone(&handles);
            let via = NODES[w % NODES.len()];
            writers.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..WRITES_PER_WRITER {
                    let data = format!("g{}-w{w}-{i}", g.0).into_bytes();
                    let h = handles.lock().unwrap().get(&(via, g.0)).cloned();
                    let Some(h) = h else {
                        out.push((data, None));
                        continue;
                    };
                    let o = match forward_write(&h, data.clone()).await {
                        Outcome::Acked(p) => Some(p),
                        Outcome::Unknown => None,
                    };
                    out.push((data, o));
                }
                (g.0, out)
            }));
        }
    }

    // The nemesis: one fault at a time, each healed before the next.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_CAFE);
    let mut faults = Vec::new();
    let mut crashed_once = false;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let victim = NODES[rng.random_range(0..NODES.len())];
        let hold = Duration::from_millis(rng.random_range(500..4000));
        match rng.random_range(0..3u8) {
            0 => {
                faults.push(format!("isolate {victim} for {hold:?}"));
                net.isolate(victim);
                tokio::time::sleep(hold).await;
                net.heal();
            }
            1 => {
                let others: Vec<NodeId> = NODES.iter().copied().filter(|n| *n != victim).collect();
                faults.push(format!("partition {victim} | {others:?} for {hold:?}"));
                net.partition(&[victim], &others);
                tokio::time::sleep(hold).await;
                net.heal();
            }
            _ if !crashed_once => {
                crashed_once = true;
                faults.push(format!("crash {victim}, restart after {hold:?}"));
                net.unregister(victim);
                let old = nodes.remove(&victim).expect("node");
                old.node.shutdown().await;
                let kept = Arc::new(old.kv.crash_copy().expect("crash copy"));
                drop(old);
                tokio::time::sleep(hold).await;
                let n = start(&net, victim, kept).await;
                {
                    let mut h = handles.lock().unwrap();
                    for (g, gh) in &n.groups {
                        h.insert((victim, *g), gh.clone());
                    }
                }
                nodes.insert(victim, n);
            }
            _ => faults.push("quiet".into()),
        }
    }
    net.heal();

    let mut outcomes = Outcomes::new();
    for w in writers {
        let (g, out) = w.await.expect("writer");
        outcomes.entry(g).or_default().extend(out);
    }

    // Healed: every replica converges on one log holding every acknowledged
    // write at its position, each exactly once.
    let mut logs = BTreeMap::new();
    for g in GROUPS {
        let groups: Vec<(NodeId, RaftGroup<AppendLog>)> = nodes
            .iter()
            .map(|(id, n)| (*id, n.groups[&g.0].clone()))
            .collect();
        let leader = common::wait_leader(&groups).await;
        let lg = &groups
            .iter()
            .find(|(id, _)| *id == leader)
            .expect("leader")
            .1;
        let items = common::linearizable_items(lg).await;
        for (data, pos) in &outcomes[&g.0] {
            let copies = items.iter().filter(|i| *i == data).count();
            match pos {
                Some(p) => {
                    assert_eq!(copies, 1, "seed {seed}: acknowledged write lost or doubled");
                    assert_eq!(
                        items.get(*p as usize - 1),
                        Some(data),
                        "seed {seed}: acknowledged write not at its position"
                    );
                }
                None => assert!(copies <= 1, "seed {seed}: unknown write applied twice"),
            }
        }
        for (id, rg) in &groups {
            let r = common::items_at_least(rg, items.len()).await;
            assert_eq!(
                r, items,
                "seed {seed}: replica {id} of group {} diverged",
                g.0
            );
        }
        logs.insert(g.0, (digest(&items), items.len()));
    }
    for n in nodes.values() {
        n.node.shutdown().await;
    }
    let messages = std::mem::take(&mut *recorder.trace.lock().unwrap());
    Run {
        messages,
        outcomes,
        logs,
        virtual_ms: started.elapsed().as_millis(),
        faults,
    }
}

/// One run of `seed` on a fresh single-threaded runtime with a paused clock.
fn run(seed: u64) -> Run {
    candor_raft::sim::seed_thread(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let out = rt.block_on(scenario(seed));
    drop(rt);
    candor_raft::sim::unseed_thread();
    out
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("CANDOR_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![s];
    }
    let random: usize = std::env::var("CANDOR_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut v = vec![1, 2, 3, 4];
    let mut os: StdRng = candor_raft::rand::make_rng();
    v.extend((0..random).map(|_| os.random::<u64>()));
    v
}

#[test]
fn seeds_replay_the_exact_interleaving() {
    for seed in seeds() {
        println!("simulation seed {seed} (replay with CANDOR_SIM_SEED={seed})");
        let first = run(seed);
        let acked: usize = first
            .outcomes
            .values()
            .map(|o| o.iter().filter(|(_, p)| p.is_some()).count())
            .sum();
        println!(
            "  {} messages, {acked} of {} writes acknowledged, {} ms virtual; faults: {:?}",
            first.messages.len(),
            GROUPS.len() * WRITERS_PER_GROUP * WRITES_PER_WRITER,
            first.virtual_ms,
            first.faults
        );
        assert!(acked > 0, "seed {seed}: nothing was acknowledged");
        let repeat: usize = std::env::var("CANDOR_SIM_REPEAT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        for _ in 0..repeat {
            let second = run(seed);
            if let Some(i) = (0..first.messages.len().max(second.messages.len()))
                .find(|&i| first.messages.get(i) != second.messages.get(i))
            {
                let around = |r: &Run| {
                    r.messages[i.saturating_sub(5)..(i + 3).min(r.messages.len())].join("\n")
                };
                panic!(
                    "seed {seed} did not replay exactly: message {i} differs\nfirst run:\n{}\nsecond run:\n{}",
                    around(&first),
                    around(&second)
                );
            }
            assert_eq!(first, second, "seed {seed} did not replay exactly");
        }
    }
}
