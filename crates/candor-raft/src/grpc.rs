//! The gRPC transport between Candor nodes: service `candor.raft.v1.RaftTransport`
//! (`proto/candor/v1/raft.proto`), one unary `Call` per Raft RPC.
//!
//! * Client: [`GrpcTransport`] implements [`RaftTransport`]. One process has one, shared
//!   by all its groups; it keeps one lazily connected HTTP/2 [`Channel`] per target
//!   address, so every group's traffic to a peer multiplexes over one connection.
//! * Server: [`GrpcRaftServer`] implements the generated service trait and hands each
//!   request to [`RaftNode::serve_rpc`] through a [`WeakRaftNode`] (the server never keeps
//!   a stopped node alive). [`raft_service`] returns it wrapped, ready for
//!   `tonic::transport::Server::add_service`; [`serve`] runs a server for it alone on a
//!   `TcpListener`.
//!
//! # Addresses
//!
//! A node's address (its [`RaftNodeConfig::addr`](crate::RaftNodeConfig::addr), recorded in
//! every group membership) is `host:port` or `http://host:port`, where `host` is a DNS
//! name, an IPv4 address or a bracketed IPv6 address (`[::1]:7000`). `https://` is
//! refused: there is no TLS yet.
//!
//! # Security: no TLS yet
//!
//! The transport is plaintext HTTP/2 (h2c) without authentication. Anyone who can reach
//! the port can send Raft messages and forwarded writes to every group. Run it only on a
//! network reachable by the cluster's own nodes (e.g. a Kubernetes NetworkPolicy).
//! Mutual TLS between nodes (and the `UNAUTHENTICATED` status the proto reserves for it)
//! is future work.
//!
//! # Status mapping
//!
//! The server answers a request that did not reach the group with a non-OK status and
//! marks it with the metadata key [`REJECTED_METADATA_KEY`]:
//!
//! | condition                                         | status             |
//! |---------------------------------------------------|--------------------|
//! | node dropped / shutting down, group starting or stopped | `UNAVAILABLE` |
//! | group not hosted here                              | `NOT_FOUND`        |
//! | `to_node` is not this node, unknown `kind`, undecodable payload | `INVALID_ARGUMENT` |
//!
//! The client maps the outcome of a call to a [`TransportError`]:
//!
//! * a marked status, or one that proves non-delivery (`NOT_FOUND`, `INVALID_ARGUMENT`,
//!   `UNIMPLEMENTED`, `RESOURCE_EXHAUSTED` for an oversized message,
//!   `UNAUTHENTICATED`, `PERMISSION_DENIED`, `FAILED_PRECONDITION`) →
//!   [`TransportError::Remote`];
//! * a failure to connect → [`TransportError::Unreachable`] (nothing was sent);
//! * `DEADLINE_EXCEEDED` or the client-side deadline → [`TransportError::Timeout`];
//! * anything else (connection reset mid-call, unmarked `UNAVAILABLE`, `INTERNAL`, ...)
//!   → [`TransportError::Network`]: the request may have been processed.
//!
//! The distinction matters for forwarded writes: only `Remote` and `Unreachable` are
//! safe to retry blindly (see [`RaftGroup::write`](crate::RaftGroup::write)).

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Mutex;
use std::time::Duration;

use candor_proto::raft::v1 as pb;
use pb::raft_transport_client::RaftTransportClient;
use pb::raft_transport_server::{RaftTransport as RaftTransportService, RaftTransportServer};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::group::{RaftNode, WeakRaftNode};
use crate::network::{BoxFuture, RaftTransport, RejectReason, Rejected, RpcKind, TransportError};
use crate::types::{GroupId, NodeId};

/// Metadata key on every status the server returns for a request it refused before it
/// reached the group (value `"1"`).
pub const REJECTED_METADATA_KEY: &str = "candor-raft-rejected";

/// Default largest message, either direction: 64 MiB (snapshots travel in pieces of
/// [`RaftTuning::snapshot_chunk_bytes`](crate::RaftTuning::snapshot_chunk_bytes), 4 MiB
/// by default; older peers may still send a whole snapshot as one message).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Settings of the gRPC transport (client and server side).
#[derive(Clone, Debug)]
pub struct GrpcConfig {
    /// Bound on establishing a TCP + HTTP/2 connection.
    pub connect_timeout: Duration,
    /// Deadline of append-entries, vote, pre-vote and transfer-leader calls (openraft
    /// also applies its own, usually shorter, deadlines to them).
    pub rpc_timeout: Duration,
    /// Deadline of one snapshot piece or full-snapshot call (the last piece includes
    /// the install).
    pub snapshot_timeout: Duration,
    /// Deadline of a forwarded write (also bounded by
    /// [`RaftTuning::forward_timeout`](crate::RaftTuning::forward_timeout)).
    pub client_write_timeout: Duration,
    /// Largest message sent or accepted, either direction.
    pub max_message_bytes: usize,
    /// HTTP/2 keep-alive ping period on idle connections, so a dead peer is noticed
    /// without waiting for TCP timeouts. `None` disables pings.
    pub keep_alive_interval: Option<Duration>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(5),
            snapshot_timeout: Duration::from_secs(300),
            client_write_timeout: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            keep_alive_interval: Some(Duration::from_secs(10)),
        }
    }
}

impl GrpcConfig {
    /// The deadline of one call of `kind`.
    pub fn timeout_for(&self, kind: RpcKind) -> Duration {
        match kind {
            RpcKind::FullSnapshot | RpcKind::SnapshotChunk => self.snapshot_timeout,
            RpcKind::ClientWrite => self.client_write_timeout,
            RpcKind::AppendEntries | RpcKind::Vote | RpcKind::PreVote | RpcKind::TransferLeader => {
                self.rpc_timeout
            }
        }
    }
}

/// Normalize a node address to the `http://host:port` URI tonic connects to.
///
/// Accepts `host:port` and `http://host:port`; refuses `https://` (no TLS yet), paths,
/// missing ports and anything that does not parse as a URI authority.
pub fn endpoint_uri(addr: &str) -> Result<String, TransportError> {
    let bad =
        |why: &str| TransportError::Unreachable(format!("invalid node address {addr:?}: {why}"));
    let rest = if let Some(rest) = addr.strip_prefix("http://") {
        rest
    } else if addr.starts_with("https://") {
        return Err(bad("TLS is not supported yet; use host:port"));
    } else if addr.contains("://") {
        return Err(bad("only http:// or a bare host:port"));
    } else {
        addr
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let authority: tonic::codegen::http::uri::Authority =
        rest.parse().map_err(|_| bad("not host:port"))?;
    if authority.port_u16().is_none() {
        return Err(bad("missing port"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("user info is not allowed"));
    }
    Ok(format!("http://{authority}"))
}

/// [`RaftTransport`] over gRPC. Cheap to share (`Arc`); one per process.
///
/// Channels are cached per address string for the life of the transport (addresses come
/// from group memberships, so the set is small); a channel reconnects by itself after
/// its peer restarts.
pub struct GrpcTransport {
    from: NodeId,
    config: GrpcConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcTransport {
    /// The transport node `from` sends through.
    pub fn new(from: NodeId, config: GrpcConfig) -> Self {
        Self {
            from,
            config,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &GrpcConfig {
        &self.config
    }

    /// The (lazily connected) channel to `addr`, created on first use. Must run inside
    /// a tokio runtime (the channel spawns its connection task there).
    fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let uri = endpoint_uri(addr)?;
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| {
                TransportError::Unreachable(format!("invalid node address {addr:?}: {e}"))
            })?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true);
        if let Some(interval) = self.config.keep_alive_interval {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(interval)
                .keep_alive_while_idle(true);
        }
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

impl RaftTransport for GrpcTransport {
    fn send(
        &self,
        target: NodeId,
        addr: &str,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let channel = self.channel(addr);
        let timeout = self.config.timeout_for(kind);
        let max = self.config.max_message_bytes;
        let from = self.from;
        Box::pin(async move {
            let mut client = RaftTransportClient::new(channel?)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
            let mut request = Request::new(pb::RaftRequest {
                group: group.0,
                from_node: from,
                to_node: target,
                kind: i32::from(kind.as_u8()),
                payload,
            });
            // Tells the server when to give up; the client enforces it below.
            request.set_timeout(timeout);
            match tokio::time::timeout(timeout, client.call(request)).await {
                Err(_) => Err(TransportError::Timeout),
                Ok(Ok(resp)) => Ok(resp.into_inner().payload),
                Ok(Err(status)) => Err(status_to_transport_error(&status)),
            }
        })
    }
}

/// Classify a failed call (see the module docs).
pub fn status_to_transport_error(status: &Status) -> TransportError {
    let what = || format!("{:?}: {}", status.code(), status.message());
    if status.metadata().contains_key(REJECTED_METADATA_KEY) {
        return TransportError::Remote(what());
    }
    let mut source = status.source();
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return TransportError::Unreachable(what());
        }
        source = e.source();
    }
    match status.code() {
        Code::DeadlineExceeded => TransportError::Timeout,
        Code::NotFound
        | Code::InvalidArgument
        | Code::Unimplemented
        | Code::ResourceExhausted
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::FailedPrecondition => TransportError::Remote(what()),
        _ => TransportError::Network(what()),
    }
}

fn rejected(code: Code, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status
        .metadata_mut()
        .insert(REJECTED_METADATA_KEY, MetadataValue::from_static("1"));
    status
}

fn reject_status(r: Rejected) -> Status {
    let code = match r.reason {
        RejectReason::UnknownGroup => Code::NotFound,
        RejectReason::Unavailable => Code::Unavailable,
        RejectReason::Malformed => Code::InvalidArgument,
    };
    rejected(code, r.detail)
}

/// Server side of the gRPC transport: dispatches each call to a [`RaftNode`] it holds
/// weakly.
#[derive(Clone)]
pub struct GrpcRaftServer {
    id: NodeId,
    node: WeakRaftNode,
}

impl GrpcRaftServer {
    /// Serve `node`'s groups (held weakly: dropping the node makes calls `UNAVAILABLE`).
    pub fn new(node: &RaftNode) -> Self {
        Self {
            id: node.id(),
            node: node.downgrade(),
        }
    }

    /// Wrap in the generated tonic service with `max_message_bytes` as the limit both
    /// ways.
    pub fn into_service(self, max_message_bytes: usize) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// The tonic service serving `node` with `config`'s message limit; add it to a
/// `tonic::transport::Server`.
pub fn raft_service(node: &RaftNode, config: &GrpcConfig) -> RaftTransportServer<GrpcRaftServer> {
    GrpcRaftServer::new(node).into_service(config.max_message_bytes)
}

/// Serve `node`'s Raft transport on `listener` (the cluster-internal port) until
/// `shutdown` completes, then drain in-flight calls. The returned future holds the node
/// only weakly, so spawn it. For a server that also hosts other services, add
/// [`raft_service`] to your own `tonic::transport::Server` instead.
pub fn serve(
    node: &RaftNode,
    config: &GrpcConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = tonic::transport::Server::builder();
    if let Some(interval) = config.keep_alive_interval {
        server = server
            .http2_keepalive_interval(Some(interval))
            .http2_keepalive_timeout(Some(interval));
    }
    let router = server.add_service(raft_service(node, config));
    router.serve_with_incoming_shutdown(incoming, shutdown)
}

#[tonic::async_trait]
impl RaftTransportService for GrpcRaftServer {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let Some(node) = self.node.upgrade() else {
            return Err(rejected(Code::Unavailable, "raft node is shut down"));
        };
        let groups = node
            .group_metrics()
            .into_iter()
            .map(|m| pb::GroupStatus {
                group: m.group.0,
                leader: m.leader.unwrap_or(0),
                term: m.current_term,
                last_applied: m.last_applied.map_or(0, |l| l.index),
                role: match m.state {
                    crate::ServerState::Leader => "leader",
                    crate::ServerState::Follower => "follower",
                    crate::ServerState::Candidate => "candidate",
                    crate::ServerState::Learner => "learner",
                    crate::ServerState::Shutdown => "shutdown",
                }
                .into(),
                voters: m.voters.into_iter().collect(),
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            node_id: self.id,
            groups,
        }))
    }

    async fn call(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftResponse>, Status> {
        let req = request.into_inner();
        let Some(node) = self.node.upgrade() else {
            return Err(rejected(Code::Unavailable, "raft node is shut down"));
        };
        if req.to_node != self.id {
            return Err(rejected(
                Code::InvalidArgument,
                format!(
                    "request for node {} reached node {} (from node {})",
                    req.to_node, self.id, req.from_node
                ),
            ));
        }
        let Some(kind) = u8::try_from(req.kind).ok().and_then(RpcKind::from_u8) else {
            return Err(rejected(
                Code::InvalidArgument,
                format!("unknown rpc kind {}", req.kind),
            ));
        };
        let fut = node.serve_rpc(GroupId(req.group), kind, req.payload);
        // The call must not keep a shutting-down node alive.
        drop(node);
        match fut.await {
            Ok(payload) => Ok(Response::new(pb::RaftResponse { payload })),
            Err(r) => Err(reject_status(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn proto_kinds_match_wire_tags() {
        for kind in RpcKind::ALL {
            let pk = pb::RpcKind::try_from(i32::from(kind.as_u8())).expect("known to the proto");
            assert_ne!(pk, pb::RpcKind::Unspecified);
            assert_eq!(
                pk.as_str_name()
                    .trim_start_matches("RPC_KIND_")
                    .replace('_', ""),
                format!("{kind:?}").to_uppercase()
            );
        }
        assert_eq!(RpcKind::from_u8(0), None);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            endpoint_uri("10.0.0.1:7000").unwrap(),
            "http://10.0.0.1:7000"
        );
        assert_eq!(
            endpoint_uri("http://node-1.candor:7000").unwrap(),
            "http://node-1.candor:7000"
        );
        assert_eq!(
            endpoint_uri("http://node-1.candor:7000/").unwrap(),
            "http://node-1.candor:7000"
        );
        assert_eq!(endpoint_uri("[::1]:7000").unwrap(), "http://[::1]:7000");
        for bad in [
            "",
            "node-1",
            "https://node-1:7000",
            "grpc://node-1:7000",
            "node-1:7000/path",
            "user@node-1:7000",
            "node-1:notaport",
            "node 1:7000",
        ] {
            assert!(endpoint_uri(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn status_classification() {
        let marked = rejected(Code::Unavailable, "stopping");
        assert!(matches!(
            status_to_transport_error(&marked),
            TransportError::Remote(_)
        ));
        assert!(matches!(
            status_to_transport_error(&Status::unavailable("connection reset")),
            TransportError::Network(_)
        ));
        assert_eq!(
            status_to_transport_error(&Status::deadline_exceeded("late")),
            TransportError::Timeout
        );
        assert!(matches!(
            status_to_transport_error(&Status::unimplemented("no such service")),
            TransportError::Remote(_)
        ));
        let mut connect = Status::unavailable("connect");
        connect.set_source(Arc::new(tonic::ConnectError("refused".into())));
        assert!(matches!(
            status_to_transport_error(&connect),
            TransportError::Unreachable(_)
        ));
    }
}
