//! The transport seam: every Raft RPC of every group goes through one narrow,
//! byte-oriented [`RaftTransport`], so the gRPC transport ([`crate::grpc`]) and the
//! in-process test network are interchangeable.
//!
//! Client side: openraft-multi's `GroupNetworkAdapter` binds (target node, group) to a
//! shared router; our router ([`TransportRouter`]) encodes each typed openraft request with
//! postcard and calls [`RaftTransport::send`]. Server side: whatever receives
//! `(group, kind, bytes)` hands it to [`RaftNode::handle_rpc`](crate::RaftNode::handle_rpc),
//! which decodes, dispatches to the group's `Raft`, and returns the encoded response.
//! Malformed bytes produce an error ([`Rejected`]), never a panic. Forwarded application
//! writes ([`RpcKind::ClientWrite`]) travel the same way.
//!
//! # Snapshot transfer
//!
//! A snapshot ([`SnapshotData`], kept in the sender's store) is sent as consecutive
//! [`RpcKind::SnapshotChunk`] messages of at most `snapshot_chunk_bytes` (openraft's
//! `snapshot_max_chunk_size`, set from [`RaftTuning::snapshot_chunk_bytes`], 4 MiB by
//! default), read from the store one piece at a time. Each message carries the sender's
//! vote, the snapshot's metadata, the byte offset of the piece and the total length. The
//! receiver stages pieces in its own store (space `RaftLog`, tag `u` of the group), in
//! order: a piece at offset 0 starts a new transfer (dropping any earlier staging), any
//! other piece must continue the transfer in progress (same vote, metadata and total, at
//! the expected offset) or is answered `Mismatch`, which fails the send; openraft then
//! retries the whole snapshot later. The piece that completes the length makes the
//! receiver install the staged bytes (`Raft::install_full_snapshot`, which checks the
//! vote) and answer with openraft's `SnapshotResponse`. Neither side holds the whole
//! snapshot in memory. Non-final pieces are bounded by openraft's
//! `install_snapshot_timeout` ([`RaftTuning::snapshot_chunk_timeout`]); the final one,
//! which includes the install, by [`RaftTuning::snapshot_install_timeout`].
//!
//! [`RaftTuning::snapshot_chunk_bytes`]: crate::RaftTuning::snapshot_chunk_bytes
//! [`RaftTuning::snapshot_chunk_timeout`]: crate::RaftTuning::snapshot_chunk_timeout
//! [`RaftTuning::snapshot_install_timeout`]: crate::RaftTuning::snapshot_install_timeout

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Raft};
use openraft_multi::{GroupNetworkAdapter, GroupRouter};
use serde::{Deserialize, Serialize};

use crate::state_machine::{SnapshotData, StateMachine, StateMachineLogic, read_full};
use crate::types::{
    GroupId, Node, NodeId, RaftSnapshot, SnapshotMeta, TypeConfig, Vote, decode, encode,
};

/// A boxed, sendable future (keeps [`RaftTransport`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which Raft RPC a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum RpcKind {
    /// AppendEntries (also heartbeats).
    AppendEntries = 1,
    /// RequestVote.
    Vote = 2,
    /// Pre-vote.
    PreVote = 3,
    /// A whole snapshot in one message (accepted from older senders; this crate sends
    /// [`RpcKind::SnapshotChunk`]s).
    FullSnapshot = 4,
    /// Leadership transfer notice.
    TransferLeader = 5,
    /// An application write forwarded by a replica to the leader it knows
    /// ([`RaftGroup::write`](crate::RaftGroup::write)). The reply says "applied" (with
    /// the state machine's response), "not the leader" (with a leader hint), or why it
    /// failed; see [`RaftGroup::write`](crate::RaftGroup::write) for the semantics.
    ClientWrite = 6,
    /// One piece of a snapshot transfer: the leader streams a snapshot as consecutive
    /// pieces of at most [`RaftTuning::snapshot_chunk_bytes`](crate::RaftTuning) bytes;
    /// the receiver stages them in its store and installs the snapshot when the last
    /// piece arrives (see [`crate::network`] docs, "Snapshot transfer").
    SnapshotChunk = 7,
}

impl RpcKind {
    /// The wire tag.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
    /// Every kind, in tag order.
    pub const ALL: [RpcKind; 7] = [
        Self::AppendEntries,
        Self::Vote,
        Self::PreVote,
        Self::FullSnapshot,
        Self::TransferLeader,
        Self::ClientWrite,
        Self::SnapshotChunk,
    ];
    /// Parse a wire tag.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::AppendEntries,
            2 => Self::Vote,
            3 => Self::PreVote,
            4 => Self::FullSnapshot,
            5 => Self::TransferLeader,
            6 => Self::ClientWrite,
            7 => Self::SnapshotChunk,
            _ => return None,
        })
    }
}

/// A transport failure. The variant decides how openraft backs off.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The target cannot be reached (down, partitioned, no route): back off.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No reply within the deadline.
    #[error("timed out")]
    Timeout,
    /// A transient failure: retry soon.
    #[error("network: {0}")]
    Network(String),
    /// The target received the message but could not process it (unknown group, stopped
    /// group, malformed bytes).
    #[error("remote: {0}")]
    Remote(String),
}

/// Why a node refused an incoming RPC before it reached the group's Raft: the
/// server-side counterpart of [`TransportError::Remote`]. A rejected request changed
/// nothing (in particular, a rejected forwarded write was not proposed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// This node does not host the group (gRPC `NOT_FOUND`).
    UnknownGroup,
    /// The node or group is starting, shutting down or stopped (gRPC `UNAVAILABLE`).
    Unavailable,
    /// The request is malformed or misaddressed: unknown kind, undecodable payload,
    /// wrong target node (gRPC `INVALID_ARGUMENT`).
    Malformed,
}

/// A refused incoming RPC ([`RaftNode::serve_rpc`](crate::RaftNode::serve_rpc)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rejected ({reason:?}): {detail}")]
pub struct Rejected {
    /// The class of refusal (decides the gRPC status).
    pub reason: RejectReason,
    /// Human-readable detail.
    pub detail: String,
}

impl Rejected {
    pub(crate) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<Rejected> for TransportError {
    fn from(r: Rejected) -> Self {
        TransportError::Remote(r.to_string())
    }
}

/// Sends one Raft RPC to `(target, group)` and returns the response bytes.
///
/// Implementations must be safe to call concurrently; one instance serves every group of
/// a node. `addr` is the target's address from the group membership.
pub trait RaftTransport: Send + Sync + 'static {
    /// Deliver `payload` and await the reply.
    fn send(
        &self,
        target: NodeId,
        addr: &str,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// A whole snapshot in one message ([`RpcKind::FullSnapshot`], older senders).
#[derive(Deserialize)]
pub(crate) struct SnapshotRpc {
    pub(crate) vote: Vote,
    pub(crate) meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

/// One piece of a snapshot transfer ([`RpcKind::SnapshotChunk`] request payload).
#[derive(Serialize)]
struct SnapshotChunkRef<'a> {
    vote: &'a Vote,
    meta: &'a SnapshotMeta,
    offset: u64,
    total: u64,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

/// See [`SnapshotChunkRef`].
#[derive(Deserialize)]
pub(crate) struct SnapshotChunk {
    pub(crate) vote: Vote,
    pub(crate) meta: SnapshotMeta,
    pub(crate) offset: u64,
    pub(crate) total: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

/// The answer to a [`RpcKind::SnapshotChunk`]. Postcard encodes the variant by
/// position: append new variants at the end only.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SnapshotChunkReply {
    /// Staged; send the next piece.
    Ack,
    /// The last piece: the snapshot was installed (or refused by vote); openraft's reply.
    Done(openraft::raft::SnapshotResponse<TypeConfig>),
    /// The piece does not continue the transfer in progress: start over.
    Mismatch(String),
}

/// openraft-multi `GroupRouter` over a [`RaftTransport`]; one clone per target binds the
/// target's address.
#[derive(Clone)]
pub struct TransportRouter {
    transport: Arc<dyn RaftTransport>,
    from: NodeId,
    addr: Arc<str>,
    /// Deadline of the last snapshot piece (it includes the install).
    install_timeout: Duration,
    /// Where snapshot reads run (the node's [`crate::IoMode`]).
    io: crate::IoMode,
}

impl TransportRouter {
    fn bind(&self, addr: &str) -> Self {
        Self {
            transport: Arc::clone(&self.transport),
            from: self.from,
            addr: Arc::from(addr),
            install_timeout: self.install_timeout,
            io: self.io,
        }
    }

    async fn call(
        &self,
        target: NodeId,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let fut = self
            .transport
            .send(target, &self.addr, group, kind, payload);
        match tokio::time::timeout(ttl, fut).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout),
        }
    }

    fn rpc_error(
        &self,
        target: NodeId,
        action: RPCTypes,
        ttl: Duration,
        e: TransportError,
    ) -> RPCError<TypeConfig> {
        match e {
            TransportError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.from,
                target,
                timeout: ttl,
            }),
            TransportError::Network(m) => RPCError::Network(NetworkError::from_string(m)),
            // A remote that cannot process the call (e.g. the group is not started there
            // yet) is treated like an unreachable one: back off and retry.
            TransportError::Unreachable(m) | TransportError::Remote(m) => {
                RPCError::Unreachable(Unreachable::from_string(m))
            }
        }
    }

    async fn unary<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        target: NodeId,
        group: GroupId,
        kind: RpcKind,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let ttl = option.soft_ttl();
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let bytes = self
            .call(target, group, kind, payload, ttl)
            .await
            .map_err(|e| self.rpc_error(target, action, ttl, e))?;
        decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl TransportRouter {
    fn streaming_error(
        &self,
        target: NodeId,
        ttl: Duration,
        e: TransportError,
    ) -> StreamingError<TypeConfig> {
        match self.rpc_error(target, RPCTypes::InstallSnapshot, ttl, e) {
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::RemoteError(r) => StreamingError::Unreachable(Unreachable::from_string(r)),
        }
    }

    /// Stream `snapshot` to `target` as [`RpcKind::SnapshotChunk`] pieces (module docs).
    async fn send_snapshot(
        &self,
        target: NodeId,
        group: GroupId,
        vote: Vote,
        snapshot: RaftSnapshot,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let net_err = |m: String| StreamingError::Network(NetworkError::from_string(m));
        let piece = option
            .snapshot_chunk_size()
            .unwrap_or(crate::group::DEFAULT_SNAPSHOT_CHUNK_BYTES)
            .max(1);
        let total = snapshot.snapshot.len();
        let meta = snapshot.meta;
        let mut reader = Some(snapshot.snapshot.reader());
        let mut offset = 0u64;
        loop {
            let want = usize::try_from(total - offset)
                .unwrap_or(usize::MAX)
                .min(piece);
            // Store reads are blocking: one piece at a time on the blocking pool.
            let Some(mut r) = reader.take() else {
                return Err(net_err("snapshot reader lost".into()));
            };
            let (r, data) = crate::log_store::run_io(self.io, move || {
                let mut buf = vec![0u8; want];
                let n = read_full(&mut r, &mut buf);
                Ok((
                    r,
                    n.map(|n| {
                        buf.truncate(n);
                        buf
                    }),
                ))
            })
            .await
            .map_err(|e| net_err(format!("snapshot read task: {e}")))?;
            reader = Some(r);
            let data = data.map_err(|e| net_err(format!("read snapshot: {e}")))?;
            if data.len() != want {
                return Err(net_err("snapshot shorter than its length".into()));
            }
            let last = offset + data.len() as u64 == total;
            let payload = encode(&SnapshotChunkRef {
                vote: &vote,
                meta: &meta,
                offset,
                total,
                data: &data,
            })
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            drop(data);
            let ttl = if last {
                self.install_timeout.max(option.hard_ttl())
            } else {
                option.hard_ttl()
            };
            let bytes = self
                .call(target, group, RpcKind::SnapshotChunk, payload, ttl)
                .await
                .map_err(|e| self.streaming_error(target, ttl, e))?;
            let reply: SnapshotChunkReply =
                decode(&bytes).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            match reply {
                SnapshotChunkReply::Done(resp) => return Ok(resp),
                SnapshotChunkReply::Ack if !last => offset += want as u64,
                SnapshotChunkReply::Ack => {
                    return Err(net_err("receiver did not install the snapshot".into()));
                }
                SnapshotChunkReply::Mismatch(m) => {
                    return Err(net_err(format!("snapshot transfer restarted: {m}")));
                }
            }
        }
    }
}

impl GroupRouter<TypeConfig, GroupId> for TransportRouter {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &self,
        target: NodeId,
        group_id: GroupId,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            target,
            group_id,
            RpcKind::AppendEntries,
            RPCTypes::AppendEntries,
            &rpc,
            &option,
        )
        .await
    }

    async fn vote(
        &self,
        target: NodeId,
        group_id: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            target,
            group_id,
            RpcKind::Vote,
            RPCTypes::Vote,
            &rpc,
            &option,
        )
        .await
    }

    async fn pre_vote(
        &self,
        target: NodeId,
        group_id: GroupId,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            target,
            group_id,
            RpcKind::PreVote,
            RPCTypes::Vote,
            &rpc,
            &option,
        )
        .await
    }

    async fn full_snapshot(
        &self,
        target: NodeId,
        group_id: GroupId,
        vote: Vote,
        snapshot: RaftSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = self.send_snapshot(target, group_id, vote, snapshot, option);
        tokio::select! {
            // Polled in order, not at random: a simulation seed replays exactly.
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => r,
        }
    }

    async fn transfer_leader(
        &self,
        target: NodeId,
        group_id: GroupId,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(
            target,
            group_id,
            RpcKind::TransferLeader,
            RPCTypes::TransferLeader,
            &req,
            &option,
        )
        .await
    }
}

/// The per-group `RaftNetworkFactory`: every group of a node shares the node's transport.
pub struct NetworkFactory {
    router: TransportRouter,
    group: GroupId,
}

impl NetworkFactory {
    pub(crate) fn new(
        transport: Arc<dyn RaftTransport>,
        from: NodeId,
        group: GroupId,
        install_timeout: Duration,
        io: crate::IoMode,
    ) -> Self {
        Self {
            router: TransportRouter {
                transport,
                from,
                addr: Arc::from(""),
                install_timeout,
                io,
            },
            group,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetworkAdapter<TypeConfig, GroupId, TransportRouter>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        GroupNetworkAdapter::new(self.router.bind(&node.addr), target, self.group)
    }
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Rejected {
    Rejected::new(RejectReason::Malformed, format!("{what}: {e}"))
}

fn stopped(e: impl std::fmt::Display) -> Rejected {
    // The only errors these openraft calls return are fatal ones: the group stopped.
    Rejected::new(RejectReason::Unavailable, format!("raft: {e}"))
}

/// A forwarded application write ([`RpcKind::ClientWrite`] request payload).
#[derive(Serialize)]
pub(crate) struct ClientWriteRpcRef<'a> {
    #[serde(with = "serde_bytes")]
    pub(crate) data: &'a [u8],
}

/// See [`ClientWriteRpcRef`].
#[derive(Deserialize)]
pub(crate) struct ClientWriteRpc {
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

/// The answer to a forwarded write ([`RpcKind::ClientWrite`] reply payload). Postcard
/// encodes the variant by position: append new variants at the end only.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ClientWriteReply {
    /// Committed and applied on the leader; the state machine's response.
    Applied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The receiver is not the leader; it was not proposed. Leader hint, if known.
    NotLeader {
        leader: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// Refused as too large; not proposed.
    TooLarge { size: u64, limit: u64 },
    /// Proposed, but the outcome is unknown (leadership lost before commit).
    Indeterminate(String),
    /// The receiver's group stopped during the call: the outcome is unknown.
    Stopped(String),
    /// Any other failure; treated as an unknown outcome.
    Failed(String),
}

/// Server side: decode `payload`, run it on `raft`, encode the reply. (Forwarded writes
/// are handled by the group, which knows its payload limit.)
pub(crate) async fn serve<L: StateMachineLogic>(
    raft: &Raft<TypeConfig, StateMachine<L>>,
    kind: RpcKind,
    payload: &[u8],
    contact: &crate::group::LeaderContact,
) -> Result<Vec<u8>, Rejected> {
    let out = match kind {
        RpcKind::AppendEntries => {
            let req: AppendEntriesRequest<TypeConfig> =
                decode(payload).map_err(|e| malformed("decode append-entries", e))?;
            let leader_committed = req.leader_commit.as_ref().map(|l| l.index());
            let resp = raft.append_entries(req).await.map_err(stopped)?;
            // Any answer but "your term is over" means a current leader reached us.
            if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
                contact.touch(leader_committed);
            }
            encode(&resp)
        }
        RpcKind::Vote => {
            let req: VoteRequest<TypeConfig> =
                decode(payload).map_err(|e| malformed("decode vote", e))?;
            let resp = raft.vote(req).await.map_err(stopped)?;
            encode(&resp)
        }
        RpcKind::PreVote => {
            let req: VoteRequest<TypeConfig> =
                decode(payload).map_err(|e| malformed("decode pre-vote", e))?;
            let resp = raft.pre_vote(req).await.map_err(stopped)?;
            encode(&resp)
        }
        RpcKind::TransferLeader => {
            let req: TransferLeaderRequest<TypeConfig> =
                decode(payload).map_err(|e| malformed("decode transfer-leader", e))?;
            let resp = raft.handle_transfer_leader(req).await.map_err(stopped)?;
            encode(&resp)
        }
        RpcKind::ClientWrite | RpcKind::FullSnapshot | RpcKind::SnapshotChunk => {
            return Err(Rejected::new(
                RejectReason::Unavailable,
                "client writes and snapshots are served by the group",
            ));
        }
    };
    // Encoding our own reply cannot fail on valid values; report it rather than panic.
    out.map_err(|e| Rejected::new(RejectReason::Unavailable, format!("encode reply: {e}")))
}
