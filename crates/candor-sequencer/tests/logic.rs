//! Sequencer state machine tests without a runtime. Seeded (`CANDOR_TEST_SEED`).

mod common;
use common::{log_id, seed};

use std::sync::Arc;

use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::map::{Leaf, shard_of};
use candor_core::reference::ReferenceMap;
use candor_core::signed::{PublicConfig, SignedHead, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_core::{Index, ZERO};
use candor_raft::{ApplyBatch, CommittedEntry, StateMachineLogic};
use candor_sequencer::{
    SequencerCommand, SequencerLogic, SequencerResponse, ShardRoot, moved_shards,
};
use candor_store::{Durability, MemStore, Space, Store, WriteBatch};
use candor_tree::{EpochLogStore, Forest, TreeConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BITS: u8 = 3;

/// A leaf with its opening, as `ShardTree::apply` takes it.
type Staged = (Leaf, Option<([u8; 32], Vec<u8>)>);

struct Env {
    store: Arc<dyn Store>,
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    public: PublicConfig,
    key: Arc<SigningKeyPair>,
}

impl Env {
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
        let epochs = Arc::new(EpochLogStore::open(Arc::clone(&store)).unwrap());
        let key = Arc::new(SigningKeyPair::from_seed(&[5; 32]));
        let public = PublicConfig {
            namespace: "test.candor".into(),
            vrf_key: VrfSecretKey::from_bytes(&[9; 32]).public_key(),
            head_key: key.public_key(),
            smt_key: SigningKeyPair::from_seed(&[6; 32]).public_key(),
            shard_bits: BITS,
            epoch_interval_ms: 1000,
            max_merge_delay_ms: 10_000,
        };
        Self {
            store,
            forest,
            epochs,
            public,
            key,
        }
    }

    fn logic(&self) -> SequencerLogic {
        SequencerLogic::open(
            Arc::clone(&self.store),
            Arc::clone(&self.epochs),
            self.public.clone(),
            Arc::clone(&self.key),
        )
        .unwrap()
    }
}

fn apply(logic: &mut SequencerLogic, index: u64, cmd: &SequencerCommand) -> SequencerResponse {
    let data = cmd.encode();
    let entries = [CommittedEntry {
        log_id: log_id(index),
        data: &data,
    }];
    let out = logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(index),
            marker: format!("m{index}").as_bytes(),
        })
        .unwrap();
    SequencerResponse::decode(&out[0]).unwrap()
}

fn epoch(ts: u64, shards: Vec<ShardRoot>) -> SequencerCommand {
    SequencerCommand::Epoch {
        timestamp_ms: ts,
        shards,
    }
}

#[test]
fn epochs_are_consecutive_signed_and_match_the_reference_root() {
    let s = seed(3);
    let mut rng = StdRng::seed_from_u64(s);
    let env = Env::new();
    let mut logic = env.logic();
    let mut reference = ReferenceMap::new();
    let mut heads: Vec<SignedHead> = Vec::new();
    let mut rx = logic.subscribe();
    let mut ts = 1_000_000u64;
    for round in 1..=20u64 {
        // Publish and seal a few labels in random shards, exactly as the reference does.
        let mut by_shard: Vec<Vec<Staged>> = vec![Vec::new(); 1 << BITS];
        for _ in 0..rng.random_range(0..12usize) {
            let n = rng.random_range(0..40u64);
            let index: Index = *blake3::hash(&n.to_be_bytes()).as_bytes();
            let label = format!("label-{n}");
            let value = format!("value-{round}");
            let nonce: [u8; 32] = rng.random();
            let leaf = reference.publish(index, label.as_bytes(), value.as_bytes(), Some(nonce));
            by_shard[shard_of(&index, BITS) as usize]
                .push((leaf, Some((nonce, value.into_bytes()))));
        }
        for (s, items) in by_shard.iter().enumerate() {
            if !items.is_empty() {
                env.forest.shard(s as u32).unwrap().apply(items).unwrap();
            }
        }
        // Clocks may go backwards: the head's timestamp must not.
        ts = if rng.random_bool(0.3) {
            ts - rng.random_range(0..500u64)
        } else {
            ts + 1000
        };
        let shards = moved_shards(&env.forest, logic.revisions()).unwrap();
        let r = apply(&mut logic, round, &epoch(ts, shards));
        assert_eq!(r, SequencerResponse::Epoch(round));
        let head = env.epochs.head(round).unwrap().expect("head stored");
        head.verify(&env.public)
            .expect("head verifies under the public config");
        assert_eq!(head.head.epoch, round);
        assert_eq!(head.head.config_digest, env.public.digest());
        assert_eq!(
            head.head.map_root,
            reference.root(),
            "global root = reference root"
        );
        assert_eq!(
            env.epochs.view(&env.forest, round).unwrap().root_hash(),
            reference.root()
        );
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            rx.borrow_and_update().as_ref(),
            Some(&head),
            "published after persisting"
        );
        if let Some(prev) = heads.last() {
            assert!(head.head.timestamp_ms >= prev.head.timestamp_ms);
        }
        heads.push(head);
    }
    // Every earlier head is consistent with the latest.
    let last = heads.last().unwrap().clone();
    for old in &heads[..heads.len() - 1] {
        let proof = HeadExtensionProof {
            consistency: env
                .epochs
                .consistency_proof(old.head.epoch, last.head.epoch)
                .unwrap(),
            inclusion: env
                .epochs
                .inclusion_proof(old.head.epoch, last.head.epoch)
                .unwrap(),
        };
        verify_head_extension(old, &last, &proof).unwrap();
    }
}

#[test]
fn an_epoch_is_signed_even_when_nothing_changed() {
    let env = Env::new();
    let mut logic = env.logic();
    for i in 1..=3 {
        assert_eq!(
            apply(&mut logic, i, &epoch(5, vec![])),
            SequencerResponse::Epoch(i)
        );
    }
    let h = env.epochs.latest().unwrap().unwrap();
    assert_eq!(h.head.epoch, 3);
    assert_eq!(h.head.map_root, ZERO);
    h.verify(&env.public).unwrap();
}

#[test]
fn stale_and_unknown_shards_are_ignored() {
    let env = Env::new();
    let mut logic = env.logic();
    let idx: Index = [0; 32];
    let leaf = Leaf::first(idx, [1; 32]);
    let t = env.forest.shard(0).unwrap();
    t.apply(&[(leaf, None)]).unwrap();
    let root = t.root(1).unwrap();
    let r1 = ShardRoot {
        shard: 0,
        revision: 1,
        root: root.hash,
        leaves: root.leaves,
    };
    apply(&mut logic, 1, &epoch(10, vec![r1]));
    // An old leader's proposal (revision 0) and a shard that does not exist.
    let stale = ShardRoot {
        revision: 0,
        root: ZERO,
        leaves: 0,
        ..r1
    };
    let bogus = ShardRoot { shard: 999, ..r1 };
    apply(&mut logic, 2, &epoch(11, vec![stale, bogus]));
    assert_eq!(env.epochs.revisions(2).unwrap()[0], 1);
    let h1 = env.epochs.head(1).unwrap().unwrap();
    let h2 = env.epochs.head(2).unwrap().unwrap();
    assert_eq!(h1.head.map_root, h2.head.map_root);
    assert_eq!(h2.head.map_root, leaf.hash());
}

#[test]
fn applying_twice_and_lost_bookkeeping_make_one_head_per_epoch() {
    let env = Env::new();
    let mut logic = env.logic();
    let cmds: Vec<SequencerCommand> = (0..4).map(|i| epoch(100 + i, vec![])).collect();
    for (i, c) in cmds.iter().enumerate() {
        apply(&mut logic, i as u64 + 1, c);
    }
    let heads: Vec<SignedHead> = (1..=4)
        .map(|e| env.epochs.head(e).unwrap().unwrap())
        .collect();
    // Re-applied on the same and on a fresh logic (shared store): nothing changes.
    assert_eq!(
        apply(&mut logic, 2, &cmds[1]),
        SequencerResponse::AlreadyApplied
    );
    let mut other = env.logic();
    assert_eq!(
        apply(&mut other, 4, &cmds[3]),
        SequencerResponse::AlreadyApplied
    );
    assert_eq!(env.epochs.latest_epoch(), 4);
    // Crash after the epoch-log append of entry 5 but before the bookkeeping: roll the
    // sequencer's own state back to entry 4, then re-apply entry 5.
    let before = env
        .store
        .get(Space::Meta, b"candor-seq/s")
        .unwrap()
        .unwrap();
    let c5 = epoch(200, vec![]);
    apply(&mut logic, 5, &c5);
    let h5 = env.epochs.head(5).unwrap().unwrap();
    let mut b = WriteBatch::new();
    b.put(Space::Meta, b"candor-seq/s".to_vec(), before);
    env.store.write(&b, Durability::Sync).unwrap();
    let mut reopened = env.logic();
    assert_eq!(reopened.state().epoch, 4);
    assert_eq!(apply(&mut reopened, 5, &c5), SequencerResponse::Epoch(5));
    assert_eq!(
        env.epochs.head(5).unwrap().unwrap(),
        h5,
        "identical head, no second one"
    );
    assert_eq!(env.epochs.latest_epoch(), 5);
    assert_eq!(reopened.state().epoch, 5);
    for (e, h) in heads.iter().enumerate() {
        assert_eq!(&env.epochs.head(e as u64 + 1).unwrap().unwrap(), h);
    }
}

#[test]
fn wrong_head_key_is_refused() {
    let env = Env::new();
    let err = SequencerLogic::open(
        Arc::clone(&env.store),
        Arc::clone(&env.epochs),
        env.public.clone(),
        Arc::new(SigningKeyPair::from_seed(&[1; 32])),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn malformed_entries_are_rejected_not_fatal() {
    let env = Env::new();
    let mut logic = env.logic();
    let data = vec![0xff; 10];
    let entries = [CommittedEntry {
        log_id: log_id(1),
        data: &data,
    }];
    let out = logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(1),
            marker: b"m",
        })
        .unwrap();
    assert!(matches!(
        SequencerResponse::decode(&out[0]).unwrap(),
        SequencerResponse::Rejected(_)
    ));
    assert_eq!(env.epochs.latest_epoch(), 0);
    assert_eq!(
        apply(&mut logic, 2, &epoch(1, vec![])),
        SequencerResponse::Epoch(1)
    );
}

/// Cosignatures through the log: two replicas applying the same entries hold the
/// same cosignatures; a bad one (tampered, another namespace, an unsigned epoch,
/// malformed) is refused on both without stopping the group; the first cosignature
/// of an auditor for an epoch stays.
#[test]
fn cosignatures_apply_identically_and_bad_ones_are_refused() {
    use candor_core::signed::Cosignature;
    let (a, b) = (Env::new(), Env::new());
    let (mut la, mut lb) = (a.logic(), b.logic());
    let both = |la: &mut SequencerLogic, lb: &mut SequencerLogic, i, cmd: &SequencerCommand| {
        let (ra, rb) = (apply(la, i, cmd), apply(lb, i, cmd));
        assert_eq!(ra, rb, "entry {i}: replicas disagree");
        ra
    };
    for i in 1..=2 {
        both(&mut la, &mut lb, i, &epoch(5, vec![]));
    }
    let head = a.epochs.head(2).unwrap().unwrap();
    let auditor = SigningKeyPair::from_seed(&[8; 32]);
    let good = Cosignature::create(&head.head, &auditor, 100);
    let cosign = |c: Vec<u8>| SequencerCommand::Cosign { cosignature: c };
    assert_eq!(
        both(&mut la, &mut lb, 3, &cosign(good.encode())),
        SequencerResponse::Cosigned(true)
    );
    // Another cosignature of the same auditor and epoch: the first stays.
    let later = Cosignature::create(&head.head, &auditor, 200);
    assert_eq!(
        both(&mut la, &mut lb, 4, &cosign(later.encode())),
        SequencerResponse::Cosigned(false)
    );
    let mut index = 5;
    let mut refuse = |la: &mut SequencerLogic, lb: &mut SequencerLogic, bytes: Vec<u8>| {
        let r = both(la, lb, index, &cosign(bytes));
        index += 1;
        assert!(matches!(r, SequencerResponse::Rejected(_)), "{r:?}");
    };
    // Any altered byte.
    let enc = good.encode();
    for i in 0..enc.len() {
        let mut bad = enc.clone();
        bad[i] ^= 1;
        refuse(&mut la, &mut lb, bad);
    }
    // An epoch not signed yet, another namespace, garbage.
    let mut future = head.head.clone();
    future.epoch = 9;
    refuse(
        &mut la,
        &mut lb,
        Cosignature::create(&future, &auditor, 1).encode(),
    );
    let mut foreign = head.head.clone();
    foreign.namespace = "other".into();
    refuse(
        &mut la,
        &mut lb,
        Cosignature::create(&foreign, &auditor, 1).encode(),
    );
    refuse(&mut la, &mut lb, vec![1, 2, 3]);
    for env in [&a, &b] {
        let stored = env.epochs.cosignatures(2).unwrap();
        assert_eq!(stored, vec![(auditor.public_key().0, good.encode())]);
        assert!(env.epochs.cosignatures(1).unwrap().is_empty());
    }
    // The group goes on.
    assert_eq!(
        both(&mut la, &mut lb, index, &epoch(6, vec![])),
        SequencerResponse::Epoch(3)
    );
}
