//! The forest (all shard trees of one store) and map views (the global map
//! at one epoch) with the global proofs.

use std::sync::Arc;

use candor_core::Digest;
use candor_core::map::{Index, Subtree};
use candor_core::proof::Opening;
use candor_core::proof::audit::{AuditProof, LabelChange, PrunedNode};
use candor_core::proof::history::{HistoryPage, HistoryProof, MAX_PAGE_VERSIONS, PageBody};
use candor_core::proof::lookup::{LookupProof, Terminal};
use candor_core::vrf::VrfProof;
use candor_store::{Space, Store};
use rayon::prelude::*;

use crate::error::{Result, corrupt, invalid};
use crate::forest::{ForestInner, TreeConfig};
use crate::keys::META_CONFIG;
use crate::nav::{Nav, Pos, TopTree};
use crate::shard::ShardTree;

/// All shard trees of one store. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct Forest {
    pub(crate) inner: Arc<ForestInner>,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("shard_bits", &self.inner.config.shard_bits)
            .finish_non_exhaustive()
    }
}

impl Forest {
    /// Opens the trees in `store`. The first open records `config.shard_bits`;
    /// later opens must pass the same value.
    pub fn open(store: Arc<dyn Store>, config: TreeConfig) -> Result<Forest> {
        if config.shard_bits > 16 {
            return Err(invalid("shard_bits must be at most 16"));
        }
        // Version 2: stored depths aligned to multiples of the stride.
        let want = [2u8, config.shard_bits, crate::node::STRIDE as u8];
        match store.get(Space::Meta, META_CONFIG)? {
            Some(v) if v == want => {}
            Some(v) if v.len() == 3 && v[0] == 1 => {
                return Err(invalid(
                    "store was created by an older candor-tree layout (version 1)",
                ));
            }
            Some(v) if v.len() == 3 && v[0] == 2 => {
                return Err(invalid(format!(
                    "store was created with shard_bits {} and stride {}, not {} and {}",
                    v[1],
                    v[2],
                    config.shard_bits,
                    crate::node::STRIDE
                )));
            }
            Some(_) => return Err(corrupt("tree configuration record of unexpected shape")),
            None => {
                let mut b = candor_store::WriteBatch::new();
                b.put(Space::Meta, META_CONFIG.to_vec(), want.to_vec());
                store.write(&b, candor_store::Durability::Sync)?;
            }
        }
        Ok(Forest {
            inner: Arc::new(ForestInner::new(store, config)),
        })
    }

    /// The node cache: (bytes held, hits, misses since open), for telemetry.
    pub fn cache_stats(&self) -> (u64, u64, u64) {
        let c = &self.inner.cache;
        (c.weight() + self.inner.top_weight(), c.hits(), c.misses())
    }

    /// Stride loads from the store so far (tree-cache misses): (loads, entries
    /// scanned, positions sought). For the metrics and benchmarks.
    pub fn load_counters(&self) -> [u64; 3] {
        self.inner
            .loads
            .each_ref()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn shard_bits(&self) -> u8 {
        self.inner.config.shard_bits
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.shard_count()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The tree of shard `shard`.
    pub fn shard(&self, shard: u32) -> Result<ShardTree> {
        Ok(ShardTree {
            state: self.inner.shard_state(shard)?,
            forest: self.inner.clone(),
            shard,
        })
    }

    /// The shard owning `index`.
    pub fn shard_for(&self, index: &Index) -> Result<ShardTree> {
        self.shard(candor_core::map::shard_of(
            index,
            self.inner.config.shard_bits,
        ))
    }

    /// The map made of revision `revisions[s]` of every shard `s`
    /// (`2^shard_bits` entries). Reads each shard's root once.
    pub fn view(&self, revisions: Vec<u64>) -> Result<MapView> {
        let n = self.inner.shard_count() as usize;
        if revisions.len() != n {
            return Err(invalid(format!(
                "a view needs {n} shard revisions, got {}",
                revisions.len()
            )));
        }
        let read = |(s, r): (usize, &u64)| -> Result<(Subtree, crate::node::Node)> {
            let rec = self.inner.rev_rec(s as u32, *r)?;
            Ok((rec.subtree(), rec.root))
        };
        let roots: Vec<_> = if n >= 256 {
            revisions
                .par_iter()
                .enumerate()
                .map(read)
                .collect::<Result<_>>()?
        } else {
            revisions
                .iter()
                .enumerate()
                .map(read)
                .collect::<Result<_>>()?
        };
        Ok(MapView {
            forest: self.inner.clone(),
            revisions: revisions.into(),
            top: Arc::new(TopTree::build(roots)),
        })
    }
}

/// Whether a lookup proof carries the value's opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpeningPolicy {
    /// The opening if it is still stored, else the commitment alone.
    #[default]
    Open,
    /// Only the commitment (the caller may not see the value).
    CommitmentOnly,
}

/// The global map at one epoch: one revision of every shard. Cheap to clone.
#[derive(Clone)]
pub struct MapView {
    forest: Arc<ForestInner>,
    revisions: Arc<[u64]>,
    top: Arc<TopTree>,
}

impl std::fmt::Debug for MapView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapView")
            .field("root", &self.root())
            .finish_non_exhaustive()
    }
}

impl MapView {
    /// The map root and its leaf count.
    pub fn root(&self) -> Subtree {
        self.top.root()
    }

    pub fn root_hash(&self) -> Digest {
        self.top.root().hash
    }

    /// The revision of every shard this view covers.
    pub fn revisions(&self) -> &[u64] {
        &self.revisions
    }

    /// The shard roots, in shard order.
    pub fn shard_roots(&self) -> &[Subtree] {
        self.top.levels.last().expect("non-empty")
    }

    fn nav(&self) -> Nav<'_> {
        Nav {
            forest: &self.forest,
            top: Some(&self.top),
        }
    }

    fn path(&self, index: &Index) -> Result<(Vec<Digest>, Pos)> {
        let nav = self.nav();
        nav.path(nav.root()?, index)
    }

    fn absence(&self, end: &Pos) -> Result<Terminal> {
        Ok(match end.single() {
            Some(l) => Terminal::AbsentLeaf(self.forest.resolve(l)?),
            None => Terminal::AbsentEmpty,
        })
    }

    /// The lookup proof of the label whose VRF gives `index` and `vrf_proof`
    /// (the caller evaluated the VRF; the proof is not re-checked here).
    pub fn lookup_proof(
        &self,
        index: &Index,
        vrf_proof: VrfProof,
        policy: OpeningPolicy,
    ) -> Result<LookupProof> {
        let (siblings, end) = self.path(index)?;
        let terminal = match end.single() {
            Some(l) if l.index == *index => {
                let (leaf, opening) = self
                    .forest
                    .resolve_with_opening(l, policy == OpeningPolicy::Open)?;
                Terminal::Member {
                    version: leaf.version,
                    prev: leaf.prev,
                    opening: match opening {
                        Some((nonce, value)) => Opening::Open { nonce, value },
                        None => Opening::Redacted {
                            commitment: leaf.commitment,
                        },
                    },
                }
            }
            _ => self.absence(&end)?,
        };
        Ok(LookupProof {
            vrf_proof,
            terminal,
            siblings,
        })
    }

    /// The history proof (every version, chained to the current leaf) of the
    /// label whose VRF gives `index` and `vrf_proof`.
    pub fn history_proof(&self, index: &Index, vrf_proof: VrfProof) -> Result<HistoryProof> {
        let (siblings, end) = self.path(index)?;
        let (versions, absence) = match end.single() {
            Some(l) if l.index == *index => {
                let leaves = self.forest.leaf_range_with_openings(index, 1, l.version)?;
                if leaves.last().map(|x| x.0.hash()) != Some(l.hash) {
                    return Err(corrupt("leaf history does not end in the tree's leaf"));
                }
                let mut v = Vec::with_capacity(leaves.len());
                for (leaf, opening) in leaves {
                    v.push(match opening {
                        Some((nonce, value)) => Opening::Open { nonce, value },
                        None => Opening::Redacted {
                            commitment: leaf.commitment,
                        },
                    });
                }
                (v, None)
            }
            _ => (Vec::new(), Some(self.absence(&end)?)),
        };
        Ok(HistoryProof {
            vrf_proof,
            versions,
            absence,
            siblings,
        })
    }

    /// One page of the label's history (docs/protocol.md §6.4.2): versions
    /// ending at `last_version` (0: the latest), at most `max_versions` of
    /// them (capped at the protocol's 1024) and, beyond the first, no more
    /// than fit in `max_bytes` of openings. `None` when `last_version` is
    /// beyond the label's latest version.
    pub fn history_page(
        &self,
        index: &Index,
        vrf_proof: VrfProof,
        last_version: u64,
        max_versions: usize,
        max_bytes: usize,
    ) -> Result<Option<HistoryPage>> {
        let (siblings, end) = self.path(index)?;
        let l = match end.single() {
            Some(l) if l.index == *index => l,
            _ => {
                return Ok(Some(HistoryPage {
                    vrf_proof,
                    latest: 0,
                    body: PageBody::Absent {
                        absence: self.absence(&end)?,
                        siblings,
                    },
                }));
            }
        };
        let latest = l.version;
        let last = if last_version == 0 {
            latest
        } else {
            last_version
        };
        if last > latest {
            return Ok(None);
        }
        let count = max_versions.clamp(1, MAX_PAGE_VERSIONS) as u64;
        let first = last.saturating_sub(count - 1).max(1);
        let leaves = self.forest.leaf_range_with_openings(index, first, last)?;
        if leaves.len() as u64 != last - first + 1 {
            return Err(corrupt("missing versions in a label's history"));
        }
        if last == latest && leaves.last().map(|x| x.0.hash()) != Some(l.hash) {
            return Err(corrupt("leaf history does not end in the tree's leaf"));
        }
        // Keep the newest versions that fit in the byte budget (at least one).
        let mut used = 0usize;
        let mut keep = 0usize;
        for (_, opening) in leaves.iter().rev() {
            let size = opening.as_ref().map_or(33, |(_, v)| 37 + v.len());
            if keep > 0 && used + size > max_bytes {
                break;
            }
            used += size;
            keep += 1;
        }
        let leaves = &leaves[leaves.len() - keep..];
        let openings = leaves
            .iter()
            .map(|(leaf, opening)| match opening {
                Some((nonce, value)) => Opening::Open {
                    nonce: *nonce,
                    value: value.clone(),
                },
                None => Opening::Redacted {
                    commitment: leaf.commitment,
                },
            })
            .collect();
        Ok(Some(HistoryPage {
            vrf_proof,
            latest,
            body: PageBody::Versions {
                first: leaves[0].0.version,
                openings,
                prev: leaves[0].0.prev,
                siblings: if last == latest { siblings } else { Vec::new() },
            },
        }))
    }

    /// The label's leaf in this view, `None` if absent.
    pub fn leaf(&self, index: &Index) -> Result<Option<candor_core::map::Leaf>> {
        let (_, end) = self.path(index)?;
        match end.single() {
            Some(l) if l.index == *index => Ok(Some(self.forest.resolve(l)?)),
            _ => Ok(None),
        }
    }

    /// Labels whose leaf differs between `prev` (older) and `self`:
    /// `(index, old version or 0, new version)` in index order.
    pub fn changes_since(&self, prev: &MapView) -> Result<Vec<(Index, u64, u64)>> {
        self.check_same_forest(prev)?;
        let nav_old = prev.nav();
        let nav_new = self.nav();
        let mut out = Vec::new();
        diff2(
            &nav_old,
            &nav_new,
            &nav_old.root()?,
            &nav_new.root()?,
            &mut out,
        )?;
        Ok(out)
    }

    fn check_same_forest(&self, prev: &MapView) -> Result<()> {
        if !Arc::ptr_eq(&self.forest, &prev.forest)
            && self.forest.config.shard_bits != prev.forest.config.shard_bits
        {
            return Err(invalid("views of different forests"));
        }
        for (a, b) in prev.revisions.iter().zip(self.revisions.iter()) {
            if a > b {
                return Err(invalid(
                    "the previous view is ahead of this one in some shard",
                ));
            }
        }
        Ok(())
    }

    /// The transition (audit) proof from `prev` to `self`: the old tree
    /// pruned to the changed labels' paths, and every new version of each
    /// changed label (intermediate versions included).
    pub fn audit_proof(&self, prev: &MapView) -> Result<AuditProof> {
        self.check_same_forest(prev)?;
        let nav_old = prev.nav();
        let nav_new = self.nav();
        let old_root = nav_old.root()?;
        let new_root = nav_new.root()?;
        let mut diffs = Vec::new();
        let old_tree = audit_walk(&nav_old, &nav_new, &old_root, &new_root, &mut diffs)?;
        let forest = &self.forest;
        let make = |(index, from, to): &(Index, u64, u64)| -> Result<LabelChange> {
            let leaves = forest.leaf_range(index, from + 1, *to)?;
            Ok(LabelChange {
                index: *index,
                commitments: leaves.iter().map(|l| l.commitment).collect(),
            })
        };
        let changes = if diffs.len() > 256 {
            diffs.par_iter().map(make).collect::<Result<Vec<_>>>()?
        } else {
            diffs.iter().map(make).collect::<Result<Vec<_>>>()?
        };
        Ok(AuditProof { old_tree, changes })
    }
}

/// Like [`Nav::diff`] but with one navigator per tree (two views).
fn diff2(
    no: &Nav<'_>,
    nn: &Nav<'_>,
    old: &Pos,
    new: &Pos,
    out: &mut Vec<(Index, u64, u64)>,
) -> Result<()> {
    if old.hash() == new.hash() && old.class() == new.class() {
        return Ok(());
    }
    match (new.class(), old.class()) {
        (1, c) => {
            let y = new.single().expect("class 1");
            let from = match (c, old.single()) {
                (0, _) => 0,
                (1, Some(x)) if x.index == y.index && x.version < y.version => x.version,
                _ => return Err(corrupt("a later view lost a label or went back in version")),
            };
            out.push((y.index, from, y.version));
            Ok(())
        }
        (2, _) => {
            let (ol, or) = no.children(old)?;
            let (nl, nr) = nn.children(new)?;
            diff2(no, nn, &ol, &nl, out)?;
            diff2(no, nn, &or, &nr, out)
        }
        _ => Err(corrupt("a later view has fewer leaves")),
    }
}

/// Below this depth the audit walk splits into parallel tasks: up to
/// 2^8 of them, enough for any core count, each still a subtree walk.
const AUDIT_PAR_DEPTH: usize = 8;

/// One walk over both trees that gives the old tree pruned to the changed
/// paths (exactly as `ReferenceMap::audit_proof` builds it) and appends
/// the changed labels to `out` in index order, as [`diff2`] would. Why
/// one walk: the pruned tree and the changes visit the same nodes, and
/// each visit may read a node from the store. Near the root the two halves
/// go to rayon, so the reads of a large epoch use every core.
fn audit_walk(
    no: &Nav<'_>,
    nn: &Nav<'_>,
    old: &Pos,
    new: &Pos,
    out: &mut Vec<(Index, u64, u64)>,
) -> Result<PrunedNode> {
    if old.hash() == new.hash() && old.class() == new.class() {
        return Ok(match old.class() {
            0 => PrunedNode::Empty,
            _ => PrunedNode::Opaque(old.hash()),
        });
    }
    match old.class() {
        0 => {
            diff2(no, nn, old, new, out)?;
            Ok(PrunedNode::Empty)
        }
        1 => {
            diff2(no, nn, old, new, out)?;
            Ok(PrunedNode::Leaf(
                no.forest.resolve(old.single().expect("class 1"))?,
            ))
        }
        _ => {
            if new.class() != 2 {
                // diff2 names the inconsistency (a lost label or leaf).
                diff2(no, nn, old, new, out)?;
                return Err(corrupt("a later view has fewer leaves"));
            }
            let (ol, or) = no.children(old)?;
            let (nl, nr) = nn.children(new)?;
            let (left, right) = if old.depth < AUDIT_PAR_DEPTH {
                let mut right_out = Vec::new();
                let (l, r) = rayon::join(
                    || audit_walk(no, nn, &ol, &nl, out),
                    || audit_walk(no, nn, &or, &nr, &mut right_out),
                );
                out.append(&mut right_out);
                (l?, r?)
            } else {
                let l = audit_walk(no, nn, &ol, &nl, out)?;
                (l, audit_walk(no, nn, &or, &nr, out)?)
            };
            Ok(PrunedNode::Interior(Box::new(left), Box::new(right)))
        }
    }
}
