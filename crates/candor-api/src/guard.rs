//! Admission control on the public API port, before a request reaches the service.
//!
//! * **Connections** ([`guarded_incoming`]): at most `limits.max_connections` open at
//!   once (one more is accepted and closed at once, with a WARN line at most every
//!   10 s and a counter), and a connection on which no byte moved for
//!   `limits.idle_timeout_ms` is closed. HTTP/2 keepalive pings count as traffic, so a
//!   live client between calls, or a `WatchEpochs` stream, is not idle; a socket that
//!   never speaks HTTP/2 is. The Raft and admin port is a different listener and never
//!   shares these slots.
//! * **Request bodies** ([`GuardLayer`]): each method has its own size limit (a lookup
//!   is tiny, a batch is not), enforced while the body arrives, so an oversized body is
//!   refused after at most its limit was read, never buffered whole. Every body byte
//!   held is counted against a process-wide budget and, for writes, the tenant's own
//!   budget: past either, RESOURCE_EXHAUSTED.
//! * **Writes are authenticated before their body is read**: `Publish` and
//!   `PublishBatch` with a missing or unknown bearer token are answered UNAUTHENTICATED
//!   from the headers alone.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::auth::Authenticator;
use crate::limits::Limits;

/// Counters of what the guards refused (exported as `candor_guard_refused_total`).
#[derive(Debug, Default)]
pub struct GuardStats {
    /// Connections closed at accept because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed after `idle_timeout_ms` without traffic.
    pub connections_idle_closed: AtomicU64,
    /// Requests refused for their body size.
    pub requests_too_large: AtomicU64,
    /// Requests refused because the request-byte budget (total or tenant) was spent.
    pub requests_over_budget: AtomicU64,
    /// Writes refused from their headers (no or unknown bearer token).
    pub unauthenticated_writes: AtomicU64,
    /// Currently open connections.
    pub open_connections: AtomicU64,
}

/// Rate-limited WARN: at most one line per `every` per call site.
struct Throttle {
    last: Mutex<Option<Instant>>,
    every: Duration,
}

impl Throttle {
    const fn new(every: Duration) -> Self {
        Throttle {
            last: Mutex::new(None),
            every,
        }
    }

    fn ready(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

static REFUSED_LOG: Throttle = Throttle::new(Duration::from_secs(10));
static BUDGET_LOG: Throttle = Throttle::new(Duration::from_secs(10));

/// The open-files limit of this process (soft), if it can be read.
fn nofile_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap actually applied: the configured one, but never more than
/// half the open-files limit, so the Raft port, the store and the log keep
/// descriptors whatever happens on the API port.
pub fn effective_max_connections(limits: &Limits) -> usize {
    let configured = limits.max_connections as usize;
    match nofile_limit() {
        Some(n) => configured.min((n / 2).max(16) as usize),
        None => configured,
    }
}

/// Accepts connections from `listener` under the connection cap and idle timeout.
pub fn guarded_incoming(
    listener: TcpListener,
    limits: &Limits,
    stats: Arc<GuardStats>,
) -> impl Stream<Item = io::Result<GuardedStream>> + Send + 'static {
    let cap = effective_max_connections(limits);
    if cap < limits.max_connections as usize {
        tracing::warn!(
            configured = limits.max_connections,
            applied = cap,
            "limits.max_connections lowered to half the open-files limit"
        );
    }
    let slots = Arc::new(Semaphore::new(cap));
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    futures_util::stream::unfold(
        (listener, slots, stats),
        move |(listener, slots, stats)| async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off briefly rather than spin, and
                        // keep accepting (tonic would end the server on an error).
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    let n = stats.connections_refused.fetch_add(1, Ordering::Relaxed) + 1;
                    if REFUSED_LOG.ready() {
                        tracing::warn!(
                            %peer,
                            cap,
                            refused_total = n,
                            "connection refused: limits.max_connections reached"
                        );
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let sock = socket2::SockRef::from(&stream);
                let _ = sock.set_tcp_keepalive(
                    &socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)),
                );
                stats.open_connections.fetch_add(1, Ordering::Relaxed);
                let g = GuardedStream {
                    inner: stream,
                    _permit: permit,
                    idle,
                    timer: Box::pin(tokio::time::sleep(idle)),
                    stats: stats.clone(),
                };
                return Some((Ok(g), (listener, slots, stats)));
            }
        },
    )
}

/// A TCP connection holding one connection slot, closed when idle.
pub struct GuardedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    stats: Arc<GuardStats>,
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GuardedStream {
    fn touch(&mut self) {
        let deadline = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(deadline);
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.timer.as_mut().poll(cx).is_ready() {
            self.stats
                .connections_idle_closed
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("closing an idle connection");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle beyond limits.idle_timeout_ms",
            ));
        }
        Ok(())
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.check_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        if matches!(r, Ok(n) if n > 0) {
            self.touch();
        }
        Poll::Ready(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs));
        if matches!(r, Ok(n) if n > 0) {
            self.touch();
        }
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What kind of call a request path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Publish,
    PublishBatch,
    Read,
}

fn kind(path: &str) -> Kind {
    match path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(candor_proto::KEY_TRANSPARENCY_SERVICE))
    {
        Some("/Publish") => Kind::Publish,
        Some("/PublishBatch") => Kind::PublishBatch,
        _ => Kind::Read,
    }
}

/// How the guard decides on writes' credentials.
#[derive(Clone)]
pub enum WriteAuth {
    /// Check the bearer token against these tenants (a member).
    Tenants(Authenticator),
    /// Only require a well-formed `authorization: Bearer ...` header; the upstream
    /// member checks the token (a stateless front door holds no tokens).
    PresenceOnly,
}

/// Per-method body limits, body budgets and early authentication (see the module docs).
#[derive(Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

struct Shared {
    limits: Limits,
    auth: WriteAuth,
    total: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    stats: Arc<GuardStats>,
}

impl GuardLayer {
    pub fn new(limits: &Limits, auth: WriteAuth, stats: Arc<GuardStats>) -> Self {
        let total = clamp_permits(limits.max_inflight_request_bytes);
        GuardLayer {
            shared: Arc::new(Shared {
                limits: limits.clone(),
                auth,
                total: Arc::new(Semaphore::new(total)),
                tenants: Mutex::new(HashMap::new()),
                stats,
            }),
        }
    }
}

fn clamp_permits(n: u64) -> usize {
    (n as usize).clamp(1, Semaphore::MAX_PERMITS)
}

impl Shared {
    fn limit(&self, kind: Kind) -> usize {
        let l = &self.limits;
        match kind {
            Kind::Publish => l.max_publish_request_bytes() as usize,
            Kind::PublishBatch => l.max_batch_request_bytes as usize,
            Kind::Read => l.max_read_request_bytes as usize,
        }
    }

    fn tenant_budget(&self, tenant: &str) -> Arc<Semaphore> {
        let mut m = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(clamp_permits(
                    self.limits.max_tenant_inflight_request_bytes,
                )))
            })
            .clone()
    }

    /// The tenant of a write, from its headers; the refusal otherwise.
    fn admit_write(&self, headers: &http::HeaderMap) -> Result<Option<String>, Status> {
        let md = MetadataMap::from_headers(headers.clone());
        match &self.auth {
            WriteAuth::Tenants(a) => match a.authenticate(&md) {
                Ok(t) => Ok(Some(t.to_owned())),
                Err(e) => Err(Status::unauthenticated(e.to_string())),
            },
            WriteAuth::PresenceOnly => {
                let ok = md
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_once(' '))
                    .is_some_and(|(s, t)| s.eq_ignore_ascii_case("bearer") && !t.trim().is_empty());
                if ok {
                    Ok(None)
                } else {
                    Err(Status::unauthenticated(
                        "missing authorization: Bearer <token>",
                    ))
                }
            }
        }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for GuardService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let kind = kind(req.uri().path());
        let tenant = if kind == Kind::Read {
            None
        } else {
            match shared.admit_write(req.headers()) {
                Ok(t) => t,
                Err(mut s) => {
                    // Echo the request id as the service does for every answer.
                    let rid = crate::service::request_id(&MetadataMap::from_headers(
                        req.headers().clone(),
                    ));
                    if let Ok(v) = tonic::metadata::MetadataValue::try_from(rid.as_str()) {
                        s.metadata_mut().insert("x-request-id", v);
                    }
                    tracing::debug!(request_id = %rid, error = %s.message(), "write refused before its body");
                    shared
                        .stats
                        .unauthenticated_writes
                        .fetch_add(1, Ordering::Relaxed);
                    return Box::pin(async move { Ok(s.into_http()) });
                }
            }
        };
        let limit = shared.limit(kind);
        let (parts, body) = req.into_parts();
        let tenant_budget = tenant.as_deref().map(|t| shared.tenant_budget(t));
        let limited = LimitedBody {
            inner: body,
            limit,
            read: 0,
            method: parts.uri.path().rsplit('/').next().unwrap_or("").to_owned(),
            header: Vec::with_capacity(5),
            total: shared.total.clone(),
            tenant: tenant_budget,
            held: Vec::new(),
            stats: shared.stats.clone(),
        };
        let req = http::Request::from_parts(parts, Body::new(limited));
        // Swap in a clone that is ready: the standard tower pattern.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(req).await.map(malformed_is_invalid_argument) })
    }
}

/// The prefix of the status tonic's stock prost codec gives a request message that
/// does not parse. Candor's own services decode with `candor_proto::codec` (INVALID_ARGUMENT);
/// the stock health and reflection services on the same port would answer INTERNAL.
/// (`grpc-message` is percent-encoded: tonic encodes the spaces.)
const STOCK_DECODE_ERROR: &[u8] = b"failed%20to%20decode%20Protobuf%20message";

/// Bytes the caller sent that do not parse are the caller's error: a trailers-only
/// answer INTERNAL "failed to decode Protobuf message" (from a stock service: the
/// request is decoded before its handler runs, so this is where that failure is
/// answered) becomes INVALID_ARGUMENT.
fn malformed_is_invalid_argument(mut response: http::Response<Body>) -> http::Response<Body> {
    let h = response.headers_mut();
    let internal = h.get("grpc-status").is_some_and(|v| v.as_bytes() == b"13");
    let decode = h
        .get("grpc-message")
        .is_some_and(|v| v.as_bytes().starts_with(STOCK_DECODE_ERROR));
    if internal && decode {
        tracing::debug!("malformed protobuf message (stock service)");
        h.insert("grpc-status", http::HeaderValue::from_static("3"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("malformed%20protobuf%20message"),
        );
    }
    response
}

/// A request body refused past `limit` bytes, holding budget permits for what it
/// buffered until it is dropped.
struct LimitedBody {
    inner: Body,
    limit: usize,
    read: usize,
    method: String,
    /// The first gRPC frame header (flag, u32be length), collected until 5 bytes:
    /// a declared length over the limit is refused before any of it arrives.
    header: Vec<u8>,
    total: Arc<Semaphore>,
    tenant: Option<Arc<Semaphore>>,
    held: Vec<OwnedSemaphorePermit>,
    stats: Arc<GuardStats>,
}

impl LimitedBody {
    fn too_large(&self) -> Status {
        self.stats
            .requests_too_large
            .fetch_add(1, Ordering::Relaxed);
        Status::resource_exhausted(format!(
            "{} request exceeds its limit of {} bytes",
            self.method, self.limit
        ))
    }

    fn take(&mut self, data: &[u8]) -> Result<(), Status> {
        let n = data.len();
        if self.header.len() < 5 {
            let k = (5 - self.header.len()).min(n);
            self.header.extend_from_slice(&data[..k]);
            if self.header.len() == 5 {
                let declared = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                if declared as usize + 5 > self.limit {
                    return Err(self.too_large());
                }
            }
        }
        self.read += n;
        if self.read > self.limit {
            return Err(self.too_large());
        }
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let over = |which: &str, stats: &GuardStats| {
            stats.requests_over_budget.fetch_add(1, Ordering::Relaxed);
            if BUDGET_LOG.ready() {
                tracing::warn!(budget = which, "request refused: request-byte budget spent");
            }
            Status::resource_exhausted(format!(
                "the server holds its maximum of request bytes ({which}); retry later"
            ))
        };
        if let Some(t) = &self.tenant {
            let p = t
                .clone()
                .try_acquire_many_owned(n32)
                .map_err(|_| over("tenant", &self.stats))?;
            self.held.push(p);
        }
        let p = self
            .total
            .clone()
            .try_acquire_many_owned(n32)
            .map_err(|_| over("total", &self.stats))?;
        self.held.push(p);
        Ok(())
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref()
                    && let Err(s) = self.take(d)
                {
                    return Poll::Ready(Some(Err(s)));
                }
                Some(Ok(f))
            }
            other => other,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Exports `stats` as `candor.guard.refused{port, reason}` (read at collection time).
pub(crate) fn export_stats(port: &'static str, stats: &Arc<GuardStats>) {
    let weak = Arc::downgrade(stats);
    candor_telemetry::metrics().register_guard(port, move || {
        let Some(s) = weak.upgrade() else {
            return Vec::new();
        };
        vec![
            (
                "max_connections",
                s.connections_refused.load(Ordering::Relaxed),
            ),
            (
                "idle_timeout",
                s.connections_idle_closed.load(Ordering::Relaxed),
            ),
            (
                "request_too_large",
                s.requests_too_large.load(Ordering::Relaxed),
            ),
            (
                "over_budget",
                s.requests_over_budget.load(Ordering::Relaxed),
            ),
            (
                "unauthenticated_write",
                s.unauthenticated_writes.load(Ordering::Relaxed),
            ),
        ]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_decode_errors_become_invalid_argument() {
        // What tonic-health answers to a Check whose bytes do not parse (found by
        // the grpc_request fuzz target; its input is in fuzz/corpus/grpc_request).
        let status = tonic::Status::internal("failed to decode Protobuf message: invalid tag");
        let r = malformed_is_invalid_argument(status.into_http());
        assert_eq!(r.headers()["grpc-status"], "3");
        // Any other INTERNAL stays as it is.
        let r = malformed_is_invalid_argument(tonic::Status::internal("store").into_http());
        assert_eq!(r.headers()["grpc-status"], "13");
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(kind("/candor.v1.KeyTransparency/Publish"), Kind::Publish);
        assert_eq!(
            kind("/candor.v1.KeyTransparency/PublishBatch"),
            Kind::PublishBatch
        );
        assert_eq!(kind("/candor.v1.KeyTransparency/Lookup"), Kind::Read);
        assert_eq!(kind("/grpc.health.v1.Health/Check"), Kind::Read);
        assert_eq!(kind("/candor.v1.KeyTransparency/PublishX"), Kind::Read);
    }

    #[test]
    fn throttle_allows_one_per_period() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert!(t.ready());
        assert!(!t.ready());
    }
}
