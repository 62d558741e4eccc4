//! Navigation over the binary tree a revision (or a whole map view)
//! defines, whatever is stored: the top levels above the shards, stored
//! nodes, the binary levels inside a stride, lifted leaves and empty
//! subtrees all look like one binary node with a hash and a leaf class.

use std::sync::Arc;

use candor_core::map::{Index, Subtree, bit};
use candor_core::{Digest, ZERO};

use crate::error::{Result, corrupt};
use crate::forest::ForestInner;
use crate::keys::bits;
use crate::node::{LeafRef, Node, Stride};

/// The levels above the shard roots of one map view.
#[derive(Debug)]
pub(crate) struct TopTree {
    /// `levels[d][i]`: the node at depth `d` with top bits `i`; `levels[b]`
    /// are the shard roots.
    pub levels: Vec<Vec<Subtree>>,
    /// Shard roots as stored (for lone leaves and shard children).
    pub roots: Vec<Node>,
}

impl TopTree {
    pub fn build(roots: Vec<(Subtree, Node)>) -> TopTree {
        let mut levels = vec![roots.iter().map(|r| r.0).collect::<Vec<_>>()];
        while levels.last().expect("non-empty").len() > 1 {
            let next = levels
                .last()
                .expect("non-empty")
                .chunks_exact(2)
                .map(|p| Subtree::join(p[0], p[1]))
                .collect();
            levels.push(next);
        }
        levels.reverse();
        TopTree {
            levels,
            roots: roots.into_iter().map(|r| r.1).collect(),
        }
    }

    pub fn root(&self) -> Subtree {
        self.levels[0][0]
    }

    fn bits(&self) -> usize {
        self.levels.len() - 1
    }

    /// The lone leaf under top node `(d, i)` (which holds exactly one).
    fn single_under(&self, mut d: usize, mut i: usize) -> Result<LeafRef> {
        let b = self.bits();
        while d < b {
            let l = self.levels[d + 1][2 * i];
            i = if l.leaves > 0 { 2 * i } else { 2 * i + 1 };
            d += 1;
        }
        match self.roots[i] {
            Node::Single { leaf, .. } => Ok(leaf),
            _ => Err(corrupt("top node with one leaf has no lone shard leaf")),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Empty,
    Single(LeafRef),
    /// Above the shards, two or more leaves.
    Top(Digest),
    /// A stored node with two or more leaves; its children are one stride down.
    Multi {
        hash: Digest,
        rev: u64,
    },
    /// A binary node inside a stride, two or more leaves.
    Inner {
        stride: Arc<Stride>,
        h: usize,
    },
}

/// One binary node: depth, prefix (bits below `depth` cleared) and content.
#[derive(Debug, Clone)]
pub(crate) struct Pos {
    pub depth: usize,
    pub prefix: Index,
    pub kind: Kind,
}

impl Pos {
    pub fn hash(&self) -> Digest {
        match &self.kind {
            Kind::Empty => ZERO,
            Kind::Single(l) => l.hash,
            Kind::Top(h) | Kind::Multi { hash: h, .. } => *h,
            Kind::Inner { stride, h } => stride.sum(*h).hash,
        }
    }

    pub fn class(&self) -> u8 {
        match &self.kind {
            Kind::Empty => 0,
            Kind::Single(_) => 1,
            _ => 2,
        }
    }

    pub fn single(&self) -> Option<&LeafRef> {
        match &self.kind {
            Kind::Single(l) => Some(l),
            _ => None,
        }
    }

    pub fn from_node(depth: usize, prefix: Index, node: &Node) -> Pos {
        let kind = match node {
            Node::Empty => Kind::Empty,
            Node::Single { leaf, .. } => Kind::Single(*leaf),
            Node::Multi { hash, rev } => Kind::Multi {
                hash: *hash,
                rev: *rev,
            },
        };
        Pos {
            depth,
            prefix,
            kind,
        }
    }
}

fn with_bit(prefix: &Index, depth: usize) -> Index {
    let mut p = *prefix;
    p[depth / 8] |= 0x80 >> (depth % 8);
    p
}

pub(crate) struct Nav<'a> {
    pub forest: &'a ForestInner,
    pub top: Option<&'a TopTree>,
}

impl Nav<'_> {
    /// The global root (needs `top`).
    pub fn root(&self) -> Result<Pos> {
        let top = self
            .top
            .ok_or_else(|| corrupt("navigation without a top tree"))?;
        self.top_pos(top, 0, 0)
    }

    fn top_pos(&self, top: &TopTree, d: usize, i: usize) -> Result<Pos> {
        let b = top.bits();
        let prefix = crate::forest::shard_prefix(if b == 0 { 0 } else { (i << (b - d)) as u32 }, b);
        if d == b {
            return Ok(Pos::from_node(d, prefix, &top.roots[i]));
        }
        let s = top.levels[d][i];
        let kind = match s.leaves {
            0 => Kind::Empty,
            1 => Kind::Single(top.single_under(d, i)?),
            _ => Kind::Top(s.hash),
        };
        Ok(Pos {
            depth: d,
            prefix,
            kind,
        })
    }

    /// The two children of a node.
    pub fn children(&self, p: &Pos) -> Result<(Pos, Pos)> {
        let d = p.depth;
        if d >= 256 {
            return Err(corrupt("node below depth 256"));
        }
        let lp = p.prefix;
        let rp = with_bit(&p.prefix, d);
        let mk = |prefix, kind| Pos {
            depth: d + 1,
            prefix,
            kind,
        };
        Ok(match &p.kind {
            Kind::Empty => (mk(lp, Kind::Empty), mk(rp, Kind::Empty)),
            Kind::Single(l) => {
                if bit(&l.index, d) {
                    (mk(lp, Kind::Empty), mk(rp, Kind::Single(*l)))
                } else {
                    (mk(lp, Kind::Single(*l)), mk(rp, Kind::Empty))
                }
            }
            Kind::Top(_) => {
                let top = self
                    .top
                    .ok_or_else(|| corrupt("top node without a top tree"))?;
                let i = bits(&p.prefix, 0, d);
                (
                    self.top_pos(top, d + 1, 2 * i)?,
                    self.top_pos(top, d + 1, 2 * i + 1)?,
                )
            }
            Kind::Multi { hash, rev } => {
                let shard = shard_of_prefix(&p.prefix, self.forest.shard_bits());
                let stride = self.forest.stride(shard, d, &p.prefix, *rev, hash)?;
                self.inner_children(&stride, 1, d, lp, rp)?
            }
            Kind::Inner { stride, h } => self.inner_children(stride, *h, d, lp, rp)?,
        })
    }

    fn inner_children(
        &self,
        stride: &Arc<Stride>,
        h: usize,
        d: usize,
        lp: Index,
        rp: Index,
    ) -> Result<(Pos, Pos)> {
        let width = 1usize << stride.k;
        let one = |c: usize, prefix: Index| -> Result<Pos> {
            if c >= width {
                return Ok(Pos::from_node(d + 1, prefix, &stride.child(c - width)));
            }
            let sum = stride.sum(c);
            let kind = match sum.class {
                0 => Kind::Empty,
                1 => Kind::Single(
                    stride
                        .single_under(c)
                        .ok_or_else(|| corrupt("stride node with one leaf has no lone leaf"))?,
                ),
                _ => Kind::Inner {
                    stride: stride.clone(),
                    h: c,
                },
            };
            Ok(Pos {
                depth: d + 1,
                prefix,
                kind,
            })
        };
        Ok((one(2 * h, lp)?, one(2 * h + 1, rp)?))
    }

    /// Siblings from `start` down to where `index`'s path ends (a node with
    /// at most one leaf), and that end node.
    pub fn path(&self, start: Pos, index: &Index) -> Result<(Vec<Digest>, Pos)> {
        let mut siblings = Vec::with_capacity(32);
        let mut cur = start;
        loop {
            match &cur.kind {
                // Inside stored nodes, walk the stride by heap index: no
                // per-level node objects (and no shared reference counts
                // touched per level, which matters with several threads).
                Kind::Multi { hash, rev } => {
                    let d = cur.depth;
                    let shard = shard_of_prefix(&cur.prefix, self.forest.shard_bits());
                    let stride = self.forest.stride(shard, d, &cur.prefix, *rev, hash)?;
                    let width = 1usize << stride.k;
                    let mut h = 1usize;
                    let mut next = None;
                    for j in 0..stride.k {
                        let right = bit(index, d + j);
                        let (mine, other) = if right {
                            (2 * h + 1, 2 * h)
                        } else {
                            (2 * h, 2 * h + 1)
                        };
                        siblings.push(stride.sum(other).hash);
                        h = mine;
                        let depth = d + j + 1;
                        let prefix = crate::keys::mask(index, depth);
                        if h >= width {
                            next = Some(Pos::from_node(depth, prefix, &stride.child(h - width)));
                            break;
                        }
                        let sum = stride.sum(h);
                        match sum.class {
                            0 => {
                                next = Some(Pos {
                                    depth,
                                    prefix,
                                    kind: Kind::Empty,
                                });
                                break;
                            }
                            1 => {
                                let l = stride.single_under(h).ok_or_else(|| {
                                    corrupt("stride node with one leaf has no lone leaf")
                                })?;
                                next = Some(Pos {
                                    depth,
                                    prefix,
                                    kind: Kind::Single(l),
                                });
                                break;
                            }
                            _ => {}
                        }
                    }
                    cur = next.ok_or_else(|| corrupt("stride path did not reach its children"))?;
                }
                _ if cur.class() == 2 => {
                    let (l, r) = self.children(&cur)?;
                    if bit(index, cur.depth) {
                        siblings.push(l.hash());
                        cur = r;
                    } else {
                        siblings.push(r.hash());
                        cur = l;
                    }
                }
                _ => return Ok((siblings, cur)),
            }
        }
    }

    /// Every label whose leaf differs between `old` and `new` (the same
    /// position in two trees where `new` extends `old`):
    /// `(index, old version or 0, new version)`, in index order.
    pub fn diff(&self, old: &Pos, new: &Pos, out: &mut Vec<(Index, u64, u64)>) -> Result<()> {
        if old.hash() == new.hash() && old.class() == new.class() {
            return Ok(());
        }
        match (new.class(), old.class()) {
            (1, c) => {
                let y = new.single().expect("class 1");
                let from = match (c, old.single()) {
                    (0, _) => 0,
                    (1, Some(x)) if x.index == y.index && x.version < y.version => x.version,
                    _ => {
                        return Err(corrupt(
                            "a later revision lost a label or went back in version",
                        ));
                    }
                };
                out.push((y.index, from, y.version));
                Ok(())
            }
            (2, _) => {
                let (ol, or) = self.children(old)?;
                let (nl, nr) = self.children(new)?;
                self.diff(&ol, &nl, out)?;
                self.diff(&or, &nr, out)
            }
            _ => Err(corrupt("a later revision has fewer leaves")),
        }
    }
}

pub(crate) fn shard_of_prefix(prefix: &Index, shard_bits: usize) -> u32 {
    candor_core::map::shard_of(prefix, shard_bits as u8)
}
