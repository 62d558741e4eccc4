//! Telemetry for `candor dev` and `candor serve`: providers and logs
//! ([`start`]), the metrics/probe listener ([`serve_metrics`]) and the
//! collection-time sources of a running node ([`register_node`]).

use std::sync::Mutex;

use anyhow::Context as _;
use candor_telemetry::{TelemetryConfig, http::ReadyCheck};

use crate::config::{Config, LogFormat, OtlpProtocol};

static TELEMETRY: Mutex<Option<candor_telemetry::Telemetry>> = Mutex::new(None);

/// Installs the providers and the log subscriber. Call inside the runtime
/// (the OTLP/gRPC client needs it), before the node starts. `RUST_LOG` wins
/// over `log`.
pub fn start(config: &Config, role: &str, instance: String) -> anyhow::Result<()> {
    let log_filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| config.log.clone());
    let t = &config.telemetry;
    let cfg = TelemetryConfig {
        log_filter,
        log_format: match t.log_format {
            LogFormat::Text => candor_telemetry::LogFormat::Text,
            LogFormat::Json => candor_telemetry::LogFormat::Json,
        },
        otlp_endpoint: t.otlp_endpoint.clone(),
        otlp_protocol: t.otlp_protocol.map(|p| match p {
            OtlpProtocol::Grpc => candor_telemetry::OtlpProtocol::Grpc,
            OtlpProtocol::HttpProtobuf => candor_telemetry::OtlpProtocol::HttpProtobuf,
        }),
        prometheus: t.metrics_listen.is_some(),
        service_name: None,
        instance_id: Some(instance),
        namespace: Some(config.namespace.clone()),
        role: Some(role.to_string()),
    };
    let telemetry = candor_telemetry::init(&cfg).context("telemetry")?;
    *TELEMETRY.lock().unwrap_or_else(|p| p.into_inner()) = Some(telemetry);
    Ok(())
}

/// Flushes queued spans and metrics (bounded by the exporters' timeouts).
pub fn shutdown() {
    let t = TELEMETRY.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = t {
        t.shutdown();
    }
}

/// Starts the `/metrics`, `/healthz`, `/readyz` listener when
/// `telemetry.metrics_listen` is set.
pub async fn serve_metrics(config: &Config, ready: ReadyCheck) -> anyhow::Result<()> {
    let Some(addr) = config.telemetry.metrics_listen else {
        return Ok(());
    };
    let registry = TELEMETRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|t| t.registry());
    let (bound, _task) = candor_telemetry::http::serve(addr, registry, ready)
        .await
        .context("telemetry.metrics_listen")?;
    tracing::info!(listen = %bound, "metrics, /healthz and /readyz served");
    Ok(())
}
