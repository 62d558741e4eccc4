//! W3C trace context across gRPC hops, and the per-call server metric.
//!
//! * Outgoing: [`inject`] writes the current OpenTelemetry context (the
//!   `tracing` span entered by the caller, through tracing-opentelemetry's
//!   context activation) as `traceparent`/`tracestate` into a request's
//!   metadata. Every client call site (SDK, front door proxy, Raft forwarding)
//!   calls it once.
//! * Incoming: [`GrpcServerLayer`] wraps a tonic server: each call gets a
//!   `grpc.server` span whose parent is the caller's context (when one came),
//!   and `rpc.server.call.duration` is recorded with the method and gRPC status.
//!
//! Which propagator runs is OpenTelemetry's global one; [`crate::init`] installs
//! the W3C TraceContext propagator. With no propagator installed both
//! directions are no-ops, so a library test pays nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::{Context, KeyValue, StringValue};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The OpenTelemetry context of the current `tracing` span (or the active
/// OpenTelemetry context when the caller uses the OpenTelemetry API directly).
pub fn current_context() -> Context {
    let span = tracing::Span::current();
    // Inside an unsampled request: the root's context, so the decision travels.
    if let Some(cx) = crate::sampling::unsampled_context(&span) {
        return cx;
    }
    let from_span = span.context();
    if opentelemetry::trace::TraceContextExt::has_active_span(&from_span) {
        from_span
    } else {
        Context::current()
    }
}

/// Writes the current trace context into outgoing gRPC metadata.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    inject_context(&current_context(), metadata);
}

/// Writes `cx` into outgoing gRPC metadata.
pub fn inject_context(cx: &Context, metadata: &mut tonic::metadata::MetadataMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut MetadataInjector(metadata))
    });
}

/// Reads the caller's trace context from incoming HTTP/2 headers.
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Tower layer for `tonic::transport::Server::builder().layer(..)`.
#[derive(Clone, Copy, Debug)]
pub struct GrpcServerLayer {
    root_spans: bool,
}

impl Default for GrpcServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcServerLayer {
    /// Every call is a span (a new trace when the caller sent none): the public API.
    pub fn new() -> Self {
        GrpcServerLayer { root_spans: true }
    }

    /// Only calls that carry a caller's trace context get a span: the cluster
    /// transport, whose heartbeats and replication must not each start a trace.
    pub fn continue_only() -> Self {
        GrpcServerLayer { root_spans: false }
    }
}

impl<S> tower::Layer<S> for GrpcServerLayer {
    type Service = GrpcServerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerService {
            inner,
            root_spans: self.root_spans,
        }
    }
}

/// See [`GrpcServerLayer`]. Also usable per service (`add_service(traced(svc))`):
/// it keeps the wrapped service's gRPC name.
#[derive(Clone, Debug)]
pub struct GrpcServerService<S> {
    inner: S,
    root_spans: bool,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcServerService<S> {
    const NAME: &'static str = S::NAME;
}

/// `svc` with a span per call (continuing the caller's trace) and the call metric.
pub fn traced<S>(svc: S) -> GrpcServerService<S> {
    GrpcServerService {
        inner: svc,
        root_spans: true,
    }
}

/// `svc` with the call metric, and a span only for calls that carry a trace context.
pub fn traced_continue_only<S>(svc: S) -> GrpcServerService<S> {
    GrpcServerService {
        inner: svc,
        root_spans: false,
    }
}

/// The gRPC status of a response whose headers are in: trailers-only
/// responses (every error a unary handler returns) carry `grpc-status` in the
/// headers; otherwise the call succeeded as far as the headers tell.
/// Streaming calls that fail after their first message report in trailers,
/// which this does not read: they count as `OK` here.
fn status_code<B>(response: &http::Response<B>) -> i64 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
}

/// Splits `/package.Service/Method` into service and method.
fn split_path(path: &str) -> (&str, &str) {
    let p = path.trim_start_matches('/');
    p.split_once('/').unwrap_or((p, ""))
}

/// Most distinct request paths given their own names in the call metric; later
/// ones are reported as `other`. The path comes from the caller, so without a cap
/// random paths would grow the metric's series (and this table) without bound.
const MAX_PATHS: usize = 256;

/// `(path, service, method)` as shared strings: the call metric's attributes are
/// then reference-counted copies, not an allocation per call.
fn call_names(path: &str) -> (Arc<str>, Arc<str>, Arc<str>) {
    type Names = (Arc<str>, Arc<str>, Arc<str>);
    static TABLE: OnceLock<RwLock<HashMap<String, Names>>> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    // Every call reads; only a path's first call writes.
    if let Some(n) = table.read().ok().and_then(|t| t.get(path).cloned()) {
        return n;
    }
    let other = || -> Names {
        let other: Arc<str> = Arc::from("other");
        (other.clone(), other.clone(), other)
    };
    let Ok(mut t) = table.write() else {
        return other();
    };
    if let Some(n) = t.get(path) {
        return n.clone();
    }
    if t.len() >= MAX_PATHS {
        return other();
    }
    let (service, method) = split_path(path);
    let n: Names = (Arc::from(path), Arc::from(service), Arc::from(method));
    t.insert(path.to_owned(), n.clone());
    n
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for GrpcServerService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqB>) -> Self::Future {
        let (path, service, method) = call_names(request.uri().path());
        let parent = extract(request.headers());
        let has_parent = opentelemetry::trace::TraceContextExt::span(&parent)
            .span_context()
            .is_valid();
        let span = if has_parent || self.root_spans {
            // Sampled once, here: an unsampled call is never bridged.
            crate::sampling::root_span(&parent, &path, || {
                tracing::info_span!(
                    "grpc.server",
                    otel.name = &*path,
                    otel.kind = "server",
                    rpc.system = "grpc",
                    rpc.service = &*service,
                    rpc.method = &*method,
                    rpc.grpc.status_code = tracing::field::Empty,
                )
            })
        } else {
            tracing::Span::none()
        };
        let start = Instant::now();
        let fut = {
            let _enter = span.enter();
            self.inner.call(request)
        };
        let record_span = span.clone();
        Box::pin(
            async move {
                let result = fut.await;
                let code = match &result {
                    Ok(response) => status_code(response),
                    // A transport-level failure: UNKNOWN.
                    Err(_) => 2,
                };
                record_span.record("rpc.grpc.status_code", code);
                crate::metrics().rpc_server_duration.record(
                    start.elapsed().as_secs_f64(),
                    &[
                        KeyValue::new("rpc.system", "grpc"),
                        KeyValue::new("rpc.service", StringValue::from(service)),
                        KeyValue::new("rpc.method", StringValue::from(method)),
                        KeyValue::new("rpc.grpc.status_code", code),
                    ],
                );
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    #[cfg(feature = "export")]
    #[test]
    fn inject_then_extract_round_trips() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut md = tonic::metadata::MetadataMap::new();
        inject_context(&cx, &mut md);
        assert_eq!(
            md.get("traceparent").unwrap().to_str().unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let headers = md.into_headers();
        let back = extract(&headers);
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());
        assert_eq!(back.span().span_context().span_id(), sc.span_id());

        // A malformed header is no parent, not an error.
        let mut bad = http::HeaderMap::new();
        bad.insert("traceparent", http::HeaderValue::from_static("00-zz-01"));
        assert!(!extract(&bad).span().span_context().is_valid());
    }

    #[test]
    fn paths_and_statuses() {
        assert_eq!(
            split_path("/candor.v1.KeyTransparency/Publish"),
            ("candor.v1.KeyTransparency", "Publish")
        );
        assert_eq!(split_path("/odd"), ("odd", ""));
        let (path, service, method) = call_names("/candor.v1.KeyTransparency/Lookup");
        assert_eq!(
            (&*path, &*service, &*method),
            (
                "/candor.v1.KeyTransparency/Lookup",
                "candor.v1.KeyTransparency",
                "Lookup"
            )
        );
        // Paths are caller input: past the cap, new ones share one name.
        for i in 0..MAX_PATHS {
            call_names(&format!("/fuzz.Service/M{i}"));
        }
        assert_eq!(&*call_names("/fuzz.Service/one-too-many").2, "other");
        assert_eq!(
            &*call_names("/candor.v1.KeyTransparency/Lookup").2,
            "Lookup"
        );
        let ok = http::Response::new(());
        assert_eq!(status_code(&ok), 0);
        let mut err = http::Response::new(());
        err.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(status_code(&err), 16);
    }
}
