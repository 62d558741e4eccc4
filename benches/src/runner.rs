//! Runs the workload against one [`System`] and collects its [`Measurements`].

use crate::workload::{Workload, label, value};
use crate::{BenchError, System, Verified};
use serde::Serialize;
use std::time::Instant;

/// `items` operations that took `secs` seconds in total.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timing {
    /// Operations performed.
    pub items: usize,
    /// Wall-clock seconds for all of them.
    pub secs: f64,
}

impl Timing {
    /// Operations per second.
    pub fn per_sec(&self) -> f64 {
        self.items as f64 / self.secs
    }
    /// Mean microseconds per operation.
    pub fn micros_each(&self) -> f64 {
        self.secs * 1e6 / self.items as f64
    }
}

/// Summary of a set of sizes in bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sizes {
    /// Mean size.
    pub mean: f64,
    /// Median size.
    pub median: usize,
    /// Smallest size.
    pub min: usize,
    /// Largest size.
    pub max: usize,
}

impl Sizes {
    fn of(mut v: Vec<usize>) -> Sizes {
        v.sort_unstable();
        if v.is_empty() {
            return Sizes::default();
        }
        Sizes {
            mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// Everything measured for one system.
#[derive(Clone, Debug, Serialize)]
pub struct Measurements {
    /// The system's name.
    pub system: String,
    /// One timing per new-label publish batch, in order.
    pub publish_batches: Vec<Timing>,
    /// The update batch.
    pub update: Timing,
    /// Lookup proofs generated one call at a time.
    pub lookup_gen: Timing,
    /// The same lookup proofs generated through the batch API (if any).
    pub lookup_gen_batched: Timing,
    /// Lookup proof verifications.
    pub lookup_verify: Timing,
    /// Encoded lookup proof sizes.
    pub lookup_bytes: Sizes,
    /// History proofs (two versions each) generated.
    pub history_gen: Timing,
    /// History proofs verified.
    pub history_verify: Timing,
    /// Encoded history proof sizes.
    pub history_bytes: Sizes,
    /// Audit proof of the update epoch generated (items = 1).
    pub audit_gen: Timing,
    /// Audit proof verified (items = 1).
    pub audit_verify: Timing,
    /// Encoded audit proof size.
    pub audit_bytes: usize,
}

impl Measurements {
    /// All new-label publish batches together.
    pub fn publish_total(&self) -> Timing {
        Timing {
            items: self.publish_batches.iter().map(|t| t.items).sum(),
            secs: self.publish_batches.iter().map(|t| t.secs).sum(),
        }
    }
}

fn progress(system: &str, msg: std::fmt::Arguments<'_>) {
    eprintln!("[{system}] {msg}");
}

fn check(
    system: &'static str,
    op: &'static str,
    what: &str,
    got: &Verified,
    want: &Verified,
) -> Result<(), BenchError> {
    if got == want {
        Ok(())
    } else {
        Err(BenchError::WrongContent {
            system,
            op,
            detail: format!(
                "{what}: got version {} value {:02x?}, want version {} value {:02x?}",
                got.version, got.value, want.version, want.value
            ),
        })
    }
}

/// Runs the whole workload against `sys` on an empty directory.
pub fn run_workload<S: System>(sys: &mut S, w: &Workload) -> Result<Measurements, BenchError> {
    let name = sys.name();
    // Version each label holds after the workload so far (0 = not yet published).
    let mut versions = vec![0u64; w.n];

    // 1. New labels.
    let mut publish_batches = Vec::with_capacity(w.batches);
    for b in 0..w.batches {
        let range = w.batch_range(b);
        let batch: Vec<_> = range.clone().map(|i| (label(i), value(i, 1))).collect();
        let t = Instant::now();
        sys.publish_batch(batch)?;
        let timing = Timing {
            items: range.len(),
            secs: t.elapsed().as_secs_f64(),
        };
        for i in range {
            versions[i] = 1;
        }
        progress(
            name,
            format_args!(
                "publish batch {}/{}: {} new labels in {:.2} s ({:.0} labels/s)",
                b + 1,
                w.batches,
                timing.items,
                timing.secs,
                timing.per_sec()
            ),
        );
        publish_batches.push(timing);
    }

    // 2. One update batch.
    let batch: Vec<_> = (0..w.updates)
        .map(|k| {
            let i = w.updated_index(k);
            (label(i), value(i, 2))
        })
        .collect();
    let t = Instant::now();
    sys.publish_batch(batch)?;
    let update = Timing {
        items: w.updates,
        secs: t.elapsed().as_secs_f64(),
    };
    for k in 0..w.updates {
        versions[w.updated_index(k)] = 2;
    }
    progress(
        name,
        format_args!(
            "update batch: {} labels in {:.2} s ({:.0} labels/s)",
            update.items,
            update.secs,
            update.per_sec()
        ),
    );

    // 3. Lookups: generate one by one, then through the batch API, then verify.
    let indices: Vec<usize> = (0..w.lookups).map(|k| w.lookup_index(k)).collect();
    let labels: Vec<Vec<u8>> = indices.iter().map(|&i| label(i)).collect();
    let t = Instant::now();
    let proofs = labels
        .iter()
        .map(|l| sys.lookup_proof(l))
        .collect::<Result<Vec<_>, _>>()?;
    let lookup_gen = Timing {
        items: w.lookups,
        secs: t.elapsed().as_secs_f64(),
    };
    let t = Instant::now();
    let batched = sys.lookup_proofs_batched(&labels)?;
    let lookup_gen_batched = Timing {
        items: batched.len(),
        secs: t.elapsed().as_secs_f64(),
    };
    drop(batched);
    let lookup_bytes = Sizes::of(
        proofs
            .iter()
            .map(|p| sys.lookup_size(p))
            .collect::<Result<_, _>>()?,
    );
    let t = Instant::now();
    let results = labels
        .iter()
        .zip(proofs)
        .map(|(l, p)| sys.verify_lookup(l, p))
        .collect::<Result<Vec<_>, _>>()?;
    let lookup_verify = Timing {
        items: w.lookups,
        secs: t.elapsed().as_secs_f64(),
    };
    for (&i, got) in indices.iter().zip(&results) {
        let want = Verified {
            version: versions[i],
            value: value(i, versions[i]),
        };
        check(name, "lookup verify", &format!("label {i}"), got, &want)?;
    }
    progress(
        name,
        format_args!(
            "lookups: gen {:.0}/s (batched {:.0}/s), verify {:.1} µs each, {:.0} B mean",
            lookup_gen.per_sec(),
            lookup_gen_batched.per_sec(),
            lookup_verify.micros_each(),
            lookup_bytes.mean
        ),
    );

    // 4. History proofs of two-version labels.
    let indices: Vec<usize> = (0..w.history).map(|k| w.history_index(k)).collect();
    let labels: Vec<Vec<u8>> = indices.iter().map(|&i| label(i)).collect();
    let t = Instant::now();
    let proofs = labels
        .iter()
        .map(|l| sys.history_proof(l))
        .collect::<Result<Vec<_>, _>>()?;
    let history_gen = Timing {
        items: w.history,
        secs: t.elapsed().as_secs_f64(),
    };
    let history_bytes = Sizes::of(
        proofs
            .iter()
            .map(|p| sys.history_size(p))
            .collect::<Result<_, _>>()?,
    );
    let t = Instant::now();
    let results = labels
        .iter()
        .zip(proofs)
        .map(|(l, p)| sys.verify_history(l, p))
        .collect::<Result<Vec<_>, _>>()?;
    let history_verify = Timing {
        items: w.history,
        secs: t.elapsed().as_secs_f64(),
    };
    for (&i, got) in indices.iter().zip(&results) {
        let want: Vec<Verified> = (1..=versions[i])
            .rev()
            .map(|v| Verified {
                version: v,
                value: value(i, v),
            })
            .collect();
        if got.len() != want.len() {
            return Err(BenchError::WrongContent {
                system: name,
                op: "history verify",
                detail: format!("label {i}: {} versions, want {}", got.len(), want.len()),
            });
        }
        for (g, wv) in got.iter().zip(&want) {
            check(name, "history verify", &format!("label {i}"), g, wv)?;
        }
    }
    progress(
        name,
        format_args!(
            "history: gen {:.1} µs, verify {:.1} µs, {:.0} B mean",
            history_gen.micros_each(),
            history_verify.micros_each(),
            history_bytes.mean
        ),
    );

    // 5. Audit proof of the update epoch.
    let t = Instant::now();
    let audit = sys.audit_last_epoch()?;
    let audit_gen = Timing {
        items: 1,
        secs: t.elapsed().as_secs_f64(),
    };
    let audit_bytes = sys.audit_size(&audit)?;
    let t = Instant::now();
    sys.verify_audit(audit)?;
    let audit_verify = Timing {
        items: 1,
        secs: t.elapsed().as_secs_f64(),
    };
    progress(
        name,
        format_args!(
            "audit: gen {:.1} ms, verify {:.1} ms, {} B",
            audit_gen.secs * 1e3,
            audit_verify.secs * 1e3,
            audit_bytes
        ),
    );

    Ok(Measurements {
        system: name.to_string(),
        publish_batches,
        update,
        lookup_gen,
        lookup_gen_batched,
        lookup_verify,
        lookup_bytes,
        history_gen,
        history_verify,
        history_bytes,
        audit_gen,
        audit_verify,
        audit_bytes,
    })
}
