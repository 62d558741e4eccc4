//! Key layout, read-bound clamping, transaction-size accounting and limits: everything
//! of the backend that does not talk to FoundationDB, so it builds and is tested without
//! the `fdb` feature.

use std::path::PathBuf;
use std::time::Duration;

use candor_store::{KeyRange, Limits, Op, Space, WriteBatch, prefix_end};
use foundationdb_tuple::Subspace;

use crate::error::FdbStoreError;

/// FoundationDB's hard limit on a key, bytes (prefix included).
pub const FDB_MAX_KEY_BYTES: usize = 10_000;
/// FoundationDB's hard limit on a value, bytes.
pub const FDB_MAX_VALUE_BYTES: usize = 100_000;
/// FoundationDB's hard (and default) limit on a transaction, bytes, as it counts them:
/// mutations plus read and write conflict ranges.
pub const FDB_MAX_TRANSACTION_BYTES: usize = 10_000_000;
/// Default [`FdbConfig::transaction_budget_bytes`]: FoundationDB's limit less 1 MB for what
/// the backend adds (commit marker, marker clean-up, one read-conflict range).
pub const DEFAULT_TRANSACTION_BUDGET: usize = 9_000_000;
/// Longest root prefix accepted, bytes: every key pays it, and the key limit shrinks by it.
pub const MAX_ROOT_PREFIX_BYTES: usize = 256;
/// Value of the format marker key; a keyspace with another value is refused.
pub const FORMAT: &str = "candor-store-fdb/1";
/// Environment variable naming the cluster file the conformance test runs against.
pub const CLUSTER_FILE_ENV: &str = "CANDOR_FDB_CLUSTER_FILE";

/// Tuple element of the internal subspace (`root / 0`); spaces use their tags 1..=5.
const INTERNAL_TAG: i64 = 0;

/// How to reach the cluster and where this store lives in it.
#[derive(Clone, Debug)]
pub struct FdbConfig {
    /// The cluster file. `None`: FoundationDB's default resolution (`FDB_CLUSTER_FILE`,
    /// then `/etc/foundationdb/fdb.cluster`).
    pub cluster_file: Option<PathBuf>,
    /// Root subspace of the store. Default `("candor", namespace)`, tuple-encoded. Two
    /// stores with different roots are fully independent.
    pub root: Subspace,
    /// Timeout of each operation, retries included (FoundationDB's `transaction_timeout`
    /// database option). A write that times out may or may not have been applied
    /// ([`candor_store::StoreError::Unavailable`]).
    pub timeout: Duration,
    /// Upper bound on the bytes one transaction may count against FoundationDB's 10 MB
    /// limit; [`candor_store::Limits::max_batch_bytes`] is derived from it (see
    /// [`Keyspace::limits`]). At most [`DEFAULT_TRANSACTION_BUDGET`], at least 1 MB.
    pub transaction_budget_bytes: usize,
    /// Write a commit marker with every batch so that a retry after
    /// `commit_unknown_result` does not apply the batch a second time (see the crate docs).
    pub commit_markers: bool,
}

impl FdbConfig {
    /// Root `("candor", namespace)`, 10 s timeout, default budget, commit markers on.
    pub fn new(cluster_file: Option<PathBuf>, namespace: &str) -> Self {
        FdbConfig {
            cluster_file,
            root: Subspace::from(("candor", namespace)),
            timeout: Duration::from_secs(10),
            transaction_budget_bytes: DEFAULT_TRANSACTION_BUDGET,
            commit_markers: true,
        }
    }

    /// The timeout in whole milliseconds as FoundationDB takes it (at least 1).
    pub fn timeout_millis(&self) -> i32 {
        i32::try_from(self.timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    /// Checks the configuration and derives the key layout.
    pub fn keyspace(&self) -> Result<Keyspace, FdbStoreError> {
        if !(1_000_000..=DEFAULT_TRANSACTION_BUDGET).contains(&self.transaction_budget_bytes) {
            return Err(FdbStoreError::Config(format!(
                "transaction_budget_bytes {} outside 1000000..={DEFAULT_TRANSACTION_BUDGET}",
                self.transaction_budget_bytes
            )));
        }
        if self.timeout.is_zero() {
            return Err(FdbStoreError::Config("timeout must be positive".into()));
        }
        Keyspace::new(self.root.clone(), self.transaction_budget_bytes)
    }
}

/// Where every key of one store lives, and the limits that follow from it.
///
/// ```text
/// root = pack(("candor", namespace))                  (configurable)
/// root + pack((0, "format"))                           -> "candor-store-fdb/1"
/// root + pack((0, "commit")) + time_be8 + handle16 + seq_be8 -> ""  (commit markers)
/// root + pack((tag,)) + user_key                       space `tag` (Space::tag(), 1..=5)
/// ```
///
/// User keys are appended raw, not tuple-encoded: the tuple encoding escapes every 0x00
/// byte (a key can double in size and break FoundationDB's 10 kB key limit), and callers
/// already build order-preserving binary keys (big-endian integers). Raw bytes after a
/// fixed prefix keep byte order, so ranges and reverse seeks map one-to-one.
#[derive(Clone, Debug)]
pub struct Keyspace {
    root: Subspace,
    spaces: [Vec<u8>; Space::ALL.len()],
    space_ends: [Vec<u8>; Space::ALL.len()],
    format_key: Vec<u8>,
    markers: Vec<u8>,
    max_key: usize,
    budget: usize,
    limits: Limits,
}

impl Keyspace {
    /// The layout under `root`, with `budget` bytes per transaction.
    pub fn new(root: Subspace, budget: usize) -> Result<Self, FdbStoreError> {
        let r = root.bytes();
        if r.len() > MAX_ROOT_PREFIX_BYTES {
            return Err(FdbStoreError::Config(format!(
                "root prefix is {} bytes, at most {MAX_ROOT_PREFIX_BYTES}",
                r.len()
            )));
        }
        if r.first() == Some(&0xFF) {
            return Err(FdbStoreError::Config(
                "root prefix starts with 0xFF (FoundationDB's system keyspace)".into(),
            ));
        }
        let spaces = Space::ALL.map(|s| root.subspace(&(i64::from(s.tag()),)).into_bytes());
        // Each space prefix ends in a tag byte < 0xFF, so the strinc always exists.
        let space_ends = spaces.clone().map(|p| prefix_end(&p).unwrap_or_default());
        let internal = root.subspace(&(INTERNAL_TAG,));
        let longest = spaces.iter().map(Vec::len).max().unwrap_or(0);
        // Read bounds are clamped to max_key + 1 bytes (see `clamp`), range-delete bounds
        // may be max_key + 1 bytes long: both must fit FoundationDB's key limit.
        let max_key = Limits::PORTABLE
            .max_key_bytes
            .min(FDB_MAX_KEY_BYTES - longest - 1);
        let mut ks = Keyspace {
            format_key: internal.pack(&("format",)),
            markers: internal.subspace(&("commit",)).into_bytes(),
            root,
            spaces,
            space_ends,
            max_key,
            budget,
            limits: Limits::PORTABLE,
        };
        ks.limits = Limits {
            max_key_bytes: max_key,
            max_value_bytes: Limits::PORTABLE.max_value_bytes.min(FDB_MAX_VALUE_BYTES),
            max_batch_bytes: ks.safe_batch_cost(),
        };
        Ok(ks)
    }

    /// The root subspace.
    pub fn root(&self) -> &Subspace {
        &self.root
    }

    /// `[begin, end)` covering every key of this store (all spaces and internal keys).
    pub fn whole_range(&self) -> (Vec<u8>, Vec<u8>) {
        let begin = self.root.bytes().to_vec();
        let end = prefix_end(&begin).unwrap_or_else(|| vec![0xFF]);
        (begin, end)
    }

    /// Prefix of every key of `space`.
    pub fn space_prefix(&self, space: Space) -> &[u8] {
        &self.spaces[space.index()]
    }

    /// Key of the format marker.
    pub fn format_key(&self) -> &[u8] {
        &self.format_key
    }

    /// Commit marker key for write `seq` of handle `handle`, written at `unix_secs`.
    pub fn marker_key(&self, unix_secs: u64, handle: &[u8; 16], seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.markers.len() + 32);
        k.extend_from_slice(&self.markers);
        k.extend_from_slice(&unix_secs.to_be_bytes());
        k.extend_from_slice(handle);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// `[begin, end)` of the commit markers written before `unix_secs`.
    pub fn markers_before(&self, unix_secs: u64) -> (Vec<u8>, Vec<u8>) {
        let mut end = self.markers.clone();
        end.extend_from_slice(&unix_secs.to_be_bytes());
        (self.markers.clone(), end)
    }

    /// The limits writes are checked against (see [`Keyspace::safe_batch_cost`]).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The FoundationDB key of `key` in `space`.
    pub fn key(&self, space: Space, key: &[u8]) -> Vec<u8> {
        let p = self.space_prefix(space);
        let mut k = Vec::with_capacity(p.len() + key.len());
        k.extend_from_slice(p);
        k.extend_from_slice(key);
        k
    }

    /// The FoundationDB key to read for a point lookup, or `None` when no stored key can
    /// match (empty, or longer than any key writes accept).
    pub fn point_key(&self, space: Space, key: &[u8]) -> Option<Vec<u8>> {
        (!key.is_empty() && key.len() <= self.max_key).then(|| self.key(space, key))
    }

    /// Shortens a read bound without changing which stored keys it separates: every stored
    /// key has at most `max_key` bytes, and such a key compares with `b` as it compares
    /// with `b[..max_key + 1]` (their first `len(key)` bytes are the same, and a key that
    /// is a prefix of one is a prefix of the other). Keeps read keys under FoundationDB's
    /// key limit.
    fn clamp<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        &b[..b.len().min(self.max_key + 1)]
    }

    /// FoundationDB `[begin, end)` for reading `range` of `space` (bounds of any length),
    /// or `None` when the range holds no storable key.
    pub fn read_range(&self, space: Space, range: &KeyRange) -> Option<(Vec<u8>, Vec<u8>)> {
        if range.is_empty() {
            return None;
        }
        let begin = self.key(space, self.clamp(range.start()));
        let end = match range.end() {
            Some(e) => self.key(space, self.clamp(e)),
            None => self.space_ends[space.index()].clone(),
        };
        (begin < end).then_some((begin, end))
    }

    /// FoundationDB `[begin, end)` for a range delete, or `None` for an empty range. The
    /// bounds were validated (at most `max_key + 1` bytes), so no clamping.
    pub fn delete_range(&self, space: Space, range: &KeyRange) -> Option<(Vec<u8>, Vec<u8>)> {
        if range.is_empty() {
            return None;
        }
        let end = match range.end() {
            Some(e) => self.key(space, e),
            None => self.space_ends[space.index()].clone(),
        };
        Some((self.key(space, range.start()), end))
    }

    /// The user key of a FoundationDB key read from `space`.
    pub fn user_key(&self, space: Space, fdb_key: &[u8]) -> Result<Vec<u8>, FdbStoreError> {
        fdb_key
            .strip_prefix(self.space_prefix(space))
            .filter(|k| !k.is_empty())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                FdbStoreError::Layout(format!("key {fdb_key:02x?} outside space {space:?}"))
            })
    }

    /// An upper bound of what `op` counts against FoundationDB's transaction size limit,
    /// which adds up mutation bytes and conflict-range bytes (NativeAPI `Transaction::set`
    /// / `clear`): a put is a `SetValue(key, value)` plus the write-conflict range
    /// `[key, key\0)`; a point delete is a `ClearRange(key, key\0)` plus the same range as
    /// conflict; a range delete is `ClearRange(begin, end)` plus `[begin, end)` as conflict.
    pub fn op_transaction_bytes(&self, op: &Op) -> usize {
        let p = self.space_prefix(op.space()).len();
        match op {
            Op::Put { key, value, .. } => 3 * (p + key.len()) + 1 + value.len(),
            Op::Delete { key, .. } => 4 * (p + key.len()) + 2,
            Op::DeleteRange { space, range } => match self.delete_range(*space, range) {
                Some((b, e)) => 2 * (b.len() + e.len()),
                None => 0,
            },
        }
    }

    /// [`Keyspace::op_transaction_bytes`] summed over a batch.
    pub fn batch_transaction_bytes(&self, batch: &WriteBatch) -> usize {
        // A precondition is a conflict-checked read: one read conflict range (both ends).
        let reads: usize = batch
            .preconditions()
            .iter()
            .map(|p| 2 * self.key(p.space, &p.key).len() + 1)
            .sum();
        reads
            + batch
                .ops()
                .iter()
                .map(|op| self.op_transaction_bytes(op))
                .sum::<usize>()
    }

    /// The transaction budget, bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The largest [`WriteBatch::cost`] that is guaranteed to fit the budget, whatever the
    /// operations: `budget / r` with `r` the worst ratio of FoundationDB bytes to cost over
    /// every storable operation. Both are affine in key and value lengths, so the ratio is
    /// linear-fractional and its maximum over the box of allowed lengths sits on a corner:
    /// the shapes below are those corners. With the default root (`("candor",
    /// "default")`) the worst op is a one-byte point delete (82 bytes for a cost of 34),
    /// giving about 3.7 MB.
    pub fn safe_batch_cost(&self) -> usize {
        let (mk, mv) = (self.max_key, Limits::PORTABLE.max_value_bytes);
        let k = |n: usize| vec![1u8; n];
        let sp = Space::Tree;
        let mut shapes = Vec::new();
        for kl in [1, mk] {
            for vl in [0, mv] {
                shapes.push(Op::Put {
                    space: sp,
                    key: k(kl),
                    value: k(vl),
                });
            }
            shapes.push(Op::Delete {
                space: sp,
                key: k(kl),
            });
        }
        for (s, e) in [
            (0, Some(1)),
            (0, None),
            (mk + 1, Some(mk + 1)),
            (mk + 1, None),
        ] {
            let range = match e {
                Some(e) => KeyRange::half_open(vec![0u8; s], vec![1u8; e]),
                None => KeyRange::at_least(vec![0u8; s]),
            };
            shapes.push(Op::DeleteRange { space: sp, range });
        }
        shapes
            .iter()
            .map(|op| {
                let size = self.op_transaction_bytes(op).max(1) as u128;
                (self.budget as u128 * op.cost() as u128 / size) as usize
            })
            .min()
            .unwrap_or(0)
            .min(Limits::PORTABLE.max_batch_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    trait ValidateForTest {
        fn validate_for_test(&self, l: &Limits) -> bool;
    }

    impl ValidateForTest for Op {
        fn validate_for_test(&self, l: &Limits) -> bool {
            let mut b = WriteBatch::new();
            b.push(self.clone());
            b.validate(l).is_ok()
        }
    }

    fn ks() -> Keyspace {
        FdbConfig::new(None, "default").keyspace().unwrap()
    }

    #[test]
    fn layout_is_tuple_encoded_and_documented() {
        let ks = ks();
        // ("candor", "default") then the tag as a tuple integer.
        assert_eq!(
            ks.space_prefix(Space::Meta),
            b"\x02candor\x00\x02default\x00\x15\x01"
        );
        assert_eq!(
            ks.space_prefix(Space::RaftLog),
            b"\x02candor\x00\x02default\x00\x15\x05"
        );
        assert_eq!(
            ks.format_key(),
            b"\x02candor\x00\x02default\x00\x14\x02format\x00"
        );
        let m = ks.marker_key(1, &[7; 16], 2);
        assert!(m.starts_with(b"\x02candor\x00\x02default\x00\x14\x02commit\x00"));
        let (b, e) = ks.whole_range();
        for s in Space::ALL {
            let k = ks.key(s, &[0xFF; 10]);
            assert!(b.as_slice() <= k.as_slice() && k < e);
            // Spaces never overlap: the end of one is at or before the start of the next.
            let (_, end) = ks.read_range(s, &KeyRange::all()).unwrap();
            assert!(k < end);
        }
        assert!(b <= m && m < e && b.as_slice() <= ks.format_key());
        assert_eq!(
            ks.user_key(Space::Tree, &ks.key(Space::Tree, b"ab"))
                .unwrap(),
            b"ab"
        );
        assert!(
            ks.user_key(Space::Tree, &ks.key(Space::Meta, b"ab"))
                .is_err()
        );
    }

    #[test]
    fn limits_fit_foundationdb() {
        let ks = ks();
        let l = ks.limits();
        let p = ks.space_prefix(Space::Tree).len();
        assert_eq!(p, 19);
        assert_eq!(
            l.max_key_bytes,
            Limits::PORTABLE
                .max_key_bytes
                .min(FDB_MAX_KEY_BYTES - p - 1)
        );
        assert_eq!(l.max_value_bytes, 100_000);
        // The batch limit is the budget over the worst cost ratio of any op
        // shape (`every_op_within_the_ratio` checks the shapes), never above
        // the portable limit.
        assert_eq!(l.max_batch_bytes, ks.safe_batch_cost());
        assert!(l.max_batch_bytes <= Limits::PORTABLE.max_batch_bytes);
        let worst = Op::Delete {
            space: Space::Tree,
            key: vec![0u8],
        }
        .cost();
        // A batch of nothing but worst ops, filled up to the limit, fits.
        let mut b = WriteBatch::new();
        let mut i = 0u32;
        while b.cost() + worst <= l.max_batch_bytes {
            b.delete(Space::Tree, [(i % 251) as u8]);
            i += 1;
        }
        assert!(b.validate(&l).is_ok());
        assert!(ks.batch_transaction_bytes(&b) <= DEFAULT_TRANSACTION_BUDGET);
        let longest_read = ks.key(Space::Tree, ks.clamp(&[0u8; 70_000]));
        assert!(longest_read.len() <= FDB_MAX_KEY_BYTES);
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = FdbConfig::new(None, "x");
        c.root = Subspace::from_bytes(vec![0xFF, 1]);
        assert!(c.keyspace().is_err());
        c.root = Subspace::from_bytes(vec![1; MAX_ROOT_PREFIX_BYTES + 1]);
        assert!(c.keyspace().is_err());
        let mut c = FdbConfig::new(None, "x");
        c.transaction_budget_bytes = FDB_MAX_TRANSACTION_BYTES;
        assert!(c.keyspace().is_err());
        let mut c = FdbConfig::new(None, "x");
        c.timeout = Duration::ZERO;
        assert!(c.keyspace().is_err());
        // An empty root is allowed (a dedicated cluster).
        let mut c = FdbConfig::new(None, "x");
        c.root = Subspace::all();
        assert_eq!(c.keyspace().unwrap().space_prefix(Space::Tree), b"\x15\x02");
    }

    #[test]
    fn read_ranges_edges() {
        let ks = ks();
        let s = Space::Values;
        assert_eq!(
            ks.read_range(s, &KeyRange::half_open(b"b".to_vec(), b"a".to_vec())),
            None
        );
        // Two long bounds equal in their first max_key + 1 bytes: nothing storable between.
        let mut a = vec![0u8; 20_000];
        let mut b = a.clone();
        a.push(1);
        b.push(2);
        assert_eq!(ks.read_range(s, &KeyRange::half_open(a, b)), None);
        assert_eq!(ks.point_key(s, b""), None);
        assert_eq!(ks.point_key(s, &vec![1; ks.max_key + 1]), None);
        assert!(ks.point_key(s, &vec![1; ks.max_key]).is_some());
        assert_eq!(
            ks.delete_range(s, &KeyRange::half_open(b"a".to_vec(), b"a".to_vec())),
            None
        );
    }

    fn any_key(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xFF)], 0..6),
            (0..max + 40).prop_map(|n| vec![0u8; n]),
            (0..max + 40).prop_map(|n| vec![0xFFu8; n]),
        ]
    }

    proptest! {
        /// Clamped read ranges contain exactly the storable keys the original range does.
        #[test]
        fn clamped_ranges_are_exact(
            s in any_key(10), e in proptest::option::of(any_key(10)), k in any_key(10),
        ) {
            // A tiny key limit makes clamping frequent.
            let mut ks = ks();
            ks.max_key = 8;
            let range = match e {
                Some(e) => KeyRange::half_open(s, e),
                None => KeyRange::at_least(s),
            };
            prop_assume!(!k.is_empty() && k.len() <= ks.max_key);
            let fk = ks.key(Space::Tree, &k);
            let inside = ks
                .read_range(Space::Tree, &range)
                .is_some_and(|(b, e)| b <= fk && fk < e);
            prop_assert_eq!(inside, range.contains(&k));
        }

        /// Every storable op costs FoundationDB at most `budget / max_batch_bytes` times its
        /// cost, so any batch within the limits fits the budget.
        #[test]
        fn every_op_within_the_ratio(
            kind in 0u8..4, kl in 1usize..10_000, vl in 0usize..100_001, el in 0usize..10_000,
            root_len in 0usize..200,
        ) {
            let mut c = FdbConfig::new(None, "x");
            c.root = Subspace::from_bytes(vec![7u8; root_len]);
            let ks = c.keyspace().unwrap();
            let l = ks.limits();
            let key = vec![9u8; kl.min(l.max_key_bytes)];
            let op = match kind {
                0 => Op::Put { space: Space::Tree, key, value: vec![0; vl] },
                1 => Op::Delete { space: Space::Tree, key },
                2 => Op::DeleteRange { space: Space::Tree, range: KeyRange::at_least(key) },
                _ => Op::DeleteRange {
                    space: Space::Tree,
                    range: KeyRange::half_open(vec![0u8; el.min(l.max_key_bytes + 1)], key),
                },
            };
            prop_assume!(op.validate_for_test(&l));
            let size = ks.op_transaction_bytes(&op) as u128;
            prop_assert!(size * l.max_batch_bytes as u128 <= ks.budget() as u128 * op.cost() as u128);
        }
    }
}
