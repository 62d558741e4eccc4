//! Measurement primitives: latency histograms (HdrHistogram, microsecond resolution),
//! size samples and error counts by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use candor_client::ClientError;
use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency distribution in microseconds.
///
/// HdrHistogram with 3 significant digits: percentiles are exact to 0.1 % of the value,
/// whatever the range, and merging per-worker histograms is lossless.
#[derive(Clone, Debug)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram (auto-resizing).
    pub fn new() -> Self {
        Latencies {
            hist: Histogram::new(3).expect("3 significant digits is a valid precision"),
        }
    }

    /// Records `d` once.
    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records `d` for `n` operations that shared it (the items of one batch).
    pub fn record_n(&mut self, d: Duration, n: u64) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        // An auto-resizing histogram only refuses values beyond its u64 range.
        let _ = self.hist.record_n(us, n);
    }

    /// Records a value given in microseconds (e.g. a delay computed from timestamps).
    pub fn record_us(&mut self, us: u64) {
        let _ = self.hist.record(us.max(1));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // Both auto-resize, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The summary in milliseconds (zeros when empty).
    pub fn summary_ms(&self) -> LatencySummary {
        self.summary(1e-3)
    }

    /// The summary in microseconds (zeros when empty).
    pub fn summary_us(&self) -> LatencySummary {
        self.summary(1.0)
    }

    fn summary(&self, scale: f64) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        let q = |p: f64| self.hist.value_at_quantile(p) as f64 * scale;
        LatencySummary {
            count: self.hist.len(),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: self.hist.max() as f64 * scale,
            mean: self.hist.mean() * scale,
        }
    }
}

/// Percentiles of one distribution, in the unit its field name says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Sizes in bytes; keeps a histogram so the median is exact enough at any count.
#[derive(Clone, Debug, Default)]
pub struct Sizes {
    inner: Latencies,
}

impl Sizes {
    /// Records one size.
    pub fn record(&mut self, bytes: usize) {
        self.inner.record_us(bytes as u64);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Sizes) {
        self.inner.merge(&other.inner);
    }

    /// Median size (0 when empty).
    pub fn median(&self) -> u64 {
        if self.inner.count() == 0 {
            0
        } else {
            self.inner.hist.value_at_quantile(0.5)
        }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.inner.count()
    }
}

/// Failed operations by kind: the gRPC status code name (`UNAVAILABLE`,
/// `RESOURCE_EXHAUSTED`, ...) for statuses, else the client-side kind
/// (`verification_failed`, `equivocation`, `broken_promise`, `transport`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Count per kind.
    pub by_kind: BTreeMap<String, u64>,
    /// The first few distinct messages, for the human summary.
    #[serde(skip)]
    pub samples: Vec<String>,
}

/// Distinct error messages kept for the summary.
const MAX_SAMPLES: usize = 5;

impl ErrorCounts {
    /// Counts one failure.
    pub fn add(&mut self, e: &ClientError) {
        self.add_kind(error_kind(e), e.to_string());
    }

    /// Counts one failure of `kind` with its message.
    pub fn add_kind(&mut self, kind: &str, message: String) {
        *self.by_kind.entry(kind.to_string()).or_insert(0) += 1;
        if self.samples.len() < MAX_SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (k, n) in &other.by_kind {
            *self.by_kind.entry(k.clone()).or_insert(0) += n;
        }
        for m in &other.samples {
            if self.samples.len() < MAX_SAMPLES && !self.samples.contains(m) {
                self.samples.push(m.clone());
            }
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Failures that mean the service misbehaved (see
    /// [`ClientError::is_security_event`]).
    pub fn security_events(&self) -> u64 {
        SECURITY_KINDS
            .iter()
            .filter_map(|k| self.by_kind.get(*k))
            .sum()
    }
}

/// Kinds that [`ClientError::is_security_event`] flags.
pub const SECURITY_KINDS: [&str; 5] = [
    "verification_failed",
    "pin_mismatch",
    "equivocation",
    "broken_promise",
    "stale_head",
];

/// The error kind used as the key of [`ErrorCounts`].
pub fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Status(s) => code_name(s.code()),
        ClientError::Transport(_) => "transport",
        ClientError::Verification { .. } => "verification_failed",
        ClientError::PinMismatch { .. } => "pin_mismatch",
        ClientError::Equivocation(_) => "equivocation",
        ClientError::BrokenPromise(_) => "broken_promise",
        ClientError::StaleHead(_) => "stale_head",
        ClientError::InvalidArgument(_) => "invalid_argument_local",
        ClientError::State(_) => "client_state",
        ClientError::NotCosigned { .. } => "not_cosigned",
    }
}

/// The canonical name of a gRPC status code, as in the gRPC specification.
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `count / secs`, 0 for an empty interval.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::CoreError;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut l = Latencies::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary_ms();
        assert_eq!(s.count, 100);
        // 3 significant digits: within 0.1 %.
        assert!((s.p50 - 50.0).abs() <= 0.05, "{s:?}");
        assert!((s.p99 - 99.0).abs() <= 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() <= 0.1, "{s:?}");
        assert!((s.mean - 50.5).abs() <= 0.1, "{s:?}");
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Latencies::new().summary_ms(), LatencySummary::default());
        assert_eq!(Sizes::default().median(), 0);
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(10, 2.0), 5.0);
    }

    #[test]
    fn record_n_weights_batches() {
        let mut l = Latencies::new();
        l.record_n(Duration::from_millis(10), 99);
        l.record(Duration::from_millis(500));
        let s = l.summary_ms();
        assert_eq!(s.count, 100);
        assert!((s.p50 - 10.0).abs() < 0.02);
        assert!((s.p99 - 10.0).abs() < 0.02);
        assert!((s.max - 500.0).abs() < 0.5);
    }

    #[test]
    fn sizes_median() {
        let mut s = Sizes::default();
        for b in [700, 800, 750, 760, 10_000] {
            s.record(b);
        }
        assert_eq!(s.count(), 5);
        assert_eq!(s.median(), 760);
    }

    #[test]
    fn errors_by_kind() {
        let mut e = ErrorCounts::default();
        e.add(&ClientError::Status(Box::new(tonic::Status::unavailable(
            "x",
        ))));
        e.add(&ClientError::Status(Box::new(tonic::Status::unavailable(
            "x",
        ))));
        e.add(&ClientError::Verification {
            what: "lookup proof",
            source: CoreError::RootMismatch { what: "lookup" },
        });
        let mut f = ErrorCounts::default();
        f.add(&ClientError::Status(Box::new(
            tonic::Status::resource_exhausted("big"),
        )));
        e.merge(&f);
        assert_eq!(e.by_kind["UNAVAILABLE"], 2);
        assert_eq!(e.by_kind["verification_failed"], 1);
        assert_eq!(e.by_kind["RESOURCE_EXHAUSTED"], 1);
        assert_eq!(e.total(), 4);
        assert_eq!(e.security_events(), 1);
        // Distinct messages only.
        assert_eq!(e.samples.len(), 3);
    }

    proptest! {
        /// Merging per-worker histograms gives the histogram of all samples.
        #[test]
        fn merge_is_union(a in prop::collection::vec(1u64..10_000_000, 0..200),
                          b in prop::collection::vec(1u64..10_000_000, 0..200)) {
            let mut ha = Latencies::new();
            let mut hb = Latencies::new();
            let mut all = Latencies::new();
            for &x in &a { ha.record_us(x); all.record_us(x); }
            for &x in &b { hb.record_us(x); all.record_us(x); }
            ha.merge(&hb);
            prop_assert_eq!(ha.summary_us(), all.summary_us());
        }

        /// Percentiles are ordered and within the recorded range.
        #[test]
        fn percentiles_ordered(v in prop::collection::vec(1u64..100_000_000, 1..300)) {
            let mut h = Latencies::new();
            for &x in &v { h.record_us(x); }
            let s = h.summary_us();
            let lo = *v.iter().min().unwrap() as f64;
            let hi = *v.iter().max().unwrap() as f64;
            prop_assert!(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
            // Within HdrHistogram's 0.1 % bucket precision of the true range.
            prop_assert!(s.p50 >= lo * 0.999 && s.max <= hi * 1.001);
        }
    }
}
