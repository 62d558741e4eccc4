//! Shared test helpers (included with `mod common;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use candor_core::Digest;
use candor_core::hash::ZERO;
use candor_core::map::{Index, Leaf, bit};
use candor_core::proof::Opening;
use candor_core::proof::history::HistoryProof;
use candor_core::proof::lookup::{LookupProof, Terminal};
use candor_core::reference::{ReferenceMap, subtree};
use candor_core::vrf::VrfProof;

pub fn dummy_vrf() -> VrfProof {
    VrfProof::from_bytes(&[7u8; 80])
}

/// The current leaves of `r` for the labels in `labels`, sorted.
pub fn current(r: &ReferenceMap, labels: &BTreeMap<Index, Vec<u8>>) -> Vec<(Index, Digest, Leaf)> {
    labels
        .keys()
        .filter_map(|i| r.versions(i).last().map(|v| (*i, v.leaf.hash(), v.leaf)))
        .collect()
}

/// The reference path (same definition as `ReferenceMap`'s private one).
pub fn ref_path(all: &[(Index, Digest, Leaf)], index: &Index) -> (Vec<Digest>, Option<Leaf>) {
    let mut slice = all;
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

fn opening_of(sv: &candor_core::reference::StoredVersion) -> Opening {
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

/// The lookup proof `ReferenceMap` would build for `index` (with `vrf`).
pub fn ref_lookup(
    r: &ReferenceMap,
    all: &[(Index, Digest, Leaf)],
    index: &Index,
    vrf: VrfProof,
) -> LookupProof {
    let (siblings, end) = ref_path(all, index);
    let terminal = match end {
        Some(leaf) if leaf.index == *index => Terminal::Member {
            version: leaf.version,
            prev: leaf.prev,
            opening: opening_of(r.versions(index).last().unwrap()),
        },
        Some(leaf) => Terminal::AbsentLeaf(leaf),
        None => Terminal::AbsentEmpty,
    };
    LookupProof {
        vrf_proof: vrf,
        terminal,
        siblings,
    }
}

pub fn ref_history(
    r: &ReferenceMap,
    all: &[(Index, Digest, Leaf)],
    index: &Index,
    vrf: VrfProof,
) -> HistoryProof {
    let (siblings, end) = ref_path(all, index);
    let versions: Vec<Opening> = r.versions(index).iter().map(opening_of).collect();
    let absence = if versions.is_empty() {
        Some(match end {
            Some(leaf) => Terminal::AbsentLeaf(leaf),
            None => Terminal::AbsentEmpty,
        })
    } else {
        None
    };
    HistoryProof {
        vrf_proof: vrf,
        versions,
        absence,
        siblings,
    }
}

/// Deterministic nonce for tests.
pub fn nonce(index: &Index, version: u64) -> [u8; 32] {
    let mut n = *index;
    n[..8].copy_from_slice(&version.to_be_bytes());
    n[31] ^= 0x5a;
    n
}

/// A small deterministic RNG (splitmix64).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn index(&mut self) -> Index {
        let mut i = [0u8; 32];
        for c in i.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_be_bytes());
        }
        i
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn leaf_for(r: &mut ReferenceMap, index: Index, value: &[u8]) -> (Leaf, [u8; 32]) {
    let v = r.versions(&index).len() as u64 + 1;
    let n = nonce(&index, v);
    let leaf = r.publish(index, &index, value, Some(n));
    (leaf, n)
}

pub fn mem_store() -> Arc<dyn candor_store::Store> {
    Arc::new(candor_store::MemStore::new())
}

pub const _Z: Digest = ZERO;
