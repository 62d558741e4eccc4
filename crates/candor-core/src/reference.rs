//! A small in-memory map that builds every proof the protocol defines, by the
//! definitions and nothing cleverer. It is the oracle that the storage-backed
//! tree engine is tested against, and lets proofs be produced in tests and
//! examples without a store.

use std::collections::BTreeMap;

use crate::hash::{Digest, ZERO, map_node};
use crate::map::{Index, Leaf, Subtree, bit, commit, random_nonce};
use crate::proof::Opening;
use crate::proof::audit::{AuditProof, LabelChange, PrunedNode};
use crate::proof::history::{HistoryPage, HistoryProof, PageBody};
use crate::proof::lookup::{LookupProof, Terminal};
use crate::vrf::{VrfProof, VrfSecretKey};

/// One stored version of a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub leaf: Leaf,
    /// `None` once the opening was deleted.
    pub opening: Option<([u8; 32], Vec<u8>)>,
}

/// The whole map in memory: every version of every label, by index.
#[derive(Debug, Clone, Default)]
pub struct ReferenceMap {
    labels: BTreeMap<Index, Vec<StoredVersion>>,
}

impl ReferenceMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Adds the next version of the label at `index` with `value`, using
    /// `nonce` as the opening (`None` draws a random one). Returns the leaf.
    pub fn publish(
        &mut self,
        index: Index,
        label: &[u8],
        value: &[u8],
        nonce: Option<[u8; 32]>,
    ) -> Leaf {
        let nonce = nonce.unwrap_or_else(random_nonce);
        let versions = self.labels.entry(index).or_default();
        let version = versions.len() as u64 + 1;
        let commitment = commit(&nonce, label, version, value);
        let leaf = match versions.last() {
            Some(prev) => prev.leaf.next(commitment),
            None => Leaf::first(index, commitment),
        };
        versions.push(StoredVersion {
            leaf,
            opening: Some((nonce, value.to_vec())),
        });
        leaf
    }

    /// Deletes the opening of one version (the value is forgotten, the
    /// commitment stays).
    pub fn forget(&mut self, index: &Index, version: u64) -> bool {
        match self
            .labels
            .get_mut(index)
            .and_then(|v| v.get_mut((version as usize).wrapping_sub(1)))
        {
            Some(sv) => {
                sv.opening = None;
                true
            }
            None => false,
        }
    }

    pub fn versions(&self, index: &Index) -> &[StoredVersion] {
        self.labels.get(index).map_or(&[], Vec::as_slice)
    }

    fn current(&self) -> Vec<(Index, Digest, Leaf)> {
        self.labels
            .iter()
            .map(|(i, v)| {
                let leaf = v.last().expect("a label has at least one version").leaf;
                (*i, leaf.hash(), leaf)
            })
            .collect()
    }

    pub fn root(&self) -> Digest {
        subtree(&self.current(), 0).hash
    }

    /// Root and leaf count of the subtree of shard `s` of `2^shard_bits`.
    pub fn shard_root(&self, shard_bits: u8, s: u32) -> Subtree {
        let leaves: Vec<_> = self
            .current()
            .into_iter()
            .filter(|(i, _, _)| crate::map::shard_of(i, shard_bits) == s)
            .collect();
        subtree(&leaves, shard_bits as usize)
    }

    fn path(&self, index: &Index) -> (Vec<Digest>, Option<Leaf>) {
        let all = self.current();
        let mut slice: &[(Index, Digest, Leaf)] = &all;
        let mut siblings = Vec::new();
        let mut depth = 0;
        while slice.len() > 1 {
            let mid = slice.partition_point(|(i, _, _)| !bit(i, depth));
            let (l, r) = slice.split_at(mid);
            let (mine, other) = if bit(index, depth) { (r, l) } else { (l, r) };
            siblings.push(subtree(other, depth + 1).hash);
            slice = mine;
            depth += 1;
        }
        (siblings, slice.first().map(|x| x.2))
    }

    pub fn lookup_proof(&self, vrf: &VrfSecretKey, label: &[u8]) -> LookupProof {
        let (output, vrf_proof) = vrf.evaluate(label);
        let index = output.index();
        let (siblings, end) = self.path(&index);
        let terminal = match end {
            Some(leaf) if leaf.index == index => {
                let sv = self.labels[&index].last().expect("non-empty");
                Terminal::Member {
                    version: leaf.version,
                    prev: leaf.prev,
                    opening: opening_of(sv),
                }
            }
            Some(leaf) => Terminal::AbsentLeaf(leaf),
            None => Terminal::AbsentEmpty,
        };
        LookupProof {
            vrf_proof,
            terminal,
            siblings,
        }
    }

    pub fn history_proof(&self, vrf: &VrfSecretKey, label: &[u8]) -> HistoryProof {
        let (output, vrf_proof): (_, VrfProof) = vrf.evaluate(label);
        let index = output.index();
        let (siblings, end) = self.path(&index);
        let versions: Vec<Opening> = self.versions(&index).iter().map(opening_of).collect();
        let absence = if versions.is_empty() {
            Some(match end {
                Some(leaf) => Terminal::AbsentLeaf(leaf),
                None => Terminal::AbsentEmpty,
            })
        } else {
            None
        };
        HistoryProof {
            vrf_proof,
            versions,
            absence,
            siblings,
        }
    }

    /// One page of the label's history (§6.4.2): the versions ending at
    /// `last` (`None`: the latest version), at most `max_versions` of them.
    /// `last` must be a version the label has.
    pub fn history_page(
        &self,
        vrf: &VrfSecretKey,
        label: &[u8],
        last: Option<u64>,
        max_versions: usize,
    ) -> HistoryPage {
        let (output, vrf_proof): (_, VrfProof) = vrf.evaluate(label);
        let index = output.index();
        let (siblings, end) = self.path(&index);
        let all = self.versions(&index);
        let latest = all.len() as u64;
        if latest == 0 {
            let absence = match end {
                Some(leaf) => Terminal::AbsentLeaf(leaf),
                None => Terminal::AbsentEmpty,
            };
            return HistoryPage {
                vrf_proof,
                latest,
                body: PageBody::Absent { absence, siblings },
            };
        }
        let last = last.unwrap_or(latest).clamp(1, latest);
        let first = last.saturating_sub(max_versions.max(1) as u64 - 1).max(1);
        let range = &all[first as usize - 1..last as usize];
        HistoryPage {
            vrf_proof,
            latest,
            body: PageBody::Versions {
                first,
                openings: range.iter().map(opening_of).collect(),
                prev: range[0].leaf.prev,
                siblings: if last == latest { siblings } else { Vec::new() },
            },
        }
    }

    /// The transition proof from `old` to `self`, where `self` is `old` plus
    /// some new versions.
    pub fn audit_proof(&self, old: &ReferenceMap) -> AuditProof {
        let mut changes = Vec::new();
        for (index, versions) in &self.labels {
            let before = old.labels.get(index).map_or(0, Vec::len);
            if versions.len() > before {
                changes.push(LabelChange {
                    index: *index,
                    commitments: versions[before..]
                        .iter()
                        .map(|v| v.leaf.commitment)
                        .collect(),
                });
            }
        }
        let old_leaves = old.current();
        let old_tree = pruned(&old_leaves, &changes, 0);
        AuditProof { old_tree, changes }
    }
}

fn opening_of(sv: &StoredVersion) -> Opening {
    match &sv.opening {
        Some((nonce, value)) => Opening::Open {
            nonce: *nonce,
            value: value.clone(),
        },
        None => Opening::Redacted {
            commitment: sv.leaf.commitment,
        },
    }
}

/// Hash of the subtree holding `leaves` (sorted by index, all sharing their
/// first `depth` bits).
pub fn subtree(leaves: &[(Index, Digest, Leaf)], depth: usize) -> Subtree {
    match leaves.len() {
        0 => Subtree::EMPTY,
        1 => Subtree::leaf(leaves[0].1),
        n => {
            let mid = leaves.partition_point(|(i, _, _)| !bit(i, depth));
            let (l, r) = leaves.split_at(mid);
            let (l, r) = (subtree(l, depth + 1), subtree(r, depth + 1));
            Subtree {
                hash: map_node(&l.hash, &r.hash),
                leaves: n as u64,
            }
        }
    }
}

fn pruned(leaves: &[(Index, Digest, Leaf)], changes: &[LabelChange], depth: usize) -> PrunedNode {
    if changes.is_empty() {
        return match leaves.len() {
            0 => PrunedNode::Empty,
            _ => PrunedNode::Opaque(subtree(leaves, depth).hash),
        };
    }
    match leaves.len() {
        0 => PrunedNode::Empty,
        1 => PrunedNode::Leaf(leaves[0].2),
        _ => {
            let lm = leaves.partition_point(|(i, _, _)| !bit(i, depth));
            let cm = changes.partition_point(|c| !bit(&c.index, depth));
            PrunedNode::Interior(
                Box::new(pruned(&leaves[..lm], &changes[..cm], depth + 1)),
                Box::new(pruned(&leaves[lm..], &changes[cm..], depth + 1)),
            )
        }
    }
}

#[allow(dead_code)]
const _: Digest = ZERO;
