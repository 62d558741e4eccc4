//! Epoch transition (audit) proofs.
//!
//! The proof is the part of the *old* map that the changes touch, as a pruned
//! tree, plus the new versions of every changed label. The verifier rebuilds
//! the old root from the pruned tree, applies the changes itself (it places
//! new leaves and splits displaced ones exactly as the map does), and
//! recomputes the new root. Everything the changes do not touch is an opaque
//! hash that is carried over unchanged, so nothing else can have changed.
//!
//! Pruned tree encoding, pre-order from the root: tag `0` empty subtree; `1`
//! opaque subtree `|| hash(32)`; `2` leaf `|| leaf(104)`; `3` interior node
//! `|| left || right`. Then `u32 count` of changed labels, sorted by index
//! ascending, each `index(32) || u32 m || m × commitment(32)`: the label's
//! new versions in order. Intermediate versions (a label changed several
//! times within one epoch) are all present so the hash chain from the old
//! leaf to the new one is complete.

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, ZERO, map_node};
use crate::map::{Index, Leaf, MAX_DEPTH, bit, common_prefix_len};
use crate::proof::MAX_LABEL_VERSIONS;

/// A node of the pruned old tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrunedNode {
    Empty,
    Opaque(Digest),
    Leaf(Leaf),
    Interior(Box<PrunedNode>, Box<PrunedNode>),
}

/// The new versions of one label in this epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    pub index: Index,
    /// Commitments of the new versions, oldest first (at least one).
    pub commitments: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProof {
    pub old_tree: PrunedNode,
    pub changes: Vec<LabelChange>,
}

/// One verified change: the label's leaf before (if any) and every new leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChange {
    pub index: Index,
    pub old: Option<Leaf>,
    pub new_leaves: Vec<Leaf>,
}

impl VerifiedChange {
    /// Whether this change contains the leaf an SMT promised.
    pub fn contains(&self, version: u64, leaf_hash: &Digest) -> bool {
        self.new_leaves
            .iter()
            .any(|l| l.version == version && l.hash() == *leaf_hash)
    }
}

/// Upper bound on changed labels in one proof (decoder limit, docs/protocol.md
/// §6.6).
pub const MAX_AUDIT_CHANGES: usize = 1 << 24;

/// Smallest encoding of a change: index, count, one commitment.
const MIN_CHANGE_LEN: usize = 32 + 4 + 32;

impl AuditProof {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + 200 * self.changes.len());
        encode_node(&mut w, &self.old_tree);
        w.u32(self.changes.len() as u32);
        for c in &self.changes {
            w.raw(&c.index).u32(c.commitments.len() as u32);
            for cm in &c.commitments {
                w.raw(cm);
            }
        }
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "audit proof";
        let mut r = Reader::new(bytes, WHAT);
        let old_tree = decode_node(&mut r, 0)?;
        let n = r.u32()? as usize;
        if n > MAX_AUDIT_CHANGES {
            return Err(decode_err(
                WHAT,
                format!("{n} changes exceed the limit {MAX_AUDIT_CHANGES}"),
            ));
        }
        if n.saturating_mul(MIN_CHANGE_LEN) > r.remaining() {
            return Err(decode_err(
                WHAT,
                format!("{n} changes do not fit in {} bytes", r.remaining()),
            ));
        }
        let mut changes = Vec::with_capacity(n);
        for _ in 0..n {
            let index = r.array()?;
            let m = r.u32()? as usize;
            if m == 0 || m > MAX_LABEL_VERSIONS {
                return Err(decode_err(
                    WHAT,
                    format!("{m} new versions of one label: must be 1..={MAX_LABEL_VERSIONS}"),
                ));
            }
            if m.saturating_mul(32) > r.remaining() {
                return Err(decode_err(
                    WHAT,
                    format!("{m} commitments do not fit in {} bytes", r.remaining()),
                ));
            }
            let commitments = (0..m).map(|_| r.array()).collect::<Result<Vec<_>>>()?;
            changes.push(LabelChange { index, commitments });
        }
        r.finish()?;
        Ok(AuditProof { old_tree, changes })
    }

    /// Verifies the transition from `old_root` to `new_root` and returns the
    /// verified changes in index order.
    pub fn verify(&self, old_root: &Digest, new_root: &Digest) -> Result<Vec<VerifiedChange>> {
        for w in self.changes.windows(2) {
            if w[0].index >= w[1].index {
                return Err(CoreError::NonCanonical("changes not sorted by index"));
            }
        }
        if self.changes.iter().any(|c| c.commitments.is_empty()) {
            return Err(CoreError::NonCanonical("change without a new version"));
        }
        let computed_old = check_old(&self.old_tree, 0, &[0u8; 32], &self.changes)?;
        if computed_old != *old_root {
            return Err(CoreError::RootMismatch {
                what: "audit proof (old root)",
            });
        }
        let mut verified = Vec::with_capacity(self.changes.len());
        let new_tree = apply(self.old_tree.clone(), 0, &self.changes, &mut verified)?;
        if node_hash(&new_tree) != *new_root {
            return Err(CoreError::RootMismatch {
                what: "audit proof (new root)",
            });
        }
        verified.sort_by_key(|a| a.index);
        Ok(verified)
    }
}

fn encode_node(w: &mut Writer, n: &PrunedNode) {
    match n {
        PrunedNode::Empty => {
            w.u8(0);
        }
        PrunedNode::Opaque(h) => {
            w.u8(1).raw(h);
        }
        PrunedNode::Leaf(l) => {
            w.u8(2);
            l.encode(w);
        }
        PrunedNode::Interior(l, r) => {
            w.u8(3);
            encode_node(w, l);
            encode_node(w, r);
        }
    }
}

fn decode_node(r: &mut Reader<'_>, depth: usize) -> Result<PrunedNode> {
    Ok(match r.u8()? {
        0 => PrunedNode::Empty,
        1 => PrunedNode::Opaque(r.array()?),
        2 => PrunedNode::Leaf(Leaf::decode(r)?),
        3 if depth < MAX_DEPTH => {
            let left = decode_node(r, depth + 1)?;
            let right = decode_node(r, depth + 1)?;
            PrunedNode::Interior(Box::new(left), Box::new(right))
        }
        3 => return Err(decode_err("audit proof", "interior node below depth 256")),
        t => return Err(decode_err("audit proof", format!("unknown node tag {t}"))),
    })
}

/// Hash of a node of a canonical (pruned) tree.
fn node_hash(n: &PrunedNode) -> Digest {
    match n {
        PrunedNode::Empty => ZERO,
        PrunedNode::Opaque(h) => *h,
        PrunedNode::Leaf(l) => l.hash(),
        PrunedNode::Interior(l, r) => map_node(&node_hash(l), &node_hash(r)),
    }
}

/// Changes whose index has the same first `depth` bits as `prefix`, split by
/// bit `depth`. `changes` is sorted, so each half is a contiguous slice.
fn split(changes: &[LabelChange], depth: usize) -> (&[LabelChange], &[LabelChange]) {
    let mid = changes.partition_point(|c| !bit(&c.index, depth));
    changes.split_at(mid)
}

/// Checks the pruned old tree is canonical and exactly covers the paths of
/// `changes` (which all lie under this node), and returns its hash.
fn check_old(
    n: &PrunedNode,
    depth: usize,
    prefix: &Index,
    changes: &[LabelChange],
) -> Result<Digest> {
    match n {
        PrunedNode::Empty => Ok(ZERO),
        PrunedNode::Opaque(h) => {
            if !changes.is_empty() {
                return Err(CoreError::NonCanonical(
                    "a changed label's path ends in an opaque node",
                ));
            }
            if *h == ZERO {
                return Err(CoreError::NonCanonical("opaque empty subtree"));
            }
            Ok(*h)
        }
        PrunedNode::Leaf(l) => {
            if changes.is_empty() {
                return Err(CoreError::NonCanonical("leaf off every changed path"));
            }
            if common_prefix_len(&l.index, prefix) < depth {
                return Err(CoreError::NonCanonical("leaf is not under its position"));
            }
            crate::proof::lookup::check_link(l.version, &l.prev)?;
            Ok(l.hash())
        }
        PrunedNode::Interior(left, right) => {
            if changes.is_empty() {
                return Err(CoreError::NonCanonical(
                    "expanded node off every changed path",
                ));
            }
            let lone = |a: &PrunedNode, b: &PrunedNode| {
                matches!(a, PrunedNode::Empty)
                    && matches!(b, PrunedNode::Empty | PrunedNode::Leaf(_))
            };
            if lone(left, right) || lone(right, left) {
                return Err(CoreError::NonCanonical(
                    "interior node that should be lifted",
                ));
            }
            let (lc, rc) = split(changes, depth);
            let lh = check_old(left, depth + 1, prefix, lc)?;
            let mut rprefix = *prefix;
            rprefix[depth / 8] |= 0x80 >> (depth % 8);
            let rh = check_old(right, depth + 1, &rprefix, rc)?;
            Ok(map_node(&lh, &rh))
        }
    }
}

/// Chains the new versions of `change` onto `old`.
fn chain(change: &LabelChange, old: Option<&Leaf>) -> Result<Vec<Leaf>> {
    let mut out = Vec::with_capacity(change.commitments.len());
    let mut cur: Option<Leaf> = old.copied();
    for c in &change.commitments {
        let next = match &cur {
            Some(prev) => {
                if prev.version == u64::MAX {
                    return Err(CoreError::VersionChain("version overflow".into()));
                }
                prev.next(*c)
            }
            None => Leaf::first(change.index, *c),
        };
        out.push(next);
        cur = Some(next);
    }
    Ok(out)
}

/// Applies `changes` (all under this node) to the pruned tree.
fn apply(
    n: PrunedNode,
    depth: usize,
    changes: &[LabelChange],
    out: &mut Vec<VerifiedChange>,
) -> Result<PrunedNode> {
    if changes.is_empty() {
        return Ok(n);
    }
    match n {
        PrunedNode::Opaque(_) => Err(CoreError::NonCanonical("change under an opaque node")),
        PrunedNode::Interior(l, r) => {
            let (lc, rc) = split(changes, depth);
            let l = apply(*l, depth + 1, lc, out)?;
            let r = apply(*r, depth + 1, rc, out)?;
            Ok(PrunedNode::Interior(Box::new(l), Box::new(r)))
        }
        PrunedNode::Empty if changes.len() == 1 => {
            let leaves = chain(&changes[0], None)?;
            let last = *leaves.last().expect("at least one version");
            out.push(VerifiedChange {
                index: changes[0].index,
                old: None,
                new_leaves: leaves,
            });
            Ok(PrunedNode::Leaf(last))
        }
        PrunedNode::Leaf(old) if changes.len() == 1 && changes[0].index == old.index => {
            let leaves = chain(&changes[0], Some(&old))?;
            let last = *leaves.last().expect("at least one version");
            out.push(VerifiedChange {
                index: old.index,
                old: Some(old),
                new_leaves: leaves,
            });
            Ok(PrunedNode::Leaf(last))
        }
        // Two or more distinct labels meet here: split one level down.
        PrunedNode::Empty | PrunedNode::Leaf(_) => {
            if depth >= MAX_DEPTH {
                return Err(CoreError::NonCanonical("two labels with one index"));
            }
            let (mut left, mut right) = (PrunedNode::Empty, PrunedNode::Empty);
            if let PrunedNode::Leaf(old) = n {
                if bit(&old.index, depth) {
                    right = PrunedNode::Leaf(old);
                } else {
                    left = PrunedNode::Leaf(old);
                }
            }
            let (lc, rc) = split(changes, depth);
            let left = apply(left, depth + 1, lc, out)?;
            let right = apply(right, depth + 1, rc, out)?;
            Ok(PrunedNode::Interior(Box::new(left), Box::new(right)))
        }
    }
}
