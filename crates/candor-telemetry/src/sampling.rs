//! Head sampling decided once per request, so unsampled requests skip the
//! span bridge.
//!
//! tracing-opentelemetry builds an OpenTelemetry span for every `tracing`
//! span it sees: it collects the attributes, asks the sampler, starts the
//! span and ends it. For a request the sampler has already dropped, every
//! child span gets the same "drop" answer from the parent-based sampler. That
//! work was most of the export cost (issue 12).
//!
//! The decision is now taken once, at the root: [`root_span`] makes a
//! request's root span (the `grpc.server` span of
//! [`crate::GrpcServerService`]) after asking the configured head sampler
//! (installed by `init`). If the sampler drops the trace, the root is never
//! shown to the bridge: its registry entry is marked [`Unsampled`], holding a
//! context with the trace id, a span id and the sampled flag off.
//! [`SampledOnly`] wraps the bridge layer. It gives every descendant of a
//! marked span the same mark and does not show it to the bridge either. The
//! descendants are found through explicit or contextual parents, the same
//! rules the bridge uses. A kept root is bridged, and the bridge's sampler is
//! told the decision is taken (so a ratio sampler does not draw twice).
//!
//! Without an installed sampler (a test's own subscriber), [`root_span`]
//! lets the bridge start the root and marks it afterwards if it was dropped
//! ([`mark_if_unsampled`]): its descendants are still hidden.
//!
//! What stays exact:
//! * An unsampled request still propagates. [`unsampled_context`] gives the
//!   root's context (sampled flag off) to `inject`, so a downstream hop does
//!   not start a trace of its own.
//! * JSON log lines still carry the root's trace_id and span_id.
//! * Sampled requests are bridged as before.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use opentelemetry::Context;
use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanData};

/// Registry extension: this span's trace was not sampled. `cx` is the root's
/// OpenTelemetry context (a non-recording span, sampled flag off). `root`: the
/// span the decision was taken on (it stays bridged; its descendants do not).
#[derive(Clone)]
pub(crate) struct Unsampled {
    pub(crate) cx: Context,
    root: bool,
}

/// What the head sampler says about a request's root.
pub enum RootDecision {
    /// Bridge the root and its descendants, in this trace (the caller's, or
    /// the new one the sampler decided on).
    Keep(TraceId),
    /// Bridge nothing; this context (sampled flag off) travels downstream.
    Drop(Context),
}

/// The head sampler as a decision on a root: the caller's context (empty
/// for a new trace) and the span name.
pub type Decider = Box<dyn Fn(&Context, &str) -> RootDecision + Send + Sync>;

static DECIDER: OnceLock<Decider> = OnceLock::new();

thread_local! {
    /// The context of the root being made hidden, for `SampledOnly::on_new_span`
    /// (set and cleared around the span's creation, on this thread).
    static HIDDEN_ROOT: RefCell<Option<Context>> = const { RefCell::new(None) };
    /// The root being started was kept by [`root_span`], in this trace: the
    /// bridge's sampler must not decide again, and a new trace gets this id.
    static KEPT_ROOT: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Installs the head sampler (once per process; `init` does it when traces
/// are on).
pub fn install_decider(decider: Decider) {
    let _ = DECIDER.set(decider);
}

/// Whether the span being started is a root [`root_span`] already kept. The
/// installed SDK sampler asks this first.
pub fn root_already_kept() -> bool {
    KEPT_ROOT.with(Cell::get).is_some()
}

/// The trace id the head sampler decided on, while [`root_span`] starts the
/// kept root: the installed id generator uses it, so the bridged trace is the
/// one sampled.
pub fn kept_root_trace_id() -> Option<TraceId> {
    KEPT_ROOT.with(Cell::get)
}

/// Makes a request's root span with `make`, as a child of `parent` (the
/// caller's context, possibly empty), sampled once: see the module docs.
pub fn root_span(
    parent: &Context,
    name: &str,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    root_span_with(DECIDER.get(), parent, name, make)
}

pub(crate) fn root_span_with(
    decider: Option<&Decider>,
    parent: &Context,
    name: &str,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    let has_parent = parent.span().span_context().is_valid();
    let Some(decide) = decider else {
        let span = make();
        if has_parent {
            // Err only when no OpenTelemetry layer is installed: nothing to link.
            let _ = span.set_parent(parent.clone());
        }
        mark_if_unsampled(&span);
        return span;
    };
    match decide(parent, name) {
        RootDecision::Drop(cx) => {
            HIDDEN_ROOT.with(|h| *h.borrow_mut() = Some(cx));
            let span = make();
            // Not consumed if the span is disabled: clear it either way.
            HIDDEN_ROOT.with(|h| h.borrow_mut().take());
            span
        }
        RootDecision::Keep(trace_id) => {
            let span = make();
            if has_parent {
                let _ = span.set_parent(parent.clone());
            }
            KEPT_ROOT.with(|k| k.set(Some(trace_id)));
            // Starts the bridged span now, while the decision is posted.
            let _ = span.context();
            KEPT_ROOT.with(|k| k.set(None));
            span
        }
    }
}

/// Asks the sampler about `span` (a request's root; its parent, if any, is
/// already set). If the trace is dropped, marks the span so its descendants
/// skip the bridge. Does nothing without an OpenTelemetry layer.
pub fn mark_if_unsampled(span: &tracing::Span) {
    if span.is_disabled() {
        return;
    }
    // Starts the bridged span, which runs the sampler.
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() || sc.is_sampled() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(data) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|r| r.span_data(id))
        {
            data.extensions_mut().insert(Unsampled {
                cx: cx.clone(),
                root: true,
            });
        }
    });
}

/// The root context of `span`'s trace if the trace is unsampled. This is what
/// `inject` sends downstream: the sampled flag off, so the next hop drops too.
pub fn unsampled_context(span: &tracing::Span) -> Option<Context> {
    let mut out = None;
    span.with_subscriber(|(id, dispatch)| {
        out = dispatch
            .downcast_ref::<Registry>()
            .and_then(|r| r.span_data(id))
            .and_then(|d| d.extensions().get::<Unsampled>().map(|u| u.cx.clone()));
    });
    out
}

/// Wraps the span bridge. Spans below an unsampled root are never shown to
/// `inner`; everything else passes through unchanged.
pub struct SampledOnly<L> {
    inner: L,
}

impl<L> SampledOnly<L> {
    /// Wraps `inner`, the tracing-opentelemetry layer.
    pub fn new(inner: L) -> Self {
        SampledOnly { inner }
    }
}

/// Whether `id` is below an unsampled root: hidden from the bridge.
fn hidden<S>(id: &Id, ctx: &LayerContext<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.span(id)
        .is_some_and(|s| s.extensions().get::<Unsampled>().is_some_and(|u| !u.root))
}

impl<S, L> Layer<S> for SampledOnly<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber)
    }
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }
    fn enabled(&self, metadata: &Metadata<'_>, ctx: LayerContext<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }
    fn event_enabled(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if let Some(cx) = HIDDEN_ROOT.with(|h| h.borrow_mut().take())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Unsampled { cx, root: false });
            return;
        }
        // The parent the bridge would use: explicit if given, else the
        // current span (a root span has neither).
        let parent = match attrs.parent() {
            Some(p) => ctx.span(p),
            None if attrs.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        let inherited =
            parent.and_then(|p| p.extensions().get::<Unsampled>().map(|u| u.cx.clone()));
        if let Some(cx) = inherited
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Unsampled { cx, root: false });
            return;
        }
        self.inner.on_new_span(attrs, id, ctx)
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        // The bridge converts the values before it looks for the span's data.
        if !hidden(id, &ctx) {
            self.inner.on_record(id, values, ctx)
        }
    }
    // Enter, exit, close and follows-from are forwarded as they are: the bridge
    // finds no OpenTelemetry data on a hidden span and does nothing, and an
    // extra lookup here would cost on every poll of every instrumented future.
    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: LayerContext<'_, S>) {
        self.inner.on_follows_from(id, follows, ctx)
    }
    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        // The bridge builds the span event before it looks for the span's data.
        let span = match event.parent() {
            Some(p) => Some(p.clone()),
            None if event.is_contextual() => ctx.lookup_current().map(|s| s.id()),
            None => None,
        };
        if !span.is_some_and(|id| hidden(&id, &ctx)) {
            self.inner.on_event(event, ctx)
        }
    }
    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        self.inner.on_enter(id, ctx)
    }
    fn on_exit(&self, id: &Id, ctx: LayerContext<'_, S>) {
        self.inner.on_exit(id, ctx)
    }
    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        self.inner.on_close(id, ctx)
    }
    fn on_id_change(&self, old: &Id, new: &Id, ctx: LayerContext<'_, S>) {
        self.inner.on_id_change(old, new, ctx)
    }

    /// Forwards downcasts: tracing-opentelemetry finds its context accessor
    /// (`span.context()`, `set_parent`) through the subscriber's downcast.
    ///
    /// # Safety
    /// As [`Layer::downcast_raw`]: the pointer is to `self` or comes from `inner`.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else {
            // SAFETY: the inner layer upholds the same contract.
            unsafe { self.inner.downcast_raw(id) }
        }
    }
}

#[cfg(all(test, feature = "export"))]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    /// A request: root (marked as the server layer does), a contextual child, a
    /// grandchild with an explicit parent created outside the request's scope
    /// (as the shard's batched write does), and what `inject` would send.
    fn request(sampler: Sampler) -> (Vec<String>, String, String, bool) {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(SampledOnly::new(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("t")),
        ));
        let mut injected = String::new();
        let mut root_trace = String::new();
        let mut child_bridged = false;
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            mark_if_unsampled(&root);
            root_trace = root.context().span().span_context().trace_id().to_string();
            let child = root.in_scope(|| tracing::info_span!("child", n = 1));
            child_bridged = child.context().span().span_context().is_valid();
            child.in_scope(|| {
                child.record("n", 2);
                tracing::info!("inside");
                let mut md = tonic::metadata::MetadataMap::new();
                crate::inject(&mut md);
                injected = md
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
            });
            let detached = tracing::info_span!(parent: &child, "batch");
            detached.follows_from(&root);
            drop(detached);
        });
        let _ = provider.force_flush();
        let mut names: Vec<String> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .map(|s| s.name.into_owned())
            .collect();
        names.sort();
        (names, injected, root_trace, child_bridged)
    }

    #[test]
    fn sampled_requests_are_bridged_whole() {
        let (names, injected, trace, child_bridged) = request(Sampler::AlwaysOn);
        assert!(child_bridged);
        assert_eq!(names, ["batch", "child", "root"]);
        assert!(injected.contains(&trace), "{injected}");
        assert!(injected.ends_with("-01"), "{injected}");
    }

    #[test]
    fn unsampled_requests_still_propagate_their_decision() {
        let (names, injected, trace, child_bridged) = request(Sampler::AlwaysOff);
        assert!(names.is_empty(), "{names:?}");
        // The point: the bridge never built a span below the dropped root.
        assert!(!child_bridged);
        // Downstream sees the root's trace with the sampled flag off.
        assert!(injected.contains(&trace), "{injected}");
        assert!(injected.ends_with("-00"), "{injected}");
    }
}
