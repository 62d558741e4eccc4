//! Shard state machine tests without a runtime: entries are applied directly to
//! `ShardLogic` over a `MemStore`. Randomness is seeded (`CANDOR_TEST_SEED`) and printed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candor_core::map::{Leaf, shard_of};
use candor_core::reference::ReferenceMap;
use candor_core::{Index, ZERO};
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::{ApplyBatch, CommittedEntry, LogId, StateMachineLogic};
use candor_shard::{Item, ItemOutcome, ShardCommand, ShardLogic, ShardLogicConfig, ShardResponse};
use candor_store::{Direction, KeyRange, MemStore, Space, Store};
use candor_tree::{Forest, TreeConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BITS: u8 = 2;

fn seed(default: u64) -> u64 {
    let s = std::env::var("CANDOR_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed: {s} (replay with CANDOR_TEST_SEED={s})");
    s
}

fn log_id(index: u64) -> LogId {
    LogId {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    }
}

struct Harness {
    store: Arc<dyn Store>,
    forest: Forest,
    next_index: u64,
}

impl Harness {
    fn new() -> Self {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let forest = Forest::open(
            Arc::clone(&store),
            TreeConfig {
                shard_bits: BITS,
                ..TreeConfig::default()
            },
        )
        .unwrap();
        Self {
            store,
            forest,
            next_index: 1,
        }
    }

    fn logic(&self, shard: u32, config: ShardLogicConfig) -> ShardLogic {
        ShardLogic::open(&self.forest, shard, config).unwrap()
    }

    /// Apply `cmds` as one adapter batch at the next log indices.
    fn apply(&mut self, logic: &mut ShardLogic, cmds: &[ShardCommand]) -> Vec<ShardResponse> {
        let first = self.next_index;
        self.next_index += cmds.len() as u64;
        apply_at(logic, first, cmds)
    }
}

fn apply_at(logic: &mut ShardLogic, first: u64, cmds: &[ShardCommand]) -> Vec<ShardResponse> {
    let data: Vec<Vec<u8>> = cmds.iter().map(ShardCommand::encode).collect();
    let entries: Vec<CommittedEntry<'_>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| CommittedEntry {
            log_id: log_id(first + i as u64),
            data: d,
        })
        .collect();
    let last = first + cmds.len() as u64 - 1;
    let marker = format!("marker-{last}").into_bytes();
    logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(last),
            marker: &marker,
        })
        .unwrap()
        .iter()
        .map(|r| ShardResponse::decode(r).unwrap())
        .collect()
}

/// Everything in the store, for exact before/after comparisons.
fn dump(store: &dyn Store) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
    let mut out = BTreeMap::new();
    for space in Space::ALL {
        for (k, v) in store
            .scan(space, &KeyRange::all(), Direction::Forward, usize::MAX)
            .unwrap()
        {
            out.insert((space.tag(), k), v);
        }
    }
    out
}

/// An index of `shard` derived from `n`.
fn index_in(shard: u32, n: u64) -> Index {
    let mut i = *blake3::hash(&n.to_be_bytes()).as_bytes();
    let top = (i[0] & (0xff >> BITS)) | ((shard as u8) << (8 - BITS));
    i[0] = top;
    assert_eq!(shard_of(&i, BITS), shard);
    i
}

fn item(index: Index, label: &str, value: &str, key: Option<&str>, nonce: [u8; 32]) -> Item {
    Item {
        tenant: "t1".into(),
        idempotency_key: key.map(String::from),
        label: label.as_bytes().to_vec(),
        index,
        value: value.as_bytes().to_vec(),
        nonce,
    }
}

fn publish(items: Vec<Item>) -> ShardCommand {
    ShardCommand::Publish {
        timestamp_ms: 1_000,
        items,
    }
}

fn outcomes(r: &ShardResponse) -> &[ItemOutcome] {
    match r {
        ShardResponse::Published(o) => o,
        other => panic!("not a publish response: {other:?}"),
    }
}

#[test]
fn versions_are_gap_free_and_chained() {
    let s = seed(7);
    let mut rng = StdRng::seed_from_u64(s);
    let mut h = Harness::new();
    let shard = 1;
    let mut logic = h.logic(shard, ShardLogicConfig::default());
    let mut reference = ReferenceMap::new();
    let mut expected: HashMap<Index, u64> = HashMap::new();
    for round in 0..40 {
        let mut cmds = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..rng.random_range(1..4usize) {
            let mut items = Vec::new();
            for _ in 0..rng.random_range(1..20usize) {
                // Few labels, so one entry often touches a label several times.
                let n = rng.random_range(0..12u64);
                let index = index_in(shard, n);
                let nonce: [u8; 32] = rng.random();
                let value = format!("v{round}-{}", rng.random::<u32>());
                items.push(item(index, &format!("label-{n}"), &value, None, nonce));
            }
            sent.push(items.clone());
            cmds.push(publish(items));
        }
        if rng.random_bool(0.3) {
            cmds.push(ShardCommand::Seal);
        }
        let resps = h.apply(&mut logic, &cmds);
        for (items, resp) in sent.iter().zip(&resps) {
            for (it, o) in items.iter().zip(outcomes(resp)) {
                let v = expected.entry(it.index).or_insert(0);
                *v += 1;
                let ItemOutcome::Applied { version, prev, .. } = o else {
                    panic!("unexpected outcome {o:?}");
                };
                assert_eq!(*version, *v, "versions rise by exactly one");
                let leaf = reference.publish(it.index, &it.label, &it.value, Some(it.nonce));
                assert_eq!(leaf.version, *version);
                assert_eq!(leaf.prev, *prev);
            }
        }
    }
    h.apply(&mut logic, &[ShardCommand::Seal]);
    let tree = logic.tree().clone();
    for (index, v) in &expected {
        let versions = tree.versions(index).unwrap();
        assert_eq!(versions.len() as u64, *v);
        let mut prev = ZERO;
        for (i, l) in versions.iter().enumerate() {
            assert_eq!(l.version, i as u64 + 1);
            assert_eq!(l.prev, prev);
            prev = l.hash();
        }
    }
    let rev = tree.latest_revision();
    assert_eq!(rev, logic.state().sealed_rev);
    assert_eq!(tree.root(rev).unwrap(), reference.shard_root(BITS, shard));
    assert!(logic.pending().is_empty());
}

#[test]
fn idempotent_retry_and_conflict() {
    let mut h = Harness::new();
    let shard = 2;
    let mut logic = h.logic(shard, ShardLogicConfig::default());
    let idx = index_in(shard, 1);
    let first = h.apply(
        &mut logic,
        &[publish(vec![item(
            idx,
            "alice",
            "k1",
            Some("req-1"),
            [1; 32],
        )])],
    );
    let ItemOutcome::Applied {
        version: 1,
        commitment,
        prev,
    } = outcomes(&first[0])[0].clone()
    else {
        panic!("{first:?}")
    };
    // Retry (new nonce drawn by the proposer): same result, nonce of the first attempt.
    let retry = h.apply(
        &mut logic,
        &[publish(vec![
            item(idx, "alice", "k1", Some("req-1"), [2; 32]),
            item(idx, "alice", "k2", Some("req-1"), [3; 32]),
            item(idx, "alice", "k2", Some("req-2"), [4; 32]),
            item(idx, "alice", "k2", Some("req-2"), [5; 32]),
        ])],
    );
    let o = outcomes(&retry[0]);
    assert_eq!(
        o[0],
        ItemOutcome::Duplicate {
            version: 1,
            commitment,
            prev,
            nonce: [1; 32]
        }
    );
    assert_eq!(o[1], ItemOutcome::Conflict, "same key, other value");
    let ItemOutcome::Applied {
        version: 2,
        commitment: c2,
        prev: p2,
    } = o[2].clone()
    else {
        panic!("{o:?}")
    };
    // A duplicate within the same entry sees the first one.
    assert_eq!(
        o[3],
        ItemOutcome::Duplicate {
            version: 2,
            commitment: c2,
            prev: p2,
            nonce: [4; 32]
        }
    );
    // Another tenant has its own key space (its "req-1" is not t1's), but the label
    // belongs to t1: refused, nothing recorded.
    let mut other = item(idx, "alice", "k3", Some("req-1"), [6; 32]);
    other.tenant = "t2".into();
    let r = h.apply(&mut logic, &[publish(vec![other.clone()])]);
    assert_eq!(outcomes(&r[0])[0], ItemOutcome::Forbidden);
    // Its own label, with the same key: applied.
    let mut own = item(index_in(shard, 2), "bob", "k3", Some("req-1"), [7; 32]);
    own.tenant = "t2".into();
    let r = h.apply(&mut logic, &[publish(vec![own])]);
    assert!(matches!(
        outcomes(&r[0])[0],
        ItemOutcome::Applied { version: 1, .. }
    ));
    // Survives a reopen (records are in the store).
    let mut logic = h.logic(shard, ShardLogicConfig::default());
    let r = h.apply(
        &mut logic,
        &[publish(vec![item(
            idx,
            "alice",
            "k1",
            Some("req-1"),
            [9; 32],
        )])],
    );
    assert!(
        matches!(outcomes(&r[0])[0], ItemOutcome::Duplicate { version: 1, nonce, .. } if nonce == [1; 32])
    );
}

#[test]
fn invalid_items_change_nothing() {
    let mut h = Harness::new();
    let mut logic = h.logic(0, ShardLogicConfig::default());
    let before = dump(&*h.store);
    let wrong_shard = index_in(3, 1);
    let r = h.apply(
        &mut logic,
        &[publish(vec![
            item(wrong_shard, "x", "y", Some("k"), [1; 32]),
            item(index_in(0, 1), "", "y", None, [1; 32]),
        ])],
    );
    assert!(
        outcomes(&r[0])
            .iter()
            .all(|o| matches!(o, ItemOutcome::Invalid(_)))
    );
    // A malformed entry is rejected, not fatal.
    let data = b"\xff\xff garbage".to_vec();
    let entries = [CommittedEntry {
        log_id: log_id(h.next_index),
        data: &data,
    }];
    let out = logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(h.next_index),
            marker: b"m",
        })
        .unwrap();
    assert!(matches!(
        ShardResponse::decode(&out[0]).unwrap(),
        ShardResponse::Rejected(_)
    ));
    // Only bookkeeping changed: no leaf, opening, pending label or idempotency record.
    let after = dump(&*h.store);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|((space, k), _)| (*space, String::from_utf8_lossy(k).into_owned()))
        .collect();
    for (space, k) in &changed {
        assert_eq!(*space, Space::Meta.tag(), "{k}");
        assert!(
            k.ends_with('s') || k.ends_with('m') || k.contains("\u{0}\u{0}\u{0}\u{0}r"),
            "{k:?}"
        );
    }
    assert!(logic.pending().is_empty());
}

#[test]
fn applying_an_entry_twice_changes_nothing() {
    let s = seed(11);
    let mut rng = StdRng::seed_from_u64(s);
    let mut h = Harness::new();
    let shard = 3;
    let mut logic = h.logic(shard, ShardLogicConfig::default());
    let mut cmds = Vec::new();
    for e in 0..6 {
        let items = (0..8)
            .map(|i| {
                let n = rng.random_range(0..6u64);
                let key = format!("k{e}-{i}");
                item(
                    index_in(shard, n),
                    &format!("l{n}"),
                    &format!("v{e}{i}"),
                    Some(&key),
                    rng.random(),
                )
            })
            .collect();
        cmds.push(publish(items));
        if e % 3 == 2 {
            cmds.push(ShardCommand::Seal);
        }
    }
    let first = h.apply(&mut logic, &cmds);
    let state = dump(&*h.store);
    // The same entries again, on this logic and on a fresh one over the same (shared)
    // store: same responses, not one byte changed except the marker.
    let again = apply_at(&mut logic, 1, &cmds);
    assert_eq!(again, first);
    let mut other = h.logic(shard, ShardLogicConfig::default());
    let again = apply_at(&mut other, 1, &cmds);
    assert_eq!(again, first);
    assert_eq!(dump(&*h.store), state);
    // A suffix re-applied (the adapter's marker lagged behind our state) is skipped too.
    let again = apply_at(&mut other, 3, &cmds[2..]);
    assert_eq!(again, first[2..]);
    assert_eq!(dump(&*h.store), state);
}

#[test]
fn seal_lost_after_tree_write_is_not_repeated() {
    let mut h = Harness::new();
    let shard = 0;
    let mut logic = h.logic(shard, ShardLogicConfig::default());
    let idx = index_in(shard, 5);
    h.apply(
        &mut logic,
        &[publish(vec![item(idx, "bob", "v", None, [7; 32])])],
    );
    // The tree seal of the next Seal entry happened, then the process died before the
    // shard's bookkeeping batch.
    let rev = logic.tree().seal(&[idx]).unwrap();
    assert_eq!(rev.revision, 1);
    let mut logic = h.logic(shard, ShardLogicConfig::default());
    assert_eq!(logic.pending().len(), 1);
    let r = h.apply(&mut logic, &[ShardCommand::Seal]);
    assert_eq!(
        r[0],
        ShardResponse::Sealed {
            revision: 1,
            changed: 1
        }
    );
    assert_eq!(logic.tree().latest_revision(), 1, "no second revision");
    assert!(logic.pending().is_empty());
    // An empty seal makes no revision.
    let r = h.apply(&mut logic, &[ShardCommand::Seal]);
    assert_eq!(
        r[0],
        ShardResponse::Sealed {
            revision: 1,
            changed: 0
        }
    );
    assert_eq!(logic.tree().latest_revision(), 1);
}

#[test]
fn idempotency_records_are_bounded() {
    let mut h = Harness::new();
    let shard = 1;
    let cfg = ShardLogicConfig {
        idempotency_max_records: 10,
        idempotency_max_age_ms: 1_000_000,
        ..ShardLogicConfig::default()
    };
    let mut logic = h.logic(shard, cfg.clone());
    for e in 0..10u64 {
        let items = (0..5u64)
            .map(|i| {
                item(
                    index_in(shard, e * 5 + i),
                    "l",
                    "v",
                    Some(&format!("k{}", e * 5 + i)),
                    [1; 32],
                )
            })
            .collect();
        h.apply(&mut logic, &[publish(items)]);
    }
    let st = logic.state();
    assert_eq!(st.idem_next, 50);
    assert!(st.idem_next - st.idem_oldest <= 15, "{st:?}");
    // The oldest key is forgotten: reusing it is a new mutation, not a duplicate.
    let r = h.apply(
        &mut logic,
        &[publish(vec![item(
            index_in(shard, 0),
            "l",
            "v",
            Some("k0"),
            [2; 32],
        )])],
    );
    assert!(matches!(
        outcomes(&r[0])[0],
        ItemOutcome::Applied { version: 2, .. }
    ));
    // The newest is still known.
    let r = h.apply(
        &mut logic,
        &[publish(vec![item(
            index_in(shard, 49),
            "l",
            "v",
            Some("k49"),
            [2; 32],
        )])],
    );
    assert!(matches!(
        outcomes(&r[0])[0],
        ItemOutcome::Duplicate { version: 1, .. }
    ));
    // Age-based eviction: entries far in the future expire everything older.
    let mut logic = h.logic(
        shard,
        ShardLogicConfig {
            idempotency_max_age_ms: 10,
            ..cfg
        },
    );
    let cmd = ShardCommand::Publish {
        timestamp_ms: 10_000_000,
        items: vec![item(index_in(shard, 1), "l", "w", None, [3; 32])],
    };
    h.apply(&mut logic, &[cmd]);
    let st = logic.state();
    assert_eq!(st.idem_oldest, st.idem_next, "{st:?}");
}

#[test]
fn leaves_match_the_reference_commitment() {
    let mut h = Harness::new();
    let mut logic = h.logic(2, ShardLogicConfig::default());
    let idx = index_in(2, 3);
    let r = h.apply(
        &mut logic,
        &[publish(vec![item(idx, "carol", "key-a", None, [8; 32])])],
    );
    let ItemOutcome::Applied {
        version,
        commitment,
        prev,
    } = outcomes(&r[0])[0].clone()
    else {
        panic!()
    };
    let mut reference = ReferenceMap::new();
    let leaf: Leaf = reference.publish(idx, b"carol", b"key-a", Some([8; 32]));
    assert_eq!(
        (version, commitment, prev),
        (leaf.version, leaf.commitment, leaf.prev)
    );
    assert_eq!(
        logic.tree().opening(&idx, 1).unwrap(),
        Some(([8; 32], b"key-a".to_vec()))
    );
}
