//! The log subscriber: an env filter, text or JSON lines (JSON with the
//! OpenTelemetry trace_id and span_id), the span bridge to OpenTelemetry, and
//! a rate limit on openraft's repeated warnings (a member that is down makes
//! every heartbeat fail; one line per call site every [`WARN_EVERY`] is enough).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt;
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::Error;
use crate::export::{LogFormat, TelemetryConfig};

/// At most one openraft warning per call site per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Per-layer filter passing at most one WARN-or-quieter event per openraft
/// call site per interval; everything else passes.
pub(crate) struct RateLimit {
    every: Duration,
    last: Mutex<HashMap<Identifier, Instant>>,
}

impl RateLimit {
    pub(crate) fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        // Errors always pass; so does everything not from openraft.
        if *meta.level() == Level::ERROR || !meta.target().starts_with("openraft") {
            return true;
        }
        let Ok(mut last) = self.last.lock() else {
            return true;
        };
        let now = Instant::now();
        match last.get(&meta.callsite()) {
            Some(at) if now.duration_since(*at) < self.every => false,
            _ => {
                last.insert(meta.callsite(), now);
                true
            }
        }
    }
}

/// Collects an event's or span's fields into a JSON map.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

/// One JSON object per line: timestamp, level, target, message, the event's
/// fields, the span path, and (inside a sampled or unsampled OpenTelemetry
/// span) `trace_id` and `span_id` in W3C hex.
pub(crate) struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut obj = serde_json::Map::new();
        let mut ts = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts))?;
        obj.insert("timestamp".into(), ts.into());
        let meta = event.metadata();
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        if let Some(m) = fields.remove("message") {
            obj.insert("message".into(), m);
        }
        if !fields.is_empty() {
            obj.insert("fields".into(), fields.into());
        }
        if let Some(scope) = ctx.event_scope() {
            let names: Vec<serde_json::Value> =
                scope.from_root().map(|s| s.name().into()).collect();
            obj.insert("spans".into(), names.into());
        }
        // tracing-opentelemetry activates a span's OpenTelemetry context when
        // the span is entered (JSON lines only: see `install`), so the current
        // context is the event's span. (`Span::current()` is not usable here: a
        // formatter runs inside the dispatcher, which then reports no span.)
        // Inside an unsampled request the inner spans are not bridged (see
        // `sampling`): their lines carry the request root's ids.
        let unsampled = ctx.lookup_current().and_then(|s| {
            s.extensions()
                .get::<crate::sampling::Unsampled>()
                .map(|u| u.cx.clone())
        });
        let cx = unsampled.unwrap_or_else(opentelemetry::Context::current);
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            obj.insert("trace_id".into(), sc.trace_id().to_string().into());
            obj.insert("span_id".into(), sc.span_id().to_string().into());
        }
        let line = serde_json::to_string(&obj).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Targets whose spans and events must not feed the OpenTelemetry span bridge:
/// the exporters' own transport would otherwise trace its own exports.
const EXPORTER_TARGETS: &[&str] = &[
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
];

fn bridge_filter() -> tracing_subscriber::filter::Targets {
    let mut t = tracing_subscriber::filter::Targets::new().with_default(Level::TRACE);
    for target in EXPORTER_TARGETS {
        t = t.with_target(*target, tracing_subscriber::filter::LevelFilter::OFF);
    }
    t
}

pub(crate) fn install(
    config: &TelemetryConfig,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
) -> Result<(), Error> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| Error::LogFilter(config.log_filter.clone(), e.to_string()))?;
    let fmt_layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(RateLimit::new(WARN_EVERY))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(JsonFormat)
            .with_filter(RateLimit::new(WARN_EVERY))
            .boxed(),
    };
    let otel_layer = tracer.map(|t| {
        // Busy/idle tracking reads the clock and context activation swaps the
        // thread's OpenTelemetry context on every poll of every instrumented
        // future; thread and source-location attributes are built per span: all
        // work on the request path (issue 12's export cost). Propagation
        // reads the span's own context; only JSON lines need the activated one.
        crate::sampling::SampledOnly::new(
            tracing_opentelemetry::layer()
                .with_tracer(t)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_context_activation(config.log_format == LogFormat::Json),
        )
        .with_filter(bridge_filter())
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| Error::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_trace_and_span_ids() {
        use opentelemetry::trace::TracerProvider as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(buf.clone())
                    .event_format(JsonFormat),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, "outside");
            let span = tracing::info_span!("rpc", tenant = "t1");
            let _e = span.enter();
            tracing::info!("inside");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["message"], "outside");
        assert_eq!(lines[0]["fields"]["answer"], 42);
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["spans"][0], "rpc");
        let trace_id = lines[1]["trace_id"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32);
        assert_ne!(trace_id, "00000000000000000000000000000000");
        assert_eq!(lines[1]["span_id"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn json_lines_inside_unsampled_requests_carry_the_root_ids() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .build();
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(buf.clone())
                    .event_format(JsonFormat),
            )
            .with(crate::sampling::SampledOnly::new(
                tracing_opentelemetry::layer().with_tracer(provider.tracer("t")),
            ));
        let mut root_trace = String::new();
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("grpc.server");
            crate::sampling::mark_if_unsampled(&root);
            root_trace = root.context().span().span_context().trace_id().to_string();
            let _r = root.enter();
            let child = tracing::info_span!("rpc");
            let _c = child.enter();
            tracing::info!("inside");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["spans"][1], "rpc");
        assert_eq!(line["trace_id"].as_str().unwrap(), root_trace);
    }

    #[test]
    fn openraft_warnings_are_rate_limited() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(buf.clone())
                .with_filter(RateLimit::new(Duration::from_secs(3600))),
        );
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..50 {
                tracing::warn!(target: "openraft::network", "heartbeat failed");
                tracing::warn!(target: "candor", "other");
            }
            tracing::error!(target: "openraft::core", "real error");
            tracing::error!(target: "openraft::core", "real error");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.matches("heartbeat failed").count(), 1, "{out}");
        assert_eq!(out.matches("other").count(), 50);
        assert_eq!(out.matches("real error").count(), 2);
    }
}
