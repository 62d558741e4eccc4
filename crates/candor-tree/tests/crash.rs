//! Crash safety: a child process (this test binary, re-executed) seals
//! large batches into a FjallStore; the parent SIGKILLs it at random
//! moments, reopens the store and checks that the tree is at its last
//! sealed revision (at least the last one the child reported), that its
//! roots equal a recomputation from the leaves and that proofs verify.
//!
//! The seed is printed; `CANDOR_CRASH_SEED=<seed>` replays a run.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_core::map::{Index, Leaf, shard_of};
use candor_core::reference::ReferenceMap;
use candor_core::vrf::VrfSecretKey;
use candor_store::{FjallConfig, FjallStore, Limits, Store};
use candor_tree::{Forest, OpeningPolicy, StoredOpening, TreeConfig};
use common::*;

const BITS: u8 = 1;
const NEW_PER_BATCH: u64 = 3000;
const UPDATES_PER_BATCH: u64 = 1000;
const CHILD_ENV: &str = "CANDOR_CRASH_CHILD_DIR";
const SEED_ENV: &str = "CANDOR_CRASH_CHILD_SEED";

fn vrf() -> VrfSecretKey {
    VrfSecretKey::from_bytes(&[42; 32])
}

fn open(dir: &std::path::Path) -> (Arc<dyn Store>, Forest) {
    // Small batch limit so every seal is written in several chunks.
    let config = FjallConfig {
        limits: Limits {
            max_batch_bytes: 400_000,
            ..Limits::PORTABLE
        },
        ..FjallConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(FjallStore::open_with(dir, config).unwrap());
    let forest = Forest::open(
        store.clone(),
        TreeConfig {
            shard_bits: BITS,
            cache_bytes: 8 << 20,
            ..TreeConfig::default()
        },
    )
    .unwrap();
    (store, forest)
}

fn new_index(seed: u64, shard: u32, n: u64, j: u64) -> Index {
    let mut i = TestRng(seed ^ (u64::from(shard) << 56) ^ (n << 20) ^ j).index();
    i[0] = (i[0] & 0x7F) | ((shard as u8) << 7);
    i
}

/// The deterministic batch `n` of `shard`, given each label's current leaf.
fn batch(
    seed: u64,
    shard: u32,
    n: u64,
    current: &mut dyn FnMut(&Index) -> Option<Leaf>,
) -> Vec<(Leaf, Option<StoredOpening>, Vec<u8>)> {
    let mut rng = TestRng(seed.wrapping_mul(31) ^ (u64::from(shard) << 48) ^ n);
    let mut overlay: HashMap<Index, Leaf> = HashMap::new();
    let mut out = Vec::new();
    let mut push = |index: Index, label: Vec<u8>, rng: &mut TestRng, out: &mut Vec<_>| {
        let prior = overlay.get(&index).copied().or_else(|| current(&index));
        let version = prior.map_or(1, |l| l.version + 1);
        let value = rng.index().to_vec();
        let nonce = rng.index();
        let c = candor_core::map::commit(&nonce, &label, version, &value);
        let leaf = match prior {
            Some(p) => p.next(c),
            None => Leaf::first(index, c),
        };
        overlay.insert(index, leaf);
        out.push((leaf, Some((nonce, value)), label));
    };
    for j in 0..NEW_PER_BATCH {
        let i = new_index(seed, shard, n, j);
        push(i, i.to_vec(), &mut rng, &mut out);
    }
    if n > 1 {
        for _ in 0..UPDATES_PER_BATCH {
            let m = 1 + rng.below(n - 1);
            let i = new_index(seed, shard, m, rng.below(NEW_PER_BATCH));
            push(i, i.to_vec(), &mut rng, &mut out);
        }
    }
    let label = format!("vrf-{shard}-{n}").into_bytes();
    let index = vrf().evaluate(&label).0.index();
    if shard_of(&index, BITS) == shard {
        push(index, label, &mut rng, &mut out);
    }
    out
}

/// Child mode: seal batches forever (until killed), reporting each revision.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Not a child: nothing to do.
    };
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let (_store, forest) = open(std::path::Path::new(&dir));
    let mut out = std::io::stdout();
    for n in 0.. {
        let shard = (n % 2) as u32;
        let tree = forest.shard(shard).unwrap();
        let latest = tree.latest_revision();
        let items = batch(seed, shard, latest + 1, &mut |i| {
            tree.leaf_at(latest, i).unwrap()
        });
        let items: Vec<_> = items.into_iter().map(|(l, o, _)| (l, o)).collect();
        let sealed = tree.apply(&items).unwrap();
        writeln!(out, "sealed {shard} {}", sealed.revision).unwrap();
        out.flush().unwrap();
    }
}

/// Replays batches `1..=latest[s]` of every shard into a reference map.
fn replay(seed: u64, latest: &[u64]) -> (ReferenceMap, Vec<(Index, Vec<u8>)>) {
    let mut r = ReferenceMap::new();
    let mut labels = Vec::new();
    for (s, l) in latest.iter().enumerate() {
        for n in 1..=*l {
            let items = batch(seed, s as u32, n, &mut |i| {
                r.versions(i).last().map(|v| v.leaf)
            });
            for (leaf, o, label) in items {
                let (nonce, value) = o.unwrap();
                let got = r.publish(leaf.index, &label, &value, Some(nonce));
                assert_eq!(got, leaf);
                if got.version == 1 {
                    labels.push((leaf.index, label));
                }
            }
        }
    }
    (r, labels)
}

#[test]
fn crash_recovery() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let seed: u64 = match std::env::var("CANDOR_CRASH_SEED") {
        Ok(s) => s.parse().expect("CANDOR_CRASH_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("crash test seed: {seed} (replay with CANDOR_CRASH_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = TestRng(seed);
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let mut prev_view_revs: Option<Vec<u64>> = None;
    let mut kills = 0;
    while kills < 6 && started.elapsed() < Duration::from_secs(40) {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The child only reports new seals; start from what was recovered last.
        let start = prev_view_revs
            .clone()
            .unwrap_or_else(|| vec![0u64; 1 << BITS]);
        let reported = Arc::new(Mutex::new(start));
        let rep = reported.clone();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test crash_child ... " without a newline
                // before the child's first report, so find the marker anywhere.
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let Some(p) = parts.iter().position(|w| *w == "sealed")
                    && let (Some(s), Some(r)) = (parts.get(p + 1), parts.get(p + 2))
                {
                    let s: usize = s.parse().unwrap();
                    rep.lock().unwrap()[s] = r.parse().unwrap();
                }
            }
        });
        let delay = 500 + rng.below(3000);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        {
            use std::os::unix::process::ExitStatusExt;
            // Anything but our SIGKILL (a panic, an error exit) is a failure in the child.
            assert_eq!(status.signal(), Some(9), "child ended on its own: {status}");
        }
        reader.join().unwrap();
        kills += 1;
        let reported = reported.lock().unwrap().clone();

        let (_store, forest) = open(dir.path());
        let latest: Vec<u64> = (0..1u32 << BITS)
            .map(|s| forest.shard(s).unwrap().latest_revision())
            .collect();
        println!("kill {kills} after {delay} ms: reported {reported:?}, recovered {latest:?}");
        for (r, l) in reported.iter().zip(&latest) {
            assert!(
                l >= r && *l <= r + 1,
                "recovered revision {l}, child reported {r}"
            );
        }
        let (reference, labels) = replay(seed, &latest);
        let view = forest.view(latest.clone()).unwrap();
        assert_eq!(
            view.root_hash(),
            reference.root(),
            "seed {seed}: root after recovery"
        );
        for s in 0..1u32 << BITS {
            assert_eq!(
                view.shard_roots()[s as usize],
                reference.shard_root(BITS, s)
            );
        }
        let pk = vrf().public_key();
        for (index, label) in &labels {
            if label.starts_with(b"vrf-") {
                let (out, proof) = vrf().evaluate(label);
                assert_eq!(out.index(), *index);
                let p = view
                    .lookup_proof(index, proof, OpeningPolicy::Open)
                    .unwrap();
                assert_eq!(p.encode(), reference.lookup_proof(&vrf(), label).encode());
                p.verify(&pk, label, &view.root_hash()).unwrap();
                view.history_proof(index, proof)
                    .unwrap()
                    .verify(&pk, label, &view.root_hash())
                    .unwrap();
            }
        }
        if let Some(prev) = &prev_view_revs {
            let old = forest.view(prev.clone()).unwrap();
            let audit = view.audit_proof(&old).unwrap();
            audit.verify(&old.root_hash(), &view.root_hash()).unwrap();
        }
        prev_view_revs = Some(latest);
    }
    assert!(kills > 0);
}
