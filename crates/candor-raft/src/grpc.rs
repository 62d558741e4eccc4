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
//! every group membership) is `host:port`, `http://host:port` or `https://host:port`,
//! where `host` is a DNS name, an IPv4 address or a bracketed IPv6 address
//! (`[::1]:7000`). The scheme never decides whether TLS is used, the configuration does:
//! with [`GrpcConfig::tls`] set every address is dialed over TLS (an `http://` prefix
//! does not downgrade), without it `https://` addresses are refused.
//!
//! # Security
//!
//! **Default: plaintext.** HTTP/2 (h2c) without authentication: anyone who can reach
//! the port can send Raft messages and forwarded writes to every group. Run it only on
//! a network reachable by the cluster's own nodes (e.g. a Kubernetes NetworkPolicy).
//!
//! **With [`GrpcConfig::tls`]: mutual TLS** (see [`crate::tls`]). The client verifies the
//! server's certificate against the CA bundle and the dialed host; the server requires a
//! client certificate chaining to the CA bundle, and [`raft_service`] refuses a `Call`
//! whose `from_node` is not the node named by that certificate (`candor-node://<id>`)
//! with `PERMISSION_DENIED`, and any call on a connection without a client certificate
//! with `UNAUTHENTICATED` (both marked with [`REJECTED_METADATA_KEY`]).
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
//! | (mTLS) no client certificate on the connection    | `UNAUTHENTICATED`  |
//! | (mTLS) `from_node` is not the certificate's node, or the certificate names none | `PERMISSION_DENIED` |
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
use crate::tls::TlsConfig;
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
    /// HTTP/2 keep-alive: a ping after this long without a frame from the peer,
    /// and the connection dropped if its answer takes as long. `None` disables
    /// pings. Short on purpose: a connection kept through a partition waits out
    /// TCP's doubling retransmission timer after the heal (up to about as long
    /// again as the cut) and then first delivers the requests queued during
    /// it; a fresh connection does neither.
    pub keep_alive_interval: Option<Duration>,
    /// Mutual TLS for both sides (`None`: plaintext). See [`crate::tls`].
    pub tls: Option<TlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(5),
            snapshot_timeout: Duration::from_secs(300),
            client_write_timeout: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            keep_alive_interval: Some(Duration::from_secs(2)),
            tls: None,
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

/// Normalize a node address to the plaintext `http://host:port` URI tonic connects to
/// (see [`endpoint_uri_with`]).
pub fn endpoint_uri(addr: &str) -> Result<String, TransportError> {
    endpoint_uri_with(addr, false)
}

/// Normalize a node address to the URI tonic connects to: `https://host:port` when
/// `tls`, `http://host:port` otherwise.
///
/// Accepts `host:port`, `http://host:port` and (only when `tls`) `https://host:port`;
/// refuses paths, missing ports and anything that does not parse as a URI authority.
pub fn endpoint_uri_with(addr: &str, tls: bool) -> Result<String, TransportError> {
    let bad =
        |why: &str| TransportError::Unreachable(format!("invalid node address {addr:?}: {why}"));
    let rest = if let Some(rest) = addr.strip_prefix("http://") {
        rest
    } else if let Some(rest) = addr.strip_prefix("https://") {
        if !tls {
            return Err(bad("https:// but TLS is not configured"));
        }
        rest
    } else if addr.contains("://") {
        return Err(bad("only http://, https:// or a bare host:port"));
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
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{authority}"))
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
        let uri = endpoint_uri_with(addr, self.config.tls.is_some())?;
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| {
                TransportError::Unreachable(format!("invalid node address {addr:?}: {e}"))
            })?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.config.tls {
            endpoint = endpoint.tls_config(tls.client_tls()).map_err(|e| {
                TransportError::Unreachable(format!("TLS settings for {addr:?}: {e}"))
            })?;
        }
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
            // A forwarded write continues the caller's trace (heartbeats carry none).
            candor_telemetry::inject(request.metadata_mut());
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
    require_peer_identity: bool,
}

impl GrpcRaftServer {
    /// Serve `node`'s groups (held weakly: dropping the node makes calls `UNAVAILABLE`).
    pub fn new(node: &RaftNode) -> Self {
        Self {
            id: node.id(),
            node: node.downgrade(),
            require_peer_identity: false,
        }
    }

    /// Require every call to come over a connection with a TLS client certificate, and
    /// a `Call`'s `from_node` to be the node that certificate names (see the module
    /// docs). Only meaningful on a server configured for mutual TLS
    /// ([`server_builder`]); on a plaintext server every call is then `UNAUTHENTICATED`.
    pub fn require_peer_identity(mut self, require: bool) -> Self {
        self.require_peer_identity = require;
        self
    }

    /// The peer-identity check for a call claiming to come from `from` (`None`: a call
    /// that does not act for a node, which only needs a client certificate).
    fn check_peer<T>(&self, request: &Request<T>, from: Option<NodeId>) -> Result<(), Status> {
        if !self.require_peer_identity {
            return Ok(());
        }
        let certs = request.peer_certs();
        let certs = certs.as_deref().map(Vec::as_slice);
        if certs.is_none_or(<[_]>::is_empty) {
            return Err(rejected(
                Code::Unauthenticated,
                "mutual TLS is required: the connection carries no client certificate",
            ));
        }
        let Some(from) = from else {
            return Ok(());
        };
        match crate::tls::peer_node_id(certs) {
            Ok(Some(id)) if id == from => Ok(()),
            Ok(Some(id)) => Err(rejected(
                Code::PermissionDenied,
                format!(
                    "the client certificate is for node {id} but the request claims \
                     from_node {from}"
                ),
            )),
            Ok(None) => Err(rejected(
                Code::Unauthenticated,
                "mutual TLS is required: the connection carries no client certificate",
            )),
            Err(why) => Err(rejected(
                Code::PermissionDenied,
                format!("request claiming from_node {from} refused: {why}"),
            )),
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

/// The tonic service serving `node` with `config`'s message limit, checking peer
/// identities when `config.tls` is set; add it to a server from [`server_builder`]
/// (which applies the same `config`).
pub fn raft_service(node: &RaftNode, config: &GrpcConfig) -> RaftTransportServer<GrpcRaftServer> {
    GrpcRaftServer::new(node)
        .require_peer_identity(config.tls.is_some())
        .into_service(config.max_message_bytes)
}

/// A `tonic::transport::Server` builder with `config`'s keep-alive and, when
/// `config.tls` is set, mutual TLS (client certificates required). Add
/// [`raft_service`] and any other cluster-internal service to it.
pub fn server_builder(
    config: &GrpcConfig,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    // openraft gives a heartbeat one heartbeat interval (50 ms) and then drops the
    // call, which resets its stream; behind a paused or slow peer these resets pile
    // up before the server accepts the streams, and past h2's default limit (20) it
    // closes the whole connection (GOAWAY "too_many_resets"), every group's traffic
    // with it. Peers are cluster members; the bound still caps the memory.
    let mut server =
        tonic::transport::Server::builder().http2_max_pending_accept_reset_streams(Some(4096));
    if let Some(interval) = config.keep_alive_interval {
        server = server
            .http2_keepalive_interval(Some(interval))
            .http2_keepalive_timeout(Some(interval));
    }
    if let Some(tls) = &config.tls {
        server = server.tls_config(tls.server_tls())?;
    }
    Ok(server)
}

/// Serve `node`'s Raft transport on `listener` (the cluster-internal port) until
/// `shutdown` completes, then drain in-flight calls; over mutual TLS when `config.tls`
/// is set. The returned future holds the node only weakly, so spawn it. For a server
/// that also hosts other services, add [`raft_service`] to a [`server_builder`] instead.
pub fn serve(
    node: &RaftNode,
    config: &GrpcConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = raft_service(node, config);
    let server = server_builder(config);
    async move {
        server?
            .add_service(candor_telemetry::traced_continue_only(service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}

#[tonic::async_trait]
impl RaftTransportService for GrpcRaftServer {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.check_peer(&request, None)?;
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
        self.check_peer(&request, Some(request.get_ref().from_node))?;
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
        // With TLS every form is dialed over TLS.
        for a in ["n1:7000", "http://n1:7000", "https://n1:7000/"] {
            assert_eq!(endpoint_uri_with(a, true).unwrap(), "https://n1:7000");
        }
        assert!(endpoint_uri_with("https://n1", true).is_err());
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
