//! A seal whose write fails part-way (some chunks applied) leaves the
//! previous revision intact; redoing it, or sealing something else instead,
//! gives exactly the reference tree.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use candor_core::map::Index;
use candor_core::reference::ReferenceMap;
use candor_store::{
    Direction, Durability, KeyRange, KeyValue, Limits, MemStore, ReadView, Space, Store,
    StoreError, WriteBatch,
};
use candor_tree::{Forest, OpeningPolicy, StoredOpening, TreeConfig, TreeError};
use common::*;

/// Delegates to a MemStore; `write` fails once `budget` writes were made.
struct Flaky {
    inner: MemStore,
    budget: AtomicUsize,
}

impl ReadView for Flaky {
    fn get(&self, space: Space, key: &[u8]) -> candor_store::Result<Option<Vec<u8>>> {
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        d: Direction,
        limit: usize,
    ) -> candor_store::Result<Vec<KeyValue>> {
        self.inner.scan(space, range, d, limit)
    }
}

impl Store for Flaky {
    fn write(&self, batch: &WriteBatch, durability: Durability) -> candor_store::Result<()> {
        let left = self.budget.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.budget.store(left - 1, Ordering::SeqCst);
        self.inner.write(batch, durability)
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn snapshot(&self) -> candor_store::Result<Box<dyn ReadView>> {
        self.inner.snapshot()
    }
    fn sync(&self) -> candor_store::Result<()> {
        Ok(())
    }
    fn disk_space_bytes(&self) -> candor_store::Result<u64> {
        self.inner.disk_space_bytes()
    }
}

fn items(
    r: &mut ReferenceMap,
    indices: &[Index],
    tag: &[u8],
) -> Vec<(candor_core::map::Leaf, Option<StoredOpening>)> {
    indices
        .iter()
        .map(|i| {
            let (leaf, n) = leaf_for(r, *i, tag);
            (leaf, Some((n, tag.to_vec())))
        })
        .collect()
}

fn run(redo_same: bool) {
    let limits = Limits {
        max_batch_bytes: 20_000,
        ..Limits::PORTABLE
    };
    let flaky = Arc::new(Flaky {
        inner: MemStore::with_limits(limits),
        budget: AtomicUsize::new(usize::MAX),
    });
    let forest = Forest::open(flaky.clone(), TreeConfig::default()).unwrap();
    let tree = forest.shard(0).unwrap();
    let mut rng = TestRng(7);
    let mut reference = ReferenceMap::new();
    let base: Vec<Index> = (0..300).map(|_| rng.index()).collect();
    tree.apply(&items(&mut reference, &base, b"base")).unwrap();
    let before = reference.clone();

    // X updates half the base labels and adds new ones; its write fails after 3 chunks.
    let mut x_idx: Vec<Index> = base.iter().step_by(2).copied().collect();
    x_idx.extend((0..200).map(|_| rng.index()));
    let mut rx = reference.clone();
    let x = items(&mut rx, &x_idx, b"x");
    let mut staged = WriteBatch::new();
    for (leaf, o) in &x {
        let (n, v) = o.as_ref().unwrap();
        tree.stage(&mut staged, leaf, Some((n, v))).unwrap();
    }
    flaky.write_chunked(staged, Durability::Sync).unwrap();
    // The seal's write fails after two chunks: some node records of revision 2 exist.
    flaky.budget.store(2, Ordering::SeqCst);
    assert!(matches!(tree.seal(&x_idx), Err(TreeError::Store(_))));
    flaky.budget.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(tree.latest_revision(), 1);
    let v1 = forest.view(vec![1]).unwrap();
    assert_eq!(v1.root_hash(), before.root());

    let (final_ref, labels): (ReferenceMap, Vec<Index>) = if redo_same {
        tree.seal(&x_idx).unwrap();
        (rx, base.iter().chain(&x_idx).copied().collect())
    } else {
        // Y touches other labels only.
        let y_idx: Vec<Index> = base
            .iter()
            .skip(1)
            .step_by(3)
            .copied()
            .chain((0..50).map(|_| rng.index()))
            .collect();
        let mut ry = reference.clone();
        let y = items(&mut ry, &y_idx, b"y");
        tree.apply(&y).unwrap();
        (
            ry,
            base.iter().chain(&y_idx).chain(&x_idx).copied().collect(),
        )
    };
    // A fresh forest (cold cache) reads everything back from the store.
    let forest = Forest::open(flaky.clone(), TreeConfig::default()).unwrap();
    let v1 = forest.view(vec![1]).unwrap();
    let v2 = forest.view(vec![2]).unwrap();
    assert_eq!(v2.root_hash(), final_ref.root());
    let map: BTreeMap<Index, Vec<u8>> = labels.iter().map(|i| (*i, i.to_vec())).collect();
    let all = current(&final_ref, &map);
    for i in &labels {
        let p = v2
            .lookup_proof(i, dummy_vrf(), OpeningPolicy::CommitmentOnly)
            .unwrap();
        assert_eq!(p.siblings, ref_path(&all, i).0);
    }
    assert_eq!(v2.audit_proof(&v1).unwrap(), final_ref.audit_proof(&before));
}

#[test]
fn failed_seal_then_same_seal() {
    run(true);
}

#[test]
fn failed_seal_then_other_seal() {
    run(false);
}

/// `seal_staged` (leaves passed by the caller) seals exactly what `seal`
/// (leaves read back) does.
#[test]
fn seal_staged_equals_seal() {
    let mut rng = TestRng(21);
    let idx: Vec<Index> = (0..200).map(|_| rng.index()).collect();
    let mut roots = Vec::new();
    for staged in [false, true] {
        let store = mem_store();
        let forest = Forest::open(store.clone(), TreeConfig::default()).unwrap();
        let tree = forest.shard(0).unwrap();
        let mut reference = ReferenceMap::new();
        for round in 0..3u8 {
            let mut batch = WriteBatch::new();
            let mut leaves = Vec::new();
            for i in idx.iter().skip(round as usize).step_by(2) {
                for _ in 0..1 + (i[5] % 2) {
                    let (leaf, n) = leaf_for(&mut reference, *i, &[round]);
                    tree.stage(&mut batch, &leaf, Some((&n, &[round]))).unwrap();
                    leaves.push(leaf);
                }
            }
            store.write(&batch, Durability::Sync).unwrap();
            let sealed = if staged {
                tree.seal_staged(&leaves).unwrap()
            } else {
                let indices: Vec<Index> = leaves.iter().map(|l| l.index).collect();
                tree.seal(&indices).unwrap()
            };
            assert_eq!(sealed.root.hash, reference.root());
        }
        roots.push(tree.root(3).unwrap());
    }
    assert_eq!(roots[0], roots[1]);
}
