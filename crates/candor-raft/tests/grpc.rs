//! The gRPC transport end to end: three nodes in one process, each with its own store
//! and its own tonic server on a loopback port, several groups per node sharing one
//! `GrpcTransport`; forwarding, failover and catch-up after a restart. Also the status
//! every malformed or misaddressed request gets.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use candor_proto::raft::v1 as pb;
use candor_raft::grpc::{GrpcConfig, GrpcTransport, REJECTED_METADATA_KEY, raft_service, serve};
use candor_raft::testing::AppendLog;
use candor_raft::{
    GroupId, NodeId, RaftGroup, RaftNode, RaftNodeConfig, RaftTransport, RpcKind, TransportError,
};
use candor_store::{MemStore, Store};
use common::{Outcome, WAIT, forward_write, items_at_least, linearizable_items, sm_prefix};
use pb::raft_transport_client::RaftTransportClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;

const GROUPS: [GroupId; 3] = [GroupId(10), GroupId(11), GroupId(12)];

/// One "process": its store, Raft node, groups and gRPC server.
struct Proc {
    id: NodeId,
    addr: SocketAddr,
    kv: MemStore,
    node: RaftNode,
    groups: Vec<RaftGroup<AppendLog>>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Proc {
    fn group(&self, g: GroupId) -> &RaftGroup<AppendLog> {
        self.groups.iter().find(|x| x.id() == g).expect("group")
    }

    /// Stop serving and stop every group (the process dies; its store survives).
    async fn kill(mut self) -> (NodeId, SocketAddr, MemStore) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.node.shutdown().await;
        tokio::time::timeout(WAIT, &mut self.server)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server");
        (self.id, self.addr, self.kv)
    }
}

/// Bind a loopback listener; `at` rebinds a known address (a restart).
async fn bind(at: Option<SocketAddr>) -> TcpListener {
    let addr = at.unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr"));
    // The port of a just-stopped server can take a moment to be released.
    tokio::time::timeout(WAIT, async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return l,
                Err(e) => {
                    eprintln!("bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
    .expect("bind")
}

async fn start_proc(id: NodeId, listener: TcpListener, kv: MemStore, groups: &[GroupId]) -> Proc {
    let addr = listener.local_addr().expect("local addr");
    let config = GrpcConfig::default();
    let transport = Arc::new(GrpcTransport::new(id, config.clone()));
    let store: Arc<dyn Store> = Arc::new(kv.clone());
    let node = RaftNode::new(
        RaftNodeConfig::new(id, addr.to_string()),
        Arc::clone(&store),
        transport,
    )
    .expect("raft node");
    let (stop, stopped) = oneshot::channel::<()>();
    // Node 1 runs a server of its own making (as a process hosting other services
    // would); the others use the crate's `serve`.
    let shutdown = async {
        let _ = stopped.await;
    };
    let server = if id == 1 {
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(raft_service(&node, &config))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown),
        )
    } else {
        tokio::spawn(serve(&node, &config, listener, shutdown))
    };
    let mut gs = Vec::new();
    for &g in groups {
        let logic = AppendLog::open(Arc::clone(&store), &sm_prefix(g)).expect("logic");
        gs.push(node.start_group(g, logic).await.expect("start group"));
    }
    Proc {
        id,
        addr,
        kv,
        node,
        groups: gs,
        stop: Some(stop),
        server,
    }
}

/// The replica of `g` that leads it, among `procs`, with the highest term.
async fn leader_of(procs: &[Proc], g: GroupId) -> NodeId {
    tokio::time::timeout(WAIT, async {
        loop {
            let best = procs
                .iter()
                .map(|p| (p.id, p.group(g).metrics()))
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

#[derive(Default)]
struct Ledger {
    acked: Vec<(Vec<u8>, u64)>,
    unknown: Vec<Vec<u8>>,
}

impl Ledger {
    fn record(&mut self, data: Vec<u8>, o: Outcome) {
        match o {
            Outcome::Acked(p) => self.acked.push((data, p)),
            Outcome::Unknown => self.unknown.push(data),
        }
    }

    fn check(&self, items: &[Vec<u8>]) {
        for (data, pos) in &self.acked {
            let at = usize::try_from(*pos - 1).expect("position");
            assert_eq!(
                items.get(at),
                Some(data),
                "acknowledged write lost or moved"
            );
            assert_eq!(items.iter().filter(|i| *i == data).count(), 1, "duplicate");
        }
        for data in &self.unknown {
            assert!(
                items.iter().filter(|i| *i == data).count() <= 1,
                "duplicate"
            );
        }
    }
}

/// Every replica of `g` in `procs` holds `items` as a prefix.
async fn converged(procs: &[Proc], g: GroupId, items: &[Vec<u8>]) {
    for p in procs {
        let r = items_at_least(p.group(g), items.len()).await;
        assert_eq!(&r[..items.len()], items, "node {} diverged on {g}", p.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_grpc_forward_fail_over_and_catch_up() {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(bind(None).await);
    }
    let members: BTreeMap<NodeId, String> = (1u64..)
        .zip(&listeners)
        .map(|(id, l)| (id, l.local_addr().expect("addr").to_string()))
        .collect();
    let mut procs = Vec::new();
    for (id, l) in (1u64..).zip(listeners) {
        procs.push(start_proc(id, l, MemStore::new(), &GROUPS).await);
    }
    for &g in &GROUPS {
        procs[0]
            .group(g)
            .initialize(members.clone())
            .await
            .expect("initialize");
    }
    let mut ledgers: BTreeMap<GroupId, Ledger> = BTreeMap::new();

    // Phase 1: every replica writes to every group; followers forward over gRPC.
    for &g in &GROUPS {
        let leader = leader_of(&procs, g).await;
        let ledger = ledgers.entry(g).or_default();
        for (i, p) in procs.iter().cycle().take(12).enumerate() {
            let data = format!("{g}-a{i}").into_bytes();
            if p.id != leader {
                // Fault-free: a forwarded write is acknowledged, not just attempted.
                let resp = p
                    .group(g)
                    .write(data.clone())
                    .await
                    .expect("forwarded write");
                let pos = AppendLog::position(&resp).expect("position");
                ledger.record(data, Outcome::Acked(pos));
            } else {
                ledger.record(data.clone(), forward_write(p.group(g), data).await);
            }
        }
        let (lid, laddr) = procs[0].group(g).leader_addr().expect("leader known");
        assert_eq!(lid, leader);
        assert_eq!(laddr, members[&leader]);
    }
    for &g in &GROUPS {
        let leader = leader_of(&procs, g).await;
        let lp = procs.iter().find(|p| p.id == leader).expect("leader proc");
        let items = linearizable_items(lp.group(g)).await;
        assert_eq!(items.len(), 12);
        ledgers[&g].check(&items);
        converged(&procs, g, &items).await;
    }

    // Phase 2: the process leading GROUPS[0] dies (server and node).
    let g0 = GROUPS[0];
    let dead = leader_of(&procs, g0).await;
    let idx = procs.iter().position(|p| p.id == dead).expect("dead proc");
    let (dead_id, dead_addr, dead_kv) = procs.remove(idx).kill().await;

    for &g in &GROUPS {
        let leader = leader_of(&procs, g).await;
        assert_ne!(leader, dead_id, "{g} still led by a dead node");
        let ledger = ledgers.get_mut(&g).expect("ledger");
        for i in 0..10 {
            // Alternate the entry replica so both forwarding and local writes happen.
            let p = &procs[i % procs.len()];
            let data = format!("{g}-b{i}").into_bytes();
            ledger.record(data.clone(), forward_write(p.group(g), data).await);
        }
    }

    // Phase 3: the dead process restarts on the same store and address and catches up.
    let listener = bind(Some(dead_addr)).await;
    procs.push(start_proc(dead_id, listener, dead_kv, &GROUPS).await);
    for &g in &GROUPS {
        let leader = leader_of(&procs, g).await;
        let lp = procs.iter().find(|p| p.id == leader).expect("leader proc");
        let items = linearizable_items(lp.group(g)).await;
        ledgers[&g].check(&items);
        assert!(items.len() >= 22, "{g}: {} items", items.len());
        converged(&procs, g, &items).await;
    }
    // And the restarted replica can write again (forwarding if it does not lead).
    let back = procs.last().expect("restarted");
    assert_eq!(back.id, dead_id);
    let resp = back
        .group(g0)
        .write(b"after-restart".to_vec())
        .await
        .expect("write after restart");
    assert!(AppendLog::position(&resp).is_some());

    for p in procs {
        p.kill().await;
    }
}

/// A single-member group served over gRPC, plus a raw client.
async fn lone_node() -> (Proc, RaftTransportClient<tonic::transport::Channel>) {
    let listener = bind(None).await;
    let addr = listener.local_addr().expect("addr");
    let p = start_proc(7, listener, MemStore::new(), &[GroupId(1)]).await;
    p.group(GroupId(1))
        .initialize([(7, addr.to_string())].into_iter().collect())
        .await
        .expect("initialize");
    p.group(GroupId(1))
        .wait_for_leader(WAIT)
        .await
        .expect("leader");
    let client = RaftTransportClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    (p, client)
}

fn req(group: u64, to: u64, kind: i32, payload: &[u8]) -> pb::RaftRequest {
    pb::RaftRequest {
        group,
        from_node: 99,
        to_node: to,
        kind,
        payload: payload.to_vec(),
    }
}

async fn expect_status(
    client: &mut RaftTransportClient<tonic::transport::Channel>,
    r: pb::RaftRequest,
    code: Code,
) {
    let what = format!("{r:?}");
    let status = client.call(r).await.expect_err("refused");
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(
        status.metadata().contains_key(REJECTED_METADATA_KEY),
        "{what}: status not marked as a rejection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_misaddressed_requests_get_documented_statuses() {
    let (p, mut client) = lone_node().await;
    let append = i32::from(RpcKind::AppendEntries.as_u8());
    let write = i32::from(RpcKind::ClientWrite.as_u8());

    // Misaddressed: another node's id.
    expect_status(&mut client, req(1, 8, append, &[]), Code::InvalidArgument).await;
    // Unknown or missing kind.
    expect_status(&mut client, req(1, 7, 0, &[]), Code::InvalidArgument).await;
    expect_status(&mut client, req(1, 7, 99, &[]), Code::InvalidArgument).await;
    expect_status(&mut client, req(1, 7, -1, &[]), Code::InvalidArgument).await;
    // Payloads that do not decode for their kind.
    for kind in RpcKind::ALL {
        let k = i32::from(kind.as_u8());
        expect_status(&mut client, req(1, 7, k, &[]), Code::InvalidArgument).await;
        expect_status(&mut client, req(1, 7, k, &[0xff; 9]), Code::InvalidArgument).await;
    }
    // A group this node does not host.
    expect_status(&mut client, req(2, 7, append, &[0xff]), Code::NotFound).await;
    expect_status(&mut client, req(2, 7, write, &[]), Code::NotFound).await;

    // Nothing of that reached the log.
    let items = linearizable_items(p.group(GroupId(1))).await;
    assert!(items.is_empty());

    // The client side maps the refusals to `Remote` (never delivered to the group) and a
    // closed port to `Unreachable`.
    let t = GrpcTransport::new(99, GrpcConfig::default());
    let r = t
        .send(8, &p.addr.to_string(), GroupId(1), RpcKind::Vote, vec![])
        .await;
    assert!(matches!(r, Err(TransportError::Remote(_))), "{r:?}");
    let r = t
        .send(7, &p.addr.to_string(), GroupId(2), RpcKind::Vote, vec![])
        .await;
    assert!(matches!(r, Err(TransportError::Remote(_))), "{r:?}");
    let closed = bind(None).await.local_addr().expect("addr"); // listener dropped: closed
    let r = t
        .send(7, &closed.to_string(), GroupId(1), RpcKind::Vote, vec![])
        .await;
    assert!(matches!(r, Err(TransportError::Unreachable(_))), "{r:?}");
    let r = t
        .send(7, "https://127.0.0.1:1", GroupId(1), RpcKind::Vote, vec![])
        .await;
    assert!(matches!(r, Err(TransportError::Unreachable(_))), "{r:?}");

    // A node that is gone while its server still runs answers UNAVAILABLE.
    let Proc {
        node,
        groups,
        stop,
        server,
        ..
    } = p;
    node.shutdown().await;
    drop(groups);
    drop(node);
    expect_status(&mut client, req(1, 7, append, &[]), Code::Unavailable).await;
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    tokio::time::timeout(WAIT, server)
        .await
        .expect("server stops")
        .expect("server task")
        .expect("server");
}
