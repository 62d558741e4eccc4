//! An in-process [`RaftTransport`]: nodes in one process talk through a router keyed by
//! node id, with fault injection for tests. Messages are still encoded to bytes and
//! decoded on the far side, so the codec path is exercised exactly as over gRPC.
//!
//! Faults (dropped requests, dropped replies, delays) are drawn from one RNG seeded by the
//! test, consulted in message order under a lock; partitions and isolation are explicit.
//! On a multi-threaded runtime task scheduling is not deterministic: a seed replays the
//! same fault *policy* and usually the same interleaving. On a current-thread runtime with
//! a paused clock, nodes in [`crate::IoMode::Inline`] and the thread seeded
//! ([`crate::sim`]), a seed replays the exact interleaving (`tests/simulation.rs`). Print
//! the seed on failure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::group::{RaftNode, WeakRaftNode};
use crate::network::{BoxFuture, RaftTransport, RpcKind, TransportError};
use crate::types::{GroupId, NodeId};

/// Random fault rates applied to every message not otherwise decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Probability a request is lost before delivery.
    pub drop_request: f64,
    /// Probability a reply is lost after the request was processed.
    pub drop_response: f64,
    /// Delivery delay is uniform in `[min_delay, max_delay]`.
    pub min_delay: Duration,
    /// See `min_delay`.
    pub max_delay: Duration,
}

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver after `delay`.
    Deliver {
        /// Delivery delay.
        delay: Duration,
    },
    /// Lose the request (the target never sees it).
    DropRequest,
    /// Deliver after `delay`, then lose the reply.
    DropResponse {
        /// Delivery delay.
        delay: Duration,
    },
}

/// Describes a message to a [`FaultHook`].
#[derive(Clone, Copy, Debug)]
pub struct MessageInfo {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Group.
    pub group: GroupId,
    /// RPC kind.
    pub kind: RpcKind,
    /// Payload size in bytes.
    pub len: usize,
}

/// Custom per-message fault decisions. Returning `None` falls back to [`FaultConfig`].
pub trait FaultHook: Send + Sync + 'static {
    /// Decide the fate of `msg`, drawing randomness only from `rng`.
    fn decide(&self, msg: &MessageInfo, rng: &mut StdRng) -> Option<Verdict>;
}

/// Message counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Requests handed to the target.
    pub delivered: u64,
    /// Requests lost (including partitions and unknown targets).
    pub dropped_requests: u64,
    /// Replies lost.
    pub dropped_responses: u64,
}

struct Faults {
    rng: StdRng,
    config: FaultConfig,
    hook: Option<Arc<dyn FaultHook>>,
    cut: HashSet<(NodeId, NodeId)>,
    isolated: HashSet<NodeId>,
    stats: NetStats,
}

struct NetInner {
    seed: u64,
    nodes: RwLock<HashMap<NodeId, WeakRaftNode>>,
    faults: Mutex<Faults>,
}

/// The in-process router. Cloning is cheap.
#[derive(Clone)]
pub struct InProcessNetwork {
    inner: Arc<NetInner>,
}

impl InProcessNetwork {
    /// A network with no faults whose random decisions derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: Arc::new(NetInner {
                seed,
                nodes: RwLock::new(HashMap::new()),
                faults: Mutex::new(Faults {
                    rng: StdRng::seed_from_u64(seed),
                    config: FaultConfig::default(),
                    hook: None,
                    cut: HashSet::new(),
                    isolated: HashSet::new(),
                    stats: NetStats::default(),
                }),
            }),
        }
    }

    /// The seed this network was created with.
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.inner.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transport `node` sends through.
    pub fn endpoint(&self, node: NodeId) -> Arc<dyn RaftTransport> {
        Arc::new(Endpoint {
            from: node,
            net: Arc::clone(&self.inner),
        })
    }

    /// Make `node` reachable (replacing any earlier registration of its id).
    pub fn register(&self, node: &RaftNode) {
        self.inner
            .nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.id(), node.downgrade());
    }

    /// Make node `id` unreachable (as if its process died).
    pub fn unregister(&self, id: NodeId) {
        self.inner
            .nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Set random fault rates.
    pub fn set_faults(&self, config: FaultConfig) {
        self.faults().config = config;
    }

    /// Install (or remove) a custom fault hook.
    pub fn set_hook(&self, hook: Option<Arc<dyn FaultHook>>) {
        self.faults().hook = hook;
    }

    /// Cut every link between `a` and `b`, both directions.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let mut f = self.faults();
        for &x in a {
            for &y in b {
                f.cut.insert((x, y));
                f.cut.insert((y, x));
            }
        }
    }

    /// Cut `node` off from everyone.
    pub fn isolate(&self, node: NodeId) {
        self.faults().isolated.insert(node);
    }

    /// Remove every partition and isolation (random faults stay).
    pub fn heal(&self) {
        let mut f = self.faults();
        f.cut.clear();
        f.isolated.clear();
    }

    /// Message counters so far.
    pub fn stats(&self) -> NetStats {
        self.faults().stats
    }

    fn decide(&self, msg: &MessageInfo) -> Verdict {
        let mut f = self.faults();
        let f = &mut *f;
        let v = if f.isolated.contains(&msg.from)
            || f.isolated.contains(&msg.to)
            || f.cut.contains(&(msg.from, msg.to))
        {
            Verdict::DropRequest
        } else if let Some(v) = f.hook.as_ref().and_then(|h| h.decide(msg, &mut f.rng)) {
            v
        } else {
            let c = &f.config;
            let delay = if c.max_delay > c.min_delay {
                let span =
                    u64::try_from((c.max_delay - c.min_delay).as_micros()).unwrap_or(u64::MAX);
                c.min_delay + Duration::from_micros(f.rng.random_range(0..=span))
            } else {
                c.min_delay
            };
            if c.drop_request > 0.0 && f.rng.random_bool(c.drop_request.min(1.0)) {
                Verdict::DropRequest
            } else if c.drop_response > 0.0 && f.rng.random_bool(c.drop_response.min(1.0)) {
                Verdict::DropResponse { delay }
            } else {
                Verdict::Deliver { delay }
            }
        };
        match v {
            Verdict::DropRequest => f.stats.dropped_requests += 1,
            Verdict::DropResponse { .. } => {
                f.stats.delivered += 1;
                f.stats.dropped_responses += 1;
            }
            Verdict::Deliver { .. } => f.stats.delivered += 1,
        }
        v
    }
}

struct Endpoint {
    from: NodeId,
    net: Arc<NetInner>,
}

impl RaftTransport for Endpoint {
    fn send(
        &self,
        target: NodeId,
        _addr: &str,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let net = InProcessNetwork {
            inner: Arc::clone(&self.net),
        };
        let info = MessageInfo {
            from: self.from,
            to: target,
            group,
            kind,
            len: payload.len(),
        };
        Box::pin(async move {
            let verdict = net.decide(&info);
            let (delay, lose_reply) = match verdict {
                Verdict::DropRequest => {
                    return Err(TransportError::Unreachable(format!(
                        "message {}→{} dropped",
                        info.from, info.to
                    )));
                }
                Verdict::Deliver { delay } => (delay, false),
                Verdict::DropResponse { delay } => (delay, true),
            };
            // A message on the wire arrives even if its sender stops waiting for the
            // answer (openraft gives a heartbeat only a heartbeat interval): the
            // delivery runs on its own, the sender only waits for the reply.
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let node = net
                    .inner
                    .nodes
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&target)
                    .and_then(WeakRaftNode::upgrade);
                let reply = match node {
                    Some(node) => node.handle_rpc(group, kind, payload).await,
                    None => Err(TransportError::Unreachable(format!(
                        "node {target} is down"
                    ))),
                };
                let _ = tx.send(reply);
            });
            let reply = rx.await.unwrap_or(Err(TransportError::Timeout));
            if lose_reply {
                return Err(TransportError::Timeout);
            }
            reply
        })
    }
}
