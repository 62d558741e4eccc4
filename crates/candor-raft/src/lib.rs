//! Raft groundwork for Candor: the generic plumbing under every shard group and the
//! sequencer group. Many groups run per process ("multi-Raft") and share one log store,
//! one syncer thread and one transport.
//!
//! # Pieces
//!
//! * [`TypeConfig`]: openraft types (`u64` node ids, [`openraft::BasicNode`] addresses,
//!   opaque byte [`Request`]s and [`Response`]s).
//! * [`GroupLogStore`] (via [`LogDb`]): openraft `RaftLogStorage` (storage API v2) over a
//!   `candor_store::Store` (space `RaftLog`), keys prefixed by group id. Entries are
//!   postcard-encoded.
//!   An append is one store batch; it is acknowledged to openraft only after a sync, and one
//!   background syncer turns concurrent appends (of every group) into one fsync
//!   (group commit). See [`log_store`] for the exact durability argument.
//! * [`StateMachineLogic`]: the narrow, synchronous trait the shard and sequencer
//!   implement; [`StateMachine`] is the openraft `RaftStateMachine` driving it in batches.
//!   Snapshots are byte *streams* (`snapshot() -> Read`, `restore(&mut dyn Read)`), kept
//!   in the store in 64 KiB chunks ([`SnapshotData`] is a handle, never the whole
//!   snapshot in memory), sent to followers in pieces ([`RpcKind::SnapshotChunk`]) and
//!   installed with a crash-safe protocol (see the `state_machine` docs on
//!   [`StateMachine`]). [`store_snapshot`] is the record-stream format for logics whose
//!   state lives in a `candor_store::Store`.
//! * Test doubles, behind the `test-util` feature: `CrashStore` (an in-memory store
//!   that models power loss) and `testing::AppendLog` (a minimal state machine).
//! * [`RaftTransport`]: the byte-level seam for RPCs (`send(target, addr, group, kind,
//!   bytes)`); [`RaftNode::handle_rpc`] / [`RaftNode::serve_rpc`] is the server side.
//!   [`InProcessNetwork`] implements it for tests and `candor dev`, with seeded fault
//!   injection; [`grpc`] implements it between processes.
//! * [`RaftNode`] hosts groups; [`RaftGroup`] is the per-group handle: `write` (from any
//!   replica), `client_write` (leader only), `ensure_linearizable`, leader, metrics,
//!   membership changes.
//!
//! # Example: one node, one group (the `candor dev` shape)
//!
//! ```no_run
//! use std::sync::Arc;
//! use candor_raft::{GroupId, InProcessNetwork, RaftNode, RaftNodeConfig, testing::AppendLog};
//! use candor_store::{FjallStore, Store};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn Store> = Arc::new(FjallStore::open("/var/lib/candor")?);
//! let net = InProcessNetwork::new(0);
//! let node = RaftNode::new(RaftNodeConfig::new(1, "local"), Arc::clone(&store), net.endpoint(1))?;
//! net.register(&node);
//! let logic = AppendLog::open(Arc::clone(&store), b"shard/0/")?;
//! let members = [(1, "local".to_string())].into_iter().collect();
//! let group = node.create_group(GroupId(0), logic, members).await?;
//! let response = group.client_write(b"mutation".to_vec()).await?;
//! group.ensure_linearizable().await?;
//! let n = group.read(|log| log.items().len()).await?;
//! # let _ = (response, n);
//! # Ok(()) }
//! ```
//!
//! # Writing through any replica (leader forwarding)
//!
//! Only a group's leader may propose. [`RaftGroup::client_write`] fails with
//! [`Error::ForwardToLeader`] elsewhere; [`RaftGroup::write`] instead proposes locally
//! when this node leads and otherwise forwards the write to the leader it knows, as an
//! [`RpcKind::ClientWrite`] RPC over the same transport as Raft's own messages. The
//! leader runs `client_write` and answers with the state machine's response or with
//! "not the leader" plus its own leader hint (id and address), which the sender follows.
//! While no leader is known the sender backs off briefly (10 ms doubling to 200 ms). The
//! whole call, redirects and elections included, is bounded by
//! [`RaftTuning::forward_timeout`] (5 s by default).
//!
//! Exactly-once is the caller's business, by design. `write` retries only attempts that
//! provably never reached a group (redirects, unreachable targets, requests refused
//! before dispatch). A forwarded write whose reply is lost or late may have been
//! committed, and is reported as [`Error::Indeterminate`], never retried here. A caller
//! that retries it must make the retry idempotent: the shard publisher does, through
//! per-tenant idempotency keys (a retry with the same key lands once). `Ok` means the
//! entry was committed and applied on the leader exactly once for this call;
//! [`Error::Timeout`] means it was not proposed.
//!
//! # gRPC transport (cluster mode)
//!
//! [`grpc::GrpcTransport`] sends every RPC as one unary call of
//! `candor.raft.v1.RaftTransport/Call` (`proto/candor/v1/raft.proto`), over one lazily
//! connected HTTP/2 channel per peer address shared by all groups, with per-kind
//! deadlines (snapshots get longer) and a 64 MiB default message limit (snapshots travel
//! in pieces of 4 MiB by default: see "Snapshots" below). [`grpc::raft_service`] / [`grpc::serve`] run the server side,
//! which refuses misaddressed, malformed or unroutable requests with documented statuses
//! (see [`grpc`]). Addresses are `host:port` or `http://host:port`.
//!
//! **TLS is optional**: by default the transport is plaintext and unauthenticated, so its
//! port must be reachable only by the cluster's nodes. With
//! [`GrpcConfig::tls`](grpc::GrpcConfig::tls) set it is mutual TLS, and the server checks
//! that each request's `from_node` is the node named by the client certificate (SAN URI
//! `candor-node://<id>`; see [`tls`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use candor_raft::grpc::{self, GrpcConfig, GrpcTransport};
//! use candor_raft::{RaftNode, RaftNodeConfig};
//! use candor_store::{FjallStore, Store};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn Store> = Arc::new(FjallStore::open("/var/lib/candor")?);
//! let config = GrpcConfig::default();
//! let transport = Arc::new(GrpcTransport::new(1, config.clone()));
//! let node = RaftNode::new(RaftNodeConfig::new(1, "10.0.0.1:7100"), store, transport)?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:7100").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(grpc::serve(&node, &config, listener, async {
//!     let _ = stopped.await;
//! }));
//! // ... start groups; group.write(bytes) from any replica ...
//! node.shutdown().await;
//! let _ = stop.send(());
//! server.await??;
//! # Ok(()) }
//! ```
//!
//! # Snapshots
//!
//! * **Format**: whatever the logic's stream holds; store-backed logics use
//!   [`store_snapshot`] (magic, `(space, key, value)` records of listed key ranges from
//!   one consistent store view, record count and BLAKE3 digest at the end).
//! * **Storage**: the group's current snapshot lives in its log store (space `RaftLog`,
//!   tags `s`/`t`) as 64 KiB chunks under a generation number and a header; a new one is
//!   written under a fresh generation before the header switches, so a crash leaves the
//!   old or the new one. [`SnapshotData`] reads it through a consistent store view.
//! * **Transfer**: the leader streams it as [`RpcKind::SnapshotChunk`] pieces of at most
//!   [`RaftTuning::snapshot_chunk_bytes`] (4 MiB). Each piece carries the vote, the
//!   snapshot metadata, its offset and the total length; the receiver stages pieces in
//!   order in its store (tag `u`): offset 0 starts a transfer, anything that does not
//!   continue the current one is answered "mismatch" and the sender starts over later.
//!   The piece that completes the length triggers the install; its reply is openraft's
//!   snapshot response. Deadlines: [`RaftTuning::snapshot_chunk_timeout`] per piece,
//!   [`RaftTuning::snapshot_install_timeout`] for the last one. [`RpcKind::FullSnapshot`]
//!   (one message) is still accepted from older senders.
//! * **Install**: (1) the staged bytes become the group's current snapshot (copied to a
//!   new generation, synced), (2) then [`StateMachineLogic::restore`] runs. A logic must
//!   make a crash during (2) look like "no state / marker older than the snapshot":
//!   on restart openraft sees the stored snapshot ahead of the state machine and
//!   installs it again before applying anything.
//!
//! # Why openraft 0.10 (pinned `=0.10.0-alpha.37`) rather than 0.9
//!
//! Chosen after reading both APIs; 0.10 is workable and fits better:
//!
//! * **Multi-Raft**: `openraft-multi` (same release) provides `GroupRouter` /
//!   `GroupNetworkAdapter`, so every group shares one router/connection pool keyed by
//!   (node, group). With 0.9 we would write that adapter ourselves.
//! * **Batched apply with per-entry responders**: 0.10's `RaftStateMachine::apply` takes a
//!   stream of `(entry, responder)`, so the adapter applies a whole batch in one logic call
//!   (one store transaction) and answers each client. 0.9 hands a batch too but returns a
//!   `Vec` of responses and has no `client_write_many`.
//! * **Snapshot data type per state machine** (`RaftStateMachine::SnapshotData`) and
//!   `Raft<C, SM>`: shard and sequencer can share one `TypeConfig` with different state
//!   machines, and `with_state_machine` is typed.
//! * Pre-vote, `wait_for_recovery`, `ensure_linearizable` returning the read log id, and
//!   `IOFlushed` callbacks whose watermark semantics we rely on for group commit.
//!
//! Cost: it is an alpha, so the pin is exact (`=`) and upgrades are deliberate; the
//! openraft storage conformance suite (`openraft::testing::log::Suite`) runs in this
//! crate's tests to catch contract drift on upgrade.
//!
//! # Durability contract (summary)
//!
//! A write acknowledged by [`RaftGroup::client_write`] is applied on the leader, which
//! requires the entry to be in a quorum's logs; each replica acknowledges its log only
//! after a sync of its store, so an acknowledged mutation survives any minority of crashes.
//! Votes are synced before `save_vote` returns.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod exactly_once;
#[doc(hidden)]
pub mod fuzz;
mod group;
pub mod grpc;
mod in_process;
#[cfg(feature = "test-util")]
pub mod kv;
pub mod log_store;
mod network;
pub mod sim;
mod state_machine;
pub mod step_aside;
pub mod store_snapshot;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tls;
mod types;

pub use error::Error;
pub use group::{
    DEFAULT_KEY_PREFIX, DEFAULT_SNAPSHOT_CHUNK_BYTES, GroupMetrics, RaftGroup, RaftNode,
    RaftNodeConfig, RaftTuning, RemoteGroup, WeakRaftNode,
};
pub use grpc::{GrpcConfig, GrpcRaftServer, GrpcTransport};
pub use in_process::{FaultConfig, FaultHook, InProcessNetwork, MessageInfo, NetStats, Verdict};
#[cfg(feature = "test-util")]
pub use kv::{CrashStore, crash_store};
pub use log_store::{GroupLogStore, IoMode, LogDb};
pub use network::{
    BoxFuture, NetworkFactory, RaftTransport, RejectReason, Rejected, RpcKind, TransportError,
    TransportRouter,
};
pub use openraft;
pub use openraft::ServerState;
/// The RNG crate the fault hooks draw from (re-exported so hooks name the same types).
pub use rand;
pub use state_machine::{
    APPLY_CHUNK, AppliedState, ApplyBatch, CommittedEntry, SnapshotBuilder, SnapshotData,
    SnapshotReader, StateMachine, StateMachineLogic,
};
pub use types::{
    CodecError, Entry, GroupId, LogId, Node, NodeId, RaftSnapshot, Request, Response, SnapshotMeta,
    StoredMembership, TypeConfig, Vote,
};
