//! Plain data types shared by every backend: spaces, key ranges, write batches, limits.

use std::ops::Bound;

use crate::error::{Result, SizeKind, StoreError};

/// A named partition of the store. Keys live inside exactly one space; scans and ranges
/// never cross spaces. Every space is an independent ordered map of byte keys.
///
/// Backends map a space to whatever is cheapest: the embedded backend opens one fjall
/// keyspace (its own LSM tree, tuned separately) per space; the FoundationDB backend
/// prepends [`Space::tag`] to every key (a one-byte subspace). A batch may touch several
/// spaces and is still atomic.
///
/// The set is closed on purpose (backends tune per space). Adding a variant is a
/// one-line change in this crate; within a space callers choose their own key prefixes
/// (e.g. shard id first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Space {
    /// Small bookkeeping records: applied indexes, sealed revisions, configuration.
    Meta,
    /// Versioned Merkle tree nodes and leaves (`node_id || revision_be`), per shard prefix.
    Tree,
    /// Label values and their openings (nonces), kept apart so forgetting a value is cheap.
    Values,
    /// The epoch log: entries, log nodes, signed heads, cosignatures.
    EpochLog,
    /// Raft logs, votes and purge markers of every Raft group hosted by this process.
    RaftLog,
    /// Labels' VRF evaluations (a hash of the label → index and proof), so that a
    /// label's VRF is computed once: derived data, local to each process, rebuilt
    /// by evaluating again when missing.
    LabelVrf,
}

impl Space {
    /// Every space, in tag order.
    pub const ALL: [Space; 6] = [
        Space::Meta,
        Space::Tree,
        Space::Values,
        Space::EpochLog,
        Space::RaftLog,
        Space::LabelVrf,
    ];

    /// Stable name (used as the fjall keyspace name). Never change an existing one: it is
    /// part of the on-disk format.
    pub const fn name(self) -> &'static str {
        match self {
            Space::Meta => "meta",
            Space::Tree => "tree",
            Space::Values => "values",
            Space::EpochLog => "epoch-log",
            Space::RaftLog => "raft-log",
            Space::LabelVrf => "label-vrf",
        }
    }

    /// Stable one-byte tag (used as a key prefix by single-keyspace backends such as
    /// FoundationDB). Never change an existing one: it is part of the on-disk format.
    pub const fn tag(self) -> u8 {
        match self {
            Space::Meta => 0x01,
            Space::Tree => 0x02,
            Space::Values => 0x03,
            Space::EpochLog => 0x04,
            Space::RaftLog => 0x05,
            Space::LabelVrf => 0x06,
        }
    }

    /// Position of this space in [`Space::ALL`] (for array-indexed backends).
    pub const fn index(self) -> usize {
        self.tag() as usize - 1
    }

    /// The space with this tag, if any.
    pub fn from_tag(tag: u8) -> Option<Space> {
        Space::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

/// Scan direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Reverse,
}

/// How durable a write must be when [`crate::Store::write`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Survives power loss and OS crash: the batch is on stable storage (fsync) when
    /// `write` returns. Also makes every write acknowledged before it durable.
    Sync,
    /// Survives a crash of this process (the batch has left the process, e.g. into the OS
    /// page cache) but maybe not power loss. Call [`crate::Store::sync`] later, or issue a
    /// `Sync` write, to make it durable: this is how callers get group commit.
    Buffered,
}

/// A key pair as returned by scans: `(key, value)`.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A range of keys, normalised to `[start, end)`: `start` inclusive (the empty key means
/// "from the beginning of the space"), `end` exclusive (`None` means "to the end of the
/// space"). Every `std::ops::Bound` combination converts to this form exactly, because
/// the byte string `k || 0x00` is the immediate successor of `k`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRange {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key of the space.
    pub fn all() -> Self {
        KeyRange {
            start: Vec::new(),
            end: None,
        }
    }

    /// `[start, end)`.
    pub fn half_open(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: Some(end.into()),
        }
    }

    /// `[start, end]`.
    pub fn inclusive(start: impl Into<Vec<u8>>, end: impl AsRef<[u8]>) -> Self {
        KeyRange {
            start: start.into(),
            end: Some(successor(end.as_ref())),
        }
    }

    /// `[start, ..)`: every key `>= start`.
    pub fn at_least(start: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: None,
        }
    }

    /// `[.., end)`: every key `< end`.
    pub fn below(end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: Vec::new(),
            end: Some(end.into()),
        }
    }

    /// Every key that starts with `prefix` (the whole space for an empty prefix).
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: prefix.to_vec(),
            end: prefix_end(prefix),
        }
    }

    /// From arbitrary bounds.
    pub fn from_bounds(start: Bound<&[u8]>, end: Bound<&[u8]>) -> Self {
        let start = match start {
            Bound::Included(s) => s.to_vec(),
            Bound::Excluded(s) => successor(s),
            Bound::Unbounded => Vec::new(),
        };
        let end = match end {
            Bound::Included(e) => Some(successor(e)),
            Bound::Excluded(e) => Some(e.to_vec()),
            Bound::Unbounded => None,
        };
        KeyRange { start, end }
    }

    /// Inclusive lower bound.
    pub fn start(&self) -> &[u8] {
        &self.start
    }

    /// Exclusive upper bound, `None` for the end of the space.
    pub fn end(&self) -> Option<&[u8]> {
        self.end.as_deref()
    }

    /// True when no key can be in the range.
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, Some(e) if e.as_slice() <= self.start.as_slice())
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// As `std` bounds, e.g. for `BTreeMap::range`.
    pub fn as_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            Bound::Included(self.start.as_slice()),
            match &self.end {
                Some(e) => Bound::Excluded(e.as_slice()),
                None => Bound::Unbounded,
            },
        )
    }

    /// The part of this range strictly after `key` (for forward pagination).
    pub fn after(&self, key: &[u8]) -> Self {
        let next = successor(key);
        KeyRange {
            start: if next > self.start {
                next
            } else {
                self.start.clone()
            },
            end: self.end.clone(),
        }
    }

    /// The part of this range strictly before `key` (for reverse pagination).
    pub fn before(&self, key: &[u8]) -> Self {
        KeyRange {
            start: self.start.clone(),
            end: Some(match &self.end {
                Some(e) if e.as_slice() < key => e.clone(),
                _ => key.to_vec(),
            }),
        }
    }
}

/// `k || 0x00`, the smallest key greater than `k`.
pub fn successor(k: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(k.len() + 1);
    v.extend_from_slice(k);
    v.push(0);
    v
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there
/// is none (empty prefix or all bytes 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Size limits a backend enforces on every write (and [`crate::Store::write_chunked`]
/// chunks by). Oversized writes fail with [`StoreError::TooLarge`] before anything is
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, bytes.
    pub max_key_bytes: usize,
    /// Longest value, bytes.
    pub max_value_bytes: usize,
    /// Largest [`WriteBatch::cost`] one atomic [`crate::Store::write`] accepts.
    pub max_batch_bytes: usize,
}

impl Limits {
    /// Limits every backend accepts, derived from FoundationDB's (key 10,000 B, value
    /// 100,000 B, transaction 10,000,000 B including conflict ranges) with head room.
    /// The embedded backend enforces these by default too, so code that works on a
    /// laptop does not fail on a cluster.
    pub const PORTABLE: Limits = Limits {
        max_key_bytes: 9_000,
        max_value_bytes: 100_000,
        max_batch_bytes: 8_000_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::PORTABLE
    }
}

/// Fixed per-operation overhead in [`WriteBatch::cost`].
pub const OP_OVERHEAD_BYTES: usize = 96;

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Space.
        space: Space,
        /// Non-empty key.
        key: Vec<u8>,
        /// Value (may be empty).
        value: Vec<u8>,
    },
    /// Remove `key` (no-op when absent).
    Delete {
        /// Space.
        space: Space,
        /// Non-empty key.
        key: Vec<u8>,
    },
    /// Remove every key in `range`.
    DeleteRange {
        /// Space.
        space: Space,
        /// Keys to remove.
        range: KeyRange,
    },
}

impl Op {
    /// This operation's share of [`WriteBatch::cost`]: keys count three times
    /// (FoundationDB stores the mutation and a write-conflict range with both
    /// ends per key) plus a fixed overhead that also covers the backend's key
    /// prefix, so a batch within [`Limits::PORTABLE`] fits one FoundationDB
    /// transaction.
    pub fn cost(&self) -> usize {
        OP_OVERHEAD_BYTES
            + match self {
                Op::Put { key, value, .. } => 3 * key.len() + value.len(),
                Op::Delete { key, .. } => 3 * key.len(),
                Op::DeleteRange { range, .. } => {
                    3 * (range.start().len() + range.end().map_or(1, <[u8]>::len))
                }
            }
    }

    /// The space this operation touches.
    pub fn space(&self) -> Space {
        match self {
            Op::Put { space, .. } | Op::Delete { space, .. } | Op::DeleteRange { space, .. } => {
                *space
            }
        }
    }

    fn validate(&self, limits: &Limits) -> Result<()> {
        let check_key = |key: &[u8]| -> Result<()> {
            if key.is_empty() {
                return Err(StoreError::InvalidArgument("empty key".into()));
            }
            if key.len() > limits.max_key_bytes {
                return Err(StoreError::TooLarge {
                    what: SizeKind::Key,
                    size: key.len(),
                    limit: limits.max_key_bytes,
                });
            }
            Ok(())
        };
        match self {
            Op::Put { key, value, .. } => {
                check_key(key)?;
                if value.len() > limits.max_value_bytes {
                    return Err(StoreError::TooLarge {
                        what: SizeKind::Value,
                        size: value.len(),
                        limit: limits.max_value_bytes,
                    });
                }
            }
            Op::Delete { key, .. } => check_key(key)?,
            Op::DeleteRange { range, .. } => {
                // Bounds may be one byte longer than a key (the `k || 0x00` successor).
                let longest = range.start().len().max(range.end().map_or(0, <[u8]>::len));
                if longest > limits.max_key_bytes + 1 {
                    return Err(StoreError::TooLarge {
                        what: SizeKind::Key,
                        size: longest,
                        limit: limits.max_key_bytes + 1,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A condition on the store's state that [`crate::Store::write`] checks atomically with
/// the batch: `key` of `space` holds exactly `expected` (`None`: absent) when the batch
/// is applied, otherwise nothing is written ([`StoreError::PreconditionFailed`]).
/// Several writers sharing one store (shard replicas over FoundationDB) use it to make
/// "apply entry N on top of state N-1" a compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precondition {
    /// Space of the key.
    pub space: Space,
    /// The key (non-empty).
    pub key: Vec<u8>,
    /// The value it must hold; `None`: it must be absent.
    pub expected: Option<Vec<u8>>,
}

impl Precondition {
    /// This condition's share of [`WriteBatch::cost`] (a read and its conflict range).
    pub fn cost(&self) -> usize {
        OP_OVERHEAD_BYTES + 3 * self.key.len() + self.expected.as_ref().map_or(0, Vec::len)
    }

    /// Whether `current` (the key's value now) satisfies the condition.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        self.expected.as_deref() == current
    }

    /// The error reported when the condition does not hold.
    pub fn failed(&self) -> StoreError {
        StoreError::PreconditionFailed(format!(
            "{:?} key {} no longer holds the expected value",
            self.space,
            hex_prefix(&self.key)
        ))
    }
}

fn hex_prefix(k: &[u8]) -> String {
    let mut s: String = k.iter().take(24).map(|b| format!("{b:02x}")).collect();
    if k.len() > 24 {
        s.push('…');
    }
    s
}

/// An ordered list of puts, deletes and range deletes, applied atomically by
/// [`crate::Store::write`]: all or nothing, also across crashes, and no reader ever sees
/// part of it. Operations take effect in list order (a put after a delete of the same key
/// wins, a range delete after a put removes it). Optional [`Precondition`]s are checked
/// atomically with the writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
    preconditions: Vec<Precondition>,
    cost: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` operations.
    pub fn with_capacity(n: usize) -> Self {
        WriteBatch {
            ops: Vec::with_capacity(n),
            preconditions: Vec::new(),
            cost: 0,
        }
    }

    /// Appends one operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.cost += op.cost();
        self.ops.push(op);
        self
    }

    /// Sets `key` to `value` in `space`.
    pub fn put(
        &mut self,
        space: Space,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(Op::Put {
            space,
            key: key.into(),
            value: value.into(),
        })
    }

    /// Removes `key` from `space`.
    pub fn delete(&mut self, space: Space, key: impl Into<Vec<u8>>) -> &mut Self {
        self.push(Op::Delete {
            space,
            key: key.into(),
        })
    }

    /// Removes every key of `space` in `range`.
    pub fn delete_range(&mut self, space: Space, range: KeyRange) -> &mut Self {
        self.push(Op::DeleteRange { space, range })
    }

    /// Removes every key of `space` starting with `prefix`.
    pub fn delete_prefix(&mut self, space: Space, prefix: &[u8]) -> &mut Self {
        self.delete_range(space, KeyRange::prefix(prefix))
    }

    /// Appends all of `other`'s operations (after this batch's) and preconditions.
    pub fn append(&mut self, other: WriteBatch) -> &mut Self {
        self.cost += other.cost;
        self.ops.extend(other.ops);
        self.preconditions.extend(other.preconditions);
        self
    }

    /// Adds a [`Precondition`]: the write happens only if `key` of `space` holds
    /// `expected` (`None`: absent) at that moment.
    pub fn require(
        &mut self,
        space: Space,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
    ) -> &mut Self {
        let p = Precondition {
            space,
            key: key.into(),
            expected,
        };
        self.cost += p.cost();
        self.preconditions.push(p);
        self
    }

    /// The preconditions, in the order added.
    pub fn preconditions(&self) -> &[Precondition] {
        &self.preconditions
    }

    /// Checks every precondition with `get` (the key's current value). Backends call it
    /// under whatever makes the check and the write one atomic step.
    pub fn check_preconditions(
        &self,
        mut get: impl FnMut(Space, &[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<()> {
        for p in &self.preconditions {
            let cur = get(p.space, &p.key)?;
            if !p.holds(cur.as_deref()) {
                return Err(p.failed());
            }
        }
        Ok(())
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch has no operation and no precondition.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.preconditions.is_empty()
    }

    /// Size as counted against [`Limits::max_batch_bytes`]: the sum of [`Op::cost`].
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The operations, in order.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// Checks every operation and the whole batch against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        self.validate_ops(limits)?;
        if self.cost > limits.max_batch_bytes {
            return Err(StoreError::TooLarge {
                what: SizeKind::Batch,
                size: self.cost,
                limit: limits.max_batch_bytes,
            });
        }
        Ok(())
    }

    fn validate_ops(&self, limits: &Limits) -> Result<()> {
        self.ops.iter().try_for_each(|op| op.validate(limits))?;
        for p in &self.preconditions {
            if p.key.is_empty() {
                return Err(StoreError::InvalidArgument("empty precondition key".into()));
            }
            if p.key.len() > limits.max_key_bytes {
                return Err(StoreError::TooLarge {
                    what: SizeKind::Key,
                    size: p.key.len(),
                    limit: limits.max_key_bytes,
                });
            }
        }
        Ok(())
    }

    /// Splits into consecutive batches that each pass [`WriteBatch::validate`], keeping
    /// operation order (greedy: each chunk is as large as the limit allows). The
    /// preconditions all go into the first chunk: they guard only that chunk, so a
    /// writer that relies on them keeps its batches within the limits. Fails, before
    /// anything is split, when a single operation breaks a key or value limit. An empty
    /// batch gives no chunk.
    pub fn split(self, limits: &Limits) -> Result<Vec<WriteBatch>> {
        self.validate_ops(limits)?;
        let mut chunks = Vec::new();
        let mut cur = WriteBatch::new();
        for p in self.preconditions {
            cur.require(p.space, p.key, p.expected);
        }
        for op in self.ops {
            if !cur.is_empty() && cur.cost + op.cost() > limits.max_batch_bytes {
                chunks.push(std::mem::take(&mut cur));
            }
            cur.push(op);
        }
        if !cur.is_empty() {
            chunks.push(cur);
        }
        // A single op can only exceed the batch limit if the limits are degenerate
        // (max_batch_bytes < max_key/value + overhead); report it rather than loop.
        if let Some(c) = chunks.iter().find(|c| c.cost > limits.max_batch_bytes) {
            return Err(StoreError::TooLarge {
                what: SizeKind::Batch,
                size: c.cost,
                limit: limits.max_batch_bytes,
            });
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ops::Bound;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xFE), Just(0xFF)],
            0..5,
        )
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            key().prop_map(Bound::Included),
            key().prop_map(Bound::Excluded),
            Just(Bound::Unbounded),
        ]
    }

    fn std_contains(s: &Bound<Vec<u8>>, e: &Bound<Vec<u8>>, k: &[u8]) -> bool {
        let lo = match s {
            Bound::Included(s) => k >= s.as_slice(),
            Bound::Excluded(s) => k > s.as_slice(),
            Bound::Unbounded => true,
        };
        let hi = match e {
            Bound::Included(e) => k <= e.as_slice(),
            Bound::Excluded(e) => k < e.as_slice(),
            Bound::Unbounded => true,
        };
        lo && hi
    }

    proptest! {
        /// Normalising any std bounds to `[start, end)` keeps exactly the same keys, and
        /// `is_empty` is exact.
        #[test]
        fn from_bounds_is_exact(s in bound(), e in bound(), ks in proptest::collection::vec(key(), 0..40)) {
            let r = KeyRange::from_bounds(
                s.as_ref().map(Vec::as_slice),
                e.as_ref().map(Vec::as_slice),
            );
            for k in ks.iter().filter(|k| !k.is_empty()) {
                prop_assert_eq!(r.contains(k), std_contains(&s, &e, k), "key {:?} in {:?}", k, r);
                if r.contains(k) {
                    prop_assert!(!r.is_empty());
                }
            }
        }

        /// A prefix range holds exactly the keys with that prefix.
        #[test]
        fn prefix_range_is_exact(p in key(), k in key()) {
            prop_assert_eq!(KeyRange::prefix(&p).contains(&k), k.starts_with(&p));
        }

        /// `after`/`before` split a range around a key with nothing lost or repeated.
        #[test]
        fn after_before_partition(s in bound(), e in bound(), pivot in key(), k in key()) {
            let r = KeyRange::from_bounds(s.as_ref().map(Vec::as_slice), e.as_ref().map(Vec::as_slice));
            if r.contains(&pivot) {
                let a = r.after(&pivot);
                let b = r.before(&pivot);
                let in_r = r.contains(&k);
                let n = usize::from(a.contains(&k)) + usize::from(b.contains(&k)) + usize::from(k == pivot);
                prop_assert_eq!(n, usize::from(in_r));
            }
        }

        /// `split` keeps every operation in order and each chunk within the limit
        /// (any limit at least the largest single op, 2,999 + 3·4 + 96 = 3,107).
        #[test]
        fn split_keeps_order_and_limits(sizes in proptest::collection::vec(0usize..3000, 0..200), max in 3200usize..20_000) {
            let limits = Limits { max_key_bytes: 100, max_value_bytes: 3000, max_batch_bytes: max };
            let mut b = WriteBatch::new();
            for (i, n) in sizes.iter().enumerate() {
                b.put(Space::Tree, (i as u32).to_be_bytes(), vec![0u8; *n]);
            }
            let ops = b.ops().to_vec();
            let chunks = b.split(&limits).unwrap();
            for c in &chunks {
                prop_assert!(!c.is_empty());
                prop_assert!(c.validate(&limits).is_ok());
            }
            // Greedy: no chunk's first op would have fitted in the previous chunk.
            for w in chunks.windows(2) {
                prop_assert!(w[0].cost() + w[1].ops()[0].cost() > limits.max_batch_bytes);
            }
            let flat: Vec<Op> = chunks.into_iter().flat_map(WriteBatch::into_ops).collect();
            prop_assert_eq!(flat, ops);
        }
    }

    #[test]
    fn prefix_end_edges() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\x00"), Some(b"\x01".to_vec()));
    }

    #[test]
    fn space_tags_round_trip() {
        for (i, s) in Space::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Space::from_tag(s.tag()), Some(s));
        }
        assert_eq!(Space::from_tag(0), None);
    }

    #[test]
    fn oversized_single_op_fails_split() {
        let mut b = WriteBatch::new();
        b.put(Space::Meta, b"k", vec![0u8; 200_000]);
        assert!(matches!(
            b.split(&Limits::PORTABLE),
            Err(StoreError::TooLarge {
                what: SizeKind::Value,
                ..
            })
        ));
    }
}
