//! Tree nodes as stored, and strides (the `k` binary levels between two
//! stored depths) as computed from them.

use candor_core::hash::map_node;
use candor_core::map::Index;
use candor_core::{Digest, ZERO};

use crate::error::{Result, corrupt};
use crate::keys::{get_compact, put_compact};

/// Binary levels between two stored depths. Nodes are stored only at depths
/// `b, b + STRIDE, b + 2·STRIDE, ...` (and 256); the levels in between are
/// recomputed from the stored ones.
pub const STRIDE: usize = 8;

/// Words of a bitmap over the `2^STRIDE` heap positions of a stride.
const WORDS: usize = (1usize << STRIDE).div_ceil(64);

/// A bitmap over the heap positions `1..2^k` of one stride.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u64; WORDS]);

impl Bits {
    #[inline]
    fn set(&mut self, h: usize) {
        self.0[h / 64] |= 1 << (h % 64);
    }

    #[inline]
    fn get(&self, h: usize) -> bool {
        self.0[h / 64] & (1 << (h % 64)) != 0
    }

    /// Set bits below `h`.
    #[inline]
    fn rank(&self, h: usize) -> usize {
        let w = h / 64;
        let below: u32 = self.0[..w].iter().map(|x| x.count_ones()).sum();
        let part = self.0[w] & ((1u64 << (h % 64)) - 1);
        (below + part.count_ones()) as usize
    }
}

/// The lone leaf of a subtree, as the tree references it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeafRef {
    pub index: Index,
    pub version: u64,
    pub hash: Digest,
}

/// A stored node position's content at one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Empty,
    /// Exactly one leaf beneath; `rev` is the revision its record was written.
    Single {
        leaf: LeafRef,
        rev: u64,
    },
    /// Two or more leaves beneath; children are stored one stride down with
    /// revisions `<= rev`.
    Multi {
        hash: Digest,
        rev: u64,
    },
}

impl Node {
    pub fn hash(&self) -> Digest {
        match self {
            Node::Empty => ZERO,
            Node::Single { leaf, .. } => leaf.hash,
            Node::Multi { hash, .. } => *hash,
        }
    }

    /// 0, 1 or 2 (= two or more) leaves.
    pub fn class(&self) -> u8 {
        match self {
            Node::Empty => 0,
            Node::Single { .. } => 1,
            Node::Multi { .. } => 2,
        }
    }

    pub fn rev(&self) -> Option<u64> {
        match self {
            Node::Empty => None,
            Node::Single { rev, .. } | Node::Multi { rev, .. } => Some(*rev),
        }
    }

    /// Value encoding: `0` empty; `1 || hash || index || compact(version)`;
    /// `2 || hash`. The revision lives in the key (or beside the root).
    pub fn encode_value(&self, out: &mut Vec<u8>) {
        match self {
            Node::Empty => out.push(0),
            Node::Single { leaf, .. } => {
                out.push(1);
                out.extend_from_slice(&leaf.hash);
                out.extend_from_slice(&leaf.index);
                put_compact(out, leaf.version);
            }
            Node::Multi { hash, .. } => {
                out.push(2);
                out.extend_from_slice(hash);
            }
        }
    }

    /// Decodes a value written by [`Node::encode_value`]; returns the node
    /// and the number of bytes used.
    pub fn decode_value(b: &[u8], rev: u64) -> Result<(Node, usize)> {
        match b.first() {
            Some(0) => Ok((Node::Empty, 1)),
            Some(1) if b.len() >= 66 => {
                let hash: Digest = b[1..33].try_into().expect("32");
                let index: Index = b[33..65].try_into().expect("32");
                let (version, n) = get_compact(&b[65..])?;
                if version == 0 {
                    return Err(corrupt("leaf reference with version 0"));
                }
                Ok((
                    Node::Single {
                        leaf: LeafRef {
                            index,
                            version,
                            hash,
                        },
                        rev,
                    },
                    65 + n,
                ))
            }
            Some(2) if b.len() >= 33 => Ok((
                Node::Multi {
                    hash: b[1..33].try_into().expect("32"),
                    rev,
                },
                33,
            )),
            _ => Err(corrupt("node record of unexpected shape")),
        }
    }

    /// Decodes a complete node record value.
    pub fn decode_record(b: &[u8], rev: u64) -> Result<Node> {
        let (n, used) = Node::decode_value(b, rev)?;
        if used != b.len() || matches!(n, Node::Empty) {
            return Err(corrupt("node record of unexpected shape"));
        }
        Ok(n)
    }
}

/// Hash and leaf class (0, 1, 2 = more) of a binary node inside a stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sum {
    pub hash: Digest,
    pub class: u8,
}

impl Sum {
    const EMPTY: Sum = Sum {
        hash: ZERO,
        class: 0,
    };

    /// Parent of two siblings under the lift rule.
    #[inline]
    pub fn join(l: Sum, r: Sum) -> Sum {
        match (l.class, r.class) {
            (0, 0) => Sum::EMPTY,
            (0, 1) => r,
            (1, 0) => l,
            _ => Sum {
                hash: map_node(&l.hash, &r.hash),
                class: 2,
            },
        }
    }
}

/// The stored children of one `Multi` node (its position one stride down)
/// and every binary node in between, in heap order: node 1 is the `Multi`
/// node itself, the children of node `i` are `2i` and `2i + 1`, and node
/// `2^k + s` is child position `s`. Kept compact (it is what the cache
/// holds): only inner nodes with two or more leaves store a hash.
#[derive(Debug, Clone)]
pub(crate) struct Stride {
    /// Binary levels in this stride (`STRIDE`, or less at depth 256).
    pub k: usize,
    /// Non-empty children, sorted by suffix.
    pub children: Vec<(u16, Node)>,
    /// Bit `h` set: inner node `h` (1..2^k) has two or more leaves.
    multi: Bits,
    /// Bit `h` set: inner node `h` has exactly one leaf.
    single: Bits,
    /// Hashes of the inner nodes whose `multi` bit is set, by `h`.
    inner: Box<[Digest]>,
}

impl Stride {
    pub fn build(k: usize, children: Vec<(u16, Node)>) -> Stride {
        // Level by level from the children up, visiting only non-empty
        // nodes (a stride is usually sparse: cost ∝ children, not 2^k).
        let mut level: Vec<(usize, Sum)> = children
            .iter()
            .map(|(s, n)| {
                (
                    *s as usize,
                    Sum {
                        hash: n.hash(),
                        class: n.class(),
                    },
                )
            })
            .collect();
        let (mut multi, mut single) = (Bits::default(), Bits::default());
        let mut inner: Vec<(usize, Digest)> = Vec::new();
        for depth in (0..k).rev() {
            let mut up = Vec::with_capacity(level.len().div_ceil(2));
            let mut i = 0;
            while i < level.len() {
                let (p, a) = level[i];
                let (l, r) = if p & 1 == 1 {
                    (Sum::EMPTY, a)
                } else if let Some(&(q, b)) = level.get(i + 1).filter(|x| x.0 == p + 1) {
                    debug_assert_eq!(q, p + 1);
                    i += 1;
                    (a, b)
                } else {
                    (a, Sum::EMPTY)
                };
                i += 1;
                let sum = Sum::join(l, r);
                let h = (1 << depth) + (p >> 1);
                match sum.class {
                    2 => {
                        multi.set(h);
                        inner.push((h, sum.hash));
                    }
                    1 => single.set(h),
                    _ => {}
                }
                up.push((p >> 1, sum));
            }
            level = up;
        }
        inner.sort_unstable_by_key(|x| x.0);
        Stride {
            k,
            children,
            multi,
            single,
            inner: inner.into_iter().map(|x| x.1).collect(),
        }
    }

    /// Hash and class of node `h` (1..2^(k+1)).
    pub fn sum(&self, h: usize) -> Sum {
        let width = 1usize << self.k;
        if h >= width {
            let n = self.child(h - width);
            return Sum {
                hash: n.hash(),
                class: n.class(),
            };
        }
        if self.multi.get(h) {
            let i = self.multi.rank(h);
            return Sum {
                hash: self.inner[i],
                class: 2,
            };
        }
        if self.single.get(h) {
            let hash = self.single_under(h).map_or(ZERO, |l| l.hash);
            return Sum { hash, class: 1 };
        }
        Sum::EMPTY
    }

    pub fn root(&self) -> Sum {
        self.sum(1)
    }

    /// The child at `suffix`, `Empty` when absent.
    pub fn child(&self, suffix: usize) -> Node {
        match self
            .children
            .binary_search_by_key(&(suffix as u16), |c| c.0)
        {
            Ok(i) => self.children[i].1,
            Err(_) => Node::Empty,
        }
    }

    /// The lone leaf beneath heap node `h` (whose class must be 1).
    pub fn single_under(&self, h: usize) -> Option<LeafRef> {
        let level = usize::BITS as usize - 1 - h.leading_zeros() as usize;
        let span = self.k - level;
        let lo = ((h - (1 << level)) << span) as u16;
        let hi = lo + (1u16 << span);
        let start = self.children.partition_point(|c| c.0 < lo);
        let mut it = self.children[start..].iter().take_while(|c| c.0 < hi);
        match (it.next(), it.next()) {
            (Some((_, Node::Single { leaf, .. })), None) => Some(*leaf),
            _ => None,
        }
    }

    /// Approximate heap bytes (cache weight).
    pub fn weight(&self) -> u64 {
        (std::mem::size_of::<Stride>()
            + self.children.capacity() * std::mem::size_of::<(u16, Node)>()
            + self.inner.len() * 32) as u64
    }
}
