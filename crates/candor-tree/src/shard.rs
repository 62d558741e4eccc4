//! One shard's subtree: staging leaves, sealing revisions, reading any
//! retained revision, pruning.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use candor_core::hash::map_node;
use candor_core::map::{Index, Leaf, Subtree, shard_of};
use candor_core::{Digest, ZERO};
use candor_store::{Direction, KeyRange, Space, StoreError, WriteBatch, scan_pages};
use rayon::prelude::*;

use crate::error::{Result, TreeError, corrupt, invalid};
use crate::forest::{ForestInner, RevRec, ShardMeta, ShardState, StrideKey, hex, shard_prefix};
use crate::keys::{
    self, bits, extend, leaf_key, leaf_prefix, leaf_value, meta_shard_key, node_key,
    node_shard_prefix, parse_any_node_key, parse_leaf_key, rev_key,
};
use crate::nav::{Nav, Pos};
use crate::node::{LeafRef, Node, Stride};

/// Pruning more revisions than this at once makes one pass over the shard's
/// node records instead of walking each revision's changes.
const PRUNE_WALK_MAX: u64 = 4;

/// A stored opening: the commitment nonce and the value.
pub type StoredOpening = ([u8; 32], Vec<u8>);

/// The result of sealing a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRevision {
    pub shard: u32,
    pub revision: u64,
    /// Root of the shard subtree (at depth `shard_bits`) and its leaf count.
    pub root: Subtree,
    /// Labels whose leaf this revision changed (inserted or updated).
    pub changed: usize,
    /// Of those, labels new to the shard.
    pub added: u64,
}

/// Where a label's path ends inside one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEnd {
    /// An empty subtree.
    Empty,
    /// A leaf: the label's own (membership) or another label's.
    Leaf(Leaf),
}

/// A label's path inside one shard at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPath {
    /// Siblings from depth `shard_bits + 1` down to the end of the path
    /// (empty when the shard holds at most one leaf).
    pub siblings: Vec<Digest>,
    pub end: PathEnd,
}

/// How one label changed between two revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelDiff {
    pub index: Index,
    /// Version at the older revision, 0 when the label was absent.
    pub from_version: u64,
    /// Version at the newer revision.
    pub to_version: u64,
}

/// What [`ShardTree::prune`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneStats {
    pub revisions: u64,
    pub node_records: u64,
}

/// Handle on one shard's subtree. Cheap to clone; all handles of a shard
/// share its state. Sealing and pruning are serialised per shard; reads run
/// concurrently with them.
#[derive(Clone)]
pub struct ShardTree {
    pub(crate) forest: Arc<ForestInner>,
    pub(crate) shard: u32,
    pub(crate) state: Arc<ShardState>,
}

impl std::fmt::Debug for ShardTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardTree")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
struct Change {
    leaf: Leaf,
    hash: Digest,
}

#[derive(Default)]
struct Out {
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    strides: Vec<(StrideKey, Arc<Stride>)>,
    added: u64,
}

impl Out {
    fn merge(&mut self, o: Out) {
        self.writes.extend(o.writes);
        self.strides.extend(o.strides);
        self.added += o.added;
    }
}

impl ShardTree {
    pub fn shard(&self) -> u32 {
        self.shard
    }

    fn bits(&self) -> usize {
        self.forest.shard_bits()
    }

    /// Latest sealed revision (0 before the first seal). Also sees seals
    /// made through another [`crate::Forest`] or process on the same store
    /// (the shard's marker is re-read; on a read error the last known value
    /// is returned).
    pub fn latest_revision(&self) -> u64 {
        self.refresh().latest
    }

    /// The shard state, updated from the store when another writer (another
    /// forest or process) advanced it. Never blocks on a running seal.
    fn refresh(&self) -> ShardMeta {
        let mine = self.meta_nowait();
        let Ok(stored) = self.forest.read_meta(self.shard) else {
            return mine;
        };
        if stored.latest <= mine.latest && stored.retained_from <= mine.retained_from {
            return mine;
        }
        if let Ok(mut g) = self.state.meta.try_lock()
            && (stored.latest > g.latest || stored.retained_from > g.retained_from)
        {
            *g = stored;
        }
        self.publish(&stored);
        self.meta_nowait()
    }

    /// The readers' copy of the shard state (never waits for a seal).
    fn meta_nowait(&self) -> ShardMeta {
        ShardMeta {
            latest: self.state.latest.load(Ordering::Acquire),
            retained_from: self.state.retained_from.load(Ordering::Acquire),
            pending: None,
        }
    }

    /// Advances the readers' copy.
    fn publish(&self, m: &ShardMeta) {
        self.state.latest.fetch_max(m.latest, Ordering::AcqRel);
        self.state
            .retained_from
            .fetch_max(m.retained_from, Ordering::AcqRel);
    }

    /// Oldest revision still readable (0 until the first prune).
    pub fn retained_from(&self) -> u64 {
        self.refresh().retained_from
    }

    fn check_index(&self, index: &Index) -> Result<()> {
        let s = shard_of(index, self.forest.config.shard_bits);
        if s != self.shard {
            return Err(invalid(format!(
                "index {} belongs to shard {s}, not {}",
                hex(index),
                self.shard
            )));
        }
        Ok(())
    }

    /// Adds to `batch` the record of `leaf` and, if given, its opening
    /// (nonce and value). The caller commits the batch (typically with the
    /// rest of a Raft entry's effects). Versions must be assigned as
    /// `latest_leaf(index).version + 1` (1 for a new label) by the caller;
    /// the leaf becomes part of the tree at the next [`ShardTree::seal`]
    /// that lists its index. Staging the same leaf again is harmless.
    pub fn stage(
        &self,
        batch: &mut WriteBatch,
        leaf: &Leaf,
        opening: Option<(&[u8; 32], &[u8])>,
    ) -> Result<()> {
        self.check_index(&leaf.index)?;
        if leaf.version == 0 || (leaf.version == 1) != (leaf.prev == ZERO) {
            return Err(invalid("leaf version/prev link is not well formed"));
        }
        batch.put(
            Space::Tree,
            leaf_key(&leaf.index, leaf.version),
            leaf_value(leaf, opening),
        );
        Ok(())
    }

    /// Adds to `batch` the removal of one version's opening (the value is
    /// forgotten; the commitment stays in the tree and in proofs): the leaf
    /// record is rewritten without it. The version may be staged earlier in
    /// the same batch; a version that does not exist is ignored. Returns whether
    /// the version exists.
    pub fn forget(&self, batch: &mut WriteBatch, index: &Index, version: u64) -> Result<bool> {
        self.check_index(index)?;
        let key = leaf_key(index, version);
        // The newest write of the record in this batch wins over the store.
        let staged = batch.ops().iter().rev().find_map(|op| match op {
            candor_store::Op::Put {
                space: Space::Tree,
                key: k,
                value,
            } if *k == key => Some(Some(value.clone())),
            candor_store::Op::Delete {
                space: Space::Tree,
                key: k,
            } if *k == key => Some(None),
            _ => None,
        });
        let current = match staged {
            Some(v) => v,
            None => self.forest.store.get(Space::Tree, &key)?,
        };
        match current {
            Some(v) => {
                let leaf = keys::parse_leaf(*index, version, &v)?;
                batch.put(Space::Tree, key, leaf_value(&leaf, None));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The newest leaf of `index`, staged or sealed.
    pub fn latest_leaf(&self, index: &Index) -> Result<Option<Leaf>> {
        self.check_index(index)?;
        self.forest.latest_leaf(index)
    }

    /// The leaf record of one version.
    pub fn leaf(&self, index: &Index, version: u64) -> Result<Option<Leaf>> {
        self.forest.read_leaf(index, version)
    }

    /// The opening (nonce, value) of one version, `None` if forgotten or never stored.
    pub fn opening(&self, index: &Index, version: u64) -> Result<Option<StoredOpening>> {
        read_opening(&self.forest, index, version)
    }

    /// Every staged or sealed leaf of `index`, oldest first.
    pub fn versions(&self, index: &Index) -> Result<Vec<Leaf>> {
        let range = KeyRange::prefix(&leaf_prefix(index));
        let mut out = Vec::new();
        for kv in scan_pages(
            &*self.forest.store,
            Space::Tree,
            range,
            Direction::Forward,
            256,
        ) {
            let (k, v) = kv?;
            let (i, ver) = parse_leaf_key(&k)?;
            if i != *index || ver != out.len() as u64 + 1 {
                return Err(corrupt(format!(
                    "leaf versions of {} are not contiguous",
                    hex(index)
                )));
            }
            out.push(keys::parse_leaf(i, ver, &v)?);
        }
        Ok(out)
    }

    /// Seals revision `latest + 1` from the newest staged leaf of each of
    /// `indices` (which must belong to this shard; order and duplicates do
    /// not matter). An empty list seals a revision equal to the previous one.
    ///
    /// Crash safety: node records of the new revision are written under new
    /// keys, and the shard's "sealed revision" marker last, so a crash leaves
    /// the previous revision intact. Redoing the same seal is idempotent; a
    /// different seal after a crash first removes the half-written one.
    pub fn seal(&self, indices: &[Index]) -> Result<SealedRevision> {
        let mut idx: Vec<Index> = indices.to_vec();
        idx.sort_unstable();
        idx.dedup();
        for i in &idx {
            self.check_index(i)?;
        }
        let leaves: Vec<Leaf> = if idx.len() > 1024 {
            idx.par_iter()
                .map(|i| {
                    self.forest
                        .latest_leaf(i)?
                        .ok_or_else(|| invalid(format!("no staged leaf for index {}", hex(i))))
                })
                .collect::<Result<_>>()?
        } else {
            idx.iter()
                .map(|i| {
                    self.forest
                        .latest_leaf(i)?
                        .ok_or_else(|| invalid(format!("no staged leaf for index {}", hex(i))))
                })
                .collect::<Result<_>>()?
        };
        self.seal_leaves(leaves, WriteBatch::new())
    }

    /// Like [`ShardTree::seal`], but the caller passes the leaves it staged
    /// (and committed) itself instead of having the newest one of each
    /// index read back: saves one seek per label. For each index the
    /// highest version given is sealed; it must be the newest staged one,
    /// or later proofs will not find its record ([`TreeError::Corruption`]).
    pub fn seal_staged(&self, leaves: &[Leaf]) -> Result<SealedRevision> {
        for l in leaves {
            self.check_index(&l.index)?;
        }
        let mut sorted: Vec<Leaf> = leaves.to_vec();
        sorted.sort_by(|a, b| a.index.cmp(&b.index).then(a.version.cmp(&b.version)));
        let mut dedup: Vec<Leaf> = Vec::with_capacity(sorted.len());
        for l in sorted {
            match dedup.last_mut() {
                Some(last) if last.index == l.index => *last = l,
                _ => dedup.push(l),
            }
        }
        self.seal_leaves(dedup, WriteBatch::new())
    }

    /// Stages every `(leaf, opening)` and seals them as one revision, in one
    /// (chunked) write. Each leaf must follow the label's newest one.
    pub fn apply(&self, items: &[(Leaf, Option<StoredOpening>)]) -> Result<SealedRevision> {
        let mut batch = WriteBatch::with_capacity(items.len() * 2);
        for (leaf, opening) in items {
            self.stage(
                &mut batch,
                leaf,
                opening.as_ref().map(|(n, v)| (n, v.as_slice())),
            )?;
        }
        let mut leaves: Vec<Leaf> = items.iter().map(|x| x.0).collect();
        leaves.sort_by(|a, b| a.index.cmp(&b.index).then(a.version.cmp(&b.version)));
        // Keep the newest leaf of each label.
        let mut dedup: Vec<Leaf> = Vec::with_capacity(leaves.len());
        for l in leaves {
            match dedup.last_mut() {
                Some(last) if last.index == l.index => *last = l,
                _ => dedup.push(l),
            }
        }
        self.seal_leaves(dedup, batch)
    }

    /// Seals `leaves` (sorted by index, one per label) after writing `extra`.
    fn seal_leaves(&self, leaves: Vec<Leaf>, extra: WriteBatch) -> Result<SealedRevision> {
        let mut meta_guard = self.state.meta.lock().unwrap_or_else(|e| e.into_inner());
        let meta = *meta_guard;
        let base = meta.latest;
        let rev_new = base + 1;
        let changes: Vec<Change> = if leaves.len() > 1024 {
            leaves
                .par_iter()
                .map(|l| Change {
                    leaf: *l,
                    hash: l.hash(),
                })
                .collect()
        } else {
            leaves
                .iter()
                .map(|l| Change {
                    leaf: *l,
                    hash: l.hash(),
                })
                .collect()
        };
        let mut digest = map_node(
            &rev_new.to_be_bytes().repeat(4).try_into().expect("32"),
            &ZERO,
        );
        for c in &changes {
            digest = map_node(&digest, &c.hash);
        }
        if let Some((p, d)) = meta.pending
            && p == rev_new
            && d != digest
        {
            self.remove_revision_records(rev_new)?;
        }

        let old = self.forest.rev_rec(self.shard, base)?;
        let b = self.bits();
        let mut out = Out::default();
        let root = self.update(
            b,
            shard_prefix(self.shard, b),
            old.root,
            true,
            &changes,
            rev_new,
            &mut out,
        )?;
        let rec = RevRec {
            leaves: old.leaves + out.added,
            root,
        };
        if rec.root.class() as u64 != rec.leaves.min(2) {
            return Err(corrupt("leaf count disagrees with the new root"));
        }

        let pending = ShardMeta {
            pending: Some((rev_new, digest)),
            ..meta
        };
        let done = ShardMeta {
            latest: rev_new,
            pending: None,
            ..meta
        };
        let mut batch = WriteBatch::with_capacity(out.writes.len() + extra.len() + 3);
        // Compare-and-set on the shard's marker (it goes into the first chunk): if another
        // writer of this shard (a replica over a shared store) sealed since this handle
        // last saw the marker, nothing is written and the marker never moves back.
        let stored = self
            .forest
            .store
            .get(Space::Meta, &meta_shard_key(self.shard))?;
        let stored_meta = match &stored {
            Some(v) => ShardMeta::decode(v)?,
            None => ShardMeta::default(),
        };
        if stored_meta != meta {
            return Err(TreeError::Store(StoreError::PreconditionFailed(format!(
                "shard {}: another writer moved the shard marker (revision {} → {})",
                self.shard, meta.latest, stored_meta.latest
            ))));
        }
        batch.require(Space::Meta, meta_shard_key(self.shard), stored);
        batch.put(Space::Meta, meta_shard_key(self.shard), pending.encode());
        batch.append(extra);
        for (k, v) in std::mem::take(&mut out.writes) {
            batch.put(Space::Tree, k, v);
        }
        batch.put(Space::Tree, rev_key(self.shard, rev_new), rec.encode());
        batch.put(Space::Meta, meta_shard_key(self.shard), done.encode());
        // Until the marker is written, a failure leaves the seal pending.
        *meta_guard = pending;
        if let Err(e) = self
            .forest
            .store
            .write_chunked(batch, self.forest.config.seal_durability)
        {
            if matches!(e, StoreError::PreconditionFailed(_)) {
                // Refused before anything was written.
                *meta_guard = meta;
            }
            return Err(e.into());
        }
        *meta_guard = done;
        drop(meta_guard);
        self.publish(&done);

        self.forest.cache_rev(self.shard, rev_new, rec);
        for (k, s) in out.strides {
            self.forest.cache_stride(k, s);
        }
        Ok(SealedRevision {
            shard: self.shard,
            revision: rev_new,
            root: rec.subtree(),
            changed: changes.len(),
            added: out.added,
        })
    }

    /// Deletes every node record written at `rev` (a seal that did not finish).
    fn remove_revision_records(&self, rev: u64) -> Result<()> {
        let mut batch = WriteBatch::new();
        let range = KeyRange::prefix(&node_shard_prefix(self.shard));
        for kv in scan_pages(
            &*self.forest.store,
            Space::Tree,
            range,
            Direction::Forward,
            1024,
        ) {
            let (k, _) = kv?;
            let (_, _, r) = parse_any_node_key(&k)?;
            if r == rev {
                batch.delete(Space::Tree, k);
            }
        }
        batch.delete(Space::Tree, rev_key(self.shard, rev));
        self.forest
            .store
            .write_chunked(batch, candor_store::Durability::Sync)?;
        Ok(())
    }

    /// Applies `changes` (sorted, all under `(depth, prefix)`) to the node
    /// `old` there and returns the new node, collecting the records to write.
    /// `materialized` is false for a lone leaf that moved down from its
    /// parent's position and has no record here yet.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        depth: usize,
        prefix: Index,
        old: Node,
        materialized: bool,
        changes: &[Change],
        rev_new: u64,
        out: &mut Out,
    ) -> Result<Node> {
        let is_root = depth == self.bits();
        if changes.is_empty() {
            if materialized {
                return Ok(old);
            }
            let Node::Single { leaf, .. } = old else {
                return Err(corrupt("only a lone leaf moves down"));
            };
            let new = Node::Single { leaf, rev: rev_new };
            self.emit(depth, &prefix, &new, rev_new, out);
            return Ok(new);
        }
        let new = match old {
            Node::Empty if changes.len() == 1 => {
                out.added += 1;
                Node::Single {
                    leaf: leaf_ref(&changes[0]),
                    rev: rev_new,
                }
            }
            Node::Single { leaf: x, .. }
                if changes.len() == 1 && changes[0].leaf.index == x.index =>
            {
                if changes[0].leaf.version < x.version {
                    return Err(invalid(format!(
                        "index {}: version {} is older than the sealed version {}",
                        hex(&x.index),
                        changes[0].leaf.version,
                        x.version
                    )));
                }
                Node::Single {
                    leaf: leaf_ref(&changes[0]),
                    rev: rev_new,
                }
            }
            _ => {
                let cd = ForestInner::child_depth(depth);
                let k = cd - depth;
                if k == 0 {
                    return Err(invalid("two different leaves with one index"));
                }
                let old_children: Vec<(u16, Node, bool)> = match old {
                    Node::Empty => Vec::new(),
                    Node::Single { leaf, rev } => {
                        vec![(
                            bits(&leaf.index, depth, k) as u16,
                            Node::Single { leaf, rev },
                            false,
                        )]
                    }
                    Node::Multi { hash, rev } => self
                        .forest
                        .stride(self.shard, depth, &prefix, rev, &hash)?
                        .children
                        .iter()
                        .map(|(s, n)| (*s, *n, true))
                        .collect(),
                };
                // Groups: (suffix, old child, materialized, changes).
                let mut groups: Vec<(u16, Node, bool, &[Change])> = Vec::new();
                let mut oi = 0;
                let mut ci = 0;
                while oi < old_children.len() || ci < changes.len() {
                    let cs = changes
                        .get(ci)
                        .map(|c| bits(&c.leaf.index, depth, k) as u16);
                    let os = old_children.get(oi).map(|o| o.0);
                    let s = match (os, cs) {
                        (Some(a), Some(b)) => a.min(b),
                        (Some(a), None) => a,
                        (None, Some(b)) => b,
                        (None, None) => unreachable!(),
                    };
                    let start = ci;
                    while ci < changes.len() && bits(&changes[ci].leaf.index, depth, k) as u16 == s
                    {
                        ci += 1;
                    }
                    let (node, mat) = if os == Some(s) {
                        oi += 1;
                        (old_children[oi - 1].1, old_children[oi - 1].2)
                    } else {
                        (Node::Empty, true)
                    };
                    groups.push((s, node, mat, &changes[start..ci]));
                }
                let run = |g: &(u16, Node, bool, &[Change]), o: &mut Out| -> Result<(u16, Node)> {
                    let child_prefix = extend(&prefix, depth, k, g.0 as usize);
                    Ok((
                        g.0,
                        self.update(cd, child_prefix, g.1, g.2, g.3, rev_new, o)?,
                    ))
                };
                let children: Vec<(u16, Node)> =
                    if changes.len() >= self.forest.config.parallel_threshold {
                        let results: Vec<(u16, Node, Out)> = groups
                            .par_iter()
                            .map(|g| {
                                let mut o = Out::default();
                                let (s, n) = run(g, &mut o)?;
                                Ok((s, n, o))
                            })
                            .collect::<Result<_>>()?;
                        let mut ch = Vec::with_capacity(results.len());
                        for (s, n, o) in results {
                            out.merge(o);
                            ch.push((s, n));
                        }
                        ch
                    } else {
                        groups.iter().map(|g| run(g, out)).collect::<Result<_>>()?
                    };
                let stride = Stride::build(k, children);
                let sum = stride.root();
                if sum.class != 2 {
                    return Err(corrupt("an interior node lost its leaves"));
                }
                out.strides.push((
                    StrideKey {
                        shard: self.shard,
                        depth: depth as u16,
                        prefix,
                        rev: rev_new,
                    },
                    Arc::new(stride),
                ));
                Node::Multi {
                    hash: sum.hash,
                    rev: rev_new,
                }
            }
        };
        if !is_root {
            self.emit(depth, &prefix, &new, rev_new, out);
        }
        Ok(new)
    }

    fn emit(&self, depth: usize, prefix: &Index, node: &Node, rev: u64, out: &mut Out) {
        if depth == self.bits() {
            return;
        }
        let mut v = Vec::with_capacity(80);
        node.encode_value(&mut v);
        out.writes
            .push((node_key(self.shard, depth, prefix, rev), v));
    }

    fn check_readable(&self, revision: u64) -> Result<()> {
        let mut meta = self.meta_nowait();
        if revision > meta.latest || revision < meta.retained_from {
            meta = self.refresh();
        }
        if revision > meta.latest {
            return Err(TreeError::NotSealed {
                shard: self.shard,
                revision,
                latest: meta.latest,
            });
        }
        if revision < meta.retained_from {
            return Err(TreeError::Pruned {
                shard: self.shard,
                revision,
                retained_from: meta.retained_from,
            });
        }
        Ok(())
    }

    fn root_pos(&self, revision: u64) -> Result<Pos> {
        self.check_readable(revision)?;
        let rec = self.forest.rev_rec(self.shard, revision)?;
        let b = self.bits();
        Ok(Pos::from_node(b, shard_prefix(self.shard, b), &rec.root))
    }

    /// Root of the shard subtree at `revision`, with its leaf count.
    pub fn root(&self, revision: u64) -> Result<Subtree> {
        self.check_readable(revision)?;
        Ok(self.forest.rev_rec(self.shard, revision)?.subtree())
    }

    /// The path of `index` inside the shard at `revision`.
    pub fn path(&self, revision: u64, index: &Index) -> Result<ShardPath> {
        self.check_index(index)?;
        let nav = Nav {
            forest: &self.forest,
            top: None,
        };
        let (siblings, end) = nav.path(self.root_pos(revision)?, index)?;
        let end = match end.single() {
            Some(l) => PathEnd::Leaf(self.forest.resolve(l)?),
            None => PathEnd::Empty,
        };
        Ok(ShardPath { siblings, end })
    }

    /// The leaf of `index` in the tree at `revision` (`None` if absent).
    pub fn leaf_at(&self, revision: u64, index: &Index) -> Result<Option<Leaf>> {
        match self.path(revision, index)?.end {
            PathEnd::Leaf(l) if l.index == *index => Ok(Some(l)),
            _ => Ok(None),
        }
    }

    /// Labels whose leaf changed from revision `from` to revision `to`
    /// (`from <= to`), in index order.
    pub fn changed(&self, from: u64, to: u64) -> Result<Vec<LabelDiff>> {
        if from > to {
            return Err(invalid("changed(): from is after to"));
        }
        let nav = Nav {
            forest: &self.forest,
            top: None,
        };
        let mut out = Vec::new();
        nav.diff(&self.root_pos(from)?, &self.root_pos(to)?, &mut out)?;
        Ok(out
            .into_iter()
            .map(|(index, from_version, to_version)| LabelDiff {
                index,
                from_version,
                to_version,
            })
            .collect())
    }

    /// Makes every revision before `keep_from` unreadable and deletes the node
    /// records and revision records only those revisions needed. Leaf records
    /// and openings are kept (history proofs need every version). Idempotent
    /// and restartable.
    ///
    /// A few revisions are pruned by walking what each of them changed
    /// (cost ∝ changes); many at once by one pass over the shard's node
    /// records (cost ∝ records). The pass first makes the revisions
    /// unreadable and then deletes; if interrupted, some dead records stay
    /// until the next pass (harmless, only space).
    pub fn prune(&self, keep_from: u64) -> Result<PruneStats> {
        let mut guard = self.state.meta.lock().unwrap_or_else(|e| e.into_inner());
        let meta = *guard;
        if keep_from > meta.latest {
            return Err(invalid(format!(
                "cannot prune up to {keep_from}: latest sealed revision is {}",
                meta.latest
            )));
        }
        if keep_from > meta.retained_from + PRUNE_WALK_MAX {
            let stats = self.prune_by_scan(meta, keep_from)?;
            let next = ShardMeta {
                retained_from: keep_from,
                ..meta
            };
            *guard = next;
            drop(guard);
            self.publish(&next);
            return Ok(stats);
        }
        let mut stats = PruneStats::default();
        let mut cur = meta;
        while cur.retained_from < keep_from {
            let r = cur.retained_from + 1;
            let mut batch = WriteBatch::new();
            let old = self.forest.rev_rec(self.shard, r - 1)?;
            let new = self.forest.rev_rec(self.shard, r)?;
            let b = self.bits();
            let mut deleted = 0u64;
            self.prune_walk(
                b,
                shard_prefix(self.shard, b),
                new.root,
                old.root,
                true,
                r,
                &mut batch,
                &mut deleted,
            )?;
            if r - 1 > 0 {
                batch.delete(Space::Tree, rev_key(self.shard, r - 1));
            }
            let next = ShardMeta {
                retained_from: r,
                ..cur
            };
            batch.put(Space::Meta, meta_shard_key(self.shard), next.encode());
            self.forest
                .store
                .write_chunked(batch, candor_store::Durability::Buffered)?;
            // Drop the cached root too: the revision must read as pruned.
            self.forest
                .cache
                .remove(&crate::forest::CacheKey::Rev(self.shard, r - 1));
            cur = next;
            *guard = next;
            self.publish(&next);
            stats.revisions += 1;
            stats.node_records += deleted;
        }
        drop(guard);
        self.forest.store.sync()?;
        Ok(stats)
    }

    /// Prunes `meta.retained_from..keep_from` in one pass over the node records.
    fn prune_by_scan(&self, meta: ShardMeta, keep_from: u64) -> Result<PruneStats> {
        // First make the revisions unreadable (marker and revision records).
        let mut batch = WriteBatch::new();
        for r in meta.retained_from.max(1)..keep_from {
            batch.delete(Space::Tree, rev_key(self.shard, r));
        }
        let next = ShardMeta {
            retained_from: keep_from,
            ..meta
        };
        batch.put(Space::Meta, meta_shard_key(self.shard), next.encode());
        self.forest
            .store
            .write_chunked(batch, candor_store::Durability::Sync)?;
        for r in meta.retained_from.max(1)..keep_from {
            self.forest
                .cache
                .remove(&crate::forest::CacheKey::Rev(self.shard, r));
        }
        self.publish(&next);
        // Then, per position (its versions are consecutive keys, oldest
        // first), delete every version older than the one visible at
        // `keep_from`.
        let mut stats = PruneStats {
            revisions: keep_from - meta.retained_from,
            node_records: 0,
        };
        let mut batch = WriteBatch::new();
        // (position key without revision, key of its newest version <= keep_from)
        let mut cur: Option<(Vec<u8>, Vec<u8>)> = None;
        let range = KeyRange::prefix(&node_shard_prefix(self.shard));
        for kv in scan_pages(
            &*self.forest.store,
            Space::Tree,
            range,
            Direction::Forward,
            4096,
        ) {
            let (k, _) = kv?;
            let (depth, _, rev) = parse_any_node_key(&k)?;
            let pos_len = 4 + keys::prefix_bytes(depth);
            let pos = &k[..pos_len];
            if rev > keep_from {
                continue;
            }
            match &mut cur {
                Some((p, last)) if p.as_slice() == pos => {
                    // A newer version <= keep_from supersedes the previous one.
                    batch.delete(Space::Tree, std::mem::replace(last, k));
                    stats.node_records += 1;
                }
                _ => cur = Some((pos.to_vec(), k)),
            }
            if batch.cost() > 4_000_000 {
                self.forest.store.write_chunked(
                    std::mem::take(&mut batch),
                    candor_store::Durability::Buffered,
                )?;
            }
        }
        self.forest
            .store
            .write_chunked(batch, candor_store::Durability::Sync)?;
        Ok(stats)
    }

    /// Deletes the records that revision `r` superseded under `(depth, prefix)`.
    #[allow(clippy::too_many_arguments)]
    fn prune_walk(
        &self,
        depth: usize,
        prefix: Index,
        new: Node,
        old: Node,
        old_materialized: bool,
        r: u64,
        batch: &mut WriteBatch,
        deleted: &mut u64,
    ) -> Result<()> {
        if new.rev() != Some(r) {
            return Ok(());
        }
        if depth != self.bits()
            && old_materialized
            && let Some(or) = old.rev()
        {
            batch.delete(Space::Tree, node_key(self.shard, depth, &prefix, or));
            *deleted += 1;
        }
        let Node::Multi { hash, rev } = new else {
            return Ok(());
        };
        let cd = ForestInner::child_depth(depth);
        let k = cd - depth;
        let new_children = self.forest.stride(self.shard, depth, &prefix, rev, &hash)?;
        let old_stride = match old {
            Node::Multi { hash, rev } => {
                Some(self.forest.stride(self.shard, depth, &prefix, rev, &hash)?)
            }
            _ => None,
        };
        for (s, child) in &new_children.children {
            if child.rev() != Some(r) {
                continue;
            }
            let (old_child, mat) = match (&old_stride, old) {
                (Some(st), _) => (st.child(*s as usize), true),
                (None, Node::Single { leaf, rev }) if bits(&leaf.index, depth, k) as u16 == *s => {
                    (Node::Single { leaf, rev }, false)
                }
                _ => (Node::Empty, true),
            };
            let child_prefix = extend(&prefix, depth, k, *s as usize);
            self.prune_walk(cd, child_prefix, *child, old_child, mat, r, batch, deleted)?;
        }
        Ok(())
    }
}

fn leaf_ref(c: &Change) -> LeafRef {
    LeafRef {
        index: c.leaf.index,
        version: c.leaf.version,
        hash: c.hash,
    }
}

pub(crate) fn read_opening(
    forest: &ForestInner,
    index: &Index,
    version: u64,
) -> Result<Option<StoredOpening>> {
    match forest.store.get(Space::Tree, &leaf_key(index, version))? {
        Some(v) => keys::parse_opening(&v),
        None => Ok(None),
    }
}
