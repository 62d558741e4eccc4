//! The comparison table and its JSON form.
//!
//! Every row carries akd's figure, Candor's figure (absent until Candor is measured),
//! the ratio candor/akd and the project's target for that ratio. The ratio is always
//! candor's figure over akd's, so for throughput rows it is Candor's speedup and for time
//! and size rows it is the fraction of akd's time or bytes that Candor needs.

use crate::BenchError;
use crate::runner::Measurements;
use crate::workload::Workload;
use serde::Serialize;

/// A goal for the ratio candor/akd.
#[derive(Clone, Copy, Debug, Serialize)]
pub enum Target {
    /// The ratio must be at least this (throughput rows).
    AtLeast(f64),
    /// The ratio must be at most this (time and size rows).
    AtMost(f64),
}

impl Target {
    /// Whether `ratio` meets the target.
    pub fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtLeast(t) => ratio >= t,
            Target::AtMost(t) => ratio <= t,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}x", trim(t)),
            Target::AtMost(t) => format!("<= {}x", trim(t)),
        }
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One line of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What is measured.
    pub name: String,
    /// Unit of the two figures.
    pub unit: &'static str,
    /// akd's figure.
    pub akd: f64,
    /// Candor's figure (embedded store), when Candor was measured.
    pub candor: Option<f64>,
    /// candor / akd.
    pub ratio: Option<f64>,
    /// Candor's figure on the in-memory store, when measured too.
    pub candor_mem: Option<f64>,
    /// candor_mem / akd.
    pub ratio_mem: Option<f64>,
    /// The project's target for the ratio, if it set one.
    pub target: Option<Target>,
    /// The target as text (`>= 1.5x`).
    pub target_text: Option<String>,
    /// Whether the ratio (embedded store) meets the target (None without a Candor figure
    /// or a target).
    pub met: Option<bool>,
}

/// Builds the rows from akd's measurements and, when available, Candor's on the embedded
/// store (`candor`, judged against the targets) and on the in-memory store (`candor_mem`).
pub fn rows(
    akd: &Measurements,
    candor: Option<&Measurements>,
    candor_mem: Option<&Measurements>,
) -> Vec<Row> {
    let mut out = Vec::new();
    let mut row = |name: String,
                   unit: &'static str,
                   target: Option<Target>,
                   f: &dyn Fn(&Measurements) -> f64| {
        let a = f(akd);
        let c = candor.map(f);
        let ratio = c.map(|c| c / a);
        let cm = candor_mem.map(f);
        out.push(Row {
            name,
            unit,
            akd: a,
            candor: c,
            ratio,
            candor_mem: cm,
            ratio_mem: cm.map(|c| c / a),
            target,
            target_text: target.map(Target::describe),
            met: match (ratio, target) {
                (Some(r), Some(t)) => Some(t.met(r)),
                _ => None,
            },
        });
    };

    for (b, t) in akd.publish_batches.iter().enumerate() {
        row(
            format!("publish new labels, batch {} ({} labels)", b + 1, t.items),
            "labels/s",
            None,
            &move |m| m.publish_batches.get(b).map_or(f64::NAN, |t| t.per_sec()),
        );
    }
    row(
        "publish new labels, all batches".into(),
        "labels/s",
        Some(Target::AtLeast(1.5)),
        &|m| m.publish_total().per_sec(),
    );
    row(
        format!("update existing labels ({} in 1 batch)", akd.update.items),
        "labels/s",
        Some(Target::AtLeast(4.0)),
        &|m| m.update.per_sec(),
    );
    row(
        "lookup proof generation, one at a time".into(),
        "proofs/s",
        Some(Target::AtLeast(20.0)),
        &|m| m.lookup_gen.per_sec(),
    );
    // akd's batch_lookup against Candor's concurrent lookups on every core: each
    // system's best way to serve many lookups.
    row(
        "lookup proof generation, batch API / all cores".into(),
        "proofs/s",
        Some(Target::AtLeast(20.0)),
        &|m| m.lookup_gen_batched.per_sec(),
    );
    row(
        "lookup proof verify".into(),
        "us/proof",
        Some(Target::AtMost(0.5)),
        &|m| m.lookup_verify.micros_each(),
    );
    row(
        "lookup proof size, mean".into(),
        "bytes",
        Some(Target::AtMost(1.0 / 3.0)),
        &|m| m.lookup_bytes.mean,
    );
    row("lookup proof size, median".into(), "bytes", None, &|m| {
        m.lookup_bytes.median as f64
    });
    row(
        "history proof (2 versions) generation".into(),
        "us/proof",
        None,
        &|m| m.history_gen.micros_each(),
    );
    row(
        "history proof (2 versions) verify".into(),
        "us/proof",
        None,
        &|m| m.history_verify.micros_each(),
    );
    row(
        "history proof (2 versions) size, mean".into(),
        "bytes",
        None,
        &|m| m.history_bytes.mean,
    );
    row(
        format!(
            "audit proof of update epoch ({} changed), generation",
            akd.update.items
        ),
        "ms",
        None,
        &|m| m.audit_gen.secs * 1e3,
    );
    // "Verified at least 2x faster" is a time ratio of at most 0.5.
    row(
        "audit proof verify".into(),
        "ms",
        Some(Target::AtMost(0.5)),
        &|m| m.audit_verify.secs * 1e3,
    );
    row(
        "audit proof size".into(),
        "bytes",
        Some(Target::AtMost(0.5)),
        &|m| m.audit_bytes as f64,
    );
    out
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 1000.0 {
        // Thousands separators keep large throughputs and sizes readable.
        let s = format!("{:.0}", x);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Renders the rows as a fixed-width text table. The in-memory columns appear only when
/// some row has an in-memory figure.
pub fn table(rows: &[Row]) -> String {
    let with_mem = rows.iter().any(|r| r.candor_mem.is_some());
    let ratio = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.3}x"));
    let mut header = vec![
        "workload",
        "unit",
        "akd",
        "candor",
        "candor/akd",
        "target",
        "met",
    ];
    if with_mem {
        header.extend(["candor mem", "mem/akd"]);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.name.clone(),
                r.unit.to_string(),
                num(r.akd),
                r.candor.map_or("n/a".into(), num),
                ratio(r.ratio),
                r.target_text.clone().unwrap_or_else(|| "-".into()),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ];
            if with_mem {
                c.push(r.candor_mem.map_or("n/a".into(), num));
                c.push(ratio(r.ratio_mem));
            }
            c
        })
        .collect();
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(&width).enumerate() {
            let w = *w;
            // Name and unit left-aligned, figures right-aligned.
            if i < 2 {
                s.push_str(&format!("{cell:<w$}  "));
            } else {
                s.push_str(&format!("{cell:>w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let header: Vec<String> = header.into_iter().map(String::from).collect();
    let mut out = line(&header);
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

/// Everything one run produced, as written to `AKD_COMPARE_JSON`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// How akd was set up.
    pub akd_setup: &'static str,
    /// How Candor was set up (embedded store).
    pub candor_setup: String,
    /// Cores available to the run.
    pub cores: usize,
    /// 1-minute load average when the run started (Linux only).
    pub load_average_before: Option<f64>,
    /// 1-minute load average when the measurements ended (Linux only).
    pub load_average_after: Option<f64>,
    /// The workload sizes.
    pub workload: &'a Workload,
    /// Raw measurements per system.
    pub akd: &'a Measurements,
    /// Candor's raw measurements (embedded store), when measured.
    pub candor: Option<&'a Measurements>,
    /// Candor's raw measurements on the in-memory store, when measured.
    pub candor_mem: Option<&'a Measurements>,
    /// Where Candor's publish time went, per backend and batch.
    pub candor_phases: &'a [(&'static str, Vec<crate::candor_system::PublishPhases>)],
    /// What Candor's rows are made of, per backend.
    pub candor_explain: &'a [(&'static str, crate::candor_system::Explain)],
    /// The comparison rows.
    pub rows: &'a [Row],
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json(path: &std::path::Path, report: &Report<'_>) -> Result<(), BenchError> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(f64::NAN), "n/a");
    }

    #[test]
    fn targets() {
        assert!(Target::AtLeast(1.5).met(1.5));
        assert!(!Target::AtLeast(1.5).met(1.4));
        assert!(Target::AtMost(0.5).met(0.3));
        assert_eq!(Target::AtMost(1.0 / 3.0).describe(), "<= 0.333x");
        assert_eq!(Target::AtLeast(20.0).describe(), ">= 20x");
    }
}
