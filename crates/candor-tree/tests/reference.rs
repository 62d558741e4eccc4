//! The engine against `ReferenceMap`: roots, lookup, history and audit
//! proofs must be identical, for several shard counts, on both backends.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use candor_core::map::{Index, Subtree, combine_shard_roots, shard_of};
use candor_core::reference::ReferenceMap;
use candor_core::vrf::VrfSecretKey;
use candor_store::{Durability, Store, WriteBatch};
use candor_tree::{Forest, MapView, OpeningPolicy, TreeConfig};
use common::*;
use proptest::prelude::*;

/// A pool of indices with many shared prefixes (short ones across shards,
/// long ones deep in a shard, some differing only in the last bits).
fn pool(rng: &mut TestRng, n: usize) -> Vec<Index> {
    let mut out: Vec<Index> = Vec::new();
    while out.len() < n {
        let fresh = rng.index();
        let i = if out.is_empty() || rng.below(4) == 0 {
            fresh
        } else {
            let base = out[rng.below(out.len() as u64) as usize];
            let keep = match rng.below(4) {
                0 => rng.below(10) as usize,
                1 => 4 + rng.below(40) as usize,
                2 => 240 + rng.below(16) as usize,
                _ => rng.below(256) as usize,
            };
            let mut x = base;
            for bit in keep..256 {
                let m = 0x80u8 >> (bit % 8);
                if fresh[bit / 8] & m != 0 {
                    x[bit / 8] |= m;
                } else {
                    x[bit / 8] &= !m;
                }
            }
            x
        };
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn check_run(store: Arc<dyn Store>, b: u8, seed: u64, rounds: usize, max_ops: u64) {
    let forest = Forest::open(
        store.clone(),
        TreeConfig {
            shard_bits: b,
            cache_bytes: if seed.is_multiple_of(2) {
                1 << 20
            } else {
                1 << 16
            },
            parallel_threshold: 8,
            ..TreeConfig::default()
        },
    )
    .unwrap();
    let mut rng = TestRng(seed);
    let n = 4 + rng.below(28) as usize;
    let pool = pool(&mut rng, n);
    let nshards = 1u32 << b;
    let mut reference = ReferenceMap::new();
    let mut labels: BTreeMap<Index, Vec<u8>> = BTreeMap::new();
    let mut revisions = vec![0u64; nshards as usize];
    let mut history: Vec<(ReferenceMap, MapView)> =
        vec![(ReferenceMap::new(), forest.view(revisions.clone()).unwrap())];
    for round in 0..rounds {
        let mut batch = WriteBatch::new();
        let mut touched: BTreeMap<u32, Vec<Index>> = BTreeMap::new();
        let ops = rng.below(max_ops + 1);
        for _ in 0..ops {
            let index = pool[rng.below(pool.len() as u64) as usize];
            let value: Vec<u8> = (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect();
            let (leaf, nonce) = leaf_for(&mut reference, index, &value);
            labels.insert(index, index.to_vec());
            let shard = forest.shard_for(&index).unwrap();
            shard
                .stage(&mut batch, &leaf, Some((&nonce, &value)))
                .unwrap();
            touched.entry(shard.shard()).or_default().push(index);
            if rng.below(8) == 0 {
                let v = 1 + rng.below(leaf.version);
                reference.forget(&index, v);
                shard.forget(&mut batch, &index, v).unwrap();
            }
        }
        store.write(&batch, Durability::Buffered).unwrap();
        // Seal touched shards, and now and then an untouched one (empty seal).
        for s in 0..nshards {
            let t = touched.get(&s);
            if t.is_some() || rng.below(5) == 0 {
                let tree = forest.shard(s).unwrap();
                let sealed = tree.seal(t.map_or(&[][..], |v| v.as_slice())).unwrap();
                assert_eq!(sealed.revision, revisions[s as usize] + 1);
                revisions[s as usize] = sealed.revision;
                assert_eq!(
                    sealed.root,
                    reference.shard_root(b, s),
                    "seed {seed} round {round} shard {s}"
                );
            }
        }
        let view = forest.view(revisions.clone()).unwrap();
        let want = Subtree {
            hash: reference.root(),
            leaves: reference.len() as u64,
        };
        assert_eq!(view.root(), want, "seed {seed} round {round}: global root");
        assert_eq!(combine_shard_roots(view.shard_roots()).unwrap(), want);
        for s in 0..nshards {
            assert_eq!(view.shard_roots()[s as usize], reference.shard_root(b, s));
        }
        let all = current(&reference, &labels);
        let mut probe: Vec<Index> = pool.clone();
        for _ in 0..3 {
            probe.push(rng.index());
        }
        for index in &probe {
            let ours = view
                .lookup_proof(index, dummy_vrf(), OpeningPolicy::Open)
                .unwrap();
            let theirs = ref_lookup(&reference, &all, index, dummy_vrf());
            assert_eq!(
                ours.encode(),
                theirs.encode(),
                "seed {seed} round {round}: lookup"
            );
            let ours = view.history_proof(index, dummy_vrf()).unwrap();
            let theirs = ref_history(&reference, &all, index, dummy_vrf());
            assert_eq!(
                ours.encode(),
                theirs.encode(),
                "seed {seed} round {round}: history"
            );
            // The shard-level path agrees with the global one below depth b.
            let shard = forest.shard(shard_of(index, b)).unwrap();
            let p = shard
                .path(revisions[shard.shard() as usize], index)
                .unwrap();
            let (sib, _) = ref_path(&all, index);
            if sib.len() >= b as usize {
                assert_eq!(p.siblings, sib[b as usize..].to_vec());
            }
        }
        // Audit proofs against the last few views (consecutive and not).
        for (old_ref, old_view) in history.iter().rev().take(3) {
            let ours = view.audit_proof(old_view).unwrap();
            let theirs = reference.audit_proof(old_ref);
            assert_eq!(ours, theirs, "seed {seed} round {round}: audit");
            assert_eq!(ours.encode(), theirs.encode());
            let verified = ours.verify(&old_ref.root(), &reference.root()).unwrap();
            assert_eq!(verified.len(), ours.changes.len());
        }
        // Per-shard diffs agree with the reference's changes.
        let (old_ref, old_view) = history.last().unwrap();
        let changes = reference.audit_proof(old_ref).changes;
        let mut diffs = Vec::new();
        for s in 0..nshards {
            let tree = forest.shard(s).unwrap();
            for d in tree
                .changed(old_view.revisions()[s as usize], revisions[s as usize])
                .unwrap()
            {
                diffs.push((d.index, d.to_version - d.from_version));
            }
        }
        let want: Vec<_> = changes
            .iter()
            .map(|c| (c.index, c.commitments.len() as u64))
            .collect();
        assert_eq!(diffs, want);
        history.push((reference.clone(), view));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference_mem(seed in any::<u64>(), bsel in 0usize..4) {
        let b = [0u8, 1, 2, 4][bsel];
        check_run(mem_store(), b, seed, 5, 14);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference_fjall(seed in any::<u64>(), bsel in 0usize..4) {
        let b = [0u8, 1, 2, 4][bsel];
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(candor_store::FjallStore::open(dir.path()).unwrap());
        check_run(store, b, seed, 4, 14);
    }
}

#[test]
fn larger_trees_match_reference() {
    for (b, seed) in [(0u8, 1u64), (2, 2), (4, 3)] {
        check_run(mem_store(), b, seed, 6, 300);
    }
}

#[test]
fn composition_of_shard_roots_is_the_single_tree_root() {
    let mut rng = TestRng(99);
    let mut reference = ReferenceMap::new();
    let indices: Vec<Index> = (0..500).map(|_| rng.index()).collect();
    for i in &indices {
        leaf_for(&mut reference, *i, b"v");
    }
    for b in [0u8, 1, 2, 3, 5, 8] {
        let forest = Forest::open(
            mem_store(),
            TreeConfig {
                shard_bits: b,
                ..TreeConfig::default()
            },
        )
        .unwrap();
        let mut revs = vec![0u64; 1 << b];
        let mut per_shard: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for i in &indices {
            let v = reference.versions(i).last().unwrap();
            per_shard
                .entry(shard_of(i, b))
                .or_default()
                .push((v.leaf, v.opening.clone()));
        }
        for (s, items) in per_shard {
            let sealed = forest.shard(s).unwrap().apply(&items).unwrap();
            revs[s as usize] = sealed.revision;
        }
        let view = forest.view(revs).unwrap();
        assert_eq!(view.root_hash(), reference.root());
        assert_eq!(
            combine_shard_roots(view.shard_roots()).unwrap().hash,
            reference.root()
        );
    }
}

/// Real VRF labels: proofs equal `ReferenceMap`'s byte for byte and verify.
#[test]
fn vrf_proofs_verify_and_match() {
    let vrf = VrfSecretKey::from_bytes(&[3u8; 32]);
    let pk = vrf.public_key();
    for b in [0u8, 2] {
        let forest = Forest::open(
            mem_store(),
            TreeConfig {
                shard_bits: b,
                ..TreeConfig::default()
            },
        )
        .unwrap();
        let mut reference = ReferenceMap::new();
        let mut revs = vec![0u64; 1 << b];
        let labels: Vec<Vec<u8>> = (0..40).map(|i| format!("user-{i}").into_bytes()).collect();
        for round in 0..3 {
            let mut per_shard: BTreeMap<u32, Vec<_>> = BTreeMap::new();
            for (n, label) in labels.iter().enumerate() {
                if (n + round) % 3 == 0 {
                    continue;
                }
                let index = vrf.evaluate(label).0.index();
                let value = format!("key-{round}-{n}").into_bytes();
                let nonce = nonce(&index, round as u64);
                let leaf = reference.publish(index, label, &value, Some(nonce));
                per_shard
                    .entry(shard_of(&index, b))
                    .or_default()
                    .push((leaf, Some((nonce, value))));
            }
            for (s, items) in per_shard {
                revs[s as usize] = forest.shard(s).unwrap().apply(&items).unwrap().revision;
            }
            let view = forest.view(revs.clone()).unwrap();
            for label in labels.iter().chain([b"nobody".to_vec()].iter()) {
                let (out, proof) = vrf.evaluate(label);
                let ours = view
                    .lookup_proof(&out.index(), proof, OpeningPolicy::Open)
                    .unwrap();
                assert_eq!(ours.encode(), reference.lookup_proof(&vrf, label).encode());
                ours.verify(&pk, label, &view.root_hash()).unwrap();
                let ours = view.history_proof(&out.index(), proof).unwrap();
                assert_eq!(ours.encode(), reference.history_proof(&vrf, label).encode());
                ours.verify(&pk, label, &view.root_hash()).unwrap();
                let redacted = view
                    .lookup_proof(&out.index(), proof, OpeningPolicy::CommitmentOnly)
                    .unwrap();
                let v = redacted.verify(&pk, label, &view.root_hash()).unwrap();
                if let Some(e) = v.entry {
                    assert!(e.value.is_none());
                }
            }
        }
    }
}
