//! Cluster behaviour over the in-process network: elections, replication, failover,
//! restarts from the store, many groups per node, and injected faults.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use candor_raft::rand::rngs::StdRng;
use candor_raft::testing::AppendLog;
use candor_raft::{
    CrashStore, Error, FaultConfig, FaultHook, GroupId, InProcessNetwork, MessageInfo, NodeId,
    RaftGroup, RaftTuning, RpcKind, ServerState, Verdict,
};
use candor_store::Store;
use common::*;

const G: GroupId = GroupId(1);

fn payload(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i:05}").into_bytes()
}

/// Every acked payload sits exactly at its acked position; unknown ones appear at most once.
fn check_acked(items: &[Vec<u8>], acked: &[(Vec<u8>, u64)], unknown: &[Vec<u8>]) {
    for (data, pos) in acked {
        let at = usize::try_from(*pos - 1).expect("position fits");
        assert_eq!(
            items.get(at),
            Some(data),
            "acknowledged write {} lost or moved",
            String::from_utf8_lossy(data)
        );
        assert_eq!(items.iter().filter(|i| *i == data).count(), 1, "duplicate");
    }
    for data in unknown {
        assert!(
            items.iter().filter(|i| *i == data).count() <= 1,
            "duplicate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_writes_and_reads_back() {
    let net = InProcessNetwork::new(seed(1));
    let n = start_node(&net, 1, Arc::new(CrashStore::new()));
    let g = start_group(&n, G).await;
    g.initialize(members(&[1])).await.expect("initialize");
    assert_eq!(g.wait_for_leader(WAIT).await.expect("leader"), 1);

    for i in 0..50 {
        let resp = g.client_write(payload("w", i)).await.expect("write");
        assert_eq!(AppendLog::position(&resp), Some(i as u64 + 1));
    }
    let items = linearizable_items(&g).await;
    assert_eq!(items, (0..50).map(|i| payload("w", i)).collect::<Vec<_>>());

    // 50 writes + the initial membership entry (index 0) + the leader's blank entry.
    g.wait_for_applied(51, WAIT)
        .await
        .expect("metrics catch up");
    let m = g.metrics();
    assert_eq!(m.leader, Some(1));
    assert_eq!(m.state, ServerState::Leader);
    assert!(m.current_term >= 1);
    assert!(m.last_log_index >= Some(51));
    assert!(m.last_applied.map(|l| l.index) >= Some(51));
    assert_eq!(m.voters.iter().copied().collect::<Vec<_>>(), vec![1]);
    // Oversized payloads are refused before they reach the log.
    let too_big = vec![0u8; g.max_payload_bytes() + 1];
    assert!(matches!(
        g.client_write(too_big).await,
        Err(Error::TooLarge { .. })
    ));
    // Initializing again is a no-op.
    g.initialize(members(&[1])).await.expect("re-initialize");
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_failover_keeps_committed_entries() {
    let net = InProcessNetwork::new(seed(2));
    let mut nodes: HashMap<NodeId, TestNode> = HashMap::new();
    let mut groups: Vec<(NodeId, RaftGroup<AppendLog>)> = Vec::new();
    for id in 1..=3 {
        let n = start_node(&net, id, Arc::new(CrashStore::new()));
        groups.push((id, start_group(&n, G).await));
        nodes.insert(id, n);
    }
    groups[0]
        .1
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    let leader = wait_leader(&groups).await;

    // Phase 1: concurrent writes through the first leader.
    let mut acked = Vec::new();
    let mut unknown = Vec::new();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let gs = groups.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let data = payload(&format!("a{w}"), i);
                out.push((data.clone(), write(&gs, data).await));
            }
            out
        }));
    }
    for t in tasks {
        for (data, o) in t.await.expect("writer") {
            match o {
                Outcome::Acked(p) => acked.push((data, p)),
                Outcome::Unknown => unknown.push(data),
            }
        }
    }
    assert_eq!(
        acked.len(),
        200,
        "no faults yet: every write is acknowledged"
    );

    // Crash the leader: unreachable, then stopped. Its store keeps only synced data.
    net.unregister(leader);
    let old = nodes.remove(&leader).expect("leader node");
    old.node.shutdown().await;
    let crashed_kv = Arc::new(old.kv.crash_copy().expect("crash copy"));
    drop(old);
    groups.retain(|(id, _)| *id != leader);

    let new_leader = wait_leader(&groups).await;
    assert_ne!(new_leader, leader);

    for i in 0..50 {
        let data = payload("b", i);
        match write(&groups, data.clone()).await {
            Outcome::Acked(p) => acked.push((data, p)),
            Outcome::Unknown => unknown.push(data),
        }
    }
    let lg = &groups
        .iter()
        .find(|(id, _)| *id == new_leader)
        .expect("leader")
        .1;
    let items = linearizable_items(lg).await;
    check_acked(&items, &acked, &unknown);

    // Restart the crashed node from what its disk kept: it recovers and catches up.
    let restarted = start_node(&net, leader, crashed_kv);
    let rg = start_group(&restarted, G).await;
    let r_items = items_at_least(&rg, items.len()).await;
    assert_eq!(
        &r_items[..items.len()],
        &items[..],
        "restarted replica diverged"
    );

    for (_, g) in &groups {
        g.shutdown().await;
    }
    rg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_store_recovers_state() {
    let net = InProcessNetwork::new(seed(3));
    let kv = Arc::new(CrashStore::new());
    let n = start_node(&net, 1, Arc::clone(&kv));
    let g = start_group(&n, G).await;
    g.initialize(members(&[1])).await.expect("initialize");
    g.wait_for_leader(WAIT).await.expect("leader");

    let mut tasks = Vec::new();
    for w in 0..16 {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..20 {
                let data = payload(&format!("r{w}"), i);
                let resp = g.client_write(data.clone()).await.expect("write");
                out.push((data, AppendLog::position(&resp).expect("position")));
            }
            out
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("writer"));
    }
    let term_before = g.metrics().current_term;

    // Power cut: only synced writes survive; the state machine's buffered writes may not.
    let crashed = Arc::new(kv.crash_copy().expect("crash copy"));
    n.node.shutdown().await;
    drop(g);
    drop(n);
    net.unregister(1);

    let n2 = start_node(&net, 1, crashed);
    let g2 = start_group(&n2, G).await;
    // Already initialized from the store: this must be a no-op.
    g2.initialize(members(&[1]))
        .await
        .expect("initialize again");
    g2.wait_for_leader(WAIT)
        .await
        .expect("leader after restart");
    let items = linearizable_items(&g2).await;
    assert_eq!(items.len(), acked.len());
    check_acked(&items, &acked, &[]);
    // The synced vote survived: the term never goes back.
    assert!(
        g2.metrics().current_term >= term_before,
        "term went backwards"
    );

    // Clean restart: identical state, no re-application needed.
    let clean = Arc::new(n2.kv.clean_copy().expect("clean copy"));
    n2.node.shutdown().await;
    net.unregister(1);
    let n3 = start_node(&net, 1, clean);
    let g3 = start_group(&n3, G).await;
    g3.wait_for_leader(WAIT)
        .await
        .expect("leader after clean restart");
    assert_eq!(linearizable_items(&g3).await, items);
    n3.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_groups_on_one_node() {
    let net = InProcessNetwork::new(seed(4));
    let n = start_node(&net, 1, Arc::new(CrashStore::new()));
    let mut gs = Vec::new();
    for gid in 0..16u64 {
        let group = GroupId(100 + gid);
        let kv: Arc<dyn Store> = Arc::clone(&n.kv) as Arc<dyn Store>;
        let logic = AppendLog::open(kv, &sm_prefix(group)).expect("logic");
        let g = n
            .node
            .create_group(group, logic, members(&[1]))
            .await
            .expect("create group");
        gs.push(g);
    }
    assert!(matches!(
        n.node
            .start_group(
                GroupId(100),
                AppendLog::open(Arc::new(CrashStore::new()), b"x").expect("logic")
            )
            .await,
        Err(Error::GroupExists(GroupId(100)))
    ));
    assert_eq!(n.node.group_ids().len(), 16);

    let mut tasks = Vec::new();
    for g in &gs {
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            g.wait_for_leader(WAIT).await.expect("leader");
            for i in 0..40 {
                let data = payload(&format!("{}", g.id()), i);
                let resp = g.client_write(data).await.expect("write");
                assert_eq!(AppendLog::position(&resp), Some(i as u64 + 1));
            }
        }));
    }
    for t in tasks {
        t.await.expect("group writer");
    }
    for g in &gs {
        let items = linearizable_items(g).await;
        let want: Vec<Vec<u8>> = (0..40)
            .map(|i| payload(&format!("{}", g.id()), i))
            .collect();
        assert_eq!(items, want, "group {} saw another group's data", g.id());
        let m = g.metrics();
        assert_eq!(m.leader, Some(1));
        assert_eq!(m.group, g.id());
    }
    n.node.shutdown().await;
    assert!(n.node.group_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_network_loses_no_acknowledged_write() {
    let s = seed(5);
    let net = InProcessNetwork::new(s);
    let mut groups = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let n = start_node(&net, id, Arc::new(CrashStore::new()));
        groups.push((id, start_group(&n, G).await));
        nodes.push(n);
    }
    groups[0]
        .1
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    wait_leader(&groups).await;

    net.set_faults(FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(3),
    });
    let mut tasks = Vec::new();
    for w in 0..4 {
        let gs = groups.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..30 {
                let data = payload(&format!("f{w}"), i);
                out.push((data.clone(), write(&gs, data).await));
            }
            out
        }));
    }
    let (mut acked, mut unknown) = (Vec::new(), Vec::new());
    for t in tasks {
        for (data, o) in t.await.expect("writer") {
            match o {
                Outcome::Acked(p) => acked.push((data, p)),
                Outcome::Unknown => unknown.push(data),
            }
        }
    }
    let stats = net.stats();
    eprintln!(
        "seed {s}: {stats:?}, acked {}, unknown {}",
        acked.len(),
        unknown.len()
    );

    // Heal and let every replica converge on the same history.
    net.set_faults(FaultConfig::default());
    let leader = wait_leader(&groups).await;
    let lg = &groups
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1;
    let items = linearizable_items(lg).await;
    check_acked(&items, &acked, &unknown);
    for (id, g) in &groups {
        let r = items_at_least(g, items.len()).await;
        assert_eq!(
            &r[..items.len()],
            &items[..],
            "replica {id} diverged (seed {s})"
        );
    }
    for n in &nodes {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_cannot_acknowledge_writes() {
    let s = seed(6);
    let net = InProcessNetwork::new(s);
    let mut groups = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let n = start_node(&net, id, Arc::new(CrashStore::new()));
        groups.push((id, start_group(&n, G).await));
        nodes.push(n);
    }
    groups[0]
        .1
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    let old = wait_leader(&groups).await;
    let old_g = groups
        .iter()
        .find(|(id, _)| *id == old)
        .expect("old")
        .1
        .clone();
    assert!(matches!(
        write(&groups, b"before".to_vec()).await,
        Outcome::Acked(1)
    ));

    net.isolate(old);
    // The minority side must not acknowledge anything.
    let stale = tokio::time::timeout(
        Duration::from_secs(2),
        old_g.client_write(b"split".to_vec()),
    )
    .await;
    assert!(
        !matches!(stale, Ok(Ok(_))),
        "isolated leader acknowledged a write"
    );

    let majority: Vec<(NodeId, RaftGroup<AppendLog>)> = groups
        .iter()
        .filter(|(id, _)| *id != old)
        .cloned()
        .collect();
    let new = wait_leader(&majority).await;
    assert_ne!(new, old);
    let mut acked = vec![(b"before".to_vec(), 1)];
    for i in 0..10 {
        let data = payload("m", i);
        if let Outcome::Acked(p) = write(&majority, data.clone()).await {
            acked.push((data, p));
        }
    }

    net.heal();
    // Wait until the deposed leader has heard of the new term.
    let new_term = majority
        .iter()
        .map(|(_, g)| g.metrics().current_term)
        .max()
        .expect("term");
    tokio::time::timeout(WAIT, async {
        while old_g.metrics().current_term < new_term {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("old leader learns the new term");
    let all_ids: HashSet<NodeId> = groups.iter().map(|(id, _)| *id).collect();
    assert_eq!(all_ids.len(), 3);
    let leader = wait_leader(&groups).await;
    let lg = &groups
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1;
    let items = linearizable_items(lg).await;
    check_acked(&items, &acked, &[b"split".to_vec()]);
    let old_items = items_at_least(&old_g, items.len()).await;
    assert_eq!(
        &old_items[..items.len()],
        &items[..],
        "old leader did not converge"
    );
    for n in &nodes {
        n.node.shutdown().await;
    }
}

/// Counts forwarded writes; decides nothing (the seeded random faults apply).
#[derive(Default)]
struct ForwardCounter(AtomicU64);

impl FaultHook for ForwardCounter {
    fn decide(&self, msg: &MessageInfo, _rng: &mut StdRng) -> Option<Verdict> {
        if msg.kind == RpcKind::ClientWrite {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

/// Writes enter through every replica (followers forward them to the leader) while
/// requests and replies are lost and delayed, and the leader is isolated once midway:
/// every acknowledged write is applied exactly once at its position, writes with an
/// unknown outcome at most once, and the replicas converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_survive_faults() {
    let s = seed(9);
    let net = InProcessNetwork::new(s);
    let mut groups = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let n = start_node(&net, id, Arc::new(CrashStore::new()));
        groups.push((id, start_group(&n, G).await));
        nodes.push(n);
    }
    groups[0]
        .1
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    let first_leader = wait_leader(&groups).await;

    // Fault-free: a follower's write is forwarded and acknowledged.
    let follower = groups
        .iter()
        .find(|(id, _)| *id != first_leader)
        .expect("follower")
        .1
        .clone();
    let resp = follower
        .write(b"via-follower".to_vec())
        .await
        .expect("forwarded write");
    assert_eq!(AppendLog::position(&resp), Some(1));
    let mut acked = vec![(b"via-follower".to_vec(), 1)];
    let mut unknown = Vec::new();

    let counter = Arc::new(ForwardCounter::default());
    net.set_hook(Some(Arc::clone(&counter) as Arc<dyn FaultHook>));
    net.set_faults(FaultConfig {
        drop_request: 0.05,
        drop_response: 0.05,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(3),
    });
    let mut tasks = Vec::new();
    for w in 0..6 {
        // Each writer enters through its own replica, so two of every three forward.
        let g = groups[w % groups.len()].1.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..20 {
                let data = payload(&format!("fw{w}"), i);
                out.push((data.clone(), forward_write(&g, data).await));
            }
            out
        }));
    }
    // Midway, cut the leader off for a while: writes must follow the new leader.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cut = wait_leader(&groups).await;
    net.isolate(cut);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    net.heal();
    for t in tasks {
        for (data, o) in t.await.expect("writer") {
            match o {
                Outcome::Acked(p) => acked.push((data, p)),
                Outcome::Unknown => unknown.push(data),
            }
        }
    }
    let forwarded = counter.0.load(Ordering::Relaxed);
    eprintln!(
        "seed {s}: {:?}, forwarded {forwarded}, acked {}, unknown {}, isolated {cut}",
        net.stats(),
        acked.len(),
        unknown.len()
    );
    assert!(forwarded > 0, "no write was forwarded (seed {s})");

    net.set_faults(FaultConfig::default());
    let leader = wait_leader(&groups).await;
    let lg = &groups
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1;
    let items = linearizable_items(lg).await;
    check_acked(&items, &acked, &unknown);
    for (id, g) in &groups {
        let r = items_at_least(g, items.len()).await;
        assert_eq!(
            &r[..items.len()],
            &items[..],
            "replica {id} diverged (seed {s})"
        );
    }
    for n in &nodes {
        n.node.shutdown().await;
    }
}

/// Counts snapshot pieces; decides nothing.
#[derive(Default)]
struct SnapshotCounter(AtomicU64);

impl FaultHook for SnapshotCounter {
    fn decide(&self, msg: &MessageInfo, _rng: &mut StdRng) -> Option<Verdict> {
        if msg.kind == RpcKind::SnapshotChunk {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let s = seed(7);
    let net = InProcessNetwork::new(s);
    // Small pieces: the snapshot (a few KiB) crosses the transport in many of them.
    let tuning = RaftTuning {
        snapshot_after_entries: 40,
        keep_after_snapshot: 5,
        snapshot_chunk_bytes: 256,
        ..RaftTuning::default()
    };
    let mut groups = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let n = start_node_with(&net, id, Arc::new(CrashStore::new()), tuning.clone());
        groups.push((id, start_group(&n, G).await));
        nodes.push(n);
    }
    groups[0]
        .1
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    let leader = wait_leader(&groups).await;
    let lagging = if leader == 3 { 2 } else { 3 };
    net.isolate(lagging);
    let counter = Arc::new(SnapshotCounter::default());
    net.set_hook(Some(Arc::clone(&counter) as Arc<dyn FaultHook>));

    let live: Vec<(NodeId, RaftGroup<AppendLog>)> = groups
        .iter()
        .filter(|(id, _)| *id != lagging)
        .cloned()
        .collect();
    let mut acked = Vec::new();
    for i in 0..200 {
        let data = payload("s", i);
        if let Outcome::Acked(p) = write(&live, data.clone()).await {
            acked.push((data, p));
        }
    }
    let leader = wait_leader(&live).await;
    let lg = &live.iter().find(|(id, _)| *id == leader).expect("leader").1;
    // The leader snapshots and purges the log the lagging node would need.
    tokio::time::timeout(WAIT, async {
        while lg.metrics().purged.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("leader purged its log");

    net.heal();
    let items = linearizable_items(lg).await;
    check_acked(&items, &acked, &[]);
    let lag_g = &groups
        .iter()
        .find(|(id, _)| *id == lagging)
        .expect("lagging")
        .1;
    let caught_up = items_at_least(lag_g, items.len()).await;
    if caught_up.len() < items.len() || caught_up[..items.len()] != items[..] {
        let first_diff = items
            .iter()
            .zip(&caught_up)
            .position(|(a, b)| a != b)
            .unwrap_or(caught_up.len().min(items.len()));
        panic!(
            "snapshot install diverged (seed {s}): leader {} items, follower {}, first difference at {first_diff}: {:?} vs {:?}; leader {:?}; follower {:?}",
            items.len(),
            caught_up.len(),
            items
                .get(first_diff)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            caught_up
                .get(first_diff)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            lg.metrics(),
            lag_g.metrics(),
        );
    }
    assert!(
        lag_g.metrics().snapshot.is_some(),
        "caught up through a snapshot"
    );
    assert!(
        counter.0.load(Ordering::Relaxed) >= 3,
        "a snapshot crossed the transport in several pieces"
    );

    // Restart the lagging node from its store (crash): snapshot and log reload.
    let idx = nodes.iter().position(|n| n.id == lagging).expect("node");
    let n = nodes.remove(idx);
    n.node.shutdown().await;
    net.unregister(lagging);
    let crashed = Arc::new(n.kv.crash_copy().expect("crash copy"));
    let n2 = start_node_with(&net, lagging, crashed, tuning.clone());
    let g2 = start_group(&n2, G).await;
    let again = items_at_least(&g2, items.len()).await;
    assert_eq!(
        &again[..items.len()],
        &items[..],
        "restart after snapshot diverged"
    );
    n2.node.shutdown().await;
    for n in &nodes {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_stops_the_group_without_acknowledging() {
    let net = InProcessNetwork::new(seed(8));
    let kv = Arc::new(CrashStore::new());
    let n = start_node(&net, 1, Arc::clone(&kv));
    let g = start_group(&n, G).await;
    g.initialize(members(&[1])).await.expect("initialize");
    g.wait_for_leader(WAIT).await.expect("leader");
    g.client_write(b"ok".to_vec()).await.expect("healthy write");

    kv.set_fail_writes(true);
    let r = tokio::time::timeout(WAIT, g.client_write(b"doomed".to_vec()))
        .await
        .expect("the write fails instead of hanging");
    assert!(
        r.is_err(),
        "a write was acknowledged although the store failed"
    );
    // The group is stopped for good: later calls fail too, promptly.
    let r2 = tokio::time::timeout(WAIT, g.client_write(b"later".to_vec()))
        .await
        .expect("prompt failure");
    assert!(matches!(r2, Err(Error::Stopped { .. })), "{r2:?}");
    kv.set_fail_writes(false);
    n.node.shutdown().await;
}

/// Cuts node `leader` off from Raft traffic both ways, but lets client writes forwarded
/// to it arrive and hang (a black-holed connection: the request is in flight, no reply
/// comes). What a real partition does to a forward that was already sent.
struct BlackHole {
    leader: NodeId,
}

impl FaultHook for BlackHole {
    fn decide(&self, msg: &MessageInfo, _rng: &mut StdRng) -> Option<Verdict> {
        if msg.from != self.leader && msg.to != self.leader {
            return None;
        }
        Some(
            if msg.kind == RpcKind::ClientWrite && msg.to == self.leader {
                Verdict::Deliver {
                    delay: Duration::from_secs(3600),
                }
            } else {
                Verdict::DropRequest
            },
        )
    }
}

/// Three replicas with a forward deadline far longer than any election, so each test
/// below tells apart "learned of the fault" from "waited out the deadline" by the error
/// it gets, never by the clock.
async fn three_with_long_deadline(
    net: &InProcessNetwork,
) -> (Vec<TestNode>, Vec<(NodeId, RaftGroup<AppendLog>)>, NodeId) {
    let tuning = RaftTuning {
        forward_timeout: Duration::from_secs(120),
        ..RaftTuning::default()
    };
    let mut groups = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let n = start_node_with(net, id, Arc::new(CrashStore::new()), tuning.clone());
        groups.push((id, start_group(&n, G).await));
        nodes.push(n);
    }
    groups[0]
        .1
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    let leader = wait_leader(&groups).await;
    assert!(matches!(
        write(&groups, b"before".to_vec()).await,
        Outcome::Acked(1)
    ));
    (nodes, groups, leader)
}

/// Issue 19: a write forwarded to a leader that is then cut off learns of the new
/// leader's election and reports an unknown outcome at once, instead of holding the
/// caller until the forward deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_a_deposed_leader_ends_at_the_election() {
    let net = InProcessNetwork::new(seed(19));
    let (nodes, groups, old) = three_with_long_deadline(&net).await;
    let (_, follower) = groups
        .iter()
        .find(|(id, _)| *id != old)
        .cloned()
        .expect("a follower");
    // Make sure the follower knows the leader before the cut.
    tokio::time::timeout(WAIT, async {
        while follower.leader() != Some(old) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("follower learns the leader");
    net.set_hook(Some(Arc::new(BlackHole { leader: old })));
    let out = tokio::time::timeout(WAIT, follower.write(b"in-flight".to_vec()))
        .await
        .expect("the forwarded write ends well before the 120 s deadline");
    match out {
        Err(Error::Indeterminate { detail, .. }) => assert!(
            detail.contains("was replaced by node"),
            "ended for another reason: {detail}"
        ),
        other => panic!("expected an unknown outcome after the election, got {other:?}"),
    }
    let majority: Vec<(NodeId, RaftGroup<AppendLog>)> = groups
        .iter()
        .filter(|(id, _)| *id != old)
        .cloned()
        .collect();
    let new = wait_leader(&majority).await;
    assert_ne!(new, old);
    // The survivors still take writes (the black hole only hangs forwards to `old`).
    assert!(matches!(
        forward_write(&follower, b"after".to_vec()).await,
        Outcome::Acked(_)
    ));
    net.set_hook(None);
    for n in &nodes {
        n.node.shutdown().await;
    }
}

/// Issue 19: a leader cut off from its quorum refuses new writes (not proposed, so safe
/// to send elsewhere) instead of proposing entries it can never commit; a follower cut
/// off from everyone fails its forwards fast, also without proposing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_members_fail_writes_fast() {
    let net = InProcessNetwork::new(seed(20));
    let (nodes, groups, leader) = three_with_long_deadline(&net).await;
    let lg = groups
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1
        .clone();
    net.isolate(leader);
    // The first write may already be waiting for its commit when the silence is
    // noticed (unknown outcome); once noticed, writes are refused before proposing.
    let mut refused = None;
    for i in 0..50 {
        let out = tokio::time::timeout(WAIT, lg.write(payload("iso", i)))
            .await
            .expect("an isolated leader answers well before the 120 s deadline");
        match out {
            Err(Error::QuorumNotEnough { detail, .. }) => {
                refused = Some(detail);
                break;
            }
            Err(Error::Indeterminate { detail, .. }) => {
                assert!(detail.contains("lost its quorum"), "{detail}")
            }
            other => panic!("isolated leader: {other:?}"),
        }
    }
    let detail = refused.expect("the isolated leader refuses writes");
    assert!(detail.contains("not proposed"), "{detail}");
    net.heal();
    let leader = wait_leader(&groups).await;
    let lg = &groups
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1;
    let items = linearizable_items(lg).await;
    assert_eq!(
        items.iter().filter(|i| i.starts_with(b"iso")).count(),
        0,
        "a refused write was applied"
    );

    // Now a follower: its forwards reach nobody. (Wait until it follows the current
    // leader: the healed old leader may still believe it leads for a moment.)
    let (fid, follower) = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(f) = groups
                .iter()
                .find(|(id, g)| *id != leader && g.leader() == Some(leader))
            {
                return f.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a follower of the new leader");
    net.isolate(fid);
    let out = tokio::time::timeout(WAIT, follower.write(b"cut-off".to_vec()))
        .await
        .expect("an isolated follower answers well before the 120 s deadline");
    match out {
        Err(Error::Timeout(m)) => {
            assert!(
                m.contains("no leader reachable") || m.contains("(cut off)"),
                "{m}"
            );
            assert!(m.contains("not proposed"), "{m}");
        }
        other => panic!("isolated follower: {other:?}"),
    }
    net.heal();
    for n in &nodes {
        n.node.shutdown().await;
    }
}
