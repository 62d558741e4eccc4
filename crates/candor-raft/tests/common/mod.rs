//! Shared helpers for the cluster tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use candor_raft::testing::AppendLog;
use candor_raft::{
    CrashStore, Error, GroupId, InProcessNetwork, NodeId, RaftGroup, RaftNode, RaftNodeConfig,
    RaftTuning,
};
use candor_store::Store;

/// Generous bound on every wait so a broken test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(30);

/// The seed for fault injection: `CANDOR_RAFT_SEED` or a fixed default. Printed so a
/// failing run can be replayed.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("CANDOR_RAFT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("fault-injection seed: {s} (replay with CANDOR_RAFT_SEED={s})");
    s
}

pub fn addr(id: NodeId) -> String {
    format!("inproc-{id}")
}

pub fn sm_prefix(g: GroupId) -> Vec<u8> {
    let mut p = b"\x01sm/".to_vec();
    p.extend_from_slice(&g.0.to_be_bytes());
    p
}

/// A node of the test cluster: its store (log and state machine share it, as in
/// `candor dev`) and its Raft node.
pub struct TestNode {
    pub id: NodeId,
    pub kv: Arc<CrashStore>,
    pub node: RaftNode,
}

pub fn start_node(net: &InProcessNetwork, id: NodeId, kv: Arc<CrashStore>) -> TestNode {
    start_node_with(net, id, kv, RaftTuning::default())
}

pub fn start_node_with(
    net: &InProcessNetwork,
    id: NodeId,
    kv: Arc<CrashStore>,
    tuning: RaftTuning,
) -> TestNode {
    let dyn_kv: Arc<dyn Store> = Arc::clone(&kv) as Arc<dyn Store>;
    let mut config = RaftNodeConfig::new(id, addr(id));
    config.tuning = tuning;
    let node = RaftNode::new(config, dyn_kv, net.endpoint(id)).expect("raft node");
    net.register(&node);
    TestNode { id, kv, node }
}

pub async fn start_group(n: &TestNode, g: GroupId) -> RaftGroup<AppendLog> {
    let kv: Arc<dyn Store> = Arc::clone(&n.kv) as Arc<dyn Store>;
    let logic = AppendLog::open(kv, &sm_prefix(g)).expect("open logic");
    n.node.start_group(g, logic).await.expect("start group")
}

pub fn members(ids: &[NodeId]) -> BTreeMap<NodeId, String> {
    ids.iter().map(|&i| (i, addr(i))).collect()
}

/// Wait until one of `groups` is leader and return the one with the highest term (a
/// deposed leader cut off from the others may still believe it leads an older term).
pub async fn wait_leader(groups: &[(NodeId, RaftGroup<AppendLog>)]) -> NodeId {
    tokio::time::timeout(WAIT, async {
        loop {
            let best = groups
                .iter()
                .map(|(id, g)| (*id, g.metrics()))
                .filter(|(id, m)| {
                    m.leader == Some(*id) && m.state == candor_raft::ServerState::Leader
                })
                .max_by_key(|(_, m)| m.current_term);
            if let Some((id, _)) = best {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a leader is elected")
}

/// Outcome of a write made with retries.
#[derive(Debug)]
pub enum Outcome {
    /// Committed and applied at this 1-based position.
    Acked(u64),
    /// Might or might not be committed.
    Unknown,
}

/// Write `data` to whichever replica leads, retrying on redirects and lost messages.
/// Never retries a write whose outcome is unknown (that would risk a duplicate).
pub async fn write(groups: &[(NodeId, RaftGroup<AppendLog>)], data: Vec<u8>) -> Outcome {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "write never succeeded"
        );
        let target = groups
            .iter()
            .find(|(id, g)| g.leader() == Some(*id))
            .or_else(|| groups.first());
        let Some((_, g)) = target else {
            panic!("no replicas")
        };
        match tokio::time::timeout(Duration::from_secs(5), g.client_write(data.clone())).await {
            Ok(Ok(resp)) => {
                return Outcome::Acked(AppendLog::position(&resp).expect("position response"));
            }
            Ok(Err(Error::ForwardToLeader { .. })) => {}
            Ok(Err(Error::Indeterminate { .. })) | Err(_) => return Outcome::Unknown,
            Ok(Err(e)) => panic!("unexpected write error: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Read the items of `g` after confirming leadership (linearizable).
pub async fn linearizable_items(g: &RaftGroup<AppendLog>) -> Vec<Vec<u8>> {
    tokio::time::timeout(WAIT, g.ensure_linearizable())
        .await
        .expect("ensure_linearizable in time")
        .expect("ensure_linearizable");
    g.read(|l| l.items().to_vec()).await.expect("read")
}

/// Wait until `g`'s state machine holds at least `n` items, then return them. (Polls the
/// state machine itself: Raft metrics are published asynchronously and may lag it.)
pub async fn items_at_least(g: &RaftGroup<AppendLog>, n: usize) -> Vec<Vec<u8>> {
    tokio::time::timeout(WAIT, async {
        loop {
            let items = g.read(|l| l.items().to_vec()).await.expect("read");
            if items.len() >= n {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("replica catches up")
}

/// Write `data` through `g.write` (forwarded to the leader when `g` does not lead).
/// Retries only what provably was not proposed ([`Error::Timeout`],
/// [`Error::QuorumNotEnough`]); never a write whose
/// outcome is unknown.
pub async fn forward_write(g: &RaftGroup<AppendLog>, data: Vec<u8>) -> Outcome {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "forwarded write never succeeded"
        );
        match g.write(data.clone()).await {
            Ok(resp) => {
                return Outcome::Acked(AppendLog::position(&resp).expect("position response"));
            }
            // Not proposed (no leader reached, or a leader cut off from its quorum).
            Err(Error::Timeout(_) | Error::QuorumNotEnough { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(Error::Indeterminate { .. } | Error::Stopped { .. }) => return Outcome::Unknown,
            Err(e) => panic!("unexpected write error: {e}"),
        }
    }
}
