//! The backend conformance suite (feature `test-util`).
//!
//! Every backend's tests call [`run_conformance`] with a [`StoreFactory`]; it panics (test
//! failure) with a description of the first broken rule. Each rule is also a public
//! function, so a failing one can be run alone. Randomised checks use a fixed seed, so a
//! failure is reproducible.
//!
//! ```ignore
//! #[test]
//! fn conformance() {
//!     candor_store::conformance::run_conformance(candor_store::conformance::MemFactory::default());
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{
    Direction, Durability, FjallConfig, FjallStore, KeyRange, KeyValue, MemStore, ReadView,
    SizeKind, Space, Store, StoreError, WriteBatch, scan_pages,
};

/// Makes stores for the suite.
pub trait StoreFactory {
    /// The store type.
    type Store: Store;

    /// A new, empty store, independent of every store made before.
    fn create(&mut self) -> Self::Store;

    /// Opens again the store most recently made by [`StoreFactory::create`]. The suite has
    /// dropped every handle to it before calling this (as a restarted process would).
    fn reopen(&mut self) -> Self::Store;
}

/// Factory for [`MemStore`]: "reopen" hands out the same shared data again.
#[derive(Default)]
pub struct MemFactory {
    last: Option<MemStore>,
}

impl StoreFactory for MemFactory {
    type Store = MemStore;

    fn create(&mut self) -> MemStore {
        let s = MemStore::new();
        self.last = Some(s.clone());
        s
    }

    fn reopen(&mut self) -> MemStore {
        self.last.clone().unwrap_or_default()
    }
}

/// Factory for [`FjallStore`] in fresh temporary directories (removed when the factory is
/// dropped).
pub struct FjallFactory {
    config: FjallConfig,
    dirs: Vec<tempfile::TempDir>,
}

impl Default for FjallFactory {
    fn default() -> Self {
        // Small cache and memtables so the suite also exercises flushes to table files.
        Self::with_config(FjallConfig {
            cache_bytes: 8 << 20,
            memtable_bytes: 4 << 20,
            ..FjallConfig::default()
        })
    }
}

impl FjallFactory {
    /// Stores opened with `config`.
    pub fn with_config(config: FjallConfig) -> Self {
        FjallFactory {
            config,
            dirs: Vec::new(),
        }
    }
}

impl StoreFactory for FjallFactory {
    type Store = FjallStore;

    fn create(&mut self) -> FjallStore {
        let dir = tempfile::tempdir().expect("create temp dir");
        let s = FjallStore::open_with(dir.path(), self.config.clone()).expect("open fjall store");
        self.dirs.push(dir);
        s
    }

    fn reopen(&mut self) -> FjallStore {
        let dir = self.dirs.last().expect("reopen before create");
        FjallStore::open_with(dir.path(), self.config.clone()).expect("reopen fjall store")
    }
}

/// SplitMix64: a tiny deterministic RNG for reproducible test data.
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        TestRng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// A short key over a tiny alphabet rich in 0x00 and 0xFF, so keys often share
    /// prefixes and sit on prefix boundaries.
    pub fn edge_key(&mut self) -> Vec<u8> {
        const ALPHABET: [u8; 5] = [0x00, 0x01, 0x7F, 0xFE, 0xFF];
        let len = 1 + self.below(4) as usize;
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
}

/// Runs every rule against stores from `factory`. Panics on the first violation.
pub fn run_conformance<F: StoreFactory>(mut factory: F) {
    empty_store(&factory.create());
    read_your_writes(&factory.create());
    spaces_are_disjoint(&factory.create());
    batch_ops_apply_in_order(&factory.create());
    delete_and_delete_range(&factory.create());
    binary_keys(&factory.create());
    long_keys_in_reads(&factory.create());
    scan_order_bounds_limits(&factory.create());
    get_le_edge_cases(&factory.create());
    limits_reject_whole_batch(&factory.create());
    snapshot_isolation(&factory.create());
    random_batches_match_model(&factory.create(), 0xC0FFEE);
    concurrent_readers_never_see_partial_batches(factory.create());
    preconditions_guard_writes(&factory.create());
    compare_and_set_under_contention(factory.create());
    disk_space_reported(&factory.create());
    reopen_keeps_acknowledged_writes(&mut factory);
    chunked_write_larger_than_a_transaction(&mut factory);
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put1<S: Store + ?Sized>(s: &S, space: Space, k: &[u8], val: &[u8]) {
    let mut b = WriteBatch::new();
    b.put(space, k, val);
    s.write(&b, Durability::Buffered).expect("write");
}

fn keys(kvs: &[KeyValue]) -> Vec<Vec<u8>> {
    kvs.iter().map(|(k, _)| k.clone()).collect()
}

/// An empty store reads as empty everywhere.
pub fn empty_store<S: Store>(s: &S) {
    for space in Space::ALL {
        assert_eq!(s.get(space, b"a").unwrap(), None);
        for dir in [Direction::Forward, Direction::Reverse] {
            assert!(s.scan(space, &KeyRange::all(), dir, 10).unwrap().is_empty());
        }
        assert_eq!(s.get_le(space, b"\xff\xff", b"").unwrap(), None);
    }
    // An empty batch is fine.
    s.write(&WriteBatch::new(), Durability::Sync).unwrap();
}

/// A write is visible to the next read; a put overwrites; values may be empty.
pub fn read_your_writes<S: Store>(s: &S) {
    put1(s, Space::Tree, b"k", b"one");
    assert_eq!(s.get(Space::Tree, b"k").unwrap(), Some(v("one")));
    put1(s, Space::Tree, b"k", b"two");
    assert_eq!(s.get(Space::Tree, b"k").unwrap(), Some(v("two")));
    put1(s, Space::Tree, b"empty", b"");
    assert_eq!(s.get(Space::Tree, b"empty").unwrap(), Some(vec![]));
    let mut b = WriteBatch::new();
    b.put(Space::Meta, b"sync", b"s");
    s.write(&b, Durability::Sync).unwrap();
    assert_eq!(s.get(Space::Meta, b"sync").unwrap(), Some(v("s")));
    // Empty key reads as absent rather than failing.
    assert_eq!(s.get(Space::Tree, b"").unwrap(), None);
}

/// The same key in two spaces are two entries; ranges never cross spaces.
pub fn spaces_are_disjoint<S: Store>(s: &S) {
    let mut b = WriteBatch::new();
    for (i, space) in Space::ALL.into_iter().enumerate() {
        b.put(space, b"same", vec![i as u8]);
    }
    s.write(&b, Durability::Buffered).unwrap();
    for (i, space) in Space::ALL.into_iter().enumerate() {
        assert_eq!(s.get(space, b"same").unwrap(), Some(vec![i as u8]));
        assert_eq!(
            s.scan(space, &KeyRange::all(), Direction::Forward, 100)
                .unwrap(),
            vec![(v("same"), vec![i as u8])]
        );
    }
    let mut b = WriteBatch::new();
    b.delete_range(Space::Tree, KeyRange::all());
    s.write(&b, Durability::Buffered).unwrap();
    assert_eq!(s.get(Space::Tree, b"same").unwrap(), None);
    assert_eq!(s.get(Space::Meta, b"same").unwrap(), Some(vec![0]));
}

/// Operations of one batch take effect in order; the net effect is what counts.
pub fn batch_ops_apply_in_order<S: Store>(s: &S) {
    put1(s, Space::Tree, b"r1", b"old");
    put1(s, Space::Tree, b"r3", b"old");
    let mut b = WriteBatch::new();
    b.put(Space::Tree, b"a", b"1")
        .delete(Space::Tree, b"a") // put then delete: absent
        .delete(Space::Tree, b"b")
        .put(Space::Tree, b"b", b"2") // delete then put: present
        .put(Space::Tree, b"c", b"x")
        .put(Space::Tree, b"c", b"3") // last put wins
        .put(Space::Tree, b"r2", b"new") // put in range, then range deleted: absent
        .delete_range(Space::Tree, KeyRange::half_open(v("r"), v("s")))
        .put(Space::Tree, b"r3", b"after"); // put after range delete: present
    s.write(&b, Durability::Sync).unwrap();
    assert_eq!(s.get(Space::Tree, b"a").unwrap(), None);
    assert_eq!(s.get(Space::Tree, b"b").unwrap(), Some(v("2")));
    assert_eq!(s.get(Space::Tree, b"c").unwrap(), Some(v("3")));
    assert_eq!(s.get(Space::Tree, b"r1").unwrap(), None);
    assert_eq!(s.get(Space::Tree, b"r2").unwrap(), None);
    assert_eq!(s.get(Space::Tree, b"r3").unwrap(), Some(v("after")));
    let all = s
        .scan(Space::Tree, &KeyRange::all(), Direction::Forward, 100)
        .unwrap();
    assert_eq!(keys(&all), vec![v("b"), v("c"), v("r3")]);
}

/// Point deletes, range deletes with every bound shape, prefix deletes.
pub fn delete_and_delete_range<S: Store>(s: &S) {
    let fill = |s: &S| {
        let mut b = WriteBatch::new();
        for k in [
            &b"a"[..],
            b"b",
            b"b\x00",
            b"ba",
            b"b\xff",
            b"b\xff\xff",
            b"c",
            b"\xff",
            b"\xff\xff",
        ] {
            b.put(Space::Tree, k, b"v");
        }
        s.write(&b, Durability::Buffered).unwrap();
    };
    let remaining = |s: &S| {
        keys(
            &s.scan(Space::Tree, &KeyRange::all(), Direction::Forward, 100)
                .unwrap(),
        )
    };
    let cases: Vec<(KeyRange, Vec<&[u8]>)> = vec![
        (
            KeyRange::prefix(b"b"),
            vec![b"a", b"c", b"\xff", b"\xff\xff"],
        ),
        (
            KeyRange::prefix(b"b\xff"),
            vec![b"a", b"b", b"b\x00", b"ba", b"c", b"\xff", b"\xff\xff"],
        ),
        (
            KeyRange::prefix(b"\xff"),
            vec![b"a", b"b", b"b\x00", b"ba", b"b\xff", b"b\xff\xff", b"c"],
        ),
        (
            KeyRange::half_open(v("b"), v("ba")),
            vec![
                b"a",
                b"ba",
                b"b\xff",
                b"b\xff\xff",
                b"c",
                b"\xff",
                b"\xff\xff",
            ],
        ),
        (
            KeyRange::inclusive(v("b"), v("ba")),
            vec![b"a", b"b\xff", b"b\xff\xff", b"c", b"\xff", b"\xff\xff"],
        ),
        (
            KeyRange::from_bounds(
                std::ops::Bound::Excluded(b"b"),
                std::ops::Bound::Excluded(b"c"),
            ),
            vec![b"a", b"b", b"c", b"\xff", b"\xff\xff"],
        ),
        (
            KeyRange::at_least(v("c")),
            vec![b"a", b"b", b"b\x00", b"ba", b"b\xff", b"b\xff\xff"],
        ),
        (
            KeyRange::below(v("b\x00")),
            vec![
                b"b\x00",
                b"ba",
                b"b\xff",
                b"b\xff\xff",
                b"c",
                b"\xff",
                b"\xff\xff",
            ],
        ),
        // Empty and inverted ranges delete nothing.
        (
            KeyRange::half_open(v("c"), v("b")),
            vec![
                b"a",
                b"b",
                b"b\x00",
                b"ba",
                b"b\xff",
                b"b\xff\xff",
                b"c",
                b"\xff",
                b"\xff\xff",
            ],
        ),
        (
            KeyRange::half_open(v("b"), v("b")),
            vec![
                b"a",
                b"b",
                b"b\x00",
                b"ba",
                b"b\xff",
                b"b\xff\xff",
                b"c",
                b"\xff",
                b"\xff\xff",
            ],
        ),
        (KeyRange::all(), vec![]),
    ];
    for (range, want) in cases {
        fill(s);
        let mut b = WriteBatch::new();
        b.delete_range(Space::Tree, range.clone());
        s.write(&b, Durability::Buffered).unwrap();
        let want: Vec<Vec<u8>> = want.into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(remaining(s), want, "after delete_range({range:?})");
        let mut b = WriteBatch::new();
        b.delete_range(Space::Tree, KeyRange::all());
        s.write(&b, Durability::Buffered).unwrap();
    }
    fill(s);
    let mut b = WriteBatch::new();
    b.delete(Space::Tree, b"b")
        .delete(Space::Tree, b"never-existed");
    s.write(&b, Durability::Buffered).unwrap();
    assert_eq!(s.get(Space::Tree, b"b").unwrap(), None);
    assert_eq!(s.get(Space::Tree, b"b\x00").unwrap(), Some(v("v")));
    let mut b = WriteBatch::new();
    b.delete_prefix(Space::Tree, b"");
    s.write(&b, Durability::Buffered).unwrap();
    assert!(remaining(s).is_empty());
}

/// Keys are compared as unsigned bytes, 0x00 and 0xFF included, and keys that are
/// prefixes of each other are distinct.
pub fn binary_keys<S: Store>(s: &S) {
    let ks: Vec<&[u8]> = vec![
        b"\x00",
        b"\x00\x00",
        b"\x00\xff",
        b"\x01",
        b"\x7f",
        b"\x80",
        b"\xfe\xff\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
        b"\xff\xff\xff",
    ];
    let mut b = WriteBatch::new();
    for (i, k) in ks.iter().enumerate().rev() {
        b.put(Space::Values, *k, vec![i as u8; i]);
    }
    s.write(&b, Durability::Sync).unwrap();
    let fwd = s
        .scan(Space::Values, &KeyRange::all(), Direction::Forward, 100)
        .unwrap();
    let want: Vec<Vec<u8>> = ks.iter().map(|k| k.to_vec()).collect();
    assert_eq!(keys(&fwd), want);
    for (i, (_, val)) in fwd.iter().enumerate() {
        assert_eq!(val, &vec![i as u8; i]);
    }
    let rev = s
        .scan(Space::Values, &KeyRange::all(), Direction::Reverse, 100)
        .unwrap();
    let mut want_rev = want.clone();
    want_rev.reverse();
    assert_eq!(keys(&rev), want_rev);
    assert_eq!(
        keys(
            &s.scan(
                Space::Values,
                &KeyRange::prefix(b"\xff"),
                Direction::Forward,
                100
            )
            .unwrap()
        ),
        want[7..].to_vec()
    );
    assert_eq!(
        keys(
            &s.scan(
                Space::Values,
                &KeyRange::prefix(b"\x00"),
                Direction::Reverse,
                100
            )
            .unwrap()
        ),
        vec![vec![0x00, 0xff], vec![0x00, 0x00], vec![0x00]]
    );
    for k in &ks {
        assert!(s.get(Space::Values, k).unwrap().is_some());
    }
}

/// Reads accept keys and bounds of any length (longer than any storable key) and answer
/// them exactly.
pub fn long_keys_in_reads<S: Store>(s: &S) {
    let max = s.limits().max_key_bytes;
    let mut b = WriteBatch::new();
    b.put(Space::Tree, vec![0xFF; max], b"top")
        .put(Space::Tree, vec![0x00; max], b"bottom")
        .put(Space::Tree, b"\x80", b"mid");
    s.write(&b, Durability::Buffered).unwrap();
    let huge_ff = vec![0xFF; 70_000];
    let huge_00 = vec![0x00; 70_000];
    assert_eq!(s.get(Space::Tree, &huge_ff).unwrap(), None);
    assert_eq!(
        s.get_le(Space::Tree, &huge_ff, b"").unwrap(),
        Some((vec![0xFF; max], v("top")))
    );
    assert_eq!(s.get_le(Space::Tree, &huge_ff, &huge_ff).unwrap(), None);
    assert_eq!(
        s.get_le(Space::Tree, b"\xfe", &huge_00).unwrap(),
        Some((vec![0x80], v("mid")))
    );
    assert_eq!(
        s.get_le(Space::Tree, &huge_00, b"").unwrap(),
        Some((vec![0x00; max], v("bottom")))
    );
    let scan = |r: KeyRange, d: Direction| keys(&s.scan(Space::Tree, &r, d, 10).unwrap());
    assert_eq!(
        scan(KeyRange::at_least(huge_00.clone()), Direction::Forward),
        vec![vec![0x80], vec![0xFF; max]]
    );
    assert_eq!(
        scan(KeyRange::below(huge_ff.clone()), Direction::Reverse),
        vec![vec![0xFF; max], vec![0x80], vec![0x00; max]]
    );
    assert_eq!(
        scan(
            KeyRange::inclusive(huge_00.clone(), huge_ff.clone()),
            Direction::Forward
        )
        .len(),
        2
    );
    assert!(scan(KeyRange::prefix(&huge_ff), Direction::Forward).is_empty());
    assert_eq!(
        scan(KeyRange::prefix(&huge_00[..max]), Direction::Forward),
        vec![vec![0x00; max]]
    );
    // Range-delete bounds, unlike read bounds, are checked against the key limit.
    let mut b = WriteBatch::new();
    b.delete_range(Space::Tree, KeyRange::at_least(huge_00));
    assert!(matches!(
        s.write(&b, Durability::Buffered),
        Err(StoreError::TooLarge {
            what: SizeKind::Key,
            ..
        })
    ));
    let mut b = WriteBatch::new();
    b.delete_range(Space::Tree, KeyRange::at_least(vec![0x01]));
    s.write(&b, Durability::Buffered).unwrap();
    assert_eq!(
        scan(KeyRange::all(), Direction::Forward),
        vec![vec![0x00; max]]
    );
}

fn model_scan(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    range: &KeyRange,
    dir: Direction,
    limit: usize,
) -> Vec<KeyValue> {
    if range.is_empty() {
        return vec![];
    }
    let it = model.range::<[u8], _>(range.as_bounds());
    let c = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
    match dir {
        Direction::Forward => it.take(limit).map(c).collect(),
        Direction::Reverse => it.rev().take(limit).map(c).collect(),
    }
}

fn random_direction(rng: &mut TestRng) -> Direction {
    if rng.below(2) == 0 {
        Direction::Forward
    } else {
        Direction::Reverse
    }
}

fn random_range(rng: &mut TestRng) -> KeyRange {
    use std::ops::Bound;
    let a = rng.edge_key();
    let b = rng.edge_key();
    let bound = |rng: &mut TestRng, k: &[u8]| -> Vec<u8> {
        match rng.below(3) {
            0 => vec![],
            _ => k.to_vec(),
        }
    };
    let (a, b) = (bound(rng, &a), bound(rng, &b));
    let sb = match (rng.below(3), a.is_empty()) {
        (_, true) => Bound::Unbounded,
        (0, _) => Bound::Excluded(a.as_slice()),
        _ => Bound::Included(a.as_slice()),
    };
    let eb = match (rng.below(3), b.is_empty()) {
        (_, true) => Bound::Unbounded,
        (0, _) => Bound::Included(b.as_slice()),
        _ => Bound::Excluded(b.as_slice()),
    };
    match rng.below(6) {
        0 => {
            let mut p = rng.edge_key();
            p.truncate(1 + rng.below(2) as usize);
            KeyRange::prefix(&p)
        }
        _ => KeyRange::from_bounds(sb, eb),
    }
}

/// Scans return keys in order, respect both bounds (every bound shape) and the limit,
/// forward and reverse; paging with `scan_pages` sees every key exactly once.
pub fn scan_order_bounds_limits<S: Store>(s: &S) {
    let mut rng = TestRng::new(7);
    let mut model = BTreeMap::new();
    let mut b = WriteBatch::new();
    for _ in 0..300 {
        let k = rng.edge_key();
        let len = rng.below(40) as usize;
        let val = rng.bytes(len);
        model.insert(k.clone(), val.clone());
        b.put(Space::Tree, k, val);
    }
    s.write(&b, Durability::Buffered).unwrap();
    for _ in 0..2000 {
        let range = random_range(&mut rng);
        let dir = random_direction(&mut rng);
        let limit = match rng.below(4) {
            0 => 0,
            1 => 1,
            2 => rng.below(10) as usize,
            _ => 1000,
        };
        assert_eq!(
            s.scan(Space::Tree, &range, dir, limit).unwrap(),
            model_scan(&model, &range, dir, limit),
            "scan({range:?}, {dir:?}, {limit})"
        );
    }
    // scan_each: the same entries in the same order, stopping where the visitor says,
    // and a visitor's error ends the visit and comes back unchanged.
    for _ in 0..500 {
        let range = random_range(&mut rng);
        let dir = random_direction(&mut rng);
        let stop = match rng.below(3) {
            0 => rng.below(5) as usize,
            _ => usize::MAX,
        };
        let mut got = Vec::new();
        s.scan_each(Space::Tree, &range, dir, &mut |k, v| {
            got.push((k.to_vec(), v.to_vec()));
            Ok(got.len() < stop)
        })
        .unwrap();
        let want_len = stop.max(1);
        assert_eq!(
            got,
            model_scan(&model, &range, dir, want_len),
            "scan_each({range:?}, {dir:?}) stopping after {want_len}"
        );
    }
    let mut seen = 0;
    let err = s
        .scan_each(
            Space::Tree,
            &KeyRange::all(),
            Direction::Forward,
            &mut |_, _| {
                seen += 1;
                Err(StoreError::Corruption("visitor".into()))
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Corruption(ref m) if m == "visitor"),
        "{err:?}"
    );
    assert_eq!(seen, 1, "the visit ends at the visitor's error");
    // More entries than one default page: the visit crosses pages without a gap.
    let mut big = WriteBatch::new();
    for i in 0..(crate::SCAN_EACH_PAGE as u32 + 700) {
        big.put(Space::RaftLog, i.to_be_bytes().to_vec(), vec![1]);
    }
    s.write_chunked(big, Durability::Buffered).unwrap();
    for dir in [Direction::Forward, Direction::Reverse] {
        let mut n = 0u32;
        let mut prev: Option<Vec<u8>> = None;
        s.scan_each(Space::RaftLog, &KeyRange::all(), dir, &mut |k, _| {
            if let Some(p) = &prev {
                assert!(
                    (dir == Direction::Forward && p.as_slice() < k)
                        || (dir == Direction::Reverse && p.as_slice() > k),
                    "scan_each order"
                );
            }
            prev = Some(k.to_vec());
            n += 1;
            Ok(true)
        })
        .unwrap();
        assert_eq!(n, crate::SCAN_EACH_PAGE as u32 + 700, "{dir:?}");
    }
    for page in [1, 3, 64, 1000] {
        for dir in [Direction::Forward, Direction::Reverse] {
            let range = KeyRange::half_open(vec![0x01], vec![0xFF, 0x00]);
            let got: Vec<KeyValue> = scan_pages(s, Space::Tree, range.clone(), dir, page)
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                got,
                model_scan(&model, &range, dir, usize::MAX),
                "pages of {page}"
            );
        }
    }
}

/// `get_le` ("seek for prev") finds the greatest key in `[floor, key]`: empty store,
/// exact match, between keys, below the floor, inverted floor, and neighbouring prefixes.
pub fn get_le_edge_cases<S: Store>(s: &S) {
    let sp = Space::Tree;
    assert_eq!(s.get_le(sp, b"node1", b"node").unwrap(), None);
    // Versioned keys: id || revision (u32 BE), ids chosen to be neighbours.
    let key = |id: &[u8], rev: u32| [id, &rev.to_be_bytes()[..]].concat();
    let ids: [&[u8]; 4] = [b"\x00\x01", b"\x00\x02", b"\x00\x02\x00", b"\x00\xff"];
    let mut b = WriteBatch::new();
    for id in ids {
        for rev in [1u32, 5, 9] {
            b.put(sp, key(id, rev), key(id, rev));
        }
    }
    s.write(&b, Durability::Buffered).unwrap();
    let le = |k: Vec<u8>, floor: &[u8]| s.get_le(sp, &k, floor).unwrap().map(|(k, _)| k);
    let id = ids[1];
    assert_eq!(le(key(id, 0), id), None, "below first version");
    assert_eq!(le(key(id, 1), id), Some(key(id, 1)), "exact first");
    assert_eq!(le(key(id, 4), id), Some(key(id, 1)), "between");
    assert_eq!(le(key(id, 5), id), Some(key(id, 5)), "exact middle");
    assert_eq!(le(key(id, 100), id), Some(key(id, 9)), "after last");
    assert_eq!(le(key(id, u32::MAX), id), Some(key(id, 9)), "max revision");
    // Must not leak into the neighbouring ids.
    assert_eq!(le(key(ids[0], 0), ids[0]), None);
    assert_eq!(le(key(ids[3], 3), ids[3]), Some(key(ids[3], 1)));
    // The value comes with the key.
    let (k, val) = s.get_le(sp, &key(id, 6), id).unwrap().unwrap();
    assert_eq!(k, val);
    // floor > key: nothing.
    assert_eq!(s.get_le(sp, b"\x00\x01", b"\x00\x02").unwrap(), None);
    // floor == key, present and absent.
    let k1 = key(id, 5);
    assert_eq!(
        s.get_le(sp, &k1, &k1).unwrap().map(|p| p.0),
        Some(k1.clone())
    );
    assert_eq!(s.get_le(sp, &key(id, 6), &key(id, 6)).unwrap(), None);
    // Empty floor: whole space below key.
    assert_eq!(
        s.get_le(sp, b"\x00\x01\xff", b"").unwrap().map(|p| p.0),
        Some(key(ids[0], 9))
    );
    assert_eq!(
        s.get_le(sp, b"\xff\xff\xff\xff\xff\xff\xff", b"")
            .unwrap()
            .map(|p| p.0),
        Some(key(ids[3], 9))
    );
    // Cross-check against the model on random queries.
    let all: BTreeMap<Vec<u8>, Vec<u8>> = s
        .scan(sp, &KeyRange::all(), Direction::Forward, 1000)
        .unwrap()
        .into_iter()
        .collect();
    let mut rng = TestRng::new(11);
    let mut queries = Vec::new();
    for _ in 0..500 {
        let mut k = rng.edge_key();
        if rng.below(2) == 0 {
            k.extend_from_slice(&(rng.below(12) as u32).to_be_bytes());
        }
        let floor = k[..rng.below(k.len() as u64 + 1) as usize].to_vec();
        let want = all
            .range::<[u8], _>((
                std::ops::Bound::Included(floor.as_slice()),
                std::ops::Bound::Included(k.as_slice()),
            ))
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone()));
        assert_eq!(
            s.get_le(sp, &k, &floor).unwrap(),
            want,
            "get_le({k:?}, {floor:?})"
        );
        queries.push((k, floor, want));
    }
    let q: Vec<(&[u8], &[u8])> = queries
        .iter()
        .map(|(k, f, _)| (k.as_slice(), f.as_slice()))
        .collect();
    let got = s.get_le_many(sp, &q).unwrap();
    let want: Vec<Option<KeyValue>> = queries.iter().map(|(_, _, w)| w.clone()).collect();
    assert_eq!(got, want, "get_le_many");
    let ks: Vec<&[u8]> = queries.iter().map(|(k, _, _)| k.as_slice()).collect();
    let want: Vec<Option<Vec<u8>>> = ks.iter().map(|k| all.get(*k).cloned()).collect();
    assert_eq!(s.get_many(sp, &ks).unwrap(), want, "get_many");
}

/// Oversized keys, values and batches and empty keys are refused whole.
pub fn limits_reject_whole_batch<S: Store>(s: &S) {
    let l = s.limits();
    let attempt = |extra: WriteBatch| {
        let mut b = WriteBatch::new();
        b.put(Space::Meta, b"innocent", b"x");
        b.append(extra);
        let r = s.write(&b, Durability::Sync);
        assert_eq!(
            s.get(Space::Meta, b"innocent").unwrap(),
            None,
            "partial write"
        );
        r
    };
    let mut b = WriteBatch::new();
    b.put(Space::Tree, vec![1u8; l.max_key_bytes + 1], b"v");
    assert!(matches!(
        attempt(b),
        Err(StoreError::TooLarge {
            what: SizeKind::Key,
            ..
        })
    ));
    let mut b = WriteBatch::new();
    b.put(Space::Tree, b"k", vec![0u8; l.max_value_bytes + 1]);
    assert!(matches!(
        attempt(b),
        Err(StoreError::TooLarge {
            what: SizeKind::Value,
            ..
        })
    ));
    let mut b = WriteBatch::new();
    b.put(Space::Tree, b"", b"v");
    assert!(matches!(attempt(b), Err(StoreError::InvalidArgument(_))));
    let mut b = WriteBatch::new();
    b.delete(Space::Tree, b"");
    assert!(matches!(attempt(b), Err(StoreError::InvalidArgument(_))));
    let mut b = WriteBatch::new();
    let per = l.max_value_bytes.min(l.max_batch_bytes / 4);
    let mut i = 0u32;
    while b.cost() <= l.max_batch_bytes {
        b.put(Space::Tree, i.to_be_bytes(), vec![7u8; per]);
        i += 1;
    }
    assert!(matches!(
        attempt(b),
        Err(StoreError::TooLarge {
            what: SizeKind::Batch,
            ..
        })
    ));
    // At the limits exactly: accepted.
    let mut b = WriteBatch::new();
    b.put(
        Space::Tree,
        vec![2u8; l.max_key_bytes],
        vec![3u8; l.max_value_bytes],
    );
    s.write(&b, Durability::Sync).unwrap();
    assert_eq!(
        s.get(Space::Tree, &vec![2u8; l.max_key_bytes]).unwrap(),
        Some(vec![3u8; l.max_value_bytes])
    );
}

/// A snapshot keeps reading the state of the moment it was taken.
pub fn snapshot_isolation<S: Store>(s: &S) {
    put1(s, Space::Tree, b"a", b"1");
    put1(s, Space::Tree, b"b", b"1");
    let snap = s.snapshot().unwrap();
    let mut b = WriteBatch::new();
    b.put(Space::Tree, b"a", b"2")
        .delete(Space::Tree, b"b")
        .put(Space::Tree, b"c", b"2");
    s.write(&b, Durability::Sync).unwrap();
    assert_eq!(snap.get(Space::Tree, b"a").unwrap(), Some(v("1")));
    assert_eq!(snap.get(Space::Tree, b"b").unwrap(), Some(v("1")));
    assert_eq!(snap.get(Space::Tree, b"c").unwrap(), None);
    assert_eq!(
        keys(
            &snap
                .scan(Space::Tree, &KeyRange::all(), Direction::Forward, 10)
                .unwrap()
        ),
        vec![v("a"), v("b")]
    );
    assert_eq!(
        snap.get_le(Space::Tree, b"z", b"").unwrap(),
        Some((v("b"), v("1")))
    );
    assert_eq!(s.get(Space::Tree, b"a").unwrap(), Some(v("2")));
    assert_eq!(s.get(Space::Tree, b"b").unwrap(), None);
    drop(snap);
    assert_eq!(s.get(Space::Tree, b"c").unwrap(), Some(v("2")));
}

/// Random batches of puts, deletes and range deletes over two spaces leave the store
/// equal to a `BTreeMap` model.
pub fn random_batches_match_model<S: Store>(s: &S, seed: u64) {
    let mut rng = TestRng::new(seed);
    let spaces = [Space::Tree, Space::RaftLog];
    let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
    for round in 0..200 {
        let mut b = WriteBatch::new();
        for _ in 0..1 + rng.below(20) {
            let si = rng.below(2) as usize;
            match rng.below(10) {
                0 => {
                    let r = random_range(&mut rng);
                    if !r.is_empty() {
                        let doomed: Vec<Vec<u8>> = model[si]
                            .range::<[u8], _>(r.as_bounds())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            model[si].remove(&k);
                        }
                    }
                    b.delete_range(spaces[si], r);
                }
                1..=2 => {
                    let k = rng.edge_key();
                    model[si].remove(&k);
                    b.delete(spaces[si], k);
                }
                _ => {
                    let k = rng.edge_key();
                    let len = rng.below(16) as usize;
                    let val = rng.bytes(len);
                    model[si].insert(k.clone(), val.clone());
                    b.put(spaces[si], k, val);
                }
            }
        }
        let d = if round % 7 == 0 {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        s.write(&b, d).unwrap();
        for (si, space) in spaces.into_iter().enumerate() {
            let got = s
                .scan(space, &KeyRange::all(), Direction::Forward, usize::MAX)
                .unwrap();
            let want = model_scan(&model[si], &KeyRange::all(), Direction::Forward, usize::MAX);
            assert_eq!(got, want, "seed {seed} round {round} space {space:?}");
        }
    }
}

/// While one thread writes batches that set many keys (in two spaces) to the batch
/// number, readers never see two different numbers in one read call or one snapshot, and
/// never see the number go back.
pub fn concurrent_readers_never_see_partial_batches<S: Store>(s: S) {
    const KEYS: u32 = 200;
    const BATCHES: u64 = 150;
    let s = Arc::new(s);
    let key = |i: u32| [b"c/".as_slice(), &i.to_be_bytes()].concat();
    let write = |s: &S, n: u64| {
        let mut b = WriteBatch::new();
        for i in 0..KEYS {
            b.put(Space::Tree, key(i), n.to_be_bytes());
        }
        b.put(Space::Meta, b"c/n", n.to_be_bytes());
        s.write(&b, Durability::Buffered).unwrap();
    };
    write(&s, 0);
    let done = Arc::new(AtomicBool::new(false));
    let decode = |v: &[u8]| u64::from_be_bytes(v.try_into().expect("8-byte value"));
    let mut readers = Vec::new();
    for r in 0..3 {
        let s = Arc::clone(&s);
        let done = Arc::clone(&done);
        readers.push(std::thread::spawn(move || {
            let mut last = 0u64;
            let mut reads = 0u64;
            let all_same = |vals: &[u64]| -> u64 {
                let first = vals[0];
                assert!(
                    vals.iter().all(|x| *x == first),
                    "reader {r} saw a partial batch: {vals:?}"
                );
                first
            };
            loop {
                let finished = done.load(Ordering::Acquire);
                let n = match reads % 3 {
                    0 => {
                        let page = s
                            .scan(
                                Space::Tree,
                                &KeyRange::prefix(b"c/"),
                                Direction::Forward,
                                KEYS as usize,
                            )
                            .unwrap();
                        assert_eq!(page.len(), KEYS as usize);
                        let vals: Vec<u64> = page.iter().map(|(_, v)| decode(v)).collect();
                        all_same(&vals)
                    }
                    1 => {
                        let snap = s.snapshot().unwrap();
                        let mut vals: Vec<u64> = (0..KEYS)
                            .step_by(17)
                            .map(|i| decode(&snap.get(Space::Tree, &key(i)).unwrap().unwrap()))
                            .collect();
                        vals.push(decode(&snap.get(Space::Meta, b"c/n").unwrap().unwrap()));
                        all_same(&vals)
                    }
                    _ => {
                        let ks: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
                        let refs: Vec<&[u8]> = ks.iter().map(Vec::as_slice).collect();
                        let vals: Vec<u64> = s
                            .get_many(Space::Tree, &refs)
                            .unwrap()
                            .into_iter()
                            .map(|v| decode(&v.unwrap()))
                            .collect();
                        all_same(&vals)
                    }
                };
                assert!(n >= last, "reader {r}: batch {n} visible after {last}");
                last = n;
                reads += 1;
                if finished {
                    return last;
                }
            }
        }));
    }
    for n in 1..=BATCHES {
        write(&s, n);
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let last = r.join().expect("reader panicked");
        assert_eq!(last, BATCHES, "final read must see the last batch");
    }
}

/// Disk usage is reported without error.
pub fn disk_space_reported<S: Store>(s: &S) {
    let mut b = WriteBatch::new();
    for i in 0..1000u32 {
        b.put(Space::Tree, i.to_be_bytes(), [9u8; 100]);
    }
    s.write(&b, Durability::Sync).unwrap();
    s.sync().unwrap();
    let bytes = s.disk_space_bytes().unwrap();
    assert!(bytes > 0, "disk_space_bytes is 0 after writing 100 kB");
}

/// `Sync` writes, and `Buffered` writes followed by `sync()`, survive closing and
/// reopening the store; range deletes too.
pub fn reopen_keeps_acknowledged_writes<F: StoreFactory>(factory: &mut F) {
    let s = factory.create();
    for i in 0..50u32 {
        let mut b = WriteBatch::new();
        b.put(Space::RaftLog, i.to_be_bytes(), [i as u8; 64]).put(
            Space::Meta,
            b"last",
            i.to_be_bytes(),
        );
        s.write(&b, Durability::Sync).unwrap();
    }
    let mut b = WriteBatch::new();
    b.delete_range(
        Space::RaftLog,
        KeyRange::below(10u32.to_be_bytes().to_vec()),
    );
    s.write(&b, Durability::Sync).unwrap();
    for i in 50..60u32 {
        put1(&s, Space::EpochLog, &i.to_be_bytes(), b"buffered");
    }
    s.sync().unwrap();
    drop(s);
    let s = factory.reopen();
    assert_eq!(
        s.get(Space::Meta, b"last").unwrap(),
        Some(49u32.to_be_bytes().to_vec())
    );
    let log = s
        .scan(Space::RaftLog, &KeyRange::all(), Direction::Forward, 1000)
        .unwrap();
    assert_eq!(log.len(), 40);
    assert_eq!(log[0].0, 10u32.to_be_bytes().to_vec());
    assert_eq!(
        s.scan(Space::EpochLog, &KeyRange::all(), Direction::Forward, 1000)
            .unwrap()
            .len(),
        10
    );
    // Still writable after reopen.
    put1(&s, Space::Meta, b"after", b"reopen");
    s.sync().unwrap();
    drop(s);
    let s = factory.reopen();
    assert_eq!(s.get(Space::Meta, b"after").unwrap(), Some(v("reopen")));
}

/// A 30 MB batch of 100 kB values (far over one transaction) goes through
/// `write_chunked` in several chunks, in order, and is all readable afterwards, also after
/// reopening; the same batch through `write` is refused.
pub fn chunked_write_larger_than_a_transaction<F: StoreFactory>(factory: &mut F) {
    let s = factory.create();
    let l = s.limits();
    let value_len = 100_000.min(l.max_value_bytes);
    let count = 30_000_000 / value_len;
    let mut rng = TestRng::new(3);
    let mut b = WriteBatch::new();
    for i in 0..count as u32 {
        let mut val = rng.bytes(value_len);
        val[..4].copy_from_slice(&i.to_be_bytes());
        b.put(Space::Values, i.to_be_bytes(), val);
    }
    // The completion marker goes last.
    b.put(Space::Meta, b"chunked-done", (count as u32).to_be_bytes());
    assert!(matches!(
        s.write(&b, Durability::Sync),
        Err(StoreError::TooLarge {
            what: SizeKind::Batch,
            ..
        })
    ));
    let chunks = s.write_chunked(b, Durability::Sync).unwrap();
    assert!(
        chunks >= 30_000_000 / l.max_batch_bytes.max(1),
        "{chunks} chunks"
    );
    assert!(chunks > 1);
    let check = |s: &F::Store| {
        assert_eq!(
            s.get(Space::Meta, b"chunked-done").unwrap(),
            Some((count as u32).to_be_bytes().to_vec())
        );
        let mut n = 0u32;
        for kv in scan_pages(s, Space::Values, KeyRange::all(), Direction::Forward, 16) {
            let (k, val) = kv.unwrap();
            assert_eq!(k, n.to_be_bytes());
            assert_eq!(val.len(), value_len);
            assert_eq!(val[..4], n.to_be_bytes());
            n += 1;
        }
        assert_eq!(n as usize, count);
    };
    check(&s);
    drop(s);
    let s = factory.reopen();
    check(&s);
    // A batch that fits goes in one chunk; an empty one in none.
    let mut b = WriteBatch::new();
    b.put(Space::Meta, b"small", b"1");
    assert_eq!(s.write_chunked(b, Durability::Sync).unwrap(), 1);
    assert_eq!(
        s.write_chunked(WriteBatch::new(), Durability::Sync)
            .unwrap(),
        0
    );
    // An oversized single value is refused before anything is written.
    let mut b = WriteBatch::new();
    b.put(Space::Meta, b"first", b"1");
    b.put(Space::Meta, b"huge", vec![0u8; l.max_value_bytes + 1]);
    assert!(s.write_chunked(b, Durability::Sync).is_err());
    assert_eq!(s.get(Space::Meta, b"first").unwrap(), None);
}

/// Runs the suite on [`MemStore`] and [`FjallStore`]; used by this crate's own tests.
pub fn run_builtin_backends() {
    run_conformance(MemFactory::default());
    run_conformance(FjallFactory::default());
}

#[doc(hidden)]
pub fn _assert_object_safe(_: &dyn Store, _: &dyn ReadView) {}

/// A batch with preconditions is written only when each holds; otherwise nothing of it
/// is, and the error says so.
pub fn preconditions_guard_writes<S: Store>(s: &S) {
    put1(s, Space::Meta, b"state", b"1");
    // Holds: applied.
    let mut b = WriteBatch::new();
    b.require(Space::Meta, b"state".to_vec(), Some(v("1")))
        .require(Space::Meta, b"absent".to_vec(), None)
        .put(Space::Meta, b"state".to_vec(), v("2"))
        .put(Space::Tree, b"node".to_vec(), v("x"));
    s.write(&b, Durability::Buffered)
        .expect("preconditions hold");
    assert_eq!(s.get(Space::Meta, b"state").unwrap(), Some(v("2")));
    // Stale expectation: nothing written.
    let mut b = WriteBatch::new();
    b.require(Space::Meta, b"state".to_vec(), Some(v("1")))
        .put(Space::Meta, b"state".to_vec(), v("3"))
        .put(Space::Tree, b"other".to_vec(), v("y"))
        .delete(Space::Tree, b"node".to_vec());
    match s.write(&b, Durability::Buffered) {
        Err(StoreError::PreconditionFailed(_)) => {}
        other => panic!("stale precondition: expected PreconditionFailed, got {other:?}"),
    }
    assert_eq!(s.get(Space::Meta, b"state").unwrap(), Some(v("2")));
    assert_eq!(s.get(Space::Tree, b"other").unwrap(), None);
    assert_eq!(s.get(Space::Tree, b"node").unwrap(), Some(v("x")));
    // "Must be absent" on a present key, and a precondition in another space.
    let mut b = WriteBatch::new();
    b.require(Space::Tree, b"node".to_vec(), None)
        .put(Space::Tree, b"z".to_vec(), v("z"));
    assert!(matches!(
        s.write(&b, Durability::Buffered),
        Err(StoreError::PreconditionFailed(_))
    ));
    assert_eq!(s.get(Space::Tree, b"z").unwrap(), None);
    // A batch of preconditions only is a check.
    let mut b = WriteBatch::new();
    b.require(Space::Meta, b"state".to_vec(), Some(v("2")));
    s.write(&b, Durability::Buffered).expect("check only");
    let mut b = WriteBatch::new();
    b.require(Space::Meta, b"state".to_vec(), Some(v("9")));
    assert!(s.write(&b, Durability::Buffered).is_err());
    // Empty precondition keys are refused like empty keys.
    let mut b = WriteBatch::new();
    b.require(Space::Meta, Vec::new(), None);
    assert!(matches!(
        s.write(&b, Durability::Buffered),
        Err(StoreError::InvalidArgument(_))
    ));
}

/// Writers doing read-modify-write with a precondition on what they read never lose an
/// update: the final counter equals the number of successful writes.
pub fn compare_and_set_under_contention<S: Store + Send + Sync>(s: S) {
    let s = std::sync::Arc::new(s);
    put1(&*s, Space::Meta, b"counter", &0u64.to_be_bytes());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                let mut won = 0u64;
                for _ in 0..50 {
                    loop {
                        let cur = s.get(Space::Meta, b"counter").unwrap().unwrap();
                        let n = u64::from_be_bytes(cur.as_slice().try_into().unwrap());
                        let mut b = WriteBatch::new();
                        b.require(Space::Meta, b"counter".to_vec(), Some(cur)).put(
                            Space::Meta,
                            b"counter".to_vec(),
                            (n + 1).to_be_bytes().to_vec(),
                        );
                        match s.write(&b, Durability::Buffered) {
                            Ok(()) => {
                                won += 1;
                                break;
                            }
                            Err(StoreError::PreconditionFailed(_)) => continue,
                            Err(e) => panic!("write failed: {e}"),
                        }
                    }
                }
                won
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let end = s.get(Space::Meta, b"counter").unwrap().unwrap();
    assert_eq!(total, 200);
    assert_eq!(
        u64::from_be_bytes(end.as_slice().try_into().unwrap()),
        total
    );
}
