//! Candor's observability surface.
//!
//! * [`metrics()`]: the one set of instruments (OpenTelemetry metrics API).
//! * [`propagation`]: W3C trace context into outgoing gRPC metadata and out of
//!   incoming requests ([`GrpcServerLayer`]), plus `rpc.server.call.duration`.
//! * With the `export` feature (binaries): [`init`] installs the providers
//!   (OTLP traces and metrics over gRPC or HTTP/protobuf, configured by the
//!   standard `OTEL_*` variables or [`TelemetryConfig`]; a Prometheus reader
//!   on the same instruments), the log subscriber (text or JSON with
//!   trace_id/span_id), and [`http::serve`] answers `/metrics`, `/healthz`
//!   and `/readyz`.
//!
//! Export problems (an unreachable or malformed collector) are logged and
//! never stop or slow the service: spans and metrics go through bounded
//! queues on the SDK's own threads and are dropped when the collector is away.

mod metrics;
pub mod process;
pub mod propagation;
pub mod sampling;

#[cfg(feature = "export")]
mod export;
#[cfg(feature = "export")]
pub mod http;
#[cfg(feature = "export")]
mod logging;

pub use metrics::{
    CacheSample, LATENCY_BUCKETS, METER_NAME, Metrics, RaftGroupSample, STALL_THRESHOLD,
    StoreWriteTimer, group_label, metrics,
};
pub use propagation::{
    GrpcServerLayer, GrpcServerService, extract, inject, traced, traced_continue_only,
};

#[cfg(feature = "export")]
pub use export::{LogFormat, OtlpProtocol, Telemetry, TelemetryConfig, init};

/// Telemetry setup errors: bad configuration the operator must fix. (Exporter
/// failures at run time are not errors: they are logged and the data dropped.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `telemetry.log_format` / `--log-format` is neither `text` nor `json`.
    #[error("unknown log format {0:?}: expected text or json")]
    LogFormat(String),
    /// An OTLP protocol other than grpc or http/protobuf.
    #[error("unknown OTLP protocol {0:?}: expected grpc or http/protobuf")]
    Protocol(String),
    /// The log filter does not parse.
    #[error("bad log filter {0:?}: {1}")]
    LogFilter(String, String),
    /// A global subscriber was already installed.
    #[error("the log subscriber is already installed")]
    AlreadyInstalled,
    /// The metrics listener could not bind.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
