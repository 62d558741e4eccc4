//! The persistent epoch log, and retention (pruning) of shard revisions.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use candor_core::log::{EpochEntry, MemoryLog};
use candor_core::map::Index;
use candor_core::reference::ReferenceMap;
use candor_core::signed::{EpochHead, SignedHead, SigningKeyPair};
use candor_store::Store;
use candor_tree::{EpochLogStore, Forest, OpeningPolicy, TreeConfig, TreeError};
use common::*;

fn head(log: &EpochLogStore, key: &SigningKeyPair, epoch: u64, root: [u8; 32]) -> SignedHead {
    let entry = EpochEntry {
        epoch,
        timestamp_ms: 1_000 * epoch,
        map_root: root,
    };
    let (log_size, log_root) = log.prepare(&entry).unwrap();
    EpochHead {
        namespace: "test".into(),
        epoch,
        timestamp_ms: entry.timestamp_ms,
        map_root: root,
        log_size,
        log_root,
        config_digest: [9; 32],
    }
    .sign(key)
}

fn epoch_log_on(store: Arc<dyn Store>, reopen: impl Fn() -> Arc<dyn Store>) {
    let key = SigningKeyPair::from_seed(&[1; 32]);
    let log = EpochLogStore::open(store.clone()).unwrap();
    assert_eq!(log.latest_epoch(), 0);
    assert!(log.latest().unwrap().is_none());
    let shards = 1usize << 13; // two revision-vector chunks
    let mut mem = MemoryLog::new();
    let mut revs = vec![0u64; shards];
    let mut all_revs = Vec::new();
    for e in 1..=37u64 {
        let root = [e as u8; 32];
        let h = head(&log, &key, e, root);
        mem.append(EpochEntry::of_head(&h).leaf_hash());
        assert_eq!(h.head.log_root, mem.root());
        revs[(e as usize * 977) % shards] += 1;
        if e % 5 == 0 {
            revs[shards - 1] += 1;
        }
        log.append(&h, &revs).unwrap();
        // Idempotent; a different head for the same epoch is a conflict.
        log.append(&h, &revs).unwrap();
        let mut other = h.clone();
        other.head.timestamp_ms += 1;
        assert!(matches!(
            log.append(&other, &revs),
            Err(TreeError::Conflict(_))
        ));
        all_revs.push(revs.clone());
    }
    // A head whose log root does not extend the log is refused.
    let mut bad = head(&log, &key, 38, [0; 32]);
    bad.head.log_root = [1; 32];
    assert!(matches!(
        log.append(&bad, &revs),
        Err(TreeError::Conflict(_))
    ));

    let log = EpochLogStore::open(reopen()).unwrap();
    assert_eq!(log.latest_epoch(), 37);
    for e in 1..=37u64 {
        let h = log.head(e).unwrap().unwrap();
        assert_eq!(h.head.epoch, e);
        assert_eq!(log.revisions(e).unwrap(), all_revs[e as usize - 1]);
        for size in [e, 37, (e + 37) / 2] {
            let p = log.inclusion_proof(e, size).unwrap();
            p.verify(&EpochEntry::of_head(&h).leaf_hash(), &mem.root_at(size))
                .unwrap();
            assert_eq!(log.root_at(size).unwrap(), mem.root_at(size));
        }
        for second in [e, 37] {
            let p = log.consistency_proof(e, second).unwrap();
            p.verify(&mem.root_at(e), &mem.root_at(second)).unwrap();
        }
    }
    assert!(matches!(
        log.revisions(38),
        Err(TreeError::NoSuchEpoch { .. })
    ));
    assert!(log.inclusion_proof(5, 40).is_err());
    assert!(log.consistency_proof(6, 5).is_err());
}

#[test]
fn epoch_log_mem() {
    let s = mem_store();
    let s2 = s.clone();
    epoch_log_on(s, move || s2.clone());
}

#[test]
fn epoch_log_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    {
        let s: Arc<dyn Store> = Arc::new(candor_store::FjallStore::open(&path).unwrap());
        let log = EpochLogStore::open(s.clone()).unwrap();
        let key = SigningKeyPair::from_seed(&[1; 32]);
        let h = head(&log, &key, 1, [1; 32]);
        log.append(&h, &[3, 4]).unwrap();
    }
    let s: Arc<dyn Store> = Arc::new(candor_store::FjallStore::open(&path).unwrap());
    let log = EpochLogStore::open(s).unwrap();
    assert_eq!(log.latest_epoch(), 1);
    assert_eq!(log.revisions(1).unwrap(), vec![3, 4]);
}

#[test]
fn epoch_log_view_matches_forest() {
    let store = mem_store();
    let forest = Forest::open(
        store.clone(),
        TreeConfig {
            shard_bits: 2,
            ..TreeConfig::default()
        },
    )
    .unwrap();
    let log = EpochLogStore::open(store).unwrap();
    let key = SigningKeyPair::from_seed(&[2; 32]);
    let mut rng = TestRng(5);
    let mut reference = ReferenceMap::new();
    let mut revs = vec![0u64; 4];
    for e in 1..=4u64 {
        let mut per: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for _ in 0..50 {
            let (leaf, n) = leaf_for(&mut reference, rng.index(), b"v");
            per.entry(candor_core::map::shard_of(&leaf.index, 2))
                .or_default()
                .push((leaf, Some((n, b"v".to_vec()))));
        }
        for (s, items) in per {
            revs[s as usize] = forest.shard(s).unwrap().apply(&items).unwrap().revision;
        }
        let root = forest.view(revs.clone()).unwrap().root_hash();
        log.append(&head(&log, &key, e, root), &revs).unwrap();
    }
    let v = log.view(&forest, 4).unwrap();
    assert_eq!(v.root_hash(), reference.root());
    assert_eq!(v.root_hash(), log.head(4).unwrap().unwrap().head.map_root);
}

fn retention_on(store: Arc<dyn Store>, steps: &[u64]) -> usize {
    let forest = Forest::open(
        store,
        TreeConfig {
            shard_bits: 1,
            cache_bytes: 1 << 16,
            ..TreeConfig::default()
        },
    )
    .unwrap();
    let mut rng = TestRng(11);
    let mut reference = ReferenceMap::new();
    let mut labels: BTreeMap<Index, Vec<u8>> = BTreeMap::new();
    let pool: Vec<Index> = (0..60).map(|_| rng.index()).collect();
    let mut snaps = Vec::new();
    let mut revs = vec![0u64; 2];
    for _ in 0..10 {
        for _ in 0..25 {
            let i = pool[rng.below(60) as usize];
            let value = rng.next_u64().to_be_bytes().to_vec();
            leaf_for(&mut reference, i, &value);
            labels.insert(i, i.to_vec());
        }
        revs = vec![0, 0];
        let mut items_all: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for i in &pool {
            if !reference.versions(i).is_empty() {
                let prior = forest.shard_for(i).unwrap().latest_leaf(i).unwrap();
                // Stage every version the tree has not seen yet.
                let from = prior.map_or(1, |l| l.version + 1);
                for v in reference.versions(i).iter().skip(from as usize - 1) {
                    items_all
                        .entry(candor_core::map::shard_of(i, 1))
                        .or_default()
                        .push((v.leaf, v.opening.clone()));
                }
            }
        }
        for s in 0..2u32 {
            let tree = forest.shard(s).unwrap();
            let items = items_all.remove(&s).unwrap_or_default();
            revs[s as usize] = tree.apply(&items).unwrap().revision;
        }
        snaps.push((reference.clone(), revs.clone()));
    }
    let count_nodes = |forest: &Forest| {
        forest
            .store()
            .scan(
                candor_store::Space::Tree,
                &candor_store::KeyRange::prefix(b"N"),
                candor_store::Direction::Forward,
                usize::MAX,
            )
            .unwrap()
            .len()
    };
    let before = count_nodes(&forest);
    for s in 0..2u32 {
        let (mut revisions, mut records) = (0, 0);
        for keep in steps {
            let st = forest.shard(s).unwrap().prune(*keep).unwrap();
            revisions += st.revisions;
            records += st.node_records;
        }
        assert_eq!(revisions, 6);
        assert!(records > 0);
        // Idempotent.
        assert_eq!(forest.shard(s).unwrap().prune(6).unwrap().revisions, 0);
        assert_eq!(forest.shard(s).unwrap().retained_from(), 6);
    }
    let after = count_nodes(&forest);
    assert!(after < before, "prune removed nothing ({before} → {after})");
    for (n, (r, revs)) in snaps.iter().enumerate() {
        let res = forest.view(revs.clone());
        if revs.iter().any(|x| *x < 6) {
            assert!(
                matches!(res, Err(TreeError::Pruned { .. })),
                "snapshot {n}: {res:?}"
            );
            continue;
        }
        let view = res.unwrap();
        assert_eq!(view.root_hash(), r.root());
        let all = current(r, &labels);
        for i in pool.iter().take(20) {
            let p = view
                .lookup_proof(i, dummy_vrf(), OpeningPolicy::Open)
                .unwrap();
            assert_eq!(p.siblings, ref_path(&all, i).0);
            let h = view.history_proof(i, dummy_vrf()).unwrap();
            assert_eq!(h.encode(), ref_history(r, &all, i, dummy_vrf()).encode());
        }
    }
    // Audit across retained revisions still matches.
    let (r6, v6) = (&snaps[5].0, forest.view(snaps[5].1.clone()).unwrap());
    let (r9, v9) = (&snaps[9].0, forest.view(snaps[9].1.clone()).unwrap());
    assert_eq!(v9.audit_proof(&v6).unwrap(), r9.audit_proof(r6));
    let tree = forest.shard(0).unwrap();
    assert!(matches!(tree.root(3), Err(TreeError::Pruned { .. })));
    assert!(matches!(tree.root(99), Err(TreeError::NotSealed { .. })));
    // The tree keeps working after a prune.
    let (leaf, n) = leaf_for(&mut reference, pool[0], b"after");
    forest
        .shard_for(&pool[0])
        .unwrap()
        .apply(&[(leaf, Some((n, b"after".to_vec())))])
        .unwrap();
    after
}

#[test]
fn retention_mem_one_pass_and_walk_agree() {
    // The same records remain whichever way the revisions were pruned.
    assert_eq!(
        retention_on(mem_store(), &[6]),
        retention_on(mem_store(), &[2, 3, 6])
    );
}

#[test]
fn retention_fjall() {
    let dir = tempfile::tempdir().unwrap();
    retention_on(
        Arc::new(candor_store::FjallStore::open(dir.path()).unwrap()),
        &[6],
    );
}

/// A reader with its own forest (another api process) sees seals and prunes
/// made through the writer's forest.
#[test]
fn second_forest_sees_new_revisions() {
    let store = mem_store();
    let writer = Forest::open(store.clone(), TreeConfig::default()).unwrap();
    let reader = Forest::open(store, TreeConfig::default()).unwrap();
    let rtree = reader.shard(0).unwrap();
    assert_eq!(rtree.latest_revision(), 0);
    let mut reference = ReferenceMap::new();
    let mut rng = TestRng(3);
    for _ in 0..3 {
        let items: Vec<_> = (0..20)
            .map(|_| {
                let (leaf, n) = leaf_for(&mut reference, rng.index(), b"x");
                (leaf, Some((n, b"x".to_vec())))
            })
            .collect();
        writer.shard(0).unwrap().apply(&items).unwrap();
    }
    assert_eq!(rtree.latest_revision(), 3);
    assert_eq!(rtree.root(3).unwrap().hash, reference.root());
    writer.shard(0).unwrap().prune(2).unwrap();
    assert_eq!(rtree.retained_from(), 2);
    assert!(matches!(rtree.root(1), Err(TreeError::Pruned { .. })));
    assert!(matches!(
        reader.view(vec![1]),
        Err(TreeError::Pruned { .. })
    ));
}
