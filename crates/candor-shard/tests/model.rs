//! Model-based property test of the shard state machine: random entries (publishes
//! with and without idempotency keys, several tenants, seals) are applied to
//! `ShardLogic` over a `MemStore` and to a plain in-memory model; outcomes must agree
//! exactly, the sealed root must equal the reference map's, and re-applying the whole
//! log changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candor_core::Index;
use candor_core::map::shard_of;
use candor_core::reference::ReferenceMap;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::{ApplyBatch, CommittedEntry, LogId, StateMachineLogic};
use candor_shard::{Item, ItemOutcome, ShardCommand, ShardLogic, ShardLogicConfig, ShardResponse};
use candor_store::{Direction, KeyRange, MemStore, Space, Store};
use candor_tree::{Forest, TreeConfig};
use proptest::prelude::*;

const BITS: u8 = 1;
const SHARD: u32 = 1;

fn index_of(label: u8) -> Index {
    let mut i = *blake3::hash(&[label]).as_bytes();
    i[0] |= 0x80;
    debug_assert_eq!(shard_of(&i, BITS), SHARD);
    i
}

#[derive(Clone, Debug)]
enum Op {
    Publish(Vec<(u8, u8, Option<u8>, u8)>),
    Seal,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 0u8..3, prop::option::of(0u8..5), 0u8..2), 1..12).prop_map(Op::Publish),
        1 => Just(Op::Seal),
    ]
}

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

fn apply(logic: &mut ShardLogic, cmds: &[Vec<u8>], first: u64) -> Vec<ShardResponse> {
    let entries: Vec<CommittedEntry<'_>> = cmds
        .iter()
        .enumerate()
        .map(|(i, d)| CommittedEntry {
            log_id: LogId {
                leader_id: LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index: first + i as u64,
            },
            data: d,
        })
        .collect();
    let last = entries.last().unwrap().log_id;
    logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: last,
            marker: &last.index.to_be_bytes(),
        })
        .unwrap()
        .iter()
        .map(|r| ShardResponse::decode(r).unwrap())
        .collect()
}

/// What the model expects of one item.
#[derive(Debug, PartialEq)]
enum Expect {
    Applied(u64),
    Duplicate(u64),
    Conflict,
    Forbidden,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn shard_logic_matches_the_model(ops in prop::collection::vec(op(), 1..20), batch in 1usize..5) {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let forest = Forest::open(Arc::clone(&store), TreeConfig { shard_bits: BITS, ..TreeConfig::default() }).unwrap();
        let mut logic = ShardLogic::open(&forest, SHARD, ShardLogicConfig::default()).unwrap();

        let mut versions: HashMap<Index, u64> = HashMap::new();
        let mut keys: HashMap<(u8, u8), ((u8, u8), u64)> = HashMap::new();
        // A label belongs to the first tenant that published it.
        let mut owners: HashMap<Index, u8> = HashMap::new();
        let mut reference = ReferenceMap::new();
        let mut nonce_ctr = 0u64;
        let mut cmds = Vec::new();
        let mut expected = Vec::new();
        for op in &ops {
            match op {
                Op::Seal => {
                    cmds.push(ShardCommand::Seal.encode());
                    expected.push(None);
                }
                Op::Publish(items) => {
                    let mut exp = Vec::new();
                    let mut its = Vec::new();
                    for &(label, value, key, tenant) in items {
                        nonce_ctr += 1;
                        let nonce = *blake3::hash(&nonce_ctr.to_be_bytes()).as_bytes();
                        let index = index_of(label);
                        its.push(Item {
                            tenant: format!("t{tenant}"),
                            idempotency_key: key.map(|k| format!("k{k}")),
                            label: vec![b'L', label],
                            index,
                            value: vec![value],
                            nonce,
                        });
                        let e = match key.and_then(|k| keys.get(&(tenant, k))) {
                            Some((lv, v)) if *lv == (label, value) => Expect::Duplicate(*v),
                            Some(_) => Expect::Conflict,
                            None if *owners.entry(index).or_insert(tenant) != tenant => {
                                Expect::Forbidden
                            }
                            None => {
                                let v = versions.entry(index).or_insert(0);
                                *v += 1;
                                if let Some(k) = key {
                                    keys.insert((tenant, k), ((label, value), *v));
                                }
                                reference.publish(index, &[b'L', label], &[value], Some(nonce));
                                Expect::Applied(*v)
                            }
                        };
                        exp.push(e);
                    }
                    cmds.push(ShardCommand::Publish { timestamp_ms: 1, items: its }.encode());
                    expected.push(Some(exp));
                }
            }
        }
        cmds.push(ShardCommand::Seal.encode());
        expected.push(None);

        // Apply in adapter batches of `batch` entries.
        let mut responses = Vec::new();
        for (i, chunk) in cmds.chunks(batch).enumerate() {
            responses.extend(apply(&mut logic, chunk, 1 + (i * batch) as u64));
        }
        for (resp, exp) in responses.iter().zip(&expected) {
            match (resp, exp) {
                (ShardResponse::Sealed { .. }, None) => {}
                (ShardResponse::Published(outs), Some(exp)) => {
                    prop_assert_eq!(outs.len(), exp.len());
                    for (o, e) in outs.iter().zip(exp) {
                        let got = match o {
                            ItemOutcome::Applied { version, .. } => Expect::Applied(*version),
                            ItemOutcome::Duplicate { version, .. } => Expect::Duplicate(*version),
                            ItemOutcome::Conflict => Expect::Conflict,
                            ItemOutcome::Forbidden => Expect::Forbidden,
                            ItemOutcome::Invalid(m) => panic!("invalid: {m}"),
                        };
                        prop_assert_eq!(&got, e);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let tree = logic.tree().clone();
        let rev = tree.latest_revision();
        prop_assert_eq!(tree.root(rev).unwrap(), reference.shard_root(BITS, SHARD));

        // The whole log again, on a fresh logic over the same store: nothing changes.
        let before = dump(&*store);
        let mut again = ShardLogic::open(&forest, SHARD, ShardLogicConfig::default()).unwrap();
        let mut replayed = Vec::new();
        for (i, chunk) in cmds.chunks(batch).enumerate() {
            replayed.extend(apply(&mut again, chunk, 1 + (i * batch) as u64));
        }
        prop_assert_eq!(&replayed, &responses);
        prop_assert_eq!(dump(&*store), before);
    }
}
