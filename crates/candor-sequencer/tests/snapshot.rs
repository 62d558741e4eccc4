//! Sequencer snapshots between members with separate stores: a sequencer built on store
//! A is snapshotted and installed into store B (empty, or holding an older prefix of
//! the same log), after which B's heads, proofs, bookkeeping and epoch-log records equal
//! A's and both continue byte-identically. An install cut off midway (a dropped stream,
//! a store that fails after N writes, power loss right after) leaves B refusing to
//! apply until a full install succeeds; B's old heads stay readable throughout.
//! Seeded (`CANDOR_TEST_SEED`, printed).

mod common;
use common::{key, log_id, public, seed};

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::signed::SignedHead;
use candor_raft::store_snapshot::{RecordStream, Section};
use candor_raft::{ApplyBatch, CommittedEntry, CrashStore, StateMachineLogic};
use candor_sequencer::{SequencerCommand, SequencerLogic, SequencerResponse, ShardRoot};
use candor_store::{
    Direction, Durability, KeyRange, KeyValue, Limits, MemStore, ReadView, Space, Store,
    StoreError, WriteBatch, scan_pages,
};
use candor_tree::EpochLogStore;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BITS: u8 = 3;

fn marker(index: u64) -> Vec<u8> {
    format!("marker-{index}").into_bytes()
}

/// A store that fails every write after the first `left` (as a process whose disk
/// goes away midway).
struct Flaky {
    inner: Arc<CrashStore>,
    left: AtomicU64,
}

impl ReadView for Flaky {
    fn get(&self, space: Space, key: &[u8]) -> candor_store::Result<Option<Vec<u8>>> {
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> candor_store::Result<Vec<KeyValue>> {
        self.inner.scan(space, range, direction, limit)
    }
}

impl Store for Flaky {
    fn write(&self, batch: &WriteBatch, durability: Durability) -> candor_store::Result<()> {
        let ok = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            return Err(StoreError::Unavailable("injected write failure".into()));
        }
        self.inner.write(batch, durability)
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn snapshot(&self) -> candor_store::Result<Box<dyn ReadView>> {
        self.inner.snapshot()
    }
    fn sync(&self) -> candor_store::Result<()> {
        self.inner.sync()
    }
    fn disk_space_bytes(&self) -> candor_store::Result<u64> {
        self.inner.disk_space_bytes()
    }
}

/// One member's store.
struct Node {
    kv: Arc<CrashStore>,
}

/// A process over a store: the epoch-log handle (shared with "the API") and the logic.
struct Proc {
    store: Arc<dyn Store>,
    epochs: Arc<EpochLogStore>,
    logic: SequencerLogic,
}

impl Node {
    fn new() -> Self {
        Self::from(CrashStore::new())
    }

    fn from(kv: CrashStore) -> Self {
        Self { kv: Arc::new(kv) }
    }

    fn open(&self) -> Proc {
        Proc::over(Arc::clone(&self.kv) as Arc<dyn Store>)
    }

    /// A process whose writes fail after `writes` of them.
    fn open_flaky(&self, writes: u64) -> Proc {
        Proc::over(Arc::new(Flaky {
            inner: Arc::clone(&self.kv),
            left: AtomicU64::new(writes),
        }))
    }
}

impl Proc {
    fn over(store: Arc<dyn Store>) -> Self {
        let epochs = Arc::new(EpochLogStore::open(Arc::clone(&store)).unwrap());
        let logic =
            SequencerLogic::open(Arc::clone(&store), Arc::clone(&epochs), public(BITS), key())
                .unwrap();
        Self {
            store,
            epochs,
            logic,
        }
    }

    fn apply_at(
        &mut self,
        first: u64,
        data: &[Vec<u8>],
    ) -> Result<Vec<SequencerResponse>, candor_sequencer::SequencerError> {
        let entries: Vec<CommittedEntry<'_>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| CommittedEntry {
                log_id: log_id(first + i as u64),
                data: d,
            })
            .collect();
        let last = first + data.len() as u64 - 1;
        Ok(self
            .logic
            .apply(ApplyBatch {
                entries: &entries,
                last_log_id: log_id(last),
                marker: &marker(last),
            })?
            .iter()
            .map(|r| SequencerResponse::decode(r).unwrap())
            .collect())
    }

    /// Apply log indices `from..=to` in random batches.
    fn apply_range(&mut self, log: &[Vec<u8>], from: u64, to: u64, rng: &mut StdRng) {
        let mut i = from;
        while i <= to {
            let k = rng.random_range(1..=4u64).min(to - i + 1);
            self.apply_at(i, &log[(i - 1) as usize..(i - 1 + k) as usize])
                .unwrap();
            i += k;
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.logic
            .snapshot()
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }
}

/// A log of `n` entries: epochs moving random shards forward, with stale and unknown
/// shards, backwards clocks and the odd malformed entry.
fn make_log(n: usize, rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut revs = [0u64; 1 << BITS];
    let mut ts = 1_000_000u64;
    (0..n)
        .map(|_| {
            if rng.random_bool(0.05) {
                return vec![0xff; 7];
            }
            let mut shards = Vec::new();
            for _ in 0..rng.random_range(0..4) {
                let s = rng.random_range(0..(1u32 << BITS) + 1);
                let stale = rng.random_bool(0.2);
                let revision = match revs.get_mut(s as usize) {
                    Some(r) if !stale => {
                        *r += rng.random_range(1..4);
                        *r
                    }
                    Some(r) => r.saturating_sub(1),
                    None => 7,
                };
                shards.push(ShardRoot {
                    shard: s,
                    revision,
                    root: rng.random(),
                    leaves: rng.random_range(1..1000),
                });
            }
            ts = if rng.random_bool(0.2) {
                ts - rng.random_range(0..500)
            } else {
                ts + 1000
            };
            SequencerCommand::Epoch {
                timestamp_ms: ts,
                shards,
            }
            .encode()
        })
        .collect()
}

/// Every record of the sequencer's state: its `Meta` records except the Raft marker,
/// and the whole epoch log.
fn records(store: &dyn Store) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
    let mut out = BTreeMap::new();
    for (space, range) in [
        (Space::Meta, KeyRange::prefix(b"candor-seq/")),
        (Space::EpochLog, KeyRange::all()),
    ] {
        for kv in scan_pages(store, space, range, Direction::Forward, 512) {
            let (k, v) = kv.unwrap();
            if space == Space::Meta && k == b"candor-seq/m" {
                continue;
            }
            out.insert((space.tag(), k), v);
        }
    }
    out
}

fn heads(p: &Proc) -> Vec<SignedHead> {
    (1..=p.epochs.latest_epoch())
        .map(|e| p.epochs.head(e).unwrap().expect("head stored"))
        .collect()
}

fn assert_same(a: &Proc, b: &Proc, rng: &mut StdRng) {
    assert_eq!(a.logic.state(), b.logic.state());
    assert_eq!(a.logic.revisions(), b.logic.revisions());
    assert_eq!(a.epochs.latest_epoch(), b.epochs.latest_epoch());
    assert_eq!(heads(a), heads(b));
    assert_eq!(records(&*a.store), records(&*b.store));
    let n = a.epochs.latest_epoch();
    for _ in 0..10.min(n) {
        let second = rng.random_range(1..=n);
        let first = rng.random_range(1..=second);
        let proof = |p: &Proc| HeadExtensionProof {
            consistency: p.epochs.consistency_proof(first, second).unwrap(),
            inclusion: p.epochs.inclusion_proof(first, second).unwrap(),
        };
        let (pa, pb) = (proof(a), proof(b));
        assert_eq!(pa.consistency, pb.consistency);
        assert_eq!(pa.inclusion, pb.inclusion);
        let old = b.epochs.head(first).unwrap().unwrap();
        let new = b.epochs.head(second).unwrap().unwrap();
        verify_head_extension(&old, &new, &pb).unwrap();
    }
    if n > 0 {
        assert_eq!(
            a.epochs.revisions(n).unwrap(),
            b.epochs.revisions(n).unwrap()
        );
    }
}

/// Both continue with entries `from..=log.len()`: byte-identical heads and records.
fn continue_both(a: &mut Proc, b: &mut Proc, log: &[Vec<u8>], from: u64, rng: &mut StdRng) {
    let mut i = from;
    let to = log.len() as u64;
    while i <= to {
        let k = rng.random_range(1..=3u64).min(to - i + 1);
        let d = &log[(i - 1) as usize..(i - 1 + k) as usize];
        assert_eq!(a.apply_at(i, d).unwrap(), b.apply_at(i, d).unwrap());
        i += k;
    }
    assert_same(a, b, rng);
}

/// A's snapshot at `upto` installed into `b_node` (whatever it holds), checked, then
/// both continue.
fn transfer_and_continue(log: &[Vec<u8>], upto: u64, b_node: &Node, rng: &mut StdRng) {
    let a_node = Node::new();
    let mut a = a_node.open();
    a.apply_range(log, 1, upto, rng);
    let snap = a.snapshot();
    let mut b = b_node.open();
    let mut rx = b.logic.subscribe();
    b.logic.restore(&mut &snap[..], &marker(upto)).unwrap();
    assert_eq!(b.logic.applied_marker().unwrap(), Some(marker(upto)));
    assert!(!b.logic.install_pending());
    assert_same(&a, &b, rng);
    // The heads watch publishes the installed head.
    let epoch = a.logic.state().epoch;
    if epoch > 0 {
        assert_eq!(
            rx.borrow_and_update().as_ref(),
            Some(&a.epochs.head(epoch).unwrap().unwrap())
        );
    }
    // A new process over B sees the same.
    let b2 = b_node.open();
    assert_same(&a, &b2, rng);
    assert_eq!(b2.logic.applied_marker().unwrap(), Some(marker(upto)));
    drop(b2);
    continue_both(&mut a, &mut b, log, upto + 1, rng);
}

#[test]
fn install_into_an_empty_store() {
    let s = seed(21);
    let mut rng = StdRng::seed_from_u64(s);
    for upto in [0, 1, 2, 37, 90] {
        let log = make_log(110, &mut rng);
        transfer_and_continue(&log, upto, &Node::new(), &mut rng);
    }
}

#[test]
fn install_over_an_older_prefix() {
    let s = seed(22);
    let mut rng = StdRng::seed_from_u64(s);
    for _ in 0..6 {
        let log = make_log(120, &mut rng);
        let upto = rng.random_range(20..100u64);
        let old = rng.random_range(1..=upto);
        let b_node = Node::new();
        b_node.open().apply_range(&log, 1, old, &mut rng);
        transfer_and_continue(&log, upto, &b_node, &mut rng);
    }
}

/// Fails after `left` bytes, as a transfer cut off midway.
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

/// After a failed install on `b`: either nothing was touched (B applies on from
/// `old`), or B refuses to apply; its old heads are unchanged either way.
fn check_after_failure(b: &mut Proc, log: &[Vec<u8>], old: u64, old_heads: &[SignedHead]) -> bool {
    assert_eq!(&heads(b)[..old_heads.len()], old_heads);
    if b.logic.install_pending() {
        assert_eq!(b.logic.applied_marker().unwrap(), None);
        assert!(
            b.apply_at(old + 1, &log[old as usize..=old as usize])
                .is_err()
        );
        assert!(b.logic.snapshot().is_err());
        true
    } else {
        assert_eq!(b.logic.applied_marker().unwrap(), Some(marker(old)));
        false
    }
}

#[test]
fn interrupted_install_refuses_to_apply_until_installed() {
    let s = seed(23);
    let mut rng = StdRng::seed_from_u64(s);
    let mut pending_seen = 0;
    for round in 0..24 {
        let log = make_log(100, &mut rng);
        let upto = rng.random_range(30..90u64);
        let old = rng.random_range(1..20u64);
        let a_node = Node::new();
        let mut a = a_node.open();
        a.apply_range(&log, 1, upto, &mut rng);
        let snap = a.snapshot();

        let b_node = Node::new();
        let old_heads = {
            let mut b = b_node.open();
            b.apply_range(&log, 1, old, &mut rng);
            heads(&b)
        };
        b_node.kv.sync().unwrap();
        // Even rounds: the stream is cut at a random byte (round 0: inside the header;
        // round 2: right before the end). Odd rounds: B's store fails after a random
        // number of writes (0: the install's first write).
        let what;
        let mut b = if round % 2 == 0 {
            let cut = match round {
                0 => 3,
                2 => snap.len() - 1,
                _ => rng.random_range(8..snap.len()),
            };
            what = format!("cut at byte {cut} of {}", snap.len());
            let mut b = b_node.open();
            let r = b.logic.restore(
                &mut Cut {
                    data: &snap,
                    left: cut,
                },
                &marker(upto),
            );
            assert!(r.is_err(), "round {round}: a cut stream was installed");
            if cut > 200 {
                assert!(b.logic.install_pending(), "round {round}: {what}");
            }
            b
        } else {
            let writes = if round == 1 {
                0
            } else {
                rng.random_range(0..6)
            };
            what = format!("failing after {writes} writes");
            let mut b = b_node.open_flaky(writes);
            if b.logic.restore(&mut &snap[..], &marker(upto)).is_ok() {
                // Enough writes for the whole install.
                assert_same(&a, &b, &mut rng);
                continue;
            }
            assert_eq!(
                b.logic.install_pending(),
                writes > 0,
                "round {round}: {what}"
            );
            b
        };
        eprintln!("round {round}: {what}");
        // The same process refuses to apply (or was not touched).
        let pending = check_after_failure(&mut b, &log, old, &old_heads);
        pending_seen += usize::from(pending);
        drop(b);
        // Power loss right after (only synced writes survive), and a plain restart.
        let crashed = Node::from(b_node.kv.crash_copy().unwrap());
        for node in [&crashed, &b_node] {
            let mut b = node.open();
            assert_eq!(
                check_after_failure(&mut b, &log, old, &old_heads),
                pending,
                "round {round}: {what}"
            );
            b.logic.restore(&mut &snap[..], &marker(upto)).unwrap();
            assert_same(&a, &b, &mut rng);
        }
        let mut b = b_node.open();
        continue_both(&mut a, &mut b, &log, upto + 1, &mut rng);
    }
    assert!(pending_seen > 0);
}

#[test]
fn a_failed_install_is_completed_by_the_same_process() {
    let s = seed(24);
    let mut rng = StdRng::seed_from_u64(s);
    for writes in 1..6 {
        let log = make_log(60, &mut rng);
        let a_node = Node::new();
        let mut a = a_node.open();
        a.apply_range(&log, 1, 50, &mut rng);
        let snap = a.snapshot();
        let b_node = Node::new();
        let flaky = Arc::new(Flaky {
            inner: Arc::clone(&b_node.kv),
            left: AtomicU64::new(u64::MAX),
        });
        let mut b = Proc::over(Arc::clone(&flaky) as Arc<dyn Store>);
        b.apply_range(&log, 1, 10, &mut rng);
        flaky.left.store(writes, Ordering::SeqCst);
        if b.logic.restore(&mut &snap[..], &marker(50)).is_ok() {
            continue;
        }
        assert!(b.logic.install_pending(), "failing after {writes} writes");
        flaky.left.store(u64::MAX, Ordering::SeqCst);
        b.logic.restore(&mut &snap[..], &marker(50)).unwrap();
        assert_same(&a, &b, &mut rng);
        continue_both(&mut a, &mut b, &log, 51, &mut rng);
    }
}

#[test]
fn foreign_forked_and_older_snapshots_are_refused() {
    let s = seed(25);
    let mut rng = StdRng::seed_from_u64(s);
    let log = make_log(40, &mut rng);
    let a_node = Node::new();
    let mut a = a_node.open();
    a.apply_range(&log, 1, 30, &mut rng);
    let snap = a.snapshot();

    // A stream of another state machine's ranges: refused before anything is touched.
    let other = MemStore::new();
    let mut w = WriteBatch::new();
    w.put(Space::Tree, b"N\x00\x01".to_vec(), vec![1; 40]);
    other.write(&w, Durability::Sync).unwrap();
    let mut foreign = Vec::new();
    RecordStream::new(
        other.snapshot().unwrap(),
        vec![Section::new(Space::Tree, KeyRange::all())],
    )
    .read_to_end(&mut foreign)
    .unwrap();
    let b_node = Node::new();
    let mut b = b_node.open();
    b.apply_range(&log, 1, 5, &mut rng);
    assert!(b.logic.restore(&mut &foreign[..], &marker(30)).is_err());
    assert!(!b.logic.install_pending());
    assert_eq!(b.logic.applied_marker().unwrap(), Some(marker(5)));

    // B ahead of the snapshot's epoch log: refused, untouched, B goes on.
    let c_node = Node::new();
    let mut c = c_node.open();
    c.apply_range(&log, 1, 35, &mut rng);
    let before = records(&*c.store);
    assert!(c.logic.restore(&mut &snap[..], &marker(30)).is_err());
    assert!(!c.logic.install_pending());
    assert_eq!(records(&*c.store), before);
    c.apply_at(36, &log[35..36]).unwrap();

    // Garbage: an error, never a panic; a real install afterwards works.
    for at in (0..snap.len()).step_by(97) {
        let mut junk = snap.clone();
        junk[at] ^= 0x41;
        let _ = b.logic.restore(&mut &junk[..], &marker(30));
    }
    b.logic.restore(&mut &snap[..], &marker(30)).unwrap();
    assert_same(&a, &b, &mut rng);

    // A member whose epoch log forked from A's (other heads for the same epochs).
    let forked_log = make_log(10, &mut rng);
    let f_node = Node::new();
    let mut f = f_node.open();
    f.apply_range(&forked_log, 1, 10, &mut rng);
    let f_heads = heads(&f);
    let err = f.logic.restore(&mut &snap[..], &marker(30)).unwrap_err();
    assert!(err.to_string().contains("forked"), "{err}");
    // Its heads were not overwritten, and it applies nothing more.
    assert_eq!(heads(&f), f_heads);
    assert!(f.logic.install_pending());
}

#[test]
fn index_only_snapshots_still_install_on_storage_that_has_the_state() {
    let s = seed(26);
    let mut rng = StdRng::seed_from_u64(s);
    let log = make_log(30, &mut rng);
    let a_node = Node::new();
    let mut a = a_node.open();
    a.apply_range(&log, 1, 20, &mut rng);
    let a = Proc {
        logic: a.logic.with_index_only_snapshots(true),
        ..a
    };
    let snap = a.snapshot();
    assert!(snap.len() < 64, "index-only");
    // Same storage (a restart): accepted, only the marker moves.
    let mut again = a_node.open();
    again.logic.restore(&mut &snap[..], &marker(21)).unwrap();
    assert_eq!(again.logic.applied_marker().unwrap(), Some(marker(21)));
    assert_eq!(again.logic.state(), a.logic.state());
    // A separate store without the state: refused, untouched.
    let b_node = Node::new();
    let mut b = b_node.open();
    // (Opening recorded the first configuration; the refused restore adds nothing.)
    let before = records(&*b.store);
    assert!(b.logic.restore(&mut &snap[..], &marker(21)).is_err());
    assert!(!b.logic.install_pending());
    assert_eq!(records(&*b.store), before);
}
