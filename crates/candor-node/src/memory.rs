//! One memory budget for the process (`[memory] budget_bytes`), divided among
//! the caches.
//!
//! An operator sets one figure, what the process may hold resident (for a pod:
//! a little under its memory limit), and every cache that is not set on its own
//! is sized from it. The division follows what a heap profile of a loaded
//! `candor dev` measured (docs/performance.md, "What holds the memory"):
//!
//! * **fixed**: the runtime, code and request buffers (about 48 MiB), and
//!   openraft's own state, about 3 MiB per Raft group whatever the load;
//! * of the rest: the store's block cache 20 %, its memtables 25 %, the tree
//!   node cache 20 %, the API's VRF cache 5 %, and 30 % left for requests in
//!   flight, the map views and allocator slack.
//!
//! Each cache counts its contents, not the heap they take, so the shares are
//! divided by what was measured per counted byte: the tree cache holds about
//! 1.5x its count; each space keeps one active memtable and, while it flushes,
//! sealed ones, at about 2.3x their size in heap: about 7x `memtable_bytes`
//! over the three spaces a publish writes most, plus 2x for the labels' VRF
//! records (written once per new label); a VRF cache entry about 320 B.
//!
//! Caches set one by one (`store.cache_bytes`, `store.memtable_bytes`,
//! `store.tree_cache_bytes`, `api.vrf_cache_entries`) keep their values, and
//! the start-up check refuses a configuration whose caches would not fit in the
//! budget, naming what to change.

use serde::{Deserialize, Serialize};

use crate::NodeError;
use crate::config::Config;

const MIB: u64 = 1 << 20;

/// The runtime, code, and request buffers of an idle process.
pub const RUNTIME_BYTES: u64 = 48 * MIB;
/// openraft's fixed state per Raft group (histograms, command and response
/// queues), measured; not configurable.
pub const RAFT_GROUP_BYTES: u64 = 3 * MIB;
/// Heap per byte the tree cache counts.
const TREE_CACHE_HEAP: (u64, u64) = (3, 2);
/// Heap per byte of `store.memtable_bytes`, over the spaces being written.
const MEMTABLE_HEAP: u64 = 9;
/// Heap per VRF cache entry.
const VRF_ENTRY_HEAP: u64 = 320;
/// Shares of what is left after the fixed part, in percent.
const BLOCK_CACHE_SHARE: u64 = 20;
const MEMTABLE_SHARE: u64 = 25;
const TREE_CACHE_SHARE: u64 = 20;
const VRF_CACHE_SHARE: u64 = 5;
/// The smallest share left for the caches: below it the process would thrash.
const MIN_FOR_CACHES: u64 = 32 * MIB;

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// What the process may hold resident, bytes: the caches not set one by one
    /// are sized from it. Default 512 MiB.
    pub budget_bytes: u64,
    /// How often, in milliseconds, the process hands the memory its allocator
    /// holds free back to the system (glibc's `malloc_trim`); 0 never does.
    /// Default 10,000. glibc returns freed memory only from the top of each
    /// arena, so under a write load its arenas fill with free holes: at 10M
    /// labels a `candor dev` held 735 MB from the system with 322 MB in use
    /// (docs/performance.md, "To 10M labels").
    pub trim_interval_ms: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            budget_bytes: 512 * MIB,
            trim_interval_ms: 10_000,
        }
    }
}

/// What each cache gets, and the heap that is expected to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// `memory.budget_bytes`.
    pub budget_bytes: u64,
    /// The runtime and the Raft groups' fixed state.
    pub fixed_bytes: u64,
    /// The embedded store's block cache.
    pub block_cache_bytes: u64,
    /// The size at which a memtable is sealed.
    pub memtable_bytes: u64,
    /// The tree node cache.
    pub tree_cache_bytes: u64,
    /// The API's VRF cache.
    pub vrf_cache_entries: usize,
}

impl MemoryPlan {
    /// The plan for `config` on a process hosting up to `raft_groups` groups.
    pub fn new(config: &Config, raft_groups: u64) -> Result<MemoryPlan, NodeError> {
        let budget = config.memory.budget_bytes;
        let fixed = RUNTIME_BYTES + RAFT_GROUP_BYTES * raft_groups;
        let rest = budget.checked_sub(fixed).filter(|r| *r >= MIN_FOR_CACHES);
        let Some(rest) = rest else {
            return Err(NodeError::Config(format!(
                "memory.budget_bytes = {} MiB is too small: the runtime and {raft_groups} Raft \
                 groups take about {} MiB, and the caches need at least {} MiB more",
                budget / MIB,
                fixed / MIB,
                MIN_FOR_CACHES / MIB
            )));
        };
        let share = |percent: u64| rest / 100 * percent;
        let plan = MemoryPlan {
            budget_bytes: budget,
            fixed_bytes: fixed,
            block_cache_bytes: config
                .store
                .cache_bytes
                .unwrap_or_else(|| share(BLOCK_CACHE_SHARE)),
            memtable_bytes: config
                .store
                .memtable_bytes
                .unwrap_or_else(|| share(MEMTABLE_SHARE) / MEMTABLE_HEAP),
            tree_cache_bytes: config
                .store
                .tree_cache_bytes
                .unwrap_or_else(|| share(TREE_CACHE_SHARE) / TREE_CACHE_HEAP.0 * TREE_CACHE_HEAP.1),
            vrf_cache_entries: config.api.vrf_cache_entries.unwrap_or_else(|| {
                usize::try_from(share(VRF_CACHE_SHARE) / VRF_ENTRY_HEAP).unwrap_or(usize::MAX)
            }),
        };
        if plan.vrf_cache_entries == 0 {
            return Err(NodeError::Config(
                "api.vrf_cache_entries must be at least 1".into(),
            ));
        }
        let held = plan.expected_bytes();
        if held > budget {
            return Err(NodeError::Config(format!(
                "the caches set one by one do not fit in memory.budget_bytes = {} MiB: \
                 {} (about {} MiB with the fixed {} MiB); raise memory.budget_bytes or \
                 lower the caches",
                budget / MIB,
                plan.describe(),
                held / MIB,
                fixed / MIB
            )));
        }
        Ok(plan)
    }

    /// The heap the fixed part and the full caches are expected to take (the
    /// rest of the budget is for requests in flight and allocator slack).
    pub fn expected_bytes(&self) -> u64 {
        let tree = self.tree_cache_bytes / TREE_CACHE_HEAP.1 * TREE_CACHE_HEAP.0;
        self.fixed_bytes
            .saturating_add(self.block_cache_bytes)
            .saturating_add(self.memtable_bytes.saturating_mul(MEMTABLE_HEAP))
            .saturating_add(tree)
            .saturating_add((self.vrf_cache_entries as u64).saturating_mul(VRF_ENTRY_HEAP))
    }

    /// The caches, in words (for the start-up log and errors).
    pub fn describe(&self) -> String {
        format!(
            "block cache {} MiB, memtables {} MiB each, tree cache {} MiB, VRF cache {} entries",
            self.block_cache_bytes / MIB,
            self.memtable_bytes / MIB,
            self.tree_cache_bytes / MIB,
            self.vrf_cache_entries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(budget_mib: u64) -> Config {
        let mut c = Config::default();
        c.memory.budget_bytes = budget_mib * MIB;
        c
    }

    #[test]
    fn the_default_budget_is_divided_among_the_caches() {
        // `candor dev` with 16 shards: 17 groups.
        let p = MemoryPlan::new(&config(512), 17).unwrap();
        assert_eq!(p.fixed_bytes, (48 + 51) * MIB);
        let rest = 413 * MIB;
        assert_eq!(p.block_cache_bytes, rest / 100 * 20);
        assert_eq!(p.memtable_bytes, rest / 100 * 25 / 9);
        assert_eq!(p.tree_cache_bytes, rest / 100 * 20 / 3 * 2);
        assert_eq!(p.vrf_cache_entries as u64, rest / 100 * 5 / 320);
        // 70 % of the rest, with the measured heap per counted byte.
        let expected = p.expected_bytes();
        assert!(expected <= p.budget_bytes, "{expected}");
        assert!(expected >= p.fixed_bytes + rest / 100 * 69, "{expected}");
        // Twice the budget, about twice every cache.
        let big = MemoryPlan::new(&config(1024), 17).unwrap();
        assert!(big.tree_cache_bytes > 2 * p.tree_cache_bytes);
    }

    #[test]
    fn the_trim_interval_is_never_or_at_least_a_second() {
        let mut c = config(512);
        assert_eq!(c.memory.trim_interval_ms, 10_000);
        c.validate().unwrap();
        c.memory.trim_interval_ms = 0;
        c.validate().unwrap();
        c.memory.trim_interval_ms = 50;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("memory.trim_interval_ms must be 0"), "{e}");
    }

    #[test]
    fn caches_set_one_by_one_are_kept_and_must_fit() {
        let mut c = config(512);
        c.store.tree_cache_bytes = Some(100 * MIB);
        c.api.vrf_cache_entries = Some(1000);
        let p = MemoryPlan::new(&c, 17).unwrap();
        assert_eq!((p.tree_cache_bytes, p.vrf_cache_entries), (100 * MIB, 1000));
        c.store.tree_cache_bytes = Some(400 * MIB);
        let e = MemoryPlan::new(&c, 17).unwrap_err().to_string();
        assert!(
            e.contains("do not fit in memory.budget_bytes = 512 MiB")
                && e.contains("tree cache 400 MiB"),
            "{e}"
        );
        c.api.vrf_cache_entries = Some(0);
        c.store.tree_cache_bytes = None;
        let e = MemoryPlan::new(&c, 17).unwrap_err().to_string();
        assert!(e.contains("vrf_cache_entries must be at least 1"), "{e}");
    }

    #[test]
    fn a_budget_below_the_fixed_part_is_refused() {
        // 65,536 shards: 65,537 groups of about 3 MiB each.
        let e = MemoryPlan::new(&config(512), 65_537)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("too small") && e.contains("65537 Raft groups"),
            "{e}"
        );
        assert!(MemoryPlan::new(&config(100), 17).is_err());
        assert!(MemoryPlan::new(&config(140), 17).is_ok());
    }
}
