//! The workload: sizes from the environment, deterministic labels and values.

use crate::BenchError;
use serde::Serialize;

/// Workload sizes. Defaults are the comparison's; environment variables shrink them for
/// quick runs.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    /// New labels published in total (`AKD_COMPARE_N`, default 100,000).
    pub n: usize,
    /// Number of equal publish batches (`AKD_COMPARE_BATCHES`, default 5).
    pub batches: usize,
    /// Labels updated in the single update batch (`AKD_COMPARE_UPDATES`, default n/5).
    pub updates: usize,
    /// Lookup proofs generated and verified (`AKD_COMPARE_LOOKUPS`, default 2,000).
    pub lookups: usize,
    /// Two-version labels whose history proof is generated and verified
    /// (`AKD_COMPARE_HISTORY`, default 100); figures are means per proof.
    pub history: usize,
}

impl Workload {
    /// Reads the workload from the environment, falling back to the defaults.
    pub fn from_env() -> Result<Self, BenchError> {
        let n = env_usize("AKD_COMPARE_N")?.unwrap_or(100_000);
        let batches = env_usize("AKD_COMPARE_BATCHES")?.unwrap_or(5);
        let updates = env_usize("AKD_COMPARE_UPDATES")?.unwrap_or(n / 5);
        let lookups = env_usize("AKD_COMPARE_LOOKUPS")?.unwrap_or(2_000);
        let history = env_usize("AKD_COMPARE_HISTORY")?.unwrap_or(100);
        let w = Workload {
            n,
            batches,
            updates,
            lookups,
            history,
        };
        w.check()?;
        Ok(w)
    }

    /// A tiny workload that only checks the harness and the systems work (test mode).
    pub fn smoke() -> Self {
        Workload {
            n: 500,
            batches: 5,
            updates: 100,
            lookups: 50,
            history: 10,
        }
    }

    fn check(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Config(m.to_string()));
        if self.n == 0 || self.batches == 0 || self.batches > self.n {
            return bad("need 0 < AKD_COMPARE_BATCHES <= AKD_COMPARE_N");
        }
        if self.updates == 0 || self.updates > self.n {
            return bad("need 0 < AKD_COMPARE_UPDATES <= AKD_COMPARE_N");
        }
        if self.lookups == 0 {
            return bad("need AKD_COMPARE_LOOKUPS > 0");
        }
        if self.history == 0 || self.history > self.updates {
            return bad("need 0 < AKD_COMPARE_HISTORY <= AKD_COMPARE_UPDATES");
        }
        Ok(())
    }

    /// Label indices of publish batch `b` (0-based): contiguous ranges, the last batch
    /// takes the remainder.
    pub fn batch_range(&self, b: usize) -> std::ops::Range<usize> {
        let per = self.n / self.batches;
        let start = b * per;
        let end = if b + 1 == self.batches {
            self.n
        } else {
            start + per
        };
        start..end
    }

    /// Index of the `k`-th updated label: spread evenly over all labels, so that the
    /// update touches every part of the tree rather than one recent batch.
    pub fn updated_index(&self, k: usize) -> usize {
        // k < updates <= n, so the product fits and the result is < n and distinct per k.
        (k as u128 * self.n as u128 / self.updates as u128) as usize
    }

    /// Index of the `k`-th looked-up label: a fixed pseudo-random walk over all labels, a
    /// mix of one- and two-version labels.
    pub fn lookup_index(&self, k: usize) -> usize {
        ((k as u64).wrapping_mul(7_919).wrapping_add(13) % self.n as u64) as usize
    }

    /// Index of the `k`-th label whose history is proved (each has exactly two versions).
    pub fn history_index(&self, k: usize) -> usize {
        self.updated_index(k * self.updates / self.history)
    }
}

fn env_usize(name: &str) -> Result<Option<usize>, BenchError> {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .replace('_', "")
            .parse()
            .map(Some)
            .map_err(|_| BenchError::Config(format!("{name}={s:?} is not a count"))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(BenchError::Config(format!("{name}: {e}"))),
    }
}

/// Label `i`: `user-{i}@example.com`.
pub fn label(i: usize) -> Vec<u8> {
    format!("user-{i}@example.com").into_bytes()
}

/// Value of label `i` at `version`: 32 deterministic pseudo-random bytes, the size of a
/// public key. Different for every (label, version).
pub fn value(i: usize, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    for j in 0..4u64 {
        let seed = (i as u64) << 16 ^ version << 4 ^ j;
        out.extend_from_slice(&splitmix64(seed).to_le_bytes());
    }
    out
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: usize, updates: usize) -> Workload {
        Workload {
            n,
            batches: 5,
            updates,
            lookups: 10,
            history: 3,
        }
    }

    #[test]
    fn batches_cover_all_labels_once() {
        let w = w(103, 20);
        let mut next = 0;
        for b in 0..w.batches {
            let r = w.batch_range(b);
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, w.n);
    }

    #[test]
    fn updated_indices_are_distinct_and_in_range() {
        let w = w(1000, 300);
        let mut seen = std::collections::HashSet::new();
        for k in 0..w.updates {
            let i = w.updated_index(k);
            assert!(i < w.n);
            assert!(seen.insert(i));
        }
    }

    #[test]
    fn values_differ_per_label_and_version() {
        assert_eq!(value(7, 1).len(), 32);
        assert_ne!(value(7, 1), value(7, 2));
        assert_ne!(value(7, 1), value(8, 1));
        assert_eq!(label(42), b"user-42@example.com");
    }
}
