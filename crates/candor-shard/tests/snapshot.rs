//! Embedded-mode shard snapshots between separate stores: a shard built on store A is
//! snapshotted and installed into store B (empty, or holding an older state of the
//! shard), after which B's tree, proofs and bookkeeping equal A's and both continue
//! identically. Also: an install cut off midway (crash) leaves B refusing to apply,
//! its old revisions readable, and a later install completes it. Seeded
//! (`CANDOR_TEST_SEED`, printed).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use candor_core::Index;
use candor_core::map::shard_of;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::{ApplyBatch, CommittedEntry, CrashStore, LogId, StateMachineLogic};
use candor_shard::{Item, ShardCommand, ShardLogic, ShardLogicConfig, ShardResponse};
use candor_store::{Direction, KeyRange, Space, Store};
use candor_tree::{Forest, TreeConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BITS: u8 = 2;
const SHARD: u32 = 1;
const OTHER: u32 = 2;

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

fn marker(index: u64) -> Vec<u8> {
    format!("marker-{index}").into_bytes()
}

fn config() -> ShardLogicConfig {
    // Small retention so eviction and response pruning happen in the log.
    ShardLogicConfig {
        idempotency_max_records: 20,
        idempotency_max_age_ms: 1_000_000,
        response_retention: 8,
        ..ShardLogicConfig::default()
    }
}

struct Node {
    kv: Arc<CrashStore>,
    store: Arc<dyn Store>,
}

impl Node {
    fn new() -> Self {
        Self::from(CrashStore::new())
    }

    fn from(kv: CrashStore) -> Self {
        let kv = Arc::new(kv);
        let store: Arc<dyn Store> = Arc::clone(&kv) as Arc<dyn Store>;
        Self { kv, store }
    }

    /// A new process over this store: a fresh forest and logic.
    fn open(&self, shard: u32) -> (Forest, ShardLogic) {
        let forest = Forest::open(
            Arc::clone(&self.store),
            TreeConfig {
                shard_bits: BITS,
                ..TreeConfig::default()
            },
        )
        .unwrap();
        let logic = ShardLogic::open(&forest, shard, config()).unwrap();
        (forest, logic)
    }
}

fn apply_at(
    logic: &mut ShardLogic,
    first: u64,
    cmds: &[ShardCommand],
) -> Result<Vec<ShardResponse>, candor_shard::ShardError> {
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
    Ok(logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(last),
            marker: &marker(last),
        })?
        .iter()
        .map(|r| ShardResponse::decode(r).unwrap())
        .collect())
}

/// Apply `log[from-1 .. to]` (1-based log indices `from..=to`) in random batches.
fn apply_range(logic: &mut ShardLogic, log: &[ShardCommand], from: u64, to: u64, rng: &mut StdRng) {
    let mut i = from;
    while i <= to {
        let k = rng.random_range(1..=4u64).min(to - i + 1);
        apply_at(logic, i, &log[(i - 1) as usize..(i - 1 + k) as usize]).unwrap();
        i += k;
    }
}

fn index_in(shard: u32, rng: &mut StdRng) -> Index {
    let mut idx: Index = rng.random();
    idx[0] = (idx[0] & 0x3F) | ((shard as u8) << 6);
    idx
}

/// A random log for `shard`: publishes (new labels, updates, idempotent retries) and
/// seals.
fn make_log(shard: u32, n: usize, rng: &mut StdRng) -> Vec<ShardCommand> {
    let labels: Vec<(Vec<u8>, Index)> = (0..24)
        .map(|i| {
            (
                format!("label-{shard}-{i}").into_bytes(),
                index_in(shard, rng),
            )
        })
        .collect();
    let mut log = Vec::new();
    for e in 0..n {
        if rng.random_bool(0.25) {
            log.push(ShardCommand::Seal);
            continue;
        }
        let items = (0..rng.random_range(1..=5))
            .map(|_| {
                let (label, index) = labels[rng.random_range(0..labels.len())].clone();
                let key = rng
                    .random_bool(0.5)
                    .then(|| format!("k{}", rng.random_range(0..30)));
                Item {
                    tenant: "t".into(),
                    idempotency_key: key,
                    label,
                    index,
                    value: vec![rng.random(); rng.random_range(1..200)],
                    nonce: rng.random(),
                }
            })
            .collect();
        log.push(ShardCommand::Publish {
            timestamp_ms: 1000 + e as u64,
            items,
        });
    }
    log
}

/// The keys that belong to `shard` (as the snapshot defines them), Raft markers aside.
fn shard_keys(store: &dyn Store, shard: u32) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
    let mut out = BTreeMap::new();
    let s16 = (shard as u16).to_be_bytes();
    let mut tree_marker = b"candor-tree/shard/".to_vec();
    tree_marker.extend_from_slice(&s16);
    let mut own = b"candor-shard/".to_vec();
    own.extend_from_slice(&shard.to_be_bytes());
    for space in [Space::Meta, Space::Tree, Space::Values] {
        for (k, v) in store
            .scan(space, &KeyRange::all(), Direction::Forward, usize::MAX)
            .unwrap()
        {
            let mine = match space {
                Space::Tree => match k[0] {
                    b'N' | b'R' => k[1..3] == s16,
                    b'L' => shard_of(&k[1..33].try_into().unwrap(), BITS) == shard,
                    _ => panic!("unknown tree key {k:?}"),
                },
                Space::Meta => {
                    k == tree_marker
                        || (k.starts_with(&own) && k.get(own.len()) != Some(&b'm'))
                        || k == [&b"candor-shard-install/"[..], &shard.to_be_bytes()].concat()
                }
                _ => true,
            };
            if mine {
                out.insert((space.tag(), k), v);
            }
        }
    }
    out
}

fn snapshot_bytes(logic: &ShardLogic) -> Vec<u8> {
    let mut out = Vec::new();
    logic.snapshot().unwrap().read_to_end(&mut out).unwrap();
    out
}

/// Everything observable of the shard through `a` and `b` agrees.
fn assert_same(a: &ShardLogic, b: &ShardLogic, sa: &dyn Store, sb: &dyn Store, labels: &[Index]) {
    assert_eq!(a.state(), b.state(), "shard state");
    assert_eq!(a.pending(), b.pending(), "pending set");
    let ta = a.tree();
    let tb = b.tree();
    assert_eq!(
        ta.latest_revision(),
        tb.latest_revision(),
        "latest revision"
    );
    for rev in 0..=ta.latest_revision() {
        assert_eq!(
            ta.root(rev).unwrap(),
            tb.root(rev).unwrap(),
            "root at {rev}"
        );
        for idx in labels {
            assert_eq!(
                ta.path(rev, idx).unwrap(),
                tb.path(rev, idx).unwrap(),
                "path at {rev}"
            );
            assert_eq!(ta.leaf_at(rev, idx).unwrap(), tb.leaf_at(rev, idx).unwrap());
        }
    }
    for idx in labels {
        assert_eq!(ta.versions(idx).unwrap(), tb.versions(idx).unwrap());
    }
    assert_eq!(
        shard_keys(sa, SHARD),
        shard_keys(sb, SHARD),
        "stored records"
    );
}

fn labels_of(log: &[ShardCommand]) -> Vec<Index> {
    let mut v: Vec<Index> = log
        .iter()
        .flat_map(|c| match c {
            ShardCommand::Publish { items, .. } => items.iter().map(|i| i.index).collect(),
            ShardCommand::Seal | ShardCommand::Erase { .. } => Vec::new(),
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Build A to `upto`, install its snapshot on `b`, then run both to the end of the log.
fn transfer_and_continue(log: &[ShardCommand], upto: u64, b_node: &Node, rng: &mut StdRng) {
    let a_node = Node::new();
    let (_fa, mut a) = a_node.open(SHARD);
    apply_range(&mut a, log, 1, upto, rng);
    // Another shard's data on A must not travel.
    let other = make_log(OTHER, 10, rng);
    let (_fo, mut ao) = a_node.open(OTHER);
    apply_range(&mut ao, &other, 1, 10, rng);

    let before_other = shard_keys(&*b_node.store, OTHER);
    let snap = snapshot_bytes(&a);
    let (_fb, mut b) = b_node.open(SHARD);
    b.restore(&mut &snap[..], &marker(upto)).unwrap();
    assert_eq!(b.applied_marker().unwrap(), Some(marker(upto)));
    let labels = labels_of(log);
    assert_same(&a, &b, &*a_node.store, &*b_node.store, &labels);
    assert_eq!(
        shard_keys(&*b_node.store, OTHER),
        before_other,
        "other shard untouched"
    );

    // A new process on B sees the same, and both continue identically.
    let (_fb2, mut b2) = b_node.open(SHARD);
    assert_same(&a, &b2, &*a_node.store, &*b_node.store, &labels);
    let n = log.len() as u64;
    for i in upto + 1..=n {
        let cmd = &log[(i - 1) as usize..i as usize];
        let ra = apply_at(&mut a, i, cmd).unwrap();
        let rb = apply_at(&mut b2, i, cmd).unwrap();
        assert_eq!(ra, rb, "entry {i}");
    }
    assert_same(&a, &b2, &*a_node.store, &*b_node.store, &labels);
}

#[test]
fn install_into_an_empty_store() {
    let s = seed(11);
    let mut rng = StdRng::seed_from_u64(s);
    let log = make_log(SHARD, 120, &mut rng);
    let upto = rng.random_range(40..100);
    transfer_and_continue(&log, upto, &Node::new(), &mut rng);
}

#[test]
fn install_over_an_older_state() {
    let s = seed(12);
    let mut rng = StdRng::seed_from_u64(s);
    for _ in 0..4 {
        let log = make_log(SHARD, 120, &mut rng);
        let upto = rng.random_range(40..100);
        let old = rng.random_range(1..upto);
        // B applied a prefix of the same log (and has data of another shard).
        let b_node = Node::new();
        {
            let (_f, mut b) = b_node.open(SHARD);
            apply_range(&mut b, &log, 1, old, &mut rng);
            let other = make_log(OTHER, 5, &mut rng);
            let (_fo, mut bo) = b_node.open(OTHER);
            apply_range(&mut bo, &other, 1, 5, &mut rng);
        }
        transfer_and_continue(&log, upto, &b_node, &mut rng);
    }
}

/// Fails after `left` bytes, as a transfer or a process cut off midway.
struct Cut<'a> {
    data: &'a [u8],
    left: usize,
}

impl Read for Cut<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("cut"));
        }
        let n = out.len().min(self.left).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn interrupted_install_is_not_served_and_completes_later() {
    let s = seed(13);
    let mut rng = StdRng::seed_from_u64(s);
    for round in 0..6 {
        let log = make_log(SHARD, 100, &mut rng);
        let upto = 90;
        let old = rng.random_range(5..60);
        let a_node = Node::new();
        let (_fa, mut a) = a_node.open(SHARD);
        apply_range(&mut a, &log, 1, upto, &mut rng);
        let snap = snapshot_bytes(&a);

        let b_node = Node::new();
        let (old_rev, old_root) = {
            let (_f, mut b) = b_node.open(SHARD);
            apply_range(&mut b, &log, 1, old, &mut rng);
            let rev = b.tree().latest_revision();
            (rev, b.tree().root(rev).unwrap())
        };
        b_node.kv.sync().unwrap();
        // Cut somewhere (round 0: inside the header; the last round: right before the end).
        let cut = match round {
            0 => 3,
            5 => snap.len() - 1,
            _ => rng.random_range(8..snap.len()),
        };
        {
            let (_f, mut b) = b_node.open(SHARD);
            let r = b.restore(
                &mut Cut {
                    data: &snap,
                    left: cut,
                },
                &marker(upto),
            );
            assert!(
                r.is_err(),
                "a cut stream was installed (round {round}, cut {cut})"
            );
        }
        // Power loss right after (only synced writes survive), then a new process.
        let crashed = Node::from(b_node.kv.crash_copy().unwrap());
        for node in [&b_node, &crashed] {
            let (_f, mut b) = node.open(SHARD);
            let tree = b.tree();
            // Readers of revisions it had still see them unchanged.
            assert_eq!(tree.root(old_rev).unwrap(), old_root, "round {round}");
            if cut > 8 {
                // An install had started: no marker, and no applying until installed.
                assert_eq!(b.applied_marker().unwrap(), None, "round {round}");
                assert!(apply_at(&mut b, old + 1, &log[old as usize..old as usize + 1]).is_err());
            }
            b.restore(&mut &snap[..], &marker(upto)).unwrap();
            assert_same(&a, &b, &*a_node.store, &*node.store, &labels_of(&log));
            for i in upto + 1..=log.len() as u64 {
                let cmd = &log[(i - 1) as usize..i as usize];
                apply_at(&mut b, i, cmd).unwrap();
            }
        }
    }
}

#[test]
fn foreign_records_are_refused() {
    let s = seed(14);
    let mut rng = StdRng::seed_from_u64(s);
    let log = make_log(SHARD, 30, &mut rng);
    let a_node = Node::new();
    let (_fa, mut a) = a_node.open(SHARD);
    apply_range(&mut a, &log, 1, 30, &mut rng);
    let snap = snapshot_bytes(&a);
    // The same stream offered to another shard's logic: every record is outside it.
    let b_node = Node::new();
    let (_f, mut other) = b_node.open(OTHER);
    assert!(other.restore(&mut &snap[..], &marker(30)).is_err());
    // ... and refused before it touched anything.
    assert!(shard_keys(&*b_node.store, OTHER).is_empty());
    // Garbage is an error, never a panic.
    let (_f2, mut b) = b_node.open(SHARD);
    let mut junk = snap.clone();
    let at = junk.len() / 2;
    junk[at] ^= 0x55;
    assert!(b.restore(&mut &junk[..], &marker(30)).is_err());
    b.restore(&mut &snap[..], &marker(30)).unwrap();
    assert_same(&a, &b, &*a_node.store, &*b_node.store, &labels_of(&log));
}
