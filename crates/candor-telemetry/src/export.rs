//! Providers and exporters: OTLP (gRPC or HTTP/protobuf) for traces and
//! metrics, a Prometheus reader on the same meter provider, and the log
//! subscriber.

use std::str::FromStr;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Link, SpanKind, TraceId};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample};

use crate::Error;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line, with `trace_id` and `span_id` inside a traced span.
    Json,
}

impl FromStr for LogFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(Error::LogFormat(other.to_string())),
        }
    }
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

impl FromStr for OtlpProtocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" | "http" => Ok(OtlpProtocol::HttpProtobuf),
            other => Err(Error::Protocol(other.to_string())),
        }
    }
}

/// What [`init`] sets up. The standard `OTEL_*` variables fill what this leaves unset.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// `tracing` filter directives (e.g. `info,openraft=warn`).
    pub log_filter: String,
    /// Text or JSON log lines.
    pub log_format: LogFormat,
    /// OTLP collector endpoint (`telemetry.otlp_endpoint`); else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal variables). Neither: no OTLP export.
    pub otlp_endpoint: Option<String>,
    /// Transport; else `OTEL_EXPORTER_OTLP_PROTOCOL`; else http/protobuf (the OTLP default).
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Serve the instruments to Prometheus (a metrics listener is configured).
    pub prometheus: bool,
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` sets one (default `candor`).
    pub service_name: Option<String>,
    /// `service.instance.id`: the node id.
    pub instance_id: Option<String>,
    /// `service.namespace`: the deployment namespace.
    pub namespace: Option<String>,
    /// `candor.role`: dev, all, shard, sequencer, api.
    pub role: Option<String>,
}

/// The installed providers. Keep it for the life of the process; [`Telemetry::shutdown`]
/// flushes what is queued.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    registry: Option<prometheus::Registry>,
    otlp: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.tracer.is_some())
            .field("metrics", &self.meter.is_some())
            .field("prometheus", &self.registry.is_some())
            .field("otlp", &self.otlp)
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether a signal's OTLP export stays on: the standard `OTEL_TRACES_EXPORTER` /
/// `OTEL_METRICS_EXPORTER` set to `none` turns that signal off (any other value, or
/// none, keeps OTLP, the only exporter this build has).
fn signal_on(variable: &str) -> bool {
    !env_nonempty(variable).is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
}

/// Appends the OTLP/HTTP signal path to a base endpoint (what the variables
/// do for `OTEL_EXPORTER_OTLP_ENDPOINT`; an explicit endpoint is used as given
/// by the exporter, so the base from the config tree needs it added here).
fn http_signal_endpoint(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

pub(crate) fn resource(config: &TelemetryConfig) -> Resource {
    let mut attrs = vec![KeyValue::new(
        "service.name",
        config
            .service_name
            .clone()
            .unwrap_or_else(|| "candor".into()),
    )];
    if let Some(id) = &config.instance_id {
        attrs.push(KeyValue::new("service.instance.id", id.clone()));
    }
    if let Some(ns) = &config.namespace {
        attrs.push(KeyValue::new("service.namespace", ns.clone()));
    }
    if let Some(role) = &config.role {
        attrs.push(KeyValue::new("candor.role", role.clone()));
    }
    // The variables win over the defaults above: later detectors override.
    let mut builder = Resource::builder_empty()
        .with_attributes(attrs)
        .with_detector(Box::new(EnvResourceDetector::new()));
    if let Some(name) = env_nonempty("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

/// The OTLP endpoint and protocol in force, if any.
fn otlp_target(config: &TelemetryConfig) -> Option<(Option<String>, OtlpProtocol)> {
    let endpoint = config.otlp_endpoint.clone();
    let from_env = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|v| env_nonempty(v).is_some());
    if endpoint.is_none() && !from_env {
        return None;
    }
    let protocol = match config.otlp_protocol {
        Some(p) => p,
        None => match env_nonempty("OTEL_EXPORTER_OTLP_PROTOCOL") {
            None => OtlpProtocol::HttpProtobuf,
            Some(p) => match p.parse() {
                Ok(p) => p,
                Err(e) => {
                    // A typo in the environment must not stop the service: no export, loudly.
                    eprintln!("candor: OTLP export off: OTEL_EXPORTER_OTLP_PROTOCOL: {e}");
                    return None;
                }
            },
        },
    };
    Some((endpoint, protocol))
}

fn span_exporter(
    endpoint: Option<&str>,
    protocol: OtlpProtocol,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let b = opentelemetry_otlp::SpanExporter::builder();
    match (protocol, endpoint) {
        (OtlpProtocol::Grpc, None) => b.with_tonic().build(),
        (OtlpProtocol::Grpc, Some(e)) => b.with_tonic().with_endpoint(e).build(),
        (OtlpProtocol::HttpProtobuf, None) => b
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        (OtlpProtocol::HttpProtobuf, Some(e)) => b
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(http_signal_endpoint(e, "traces"))
            .build(),
    }
}

fn metric_exporter(
    endpoint: Option<&str>,
    protocol: OtlpProtocol,
) -> Result<opentelemetry_otlp::MetricExporter, opentelemetry_otlp::ExporterBuildError> {
    let b = opentelemetry_otlp::MetricExporter::builder();
    match (protocol, endpoint) {
        (OtlpProtocol::Grpc, None) => b.with_tonic().build(),
        (OtlpProtocol::Grpc, Some(e)) => b.with_tonic().with_endpoint(e).build(),
        (OtlpProtocol::HttpProtobuf, None) => b
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        (OtlpProtocol::HttpProtobuf, Some(e)) => b
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(http_signal_endpoint(e, "metrics"))
            .build(),
    }
}

/// The SDK sampler: a root [`crate::sampling::root_span`] kept is sampled
/// (the head sampler already said so; a ratio sampler must not draw again);
/// every other span asks the configured sampler.
#[derive(Clone, Debug)]
struct HeadDecided(Box<dyn ShouldSample>);

impl ShouldSample for HeadDecided {
    fn should_sample(
        &self,
        parent: Option<&opentelemetry::Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if crate::sampling::root_already_kept() {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent
                    .map(|p| p.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// Random ids, except a kept root's trace id: the one the head sampler
/// decided on (so a trace-id ratio sampler's later draws agree with it).
#[derive(Debug, Default)]
struct HeadIds(opentelemetry_sdk::trace::RandomIdGenerator);

impl opentelemetry_sdk::trace::IdGenerator for HeadIds {
    fn new_trace_id(&self) -> TraceId {
        crate::sampling::kept_root_trace_id().unwrap_or_else(|| self.0.new_trace_id())
    }
    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}

/// The head sampler as a root decision: a dropped root gets a context of its
/// own (the caller's trace id or a new one, a new span id, sampled flag off)
/// so the decision travels downstream and log lines carry the ids.
fn head_decider(head: Box<dyn ShouldSample>) -> crate::sampling::Decider {
    use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags};
    use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
    Box::new(move |parent, name| {
        let ids = RandomIdGenerator::default();
        let psc = parent.span().span_context().clone();
        let trace_id = if psc.is_valid() {
            psc.trace_id()
        } else {
            ids.new_trace_id()
        };
        let r = head.should_sample(Some(parent), trace_id, name, &SpanKind::Server, &[], &[]);
        match r.decision {
            SamplingDecision::Drop => {
                let sc = SpanContext::new(
                    trace_id,
                    ids.new_span_id(),
                    TraceFlags::default(),
                    false,
                    r.trace_state,
                );
                crate::sampling::RootDecision::Drop(parent.with_remote_span_context(sc))
            }
            _ => crate::sampling::RootDecision::Keep(trace_id),
        }
    })
}

/// Installs the global providers, the W3C propagator and the log subscriber.
///
/// Call once, early, inside a Tokio runtime (the OTLP/gRPC client needs one)
/// and before anything records on [`crate::metrics()`]. Exporter build failures
/// (a malformed endpoint) are logged and leave that exporter off.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, Error> {
    let resource = resource(config);
    let target = otlp_target(config);
    let mut warnings: Vec<String> = Vec::new();

    // Traces: exported by OTLP when configured; with JSON logs and no
    // collector the provider still runs (without exporter) so every line
    // inside a span carries its trace_id and span_id.
    let mut tracer_provider = None;
    let mut span_export = None;
    if let Some((endpoint, protocol)) = target
        .as_ref()
        .filter(|_| signal_on("OTEL_TRACES_EXPORTER"))
    {
        match span_exporter(endpoint.as_deref(), *protocol) {
            Ok(e) => span_export = Some(e),
            Err(e) => warnings.push(format!("OTLP trace export off: {e}")),
        }
    }
    if span_export.is_some() || config.log_format == LogFormat::Json {
        // The sampler the standard variables configure, taken once per request
        // at its root (see `sampling`); the SDK's copy defers to that decision.
        let head = opentelemetry_sdk::trace::Config::default().sampler;
        crate::sampling::install_decider(head_decider(head.clone()));
        let mut b = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_sampler(HeadDecided(head))
            .with_id_generator(HeadIds::default());
        if let Some(e) = span_export {
            b = b.with_batch_exporter(e);
        }
        tracer_provider = Some(b.build());
    }

    let mut meter_builder = SdkMeterProvider::builder().with_resource(resource.clone());
    let mut readers = 0;
    let mut registry = None;
    if config.prometheus {
        let reg = prometheus::Registry::new();
        match opentelemetry_prometheus::exporter()
            .with_registry(reg.clone())
            .build()
        {
            Ok(exporter) => {
                meter_builder = meter_builder.with_reader(exporter);
                registry = Some(reg);
                readers += 1;
            }
            Err(e) => warnings.push(format!("Prometheus endpoint off: {e}")),
        }
    }
    let mut otlp = false;
    if let Some((endpoint, protocol)) = target
        .as_ref()
        .filter(|_| signal_on("OTEL_METRICS_EXPORTER"))
    {
        match metric_exporter(endpoint.as_deref(), *protocol) {
            Ok(e) => {
                meter_builder = meter_builder.with_periodic_exporter(e);
                readers += 1;
                otlp = true;
            }
            Err(e) => warnings.push(format!("OTLP metric export off: {e}")),
        }
    }
    let meter_provider = (readers > 0).then(|| meter_builder.build());

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(mp) = &meter_provider {
        opentelemetry::global::set_meter_provider(mp.clone());
    }
    let tracer = tracer_provider.as_ref().map(|tp| {
        opentelemetry::global::set_tracer_provider(tp.clone());
        tp.tracer("candor")
    });
    crate::logging::install(config, tracer)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    // Build the instrument set now, on the provider just installed.
    let _ = crate::metrics();
    Ok(Telemetry {
        tracer: tracer_provider,
        meter: meter_provider,
        registry,
        otlp,
    })
}

impl Telemetry {
    /// The Prometheus registry behind `/metrics` (None when not serving Prometheus).
    pub fn registry(&self) -> Option<prometheus::Registry> {
        self.registry.clone()
    }

    /// Metrics export is on (OTLP or Prometheus): instruments record.
    pub fn metrics_on(&self) -> bool {
        self.meter.is_some()
    }

    /// Flushes queued spans and metrics (bounded: the SDK's export timeout).
    pub fn shutdown(self) {
        if let Some(tp) = self.tracer {
            let _ = tp.shutdown_with_timeout(Duration::from_secs(5));
        }
        if let Some(mp) = self.meter {
            let _ = mp.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub(crate) fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if encoder.encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace-id ratio sampler that is not parent-based decides per span: the
    /// head decision, the bridged root and its children must all agree, and a
    /// dropped request still sends its trace id downstream, unsampled.
    #[test]
    fn the_head_decision_is_the_whole_trace_decision() {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler};
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::layer::SubscriberExt;
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let head: Box<dyn ShouldSample> = Box::new(Sampler::TraceIdRatioBased(0.5));
        let decider = head_decider(head.clone());
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(HeadDecided(head))
            .with_id_generator(HeadIds::default())
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(crate::sampling::SampledOnly::new(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("t")),
        ));
        let mut dropped = 0;
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..200 {
                let root = crate::sampling::root_span_with(
                    Some(&decider),
                    &opentelemetry::Context::new(),
                    "/svc/M",
                    || tracing::info_span!("root"),
                );
                let kept = root.context().span().span_context().is_valid();
                let _e = root.enter();
                let child = tracing::info_span!("child");
                let _c = child.enter();
                let mut md = tonic::metadata::MetadataMap::new();
                crate::inject(&mut md);
                let tp = md.get("traceparent").unwrap().to_str().unwrap().to_owned();
                if kept {
                    assert!(tp.ends_with("-01"), "{tp}");
                } else {
                    dropped += 1;
                    assert!(tp.ends_with("-00"), "{tp}");
                }
            }
        });
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        let roots: std::collections::HashSet<_> = spans
            .iter()
            .filter(|s| s.name == "root")
            .map(|s| s.span_context.trace_id())
            .collect();
        let children: std::collections::HashSet<_> = spans
            .iter()
            .filter(|s| s.name == "child")
            .map(|s| s.span_context.trace_id())
            .collect();
        assert_eq!(roots, children, "every kept root has its child, no orphan");
        assert_eq!(roots.len() + dropped, 200);
        // Binomial(200, 0.5): outside [50, 150] is a 1e-12 event.
        assert!((50..=150).contains(&dropped), "{dropped}");
    }

    use opentelemetry::metrics::MeterProvider as _;

    #[test]
    fn parses_formats_and_protocols() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("xml".parse::<LogFormat>().is_err());
        assert_eq!("grpc".parse::<OtlpProtocol>().unwrap(), OtlpProtocol::Grpc);
        assert_eq!(
            "http/protobuf".parse::<OtlpProtocol>().unwrap(),
            OtlpProtocol::HttpProtobuf
        );
        assert!("http/json".parse::<OtlpProtocol>().is_err());
        assert_eq!(
            http_signal_endpoint("http://c:4318/", "traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn malformed_endpoints_fail_to_build_not_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        assert!(span_exporter(Some("not a url at all"), OtlpProtocol::Grpc).is_err());
        assert!(metric_exporter(Some("::::"), OtlpProtocol::HttpProtobuf).is_err());
        // Well-formed but unreachable: builds (export failures happen later, off-thread).
        assert!(span_exporter(Some("http://127.0.0.1:9"), OtlpProtocol::Grpc).is_ok());
    }

    #[test]
    fn resource_carries_identity() {
        let r = resource(&TelemetryConfig {
            instance_id: Some("3".into()),
            namespace: Some("prod".into()),
            role: Some("api".into()),
            ..Default::default()
        });
        let get = |k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.instance.id").as_deref(), Some("3"));
        assert_eq!(get("service.namespace").as_deref(), Some("prod"));
        assert_eq!(get("candor.role").as_deref(), Some("api"));
        assert!(get("service.name").is_some());
    }

    /// The Prometheus names the issue, the dashboard and the alert rules rely on.
    #[test]
    fn prometheus_names() {
        let reg = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(reg.clone())
            .build()
            .unwrap();
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let m = crate::Metrics::new(&provider.meter(crate::METER_NAME));
        m.record_smt_latency(0, Duration::from_millis(3));
        m.smt_signed(1, 1_000);
        m.smt_signed(1, 2_000);
        m.smt_signed(1, 9_000);
        m.epoch_signed_at(3_000);
        m.record_epoch_signed(7);
        m.shard_sealed(1, 9);
        m.auth_failure("bad_token");
        m.limit_rejected("rate");
        m.raft_snapshot(0, "build", Duration::from_millis(40));
        m.raft_step_aside(0);
        m.store_damaged_record("label-vrf");
        m.store_write("embedded", Duration::from_micros(300));
        m.register_raft("node", || {
            vec![
                (
                    "meta".to_string(),
                    crate::RaftGroupSample {
                        is_leader: true,
                        term: 3,
                        last_log_index: 10,
                        committed_index: 9,
                        applied_index: 8,
                        follower_lag: vec![("2".into(), 4)],
                    },
                ),
                ("shard-0".to_string(), crate::RaftGroupSample::default()),
            ]
        });
        m.register_disk_usage("embedded", Some(std::env::temp_dir()), || Some(4096));
        m.register_tree_loads(|| [3, 120, 256]);
        m.register_cache("vrf", || crate::CacheSample {
            bytes: 100,
            hits: 3,
            misses: 1,
        });
        m.rpc_server_duration
            .record(0.01, &[KeyValue::new("rpc.method", "Publish")]);
        let text = render(&reg);
        for want in [
            "# TYPE candor_smt_latency_seconds histogram",
            "# TYPE candor_merge_delay_seconds histogram",
            "# TYPE candor_epoch_signed_total counter",
            "# TYPE candor_raft_is_leader gauge",
            "candor_epoch_since_last_signed_seconds",
            "candor_epoch_number{otel_scope_name=\"candor\"} 7",
            "candor_shard_pending_mutations{",
            "candor_shard_sealed_revision{",
            "candor_auth_failures_total{",
            "candor_limits_rejected_total{",
            "candor_raft_elections_total{",
            "candor_raft_snapshot_duration_seconds_count{",
            "candor_raft_step_asides_total{",
            "candor_store_damaged_records_total{",
            "candor_raft_term{",
            "candor_raft_last_log_index{",
            "candor_raft_committed_index{",
            "candor_raft_applied_index{",
            "candor_raft_replication_lag{",
            "candor_store_write_duration_seconds_bucket{",
            "candor_store_disk_usage_bytes{",
            "candor_store_filesystem_available_bytes{",
            "candor_store_filesystem_capacity_bytes{",
            "candor_cache_size_bytes{",
            "candor_cache_hit_ratio{",
            "candor_cache_requests_total{",
            "candor_tree_stride_loads_total{otel_scope_name=\"candor\"} 3",
            "candor_tree_stride_records_read_total{how=\"scan\"",
            "rpc_server_call_duration_seconds_bucket{",
            "process_memory_usage_bytes",
            "process_open_file_descriptor_count",
            "process_cpu_time_seconds_total{",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let leader_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("candor_raft_is_leader{"))
            .collect();
        assert_eq!(leader_lines.len(), 2, "{leader_lines:?}");
        assert!(
            leader_lines
                .iter()
                .any(|l| l.contains("group=\"meta\"") && l.ends_with(" 1"))
        );
        assert!(text.contains("le=\"0.005\""), "latency buckets in seconds");
        // Two SMTs at or before the epoch: merged after 2 s and 1 s; one still pending.
        assert!(
            text.contains("candor_merge_delay_seconds_count{otel_scope_name=\"candor\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("candor_merge_delay_seconds_sum{otel_scope_name=\"candor\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "candor_shard_pending_mutations{shard=\"1\",otel_scope_name=\"candor\"} 1"
            ),
            "{text}"
        );
    }
}
