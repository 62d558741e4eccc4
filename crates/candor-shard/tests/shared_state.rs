//! Shared-state mode ([`ShardLogic::open_shared`]) without FoundationDB: several
//! replicas, each with its own `ShardLogic` and its own `Forest`, apply the same
//! committed entries to ONE store (a `MemStore` or a `FjallStore` in a tempdir) in
//! random interleavings, with restarts and snapshot installs. The store must end
//! byte-identical to applying the log once with one replica (per-replica adapter
//! markers aside), every response a replica returns must equal the single-replica one,
//! and every sealed root must equal `ReferenceMap`'s.
//!
//! Entries are driven through `candor_raft::StateMachineLogic` directly (no Raft
//! runtime). The interleaving comes from a proptest-drawn seed, so a failing case is
//! shrunk and replayed by proptest (regressions file next to this one).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candor_core::Index;
use candor_core::map::{Subtree, shard_of};
use candor_core::reference::ReferenceMap;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::{ApplyBatch, CommittedEntry, LogId, StateMachineLogic};
use candor_shard::{Item, ItemOutcome, ShardCommand, ShardLogic, ShardLogicConfig, ShardResponse};
use candor_store::{
    Direction, Durability, FjallStore, KeyRange, MemStore, Space, Store, WriteBatch,
};
use candor_tree::{Forest, TreeConfig};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BITS: u8 = 1;
const SHARD: u32 = 1;

fn index_of(label: u8) -> Index {
    let mut i = *blake3::hash(&[label]).as_bytes();
    i[0] |= 0x80;
    debug_assert_eq!(shard_of(&i, BITS), SHARD);
    i
}

/// Small limits so idempotency records are evicted (by count and by age) within a
/// test, and the eviction path is part of what must come out identical.
fn config() -> ShardLogicConfig {
    ShardLogicConfig {
        idempotency_max_records: 8,
        idempotency_max_age_ms: 2_000,
        ..ShardLogicConfig::default()
    }
}

fn tree_config() -> TreeConfig {
    TreeConfig {
        shard_bits: BITS,
        ..TreeConfig::default()
    }
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

/// A replica's adapter marker: its id and the last log index (so a marker that
/// leaked to another replica's key is caught).
fn marker(replica: u64, index: u64) -> Vec<u8> {
    let mut m = replica.to_be_bytes().to_vec();
    m.extend_from_slice(&index.to_be_bytes());
    m
}

fn marker_index(replica: u64, m: &[u8]) -> u64 {
    assert_eq!(m.len(), 16, "marker {m:?}");
    assert_eq!(m[..8], replica.to_be_bytes(), "another replica's marker");
    u64::from_be_bytes(m[8..].try_into().unwrap())
}

/// Applies `entries[first-1 .. first-1+n]` (log indices `first..`) as one adapter batch.
fn apply(
    logic: &mut dyn StateMachineLogic<Error = candor_shard::ShardError>,
    entries: &[Vec<u8>],
    first: u64,
    n: usize,
    marker: &[u8],
) -> Result<Vec<ShardResponse>, candor_shard::ShardError> {
    let slice = &entries[(first - 1) as usize..(first - 1) as usize + n];
    let committed: Vec<CommittedEntry<'_>> = slice
        .iter()
        .enumerate()
        .map(|(i, d)| CommittedEntry {
            log_id: log_id(first + i as u64),
            data: d,
        })
        .collect();
    let out = logic.apply(ApplyBatch {
        entries: &committed,
        last_log_id: log_id(first + n as u64 - 1),
        marker,
    })?;
    Ok(out
        .iter()
        .map(|r| ShardResponse::decode(r).unwrap())
        .collect())
}

fn shard_prefix() -> Vec<u8> {
    let mut p = b"candor-shard/".to_vec();
    p.extend_from_slice(&SHARD.to_be_bytes());
    p
}

/// Meta, Tree and Values in full, without the adapter markers (`m`, `m ‖ replica`),
/// which are per replica by design.
fn dump(store: &dyn Store) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
    let mut markers = shard_prefix();
    markers.push(b'm');
    let mut out = BTreeMap::new();
    for space in [Space::Meta, Space::Tree, Space::Values] {
        for (k, v) in store
            .scan(space, &KeyRange::all(), Direction::Forward, usize::MAX)
            .unwrap()
        {
            if space == Space::Meta && k.starts_with(&markers) {
                continue;
            }
            out.insert((space.tag(), k), v);
        }
    }
    out
}

/// One item as drawn: label, value, idempotency key, tenant, and whether a keyed item
/// repeats the label and value of the key's first use (a retry) rather than its own.
type ItemSpec = (u8, u8, Option<u8>, u8, bool);

#[derive(Clone, Debug)]
enum Op {
    Publish(Vec<ItemSpec>),
    Seal,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec(
            (0u8..6, 0u8..3, prop::option::of(0u8..6), 0u8..2, prop::bool::weighted(0.6)),
            1..8,
        )
        .prop_map(Op::Publish),
        1 => Just(Op::Seal),
    ]
}

/// Encodes the log (a final Seal appended): retries copy the key's first label and
/// value, other reuses of a key conflict; nonces are distinct; timestamps advance so
/// records also age out.
fn build_log(ops: &[Op]) -> Vec<Vec<u8>> {
    let mut first_use: HashMap<(u8, u8), (u8, u8)> = HashMap::new();
    let mut nonce_ctr = 0u64;
    let mut log = Vec::new();
    for (e, op) in ops.iter().enumerate() {
        match op {
            Op::Seal => log.push(ShardCommand::Seal.encode()),
            Op::Publish(specs) => {
                let items = specs
                    .iter()
                    .map(|&(label, value, key, tenant, retry)| {
                        let (label, value) = match key {
                            Some(k) if retry => {
                                *first_use.entry((tenant, k)).or_insert((label, value))
                            }
                            Some(k) => {
                                first_use.entry((tenant, k)).or_insert((label, value));
                                (label, value)
                            }
                            None => (label, value),
                        };
                        nonce_ctr += 1;
                        Item {
                            tenant: format!("t{tenant}"),
                            idempotency_key: key.map(|k| format!("k{k}")),
                            label: vec![b'L', label],
                            index: index_of(label),
                            value: vec![value],
                            nonce: *blake3::hash(&nonce_ctr.to_be_bytes()).as_bytes(),
                        }
                    })
                    .collect();
                log.push(
                    ShardCommand::Publish {
                        timestamp_ms: 1_000 + 300 * e as u64,
                        items,
                    }
                    .encode(),
                );
            }
        }
    }
    log.push(ShardCommand::Seal.encode());
    log
}

/// Applying the log once with one replica (embedded mode, one entry per batch).
struct Reference {
    responses: Vec<ShardResponse>,
    dump: BTreeMap<(u8, Vec<u8>), Vec<u8>>,
    /// Root of the shard at each sealed revision, from `ReferenceMap`.
    roots: BTreeMap<u64, Subtree>,
    state: candor_shard::ShardState,
}

fn reference(log: &[Vec<u8>]) -> Reference {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let forest = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let mut logic = ShardLogic::open(&forest, SHARD, config()).unwrap();
    let mut map = ReferenceMap::new();
    let mut roots = BTreeMap::new();
    let mut responses = Vec::new();
    for i in 0..log.len() {
        let r = apply(&mut logic, log, i as u64 + 1, 1, &marker(0, i as u64 + 1))
            .unwrap()
            .remove(0);
        match (ShardCommand::decode(&log[i]).unwrap(), &r) {
            (ShardCommand::Publish { items, .. }, ShardResponse::Published(outs)) => {
                for (it, o) in items.iter().zip(outs) {
                    if let ItemOutcome::Applied { version, prev, .. } = o {
                        let leaf = map.publish(it.index, &it.label, &it.value, Some(it.nonce));
                        assert_eq!((leaf.version, leaf.prev), (*version, *prev));
                    }
                }
            }
            (ShardCommand::Seal, ShardResponse::Sealed { revision, .. }) => {
                roots.insert(*revision, map.shard_root(BITS, SHARD));
            }
            other => panic!("unexpected {other:?}"),
        }
        responses.push(r);
    }
    let tree = logic.tree();
    for (rev, root) in &roots {
        if *rev > 0 {
            assert_eq!(
                tree.root(*rev).unwrap(),
                *root,
                "single replica, revision {rev}"
            );
        }
    }
    Reference {
        responses,
        dump: dump(&*store),
        roots,
        state: logic.state(),
    }
}

struct Replica {
    id: u64,
    /// Kept alive beside the logic, as a replica process would.
    _forest: Forest,
    logic: ShardLogic,
    /// Next log index the adapter would hand it (from its persisted marker).
    next: u64,
}

fn open_replica(store: &Arc<dyn Store>, id: u64) -> Replica {
    let forest = Forest::open(Arc::clone(store), tree_config()).unwrap();
    let logic = ShardLogic::open_shared(&forest, SHARD, id, config()).unwrap();
    assert_eq!(logic.replica(), Some(id));
    let next = logic
        .applied_marker()
        .unwrap()
        .map_or(1, |m| marker_index(id, &m) + 1);
    Replica {
        id,
        _forest: forest,
        logic,
        next,
    }
}

/// Runs `log` through `replicas` replicas over `store` in the interleaving drawn from
/// `seed`, checking every response on the way; returns the replicas at the end.
fn run_shared(
    store: &Arc<dyn Store>,
    log: &[Vec<u8>],
    reference: &Reference,
    replicas: u64,
    seed: u64,
) -> Vec<Replica> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = log.len() as u64;
    let mut reps: Vec<Replica> = (1..=replicas).map(|id| open_replica(store, id)).collect();
    loop {
        let behind: Vec<usize> = (0..reps.len()).filter(|&i| reps[i].next <= n).collect();
        let Some(&r) = behind.get(rng.random_range(0..behind.len().max(1))) else {
            break;
        };
        match rng.random_range(0..12u32) {
            // Restart: a new process (new Forest, new logic) resumes after its marker.
            0 => {
                let id = reps[r].id;
                reps[r] = open_replica(store, id);
            }
            // Install the snapshot of a replica further ahead (openraft sends the
            // snapshot with the sender's applied marker).
            1 => {
                let Some(j) = (0..reps.len()).find(|&j| reps[j].next > reps[r].next) else {
                    continue;
                };
                let snap = snapshot_bytes(&reps[j].logic);
                let upto = reps[j].next - 1;
                let id = reps[r].id;
                reps[r]
                    .logic
                    .restore(&mut &snap[..], &marker(id, upto))
                    .unwrap();
                reps[r].next = upto + 1;
            }
            // Apply the next 1..=4 entries as one batch.
            _ => {
                let rep = &mut reps[r];
                let k = rng.random_range(1..=4u64).min(n - rep.next + 1);
                let last = rep.next + k - 1;
                let got = apply(
                    &mut rep.logic,
                    log,
                    rep.next,
                    k as usize,
                    &marker(rep.id, last),
                )
                .unwrap();
                for (i, g) in got.iter().enumerate() {
                    let li = rep.next + i as u64;
                    assert_eq!(
                        g,
                        &reference.responses[li as usize - 1],
                        "replica {} entry {li}",
                        rep.id
                    );
                }
                rep.next = last + 1;
            }
        }
    }
    reps
}

fn check_store(store: &Arc<dyn Store>, reference: &Reference, reps: &[Replica]) {
    assert!(
        dump(&**store) == reference.dump,
        "the shared store differs from the single-replica store"
    );
    for rep in reps {
        assert_eq!(rep.logic.state(), reference.state, "replica {}", rep.id);
        assert!(rep.logic.pending().is_empty());
        assert_eq!(
            marker_index(rep.id, &rep.logic.applied_marker().unwrap().unwrap()),
            reference.responses.len() as u64
        );
    }
    // Roots of every revision, read through a fresh forest (another process).
    let forest = Forest::open(Arc::clone(store), tree_config()).unwrap();
    let tree = forest.shard(SHARD).unwrap();
    assert_eq!(
        tree.latest_revision(),
        *reference.roots.keys().last().unwrap()
    );
    for (rev, root) in &reference.roots {
        if *rev > 0 {
            assert_eq!(tree.root(*rev).unwrap(), *root, "revision {rev}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replicas_over_one_mem_store_equal_one_replica(
        ops in prop::collection::vec(op(), 1..40),
        replicas in 2u64..=3,
        seed in any::<u64>(),
    ) {
        let log = build_log(&ops);
        let reference = reference(&log);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let reps = run_shared(&store, &log, &reference, replicas, seed);
        check_store(&store, &reference, &reps);
    }
}

proptest! {
    // A tempdir and a fjall keyspace per case: fewer cases.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn replicas_over_one_fjall_store_equal_one_replica(
        ops in prop::collection::vec(op(), 1..40),
        replicas in 2u64..=3,
        seed in any::<u64>(),
    ) {
        let log = build_log(&ops);
        let reference = reference(&log);
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(FjallStore::open(dir.path()).unwrap());
        let reps = run_shared(&store, &log, &reference, replicas, seed);
        check_store(&store, &reference, &reps);
    }
}

/// `entries` single-item publishes (keyed, mostly retries) with a Seal every 7th,
/// then the final Seal.
fn publish_log(entries: u64) -> Vec<Vec<u8>> {
    let ops: Vec<Op> = (0..entries)
        .map(|e| {
            if e % 7 == 6 {
                Op::Seal
            } else {
                let spec = ((e % 5) as u8, (e % 3) as u8, Some((e % 4) as u8), 0, true);
                Op::Publish(vec![spec])
            }
        })
        .collect();
    build_log(&ops)
}

/// A replica lagging by more than `response_retention` entries still skips them: each
/// pruned response is answered `Forgotten` (never an error), retained ones exactly, and
/// nothing but its marker is written.
#[test]
fn lagging_replica_skips_entries_whose_response_was_pruned() {
    let log = publish_log(600);
    let cfg = ShardLogicConfig {
        response_retention: 10,
        ..config()
    };
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let fa = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let fb = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let mut a = ShardLogic::open_shared(&fa, SHARD, 1, cfg.clone()).unwrap();
    let mut b = ShardLogic::open_shared(&fb, SHARD, 2, cfg).unwrap();
    let mut first = Vec::new();
    for i in 1..=log.len() as u64 {
        first.extend(apply(&mut a, &log, i, 1, &marker(1, i)).unwrap());
    }
    let before = dump(&*store);
    let mut forgotten = 0;
    let mut i = 1u64;
    while i <= log.len() as u64 {
        let k = 7.min(log.len() as u64 - i + 1);
        let got = apply(&mut b, &log, i, k as usize, &marker(2, i + k - 1)).unwrap();
        for (j, g) in got.iter().enumerate() {
            let li = i + j as u64;
            if *g == ShardResponse::Forgotten {
                // Retention drops responses in steps of 256 entries.
                assert!(li + 10 <= 512, "entry {li} should still be retained");
                forgotten += 1;
            } else {
                assert_eq!(*g, first[li as usize - 1], "entry {li}");
            }
        }
        i += k;
    }
    assert!(forgotten >= 500, "{forgotten}");
    assert_eq!(dump(&*store), before);
    assert_eq!(b.state(), a.state());
}

/// One replica sealed the tree and stopped before the shard's bookkeeping batch; the
/// other applies the Seal entry: it records that revision instead of sealing another.
#[test]
fn a_seal_half_done_by_one_replica_is_finished_by_another() {
    let log = build_log(&[Op::Publish(vec![
        (1, 0, None, 0, false),
        (2, 0, Some(1), 0, false),
    ])]);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let fa = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let fb = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let mut a = ShardLogic::open_shared(&fa, SHARD, 1, config()).unwrap();
    let mut b = ShardLogic::open_shared(&fb, SHARD, 2, config()).unwrap();
    apply(&mut a, &log, 1, 1, &marker(1, 1)).unwrap();
    // A's seal of entry 2 reached the tree, then A died.
    let leaves: Vec<_> = a.pending().values().copied().collect();
    assert_eq!(a.tree().seal_staged(&leaves).unwrap().revision, 1);
    drop(a);
    // B never applied entry 1: it catches up from the store, then finishes the seal.
    let r = apply(&mut b, &log, 1, 2, &marker(2, 2)).unwrap();
    assert_eq!(
        r[1],
        ShardResponse::Sealed {
            revision: 1,
            changed: 2
        }
    );
    assert_eq!(b.tree().latest_revision(), 1, "no second revision");
    assert_eq!(b.state().sealed_rev, 1);
    // A restarts and applies entry 2 again: skipped, same answer, no revision.
    let mut a = ShardLogic::open_shared(&fa, SHARD, 1, config()).unwrap();
    assert_eq!(
        marker_index(1, &a.applied_marker().unwrap().unwrap()),
        1,
        "A's marker is its own"
    );
    let before = dump(&*store);
    assert_eq!(apply(&mut a, &log, 2, 1, &marker(1, 2)).unwrap(), r[1..]);
    assert_eq!(dump(&*store), before);
    assert_eq!(fa.shard(SHARD).unwrap().latest_revision(), 1);
}

/// Shared-mode snapshots are the applied index alone; installing one needs a store that
/// reached it.
#[test]
fn snapshots_carry_only_the_applied_index() {
    let log = publish_log(20);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let fa = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let mut a = ShardLogic::open_shared(&fa, SHARD, 1, config()).unwrap();
    apply(&mut a, &log, 1, log.len(), &marker(1, log.len() as u64)).unwrap();
    let snap = snapshot_bytes(&a);
    let index = log.len() as u64;
    assert_eq!(snap, postcard_varint(index));

    // Another replica over the same store installs it and continues from there.
    let fb = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let mut b = ShardLogic::open_shared(&fb, SHARD, 2, config()).unwrap();
    b.restore(&mut &snap[..], &marker(2, index)).unwrap();
    assert_eq!(b.state(), a.state());
    assert_eq!(
        marker_index(2, &b.applied_marker().unwrap().unwrap()),
        index
    );
    assert_eq!(
        marker_index(1, &a.applied_marker().unwrap().unwrap()),
        index
    );

    // A replica over a store that has not reached the index refuses it.
    let other: Arc<dyn Store> = Arc::new(MemStore::new());
    let fc = Forest::open(other, tree_config()).unwrap();
    let mut c = ShardLogic::open_shared(&fc, SHARD, 3, config()).unwrap();
    assert!(c.restore(&mut &snap[..], &marker(3, index)).is_err());
    // The embedded-mode snapshot (the whole state) is accepted too.
    let full = snapshot_bytes(&ShardLogic::open(&fa, SHARD, config()).unwrap());
    b.restore(&mut &full[..], &marker(2, index)).unwrap();
}

fn postcard_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A store behind a replica's state (entries it applied are gone) stops the replica
/// instead of silently skipping them.
#[test]
fn a_store_behind_the_replica_is_an_error() {
    let log = publish_log(10);
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let fa = Forest::open(Arc::clone(&store), tree_config()).unwrap();
    let mut a = ShardLogic::open_shared(&fa, SHARD, 1, config()).unwrap();
    apply(&mut a, &log, 1, 5, &marker(1, 5)).unwrap();
    let mut state_key = shard_prefix();
    state_key.push(b's');
    let mut b = WriteBatch::new();
    b.delete(Space::Meta, state_key);
    store.write(&b, Durability::Sync).unwrap();
    assert!(apply(&mut a, &log, 6, 1, &marker(1, 6)).is_err());
}

/// Replicas applying *at the same time* (one thread each) over one store: every entry's
/// batch is a compare-and-set on the state record and every seal one on the tree's
/// marker, so a replica that lost a race catches up and re-applies; the store still
/// ends identical to one replica's. The log's final Seal is applied by each replica in
/// turn after the threads end.
fn run_concurrent(store: &Arc<dyn Store>, log: &[Vec<u8>], reference: &Reference, seed: u64) {
    let n = log.len() as u64 - 1;
    let threads: Vec<_> = (1..=3u64)
        .map(|id| {
            let store = Arc::clone(store);
            let log = log.to_vec();
            let expected = reference.responses.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ id);
                let mut rep = open_replica(&store, id);
                while rep.next <= n {
                    let k = rng.random_range(1..=4u64).min(n - rep.next + 1);
                    let last = rep.next + k - 1;
                    let got = apply(
                        &mut rep.logic,
                        &log,
                        rep.next,
                        k as usize,
                        &marker(id, last),
                    )
                    .unwrap();
                    for (i, g) in got.iter().enumerate() {
                        let li = rep.next + i as u64;
                        assert_eq!(g, &expected[li as usize - 1], "replica {id} entry {li}");
                    }
                    rep.next = last + 1;
                }
                rep
            })
        })
        .collect();
    let mut reps: Vec<Replica> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for rep in &mut reps {
        let last = n + 1;
        let got = apply(&mut rep.logic, log, last, 1, &marker(rep.id, last)).unwrap();
        assert_eq!(got[0], reference.responses[last as usize - 1]);
        rep.next = last + 1;
    }
    check_store(store, reference, &reps);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_replicas_over_one_store_equal_one_replica(
        ops in prop::collection::vec(op(), 1..40),
        seed in any::<u64>(),
        fjall in any::<bool>(),
    ) {
        let log = build_log(&ops);
        let reference = reference(&log);
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = if fjall {
            Arc::new(FjallStore::open(dir.path()).unwrap())
        } else {
            Arc::new(MemStore::new())
        };
        run_concurrent(&store, &log, &reference, seed);
    }
}

/// A logic's snapshot stream, drained.
fn snapshot_bytes(logic: &ShardLogic) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut logic.snapshot().unwrap(), &mut out).unwrap();
    out
}
