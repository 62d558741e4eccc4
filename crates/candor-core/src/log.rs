//! The epoch log: an append-only Merkle log in the shape of RFC 6962 / RFC
//! 9162 §2.1, with BLAKE3 keyed hashes instead of SHA-256 and prefix bytes.
//!
//! Entry `e - 1` (0-based) is epoch `e`: `epoch_be64 || timestamp_ms_be64 ||
//! map_root(32)`, hashed with `K_logleaf`; interior nodes are
//! `keyed_hash(K_lognode, left || right)`. The root of the empty log is zero.
//!
//! Proof generation works over any source of *perfect* subtree roots
//! ([`LogNodes`]), so the storage-backed log and the in-memory reference
//! share one implementation.

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, Domain, ZERO, log_node};
use crate::signed::SignedHead;

/// One epoch as recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: u64,
    pub timestamp_ms: u64,
    pub map_root: Digest,
}

impl EpochEntry {
    pub fn to_bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[..8].copy_from_slice(&self.epoch.to_be_bytes());
        b[8..16].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[16..].copy_from_slice(&self.map_root);
        b
    }
    pub fn leaf_hash(&self) -> Digest {
        Domain::LogLeaf.hash(&self.to_bytes())
    }
    pub fn of_head(h: &SignedHead) -> Self {
        EpochEntry {
            epoch: h.head.epoch,
            timestamp_ms: h.head.timestamp_ms,
            map_root: h.head.map_root,
        }
    }
}

/// Source of perfect subtree roots: `perfect(level, i)` is the root of leaves
/// `[i·2^level, (i+1)·2^level)`, which must all exist.
pub trait LogNodes {
    type Error;
    fn perfect(&self, level: u32, i: u64) -> Result<Digest, Self::Error>;
    /// The interior-node hash of the log these nodes belong to: the epoch log's
    /// `H_lognode` unless overridden (the checkpoint tree of
    /// [`crate::checkpoint`] uses RFC 6962's SHA-256).
    fn node(&self, left: &Digest, right: &Digest) -> Digest {
        log_node(left, right)
    }
}

/// An interior-node hash: [`log_node`] for the epoch log,
/// [`crate::checkpoint::rfc6962_node`] for the checkpoint tree.
pub type NodeHash = fn(&Digest, &Digest) -> Digest;

fn largest_pow2_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Root of leaves `[start, end)`, as RFC 6962's MTH.
pub fn range_root<N: LogNodes>(nodes: &N, start: u64, end: u64) -> Result<Digest, N::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(ZERO);
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.perfect(n.trailing_zeros(), start / n);
    }
    let k = largest_pow2_below(n);
    let l = range_root(nodes, start, start + k)?;
    let r = range_root(nodes, start + k, end)?;
    Ok(nodes.node(&l, &r))
}

/// RFC 6962 `PATH(m, D[start..end])`.
fn path<N: LogNodes>(
    nodes: &N,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Digest>,
) -> Result<(), N::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = largest_pow2_below(n);
    if m < k {
        path(nodes, m, start, start + k, out)?;
        out.push(range_root(nodes, start + k, end)?);
    } else {
        path(nodes, m - k, start + k, end, out)?;
        out.push(range_root(nodes, start, start + k)?);
    }
    Ok(())
}

/// RFC 6962 `SUBPROOF(m, D[start..end], b)`.
fn subproof<N: LogNodes>(
    nodes: &N,
    m: u64,
    start: u64,
    end: u64,
    b: bool,
    out: &mut Vec<Digest>,
) -> Result<(), N::Error> {
    let n = end - start;
    if m == n {
        if !b {
            out.push(range_root(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = largest_pow2_below(n);
    if m <= k {
        subproof(nodes, m, start, start + k, b, out)?;
        out.push(range_root(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, out)?;
        out.push(range_root(nodes, start, start + k)?);
    }
    Ok(())
}

/// Proof that leaf `leaf_index` is in the log of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<Digest>,
}

/// Proof that the log of `first` leaves is a prefix of the log of `second`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub path: Vec<Digest>,
}

fn encode_path(w: &mut Writer, path: &[Digest]) {
    w.u8(path.len() as u8);
    for p in path {
        w.raw(p);
    }
}

/// Most hashes in an inclusion path: one per level of a log of < 2^64 leaves.
pub const MAX_INCLUSION_PATH: usize = 64;
/// Most hashes in a consistency path: the inclusion bound plus the one
/// subtree root that starts the proof when `first` is not a power of two.
pub const MAX_CONSISTENCY_PATH: usize = 65;

fn decode_path(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<Vec<Digest>> {
    let n = r.u8()? as usize;
    if n > max {
        return Err(decode_err(
            what,
            format!("path of {n} hashes exceeds the limit {max}"),
        ));
    }
    (0..n).map(|_| r.array()).collect()
}

impl InclusionProof {
    pub fn generate<N: LogNodes>(
        nodes: &N,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<Self, N::Error> {
        assert!(leaf_index < tree_size, "leaf index beyond the log");
        let mut p = Vec::new();
        path(nodes, leaf_index, 0, tree_size, &mut p)?;
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            path: p,
        })
    }

    /// Encoding: `u64 leaf_index || u64 tree_size || u8 n || n × 32`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(17 + 32 * self.path.len());
        w.u64(self.leaf_index).u64(self.tree_size);
        encode_path(&mut w, &self.path);
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "inclusion proof");
        let p = InclusionProof {
            leaf_index: r.u64()?,
            tree_size: r.u64()?,
            path: decode_path(&mut r, "inclusion proof", MAX_INCLUSION_PATH)?,
        };
        r.finish()?;
        Ok(p)
    }

    /// RFC 9162 §2.1.3.2.
    pub fn verify(&self, leaf_hash: &Digest, root: &Digest) -> Result<()> {
        self.verify_with(leaf_hash, root, log_node)
    }

    /// [`Self::verify`] in a log whose interior nodes hash with `node`.
    pub fn verify_with(&self, leaf_hash: &Digest, root: &Digest, node: NodeHash) -> Result<()> {
        if self.leaf_index >= self.tree_size {
            return Err(CoreError::NonCanonical("leaf index beyond tree size"));
        }
        let (mut f, mut s) = (self.leaf_index, self.tree_size - 1);
        let mut r = *leaf_hash;
        for p in &self.path {
            if s == 0 {
                return Err(CoreError::NonCanonical("inclusion path too long"));
            }
            if f & 1 == 1 || f == s {
                r = node(p, &r);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                r = node(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        if s != 0 {
            return Err(CoreError::NonCanonical("inclusion path too short"));
        }
        if r != *root {
            return Err(CoreError::RootMismatch {
                what: "log inclusion proof",
            });
        }
        Ok(())
    }
}

impl ConsistencyProof {
    pub fn generate<N: LogNodes>(nodes: &N, first: u64, second: u64) -> Result<Self, N::Error> {
        assert!(first <= second, "consistency from a larger log");
        let mut p = Vec::new();
        if first > 0 && first < second {
            subproof(nodes, first, 0, second, true, &mut p)?;
        }
        Ok(ConsistencyProof {
            first,
            second,
            path: p,
        })
    }

    /// Encoding: `u64 first || u64 second || u8 n || n × 32`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(17 + 32 * self.path.len());
        w.u64(self.first).u64(self.second);
        encode_path(&mut w, &self.path);
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "consistency proof");
        let p = ConsistencyProof {
            first: r.u64()?,
            second: r.u64()?,
            path: decode_path(&mut r, "consistency proof", MAX_CONSISTENCY_PATH)?,
        };
        r.finish()?;
        Ok(p)
    }

    /// RFC 9162 §2.1.4.2; equal sizes need an empty path and equal roots.
    pub fn verify(&self, first_root: &Digest, second_root: &Digest) -> Result<()> {
        self.verify_with(first_root, second_root, log_node)
    }

    /// [`Self::verify`] in a log whose interior nodes hash with `node`.
    pub fn verify_with(
        &self,
        first_root: &Digest,
        second_root: &Digest,
        node: NodeHash,
    ) -> Result<()> {
        let (first, second) = (self.first, self.second);
        if first > second {
            return Err(CoreError::NonCanonical("first log larger than second"));
        }
        if first == second || first == 0 {
            if !self.path.is_empty() {
                return Err(CoreError::NonCanonical("consistency path must be empty"));
            }
            if first == second && first_root != second_root {
                return Err(CoreError::Inconsistent(
                    "same log size, different roots".into(),
                ));
            }
            return Ok(());
        }
        let mut path: Vec<Digest> = Vec::with_capacity(self.path.len() + 1);
        if first.is_power_of_two() {
            path.push(*first_root);
        }
        path.extend_from_slice(&self.path);
        if path.is_empty() {
            return Err(CoreError::NonCanonical("empty consistency path"));
        }
        let (mut f, mut s) = (first - 1, second - 1);
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        let (mut fr, mut sr) = (path[0], path[0]);
        for c in &path[1..] {
            if s == 0 {
                return Err(CoreError::NonCanonical("consistency path too long"));
            }
            if f & 1 == 1 || f == s {
                fr = node(c, &fr);
                sr = node(c, &sr);
                if f & 1 == 0 {
                    while f & 1 == 0 && f != 0 {
                        f >>= 1;
                        s >>= 1;
                    }
                }
            } else {
                sr = node(&sr, c);
            }
            f >>= 1;
            s >>= 1;
        }
        if s != 0 {
            return Err(CoreError::NonCanonical("consistency path too short"));
        }
        if fr != *first_root || sr != *second_root {
            return Err(CoreError::RootMismatch {
                what: "log consistency proof",
            });
        }
        Ok(())
    }
}

/// Proof that a newer head extends an older one: the old log is a prefix of
/// the new log (consistency), and the old head's own entry (epoch, timestamp,
/// map root) is leaf `old.epoch - 1` of the new log (inclusion). The second
/// part binds the map root the client used to the log everyone else sees.
///
/// Encoding: `consistency proof || inclusion proof` (each as defined above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadExtensionProof {
    pub consistency: ConsistencyProof,
    pub inclusion: InclusionProof,
}

impl HeadExtensionProof {
    pub fn generate<N: LogNodes>(
        nodes: &N,
        old_size: u64,
        new_size: u64,
    ) -> Result<Self, N::Error> {
        Ok(HeadExtensionProof {
            consistency: ConsistencyProof::generate(nodes, old_size, new_size)?,
            inclusion: InclusionProof::generate(nodes, old_size - 1, new_size)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.consistency.encode();
        v.extend_from_slice(&self.inclusion.encode());
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "head extension proof");
        let consistency = ConsistencyProof {
            first: r.u64()?,
            second: r.u64()?,
            path: decode_path(&mut r, "head extension proof", MAX_CONSISTENCY_PATH)?,
        };
        let inclusion = InclusionProof {
            leaf_index: r.u64()?,
            tree_size: r.u64()?,
            path: decode_path(&mut r, "head extension proof", MAX_INCLUSION_PATH)?,
        };
        r.finish()?;
        Ok(HeadExtensionProof {
            consistency,
            inclusion,
        })
    }
}

/// Checks that `new` extends `old`: same namespace, timestamps never go back,
/// `old`'s log is a prefix of `new`'s and `old`'s entry is in `new`'s log. Two
/// different heads for one epoch are equivocation; two identical heads need
/// the same proof shape (sizes `(e, e)` and `(e - 1, e)`), which then shows
/// that the head's own entry is the last leaf of its log. Both heads'
/// signatures must already be verified.
pub fn verify_head_extension(
    old: &SignedHead,
    new: &SignedHead,
    proof: &HeadExtensionProof,
) -> Result<()> {
    let (o, n) = (&old.head, &new.head);
    if o.namespace != n.namespace {
        return Err(CoreError::Context("heads of different namespaces".into()));
    }
    if n.epoch < o.epoch {
        return Err(CoreError::InvalidArgument(
            "new head is older than the old one".into(),
        ));
    }
    // Equal epochs: the heads must be identical, and the proof is checked
    // like any other (an empty consistency path between equal sizes, and the
    // head's own entry as the last leaf of its log).
    if n.epoch == o.epoch && o != n {
        return Err(CoreError::Inconsistent(format!(
            "two different signed heads for epoch {}",
            o.epoch
        )));
    }
    if n.timestamp_ms < o.timestamp_ms {
        return Err(CoreError::Inconsistent(format!(
            "epoch {} has an earlier timestamp than epoch {}",
            n.epoch, o.epoch
        )));
    }
    let (c, i) = (&proof.consistency, &proof.inclusion);
    if c.first != o.log_size
        || c.second != n.log_size
        || i.leaf_index != o.epoch - 1
        || i.tree_size != n.log_size
    {
        return Err(CoreError::Context(
            "extension proof is for other log sizes".into(),
        ));
    }
    c.verify(&o.log_root, &n.log_root)?;
    i.verify(&EntryOf::leaf(o), &n.log_root).map_err(|_| {
        CoreError::Inconsistent(format!(
            "epoch {} head is not in the log of epoch {}",
            o.epoch, n.epoch
        ))
    })
}

struct EntryOf;
impl EntryOf {
    fn leaf(h: &crate::signed::EpochHead) -> Digest {
        EpochEntry {
            epoch: h.epoch,
            timestamp_ms: h.timestamp_ms,
            map_root: h.map_root,
        }
        .leaf_hash()
    }
}

/// An in-memory epoch log (reference implementation, also fine for tests and
/// small auditors): keeps every level so proofs are cheap.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    /// `levels[l][i]` = perfect subtree root of level `l`, index `i`.
    levels: Vec<Vec<Digest>>,
    node: NodeHash,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog {
            levels: Vec::new(),
            node: log_node,
        }
    }
}

impl MemoryLog {
    /// An epoch log (`H_lognode`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A log whose interior nodes hash with `node` (the checkpoint tree:
    /// [`crate::checkpoint::rfc6962_node`]).
    pub fn with_node_hash(node: NodeHash) -> Self {
        MemoryLog {
            levels: Vec::new(),
            node,
        }
    }

    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash; returns the new perfect nodes `(level, i, hash)`,
    /// which is what a persistent log needs to store.
    pub fn append(&mut self, leaf: Digest) -> Vec<(u32, u64, Digest)> {
        let mut created = Vec::new();
        let mut level = 0usize;
        let mut h = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let i = self.levels[level].len() as u64;
            self.levels[level].push(h);
            created.push((level as u32, i, h));
            if i.is_multiple_of(2) {
                break;
            }
            h = (self.node)(&self.levels[level][i as usize - 1], &h);
            level += 1;
        }
        created
    }

    pub fn root(&self) -> Digest {
        range_root(self, 0, self.len()).unwrap_or(ZERO)
    }

    pub fn root_at(&self, size: u64) -> Digest {
        range_root(self, 0, size.min(self.len())).unwrap_or(ZERO)
    }
}

impl LogNodes for MemoryLog {
    type Error = CoreError;
    fn perfect(&self, level: u32, i: u64) -> Result<Digest> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(i as usize))
            .copied()
            .ok_or_else(|| CoreError::InvalidArgument(format!("no log node ({level}, {i})")))
    }
    fn node(&self, left: &Digest, right: &Digest) -> Digest {
        (self.node)(left, right)
    }
}
