//! Rough throughput figures for the embedded backend (not a criterion bench; numbers vary
//! with the disk). Run:
//!
//! ```text
//! cargo run --release -p candor-store --example store_bench -- [NODES] [REVS]
//! ```
//!
//! Loads NODES (default 200,000) tree nodes with REVS (default 5) revisions each, keys
//! `node_id (32 B) || revision (8 B BE)`, 100-byte values, in `Sync` batches of 10,000,
//! then measures point reads and `get_le` ("latest revision <= r") on random nodes.

use std::time::Instant;

use candor_store::conformance::TestRng;
use candor_store::{Durability, FjallStore, ReadView, Space, Store, WriteBatch};

fn node_id(i: u64) -> [u8; 32] {
    // Spread like VRF outputs: a hash-like permutation of i.
    let mut rng = TestRng::new(i);
    let mut id = [0u8; 32];
    for c in id.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_be_bytes());
    }
    id
}

fn key(i: u64, rev: u64) -> Vec<u8> {
    [&node_id(i)[..], &rev.to_be_bytes()].concat()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let revs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FjallStore::open(dir.path()).expect("open");
    let value = [0xABu8; 100];

    // Sync batches of 10k puts: revision-major, like sealing one revision at a time.
    let mut batch_times = Vec::new();
    let t_all = Instant::now();
    for rev in 1..=revs {
        let mut i = 0;
        while i < nodes {
            let mut b = WriteBatch::with_capacity(10_000);
            for j in i..(i + 10_000).min(nodes) {
                b.put(Space::Tree, key(j, rev * 10), value);
            }
            let t = Instant::now();
            store.write(&b, Durability::Sync).expect("write");
            batch_times.push(t.elapsed());
            i += 10_000;
        }
    }
    let total = nodes * revs;
    let load = t_all.elapsed();
    batch_times.sort();
    let median = batch_times[batch_times.len() / 2];
    println!(
        "load: {total} puts in {} Sync batches of 10k x 100 B: {:.2?} total, {:.0} puts/s; \
         per batch median {median:.2?}, max {:.2?}",
        batch_times.len(),
        load,
        total as f64 / load.as_secs_f64(),
        batch_times.last().expect("some batches"),
    );
    store.sync().expect("sync");
    let raw = 140.0; // 40 B key + 100 B value
    let bytes = store.disk_space_bytes().expect("disk");
    println!(
        "disk right after load: {bytes} B = {:.1} B per entry (raw {raw} B; journals included)",
        bytes as f64 / total as f64
    );
    let t = Instant::now();
    store.flush_and_compact().expect("compact");
    let u = store.disk_usage().expect("disk");
    println!(
        "disk after flush_and_compact ({:.2?}): {u:?}; tables {:.1} B per entry, all {:.1}",
        t.elapsed(),
        u.table_bytes as f64 / total as f64,
        u.total() as f64 / total as f64
    );

    let mut rng = TestRng::new(42);
    let n = 200_000u64;
    let queries: Vec<(Vec<u8>, [u8; 32])> = (0..n)
        .map(|_| {
            let i = rng.below(nodes);
            let rev = 10 * (1 + rng.below(revs));
            (key(i, rev), node_id(i))
        })
        .collect();
    let t = Instant::now();
    for (k, _) in &queries {
        assert!(store.get(Space::Tree, k).expect("get").is_some());
    }
    let el = t.elapsed();
    println!(
        "get (hit): {n} in {el:.2?} = {:.0}/s",
        n as f64 / el.as_secs_f64()
    );

    let t = Instant::now();
    for (k, id) in &queries {
        let mut k = k.clone();
        // Ask for a revision between stored ones: latest <= r.
        let last = k.len() - 1;
        k[last] += 5;
        let hit = store.get_le(Space::Tree, &k, id).expect("get_le");
        assert!(hit.is_some());
    }
    let el = t.elapsed();
    println!(
        "get_le (seek for prev): {n} in {el:.2?} = {:.0}/s",
        n as f64 / el.as_secs_f64()
    );

    let t = Instant::now();
    for chunk in queries.chunks(32) {
        let q: Vec<(&[u8], &[u8])> = chunk
            .iter()
            .map(|(k, id)| (k.as_slice(), id.as_slice()))
            .collect();
        store.get_le_many(Space::Tree, &q).expect("get_le_many");
    }
    let el = t.elapsed();
    println!(
        "get_le_many (32 per call): {n} in {el:.2?} = {:.0}/s",
        n as f64 / el.as_secs_f64()
    );

    // Two reader threads (the machine has two cores).
    let store = std::sync::Arc::new(store);
    let queries = std::sync::Arc::new(queries);
    let t = Instant::now();
    let hs: Vec<_> = (0..2)
        .map(|h| {
            let store = store.clone();
            let queries = queries.clone();
            std::thread::spawn(move || {
                for (k, id) in queries.iter().skip(h).step_by(2) {
                    store.get_le(Space::Tree, k, id).expect("get_le");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("thread");
    }
    let el = t.elapsed();
    println!(
        "get_le, 2 threads: {n} in {el:.2?} = {:.0}/s",
        n as f64 / el.as_secs_f64()
    );
}
