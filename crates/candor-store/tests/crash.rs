//! Crash consistency of the embedded backend under SIGKILL.
//!
//! The test re-executes its own binary as a child (selected by an environment variable)
//! that appends numbered batches to a store and prints `ACK n` after each `write` returns.
//! The parent kills the child at a random moment, reopens the store and checks that every
//! acknowledged batch is there whole, and that no batch is there in part. Batch `n` also
//! range-deletes batch `n - KEEP`, so recovered range deletes are checked too. Several
//! rounds run on the same directory, alternating `Sync` and `Buffered` writes (a SIGKILL is
//! a process crash, which both must survive).
//!
//! The kill times come from a seeded RNG; the seed is printed. Replay a failure with
//! `CANDOR_CRASH_SEED=<seed> cargo test -p candor-store --test crash`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use candor_store::conformance::TestRng;
use candor_store::{
    Direction, Durability, FjallConfig, FjallStore, KeyRange, ReadView, Space, Store, WriteBatch,
};

const CHILD_DIR_ENV: &str = "CANDOR_STORE_CRASH_CHILD_DIR";
const CHILD_MODE_ENV: &str = "CANDOR_STORE_CRASH_CHILD_MODE";
const SEED_ENV: &str = "CANDOR_CRASH_SEED";
const ROUNDS: u64 = 8;
/// Batches kept; batch `n` deletes batch `n - KEEP`.
const KEEP: u64 = 40;

/// Number of keys batch `n` writes: 1..=250 (up to ~30 kB, so batches straddle the
/// journal's 8 kB write buffer and its pages).
fn batch_keys(n: u64) -> u64 {
    1 + (n.wrapping_mul(7919) ^ (n >> 3)) % 250
}

fn batch_prefix(n: u64) -> Vec<u8> {
    [b"b/".as_slice(), &n.to_be_bytes(), b"/"].concat()
}

fn entry(n: u64, i: u64) -> (Vec<u8>, Vec<u8>) {
    let key = [batch_prefix(n), i.to_be_bytes().to_vec()].concat();
    let mut value = vec![0u8; 100];
    value[..8].copy_from_slice(&n.to_be_bytes());
    value[8..16].copy_from_slice(&i.to_be_bytes());
    value[16] = (n ^ i) as u8;
    (key, value)
}

/// Small write buffers: memtables are flushed to tables every few dozen batches, so kills
/// also land during flushes, and journals stay short (fast recovery).
fn open(dir: &std::path::Path) -> FjallStore {
    let config = FjallConfig {
        memtable_bytes: 1 << 20,
        cache_bytes: 4 << 20,
        ..FjallConfig::default()
    };
    FjallStore::open_with(dir, config).expect("open store")
}

fn last_batch(store: &FjallStore) -> u64 {
    store
        .get(Space::Meta, b"last")
        .expect("read last")
        .map(|v| u64::from_be_bytes(v.try_into().expect("8-byte counter")))
        .unwrap_or(0)
}

/// Child mode: append batches forever (until killed).
fn child(dir: &str, mode: &str) -> ! {
    let store = open(std::path::Path::new(dir));
    let durability = if mode == "sync" {
        Durability::Sync
    } else {
        Durability::Buffered
    };
    let mut n = last_batch(&store);
    loop {
        n += 1;
        let mut b = WriteBatch::new();
        for i in 0..batch_keys(n) {
            let (k, v) = entry(n, i);
            b.put(Space::Tree, k, v);
        }
        if n > KEEP {
            b.delete_prefix(Space::Tree, &batch_prefix(n - KEEP));
        }
        b.put(Space::Meta, b"last", n.to_be_bytes());
        store.write(&b, durability).expect("child write");
        println!("ACK {n}");
    }
}

/// Checks the store holds exactly batches `last-KEEP+1..=last`, each whole.
fn verify(store: &FjallStore, acked: u64, round: u64, seed: u64) -> u64 {
    let last = last_batch(store);
    assert!(
        last >= acked,
        "seed {seed} round {round}: acknowledged batch {acked} lost (store holds up to {last})"
    );
    let entries = store
        .scan(
            Space::Tree,
            &KeyRange::prefix(b"b/"),
            Direction::Forward,
            usize::MAX,
        )
        .expect("scan");
    let mut by_batch = std::collections::BTreeMap::<u64, u64>::new();
    for (k, v) in &entries {
        let n = u64::from_be_bytes(k[2..10].try_into().expect("key layout"));
        let i = u64::from_be_bytes(k[11..19].try_into().expect("key layout"));
        assert_eq!(
            (k.clone(), v.clone()),
            entry(n, i),
            "seed {seed} round {round}: wrong entry"
        );
        *by_batch.entry(n).or_default() += 1;
    }
    let first = if last > KEEP { last - KEEP + 1 } else { 1 };
    let want: Vec<u64> = if last == 0 {
        vec![]
    } else {
        (first..=last).collect()
    };
    let have: Vec<u64> = by_batch.keys().copied().collect();
    assert_eq!(
        have, want,
        "seed {seed} round {round}: wrong set of batches present (last = {last})"
    );
    for (n, count) in by_batch {
        assert_eq!(
            count,
            batch_keys(n),
            "seed {seed} round {round}: batch {n} partially present"
        );
    }
    last
}

#[test]
fn crash_consistency() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let mode = std::env::var(CHILD_MODE_ENV).unwrap_or_default();
        child(&dir, &mode);
    }
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("crash test seed: {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = TestRng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("current exe");
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let mode = if round % 2 == 0 { "sync" } else { "buffered" };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_consistency",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_MODE_ENV, mode)
            .env_remove(SEED_ENV)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let acked = Arc::new(AtomicU64::new(0));
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let stdout = child.stdout.take().expect("child stdout");
        let reader = {
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // The test harness may print its own text before ours on the same line.
                    if let Some(n) = line
                        .split("ACK ")
                        .nth(1)
                        .and_then(|n| n.trim().parse().ok())
                    {
                        acked.fetch_max(n, Ordering::SeqCst);
                        let _ = first_tx.send(());
                    }
                }
            })
        };
        if rng.below(4) == 0 {
            // Kill early: possibly while the child is still opening / recovering.
            std::thread::sleep(Duration::from_millis(rng.below(400)));
        } else {
            // Kill mid-writes: a random moment after the child acknowledged its first batch.
            // The wait is bounded so a hung child fails the check below instead of hanging.
            let _ = first_rx.recv_timeout(Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(rng.below(300)));
        }
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        reader.join().expect("reader thread");
        let acked = acked.load(Ordering::SeqCst);
        let store = open(dir.path());
        let last = verify(&store, acked, round, seed);
        eprintln!("round {round} ({mode}): acknowledged {acked}, recovered {last}");
        total_acked = total_acked.max(acked);
    }
    // Not a timing assertion: only that the children got far enough to test something.
    assert!(
        total_acked > 0,
        "seed {seed}: no child ever acknowledged a batch"
    );
}
