//! The result of a run: the JSON summary (`--json FILE`) and its human form.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::options::{Mix, Stop};
use crate::stats::{ErrorCounts, Latencies, LatencySummary, Sizes, rate};

/// Median and 99th percentile, the two figures the targets are stated in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct P50P99 {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl From<LatencySummary> for P50P99 {
    fn from(s: LatencySummary) -> Self {
        P50P99 {
            p50: s.p50,
            p99: s.p99,
        }
    }
}

/// What was run.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// The endpoint, or `embedded` for an in-process `candor dev`.
    pub target: String,
    /// Whether the service ran in this process.
    pub embedded: bool,
    /// The service's namespace and configuration digest (hex).
    pub namespace: String,
    /// Digest of the pinned configuration.
    pub config_digest: String,
    /// Epoch interval the service announces.
    pub epoch_interval_ms: u64,
    /// Maximum merge delay the service promises.
    pub max_merge_delay_ms: u64,
    /// Shards of the service.
    pub shards: u32,
    /// The operation mix.
    pub mix: Mix,
    /// Tasks issuing operations.
    pub concurrency: usize,
    /// gRPC connections (independent verifying clients).
    pub connections: usize,
    /// Items per PublishBatch.
    pub batch: usize,
    /// Value size, bytes.
    pub value_size: usize,
    /// Stop condition.
    pub stop: Stop,
    /// Labels published before the measured run.
    pub preload: usize,
    /// Every Nth SMT checked for its merge (0 = none).
    pub merge_sample: u64,
    /// Verified VRF proofs the load generator remembered (0 = every one verified).
    pub vrf_memo: usize,
    /// Cores of this machine (`available_parallelism`).
    pub client_cores: usize,
}

/// Counts behind the rates.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Measured wall-clock seconds (first operation to last completion).
    pub elapsed_s: f64,
    /// Mutations acknowledged with a verified SMT.
    pub mutations: u64,
    /// Of which new labels.
    pub new_labels: u64,
    /// Of which updates.
    pub updates: u64,
    /// PublishBatch calls that succeeded.
    pub publish_calls: u64,
    /// Verified lookups.
    pub lookups: u64,
    /// Of which proved the label present.
    pub lookups_found: u64,
    /// SMTs whose merge was checked.
    pub merge_samples: u64,
    /// Of which confirmed merged in a signed epoch.
    pub merge_confirmed: u64,
    /// Of which neither confirmed nor past their deadline when the run stopped waiting.
    pub merge_unconfirmed: u64,
}

/// Everything a run measured. Serialises to the `--json` summary; `Display` is the human
/// summary.
///
/// Latencies are client-observed wall clock: `smt_latency_ms` from sending a
/// PublishBatch to holding its verified SMTs (each item of a batch counts once),
/// `lookup_latency_ms` from sending a Lookup to holding the verified result (RPC,
/// proof verification, head consistency). `merge_delay_ms` is the service's own clock:
/// the timestamp of the first signed head whose map holds the SMT's leaf minus the SMT's
/// timestamp, for the sampled SMTs. `verify_us_median` is the SDK's verification of one
/// lookup answer (head signature, VRF, path, opening).
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Mutations acknowledged (verified SMT) per second.
    pub mutations_per_s: f64,
    /// PublishBatch round trip per mutation, ms.
    pub smt_latency_ms: P50P99,
    /// SMT timestamp to the first signed head containing it, ms.
    pub merge_delay_ms: P50P99,
    /// Verified lookups per second.
    pub lookups_per_s: f64,
    /// Lookup round trip including verification, ms.
    pub lookup_latency_ms: P50P99,
    /// Median encoded lookup proof, bytes.
    pub proof_bytes_median: u64,
    /// Median SDK verification time of one lookup answer, µs.
    pub verify_us_median: f64,
    /// Failed operations by gRPC status or client-side kind.
    pub errors: BTreeMap<String, u64>,
    /// Full distributions (count, p50, p90, p99, p99.9, max, mean).
    pub detail: Detail,
    /// Counts behind the rates.
    pub counts: Counts,
    /// What was run.
    pub run: RunInfo,
    /// A few distinct error messages.
    pub error_samples: Vec<String>,
}

/// Full distributions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Detail {
    /// PublishBatch round trip per mutation, ms.
    pub smt_latency_ms: LatencySummary,
    /// Sampled merge delays, ms.
    pub merge_delay_ms: LatencySummary,
    /// Verified lookup round trip, ms.
    pub lookup_latency_ms: LatencySummary,
    /// SDK verification of a lookup answer, µs.
    pub verify_us: LatencySummary,
}

/// Raw measurements a run collects (merged over workers).
#[derive(Clone, Debug, Default)]
pub struct Collected {
    /// PublishBatch latency per mutation.
    pub smt: Latencies,
    /// Merge delays (recorded in µs).
    pub merge: Latencies,
    /// Verified lookup latency.
    pub lookup: Latencies,
    /// Lookup verification time.
    pub verify: Latencies,
    /// Lookup proof sizes.
    pub proof_bytes: Sizes,
    /// Failures.
    pub errors: ErrorCounts,
    /// Counts (`elapsed_s` included).
    pub counts: Counts,
}

impl Collected {
    /// Adds a worker's measurements (counts except elapsed time).
    pub fn merge(&mut self, o: &Collected) {
        self.smt.merge(&o.smt);
        self.merge.merge(&o.merge);
        self.lookup.merge(&o.lookup);
        self.verify.merge(&o.verify);
        self.proof_bytes.merge(&o.proof_bytes);
        self.errors.merge(&o.errors);
        let (c, d) = (&mut self.counts, &o.counts);
        c.mutations += d.mutations;
        c.new_labels += d.new_labels;
        c.updates += d.updates;
        c.publish_calls += d.publish_calls;
        c.lookups += d.lookups;
        c.lookups_found += d.lookups_found;
        c.merge_samples += d.merge_samples;
        c.merge_confirmed += d.merge_confirmed;
        c.merge_unconfirmed += d.merge_unconfirmed;
    }
}

impl BenchReport {
    /// The report of `c` for the run described by `run`.
    pub fn build(c: &Collected, run: RunInfo) -> BenchReport {
        let secs = c.counts.elapsed_s;
        let detail = Detail {
            smt_latency_ms: c.smt.summary_ms(),
            merge_delay_ms: c.merge.summary_ms(),
            lookup_latency_ms: c.lookup.summary_ms(),
            verify_us: c.verify.summary_us(),
        };
        BenchReport {
            mutations_per_s: rate(c.counts.mutations, secs),
            smt_latency_ms: detail.smt_latency_ms.into(),
            merge_delay_ms: detail.merge_delay_ms.into(),
            lookups_per_s: rate(c.counts.lookups, secs),
            lookup_latency_ms: detail.lookup_latency_ms.into(),
            proof_bytes_median: c.proof_bytes.median(),
            verify_us_median: detail.verify_us.p50,
            errors: c.errors.by_kind.clone(),
            detail,
            counts: c.counts.clone(),
            run,
            error_samples: c.errors.samples.clone(),
        }
    }

    /// All failed operations.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failed operations as a fraction of all attempted (0 when nothing ran).
    pub fn error_ratio(&self) -> f64 {
        let errors = self.error_total() as f64;
        let ok = (self.counts.publish_calls + self.counts.lookups) as f64;
        if errors + ok == 0.0 {
            0.0
        } else {
            errors / (errors + ok)
        }
    }

    /// Failures that mean the service misbehaved (failed verification, pin mismatch,
    /// equivocation, broken promise). Any such failure should fail the command.
    pub fn security_events(&self) -> u64 {
        crate::stats::SECURITY_KINDS
            .iter()
            .filter_map(|k| self.errors.get(*k))
            .sum()
    }

    /// The JSON summary (pretty, with a final newline).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}

fn ms(s: &LatencySummary) -> String {
    if s.count == 0 {
        "no samples".into()
    } else {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            s.p50, s.p99, s.max, s.count
        )
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.run;
        let c = &self.counts;
        writeln!(
            f,
            "candor bench: {} ({}, {} shards, {} ms epochs, {} ms maximum merge delay)",
            r.target, r.namespace, r.shards, r.epoch_interval_ms, r.max_merge_delay_ms
        )?;
        writeln!(
            f,
            "  mix {}, concurrency {}, {} connections, batch {}, values {} B, {:.1} s measured",
            r.mix, r.concurrency, r.connections, r.batch, r.value_size, c.elapsed_s
        )?;
        writeln!(
            f,
            "  mutations  {:>10.0}/s  ({} new, {} updates in {} calls)",
            self.mutations_per_s, c.new_labels, c.updates, c.publish_calls
        )?;
        writeln!(f, "    SMT latency   {}", ms(&self.detail.smt_latency_ms))?;
        writeln!(
            f,
            "    merge delay   {} [{} sampled, {} confirmed, {} unconfirmed]",
            ms(&self.detail.merge_delay_ms),
            c.merge_samples,
            c.merge_confirmed,
            c.merge_unconfirmed
        )?;
        writeln!(
            f,
            "  lookups    {:>10.0}/s  ({} verified, {} found)",
            self.lookups_per_s, c.lookups, c.lookups_found
        )?;
        writeln!(
            f,
            "    latency       {}",
            ms(&self.detail.lookup_latency_ms)
        )?;
        writeln!(
            f,
            "    proof         median {} B; SDK verification median {:.0} µs",
            self.proof_bytes_median, self.verify_us_median
        )?;
        if self.errors.is_empty() {
            writeln!(f, "  errors     none")?;
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(f, "  errors     {}", list.join(", "))?;
            for m in &self.error_samples {
                writeln!(f, "    e.g. {m}")?;
            }
            if self.security_events() > 0 {
                writeln!(
                    f,
                    "  SECURITY: {} answers failed verification or broke a promise",
                    self.security_events()
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run_info() -> RunInfo {
        RunInfo {
            target: "embedded".into(),
            embedded: true,
            namespace: "bench".into(),
            config_digest: "00".repeat(32),
            epoch_interval_ms: 1000,
            max_merge_delay_ms: 10_000,
            shards: 16,
            mix: Mix::default(),
            concurrency: 4,
            connections: 2,
            batch: 10,
            value_size: 32,
            stop: Stop::Ops(100),
            preload: 0,
            merge_sample: 1,
            vrf_memo: 0,
            client_cores: 2,
        }
    }

    fn collected() -> Collected {
        let mut c = Collected::default();
        c.smt.record_n(Duration::from_millis(20), 10);
        c.merge.record_us(1_200_000);
        for us in [300, 400, 500] {
            c.lookup.record(Duration::from_micros(us * 10));
            c.verify.record(Duration::from_micros(us));
        }
        c.proof_bytes.record(760);
        c.counts.mutations = 10;
        c.counts.new_labels = 10;
        c.counts.publish_calls = 1;
        c.counts.lookups = 3;
        c.counts.elapsed_s = 2.0;
        c.errors.add_kind("UNAVAILABLE", "gRPC status: down".into());
        c
    }

    #[test]
    fn json_has_the_documented_fields() {
        let report = BenchReport::build(&collected(), run_info());
        let v: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(v["mutations_per_s"], 5.0);
        assert_eq!(v["lookups_per_s"], 1.5);
        for k in ["smt_latency_ms", "merge_delay_ms", "lookup_latency_ms"] {
            assert!(v[k]["p50"].is_number(), "{k}.p50");
            assert!(v[k]["p99"].is_number(), "{k}.p99");
        }
        assert!((v["smt_latency_ms"]["p50"].as_f64().unwrap() - 20.0).abs() < 0.05);
        assert!((v["merge_delay_ms"]["p99"].as_f64().unwrap() - 1200.0).abs() < 1.0);
        assert_eq!(v["proof_bytes_median"], 760);
        assert!((v["verify_us_median"].as_f64().unwrap() - 400.0).abs() < 0.5);
        assert_eq!(v["errors"]["UNAVAILABLE"], 1);
    }

    #[test]
    fn merge_adds_counts_and_samples() {
        let mut a = collected();
        a.merge(&collected());
        assert_eq!(a.counts.mutations, 20);
        assert_eq!(a.smt.count(), 20);
        assert_eq!(a.errors.total(), 2);
        // Elapsed time is the run's, not a sum.
        assert_eq!(a.counts.elapsed_s, 2.0);
    }

    #[test]
    fn human_summary_mentions_every_figure() {
        let mut c = collected();
        c.errors.add_kind("verification_failed", "bad proof".into());
        let report = BenchReport::build(&c, run_info());
        let s = report.to_string();
        for needle in [
            "mutations",
            "SMT latency",
            "merge delay",
            "lookups",
            "median 760 B",
            "UNAVAILABLE 1",
            "SECURITY",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from\n{s}");
        }
        assert_eq!(report.security_events(), 1);
        assert_eq!(report.error_total(), 2);
    }
}
