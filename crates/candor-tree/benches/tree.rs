//! Figures of the tree engine on the embedded store (release build):
//!
//! ```text
//! cargo bench -p candor-tree --bench tree -- [--leaves 1000000] [--batch 10000] \
//!     [--shard-bits 0] [--cache-mib 64] [--no-prune 1]
//! ```
//!
//! `CANDOR_BENCH_DIR` chooses where the temporary store lives (default `/tmp`).
//!
//! * batch apply throughput (stage + seal, leaves/s) while the tree grows, and for
//!   updates of existing labels at the final size;
//! * warm lookup-proof generation per second on 1 and 2 threads;
//! * median encoded lookup proof (80-byte VRF proof, 32-byte value);
//! * bytes on disk per leaf-version after a flush and full compaction, without pruning
//!   and after pruning every revision but the latest;
//! * resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candor_core::map::{Index, Leaf, commit, shard_of};
use candor_core::vrf::VrfProof;
use candor_store::{FjallConfig, FjallStore, Store};
use candor_tree::{Forest, OpeningPolicy, StoredOpening, TreeConfig};

struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes32(&mut self) -> [u8; 32] {
        let mut i = [0u8; 32];
        for c in i.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_be_bytes());
        }
        i
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .map(|v| v.parse::<f64>().unwrap_or(0.0))
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU time of the calling thread, ns (from /proc; 0 if unavailable): rates
/// per CPU-second are less disturbed by other processes on a shared machine.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let total = arg("--leaves", 1_000_000);
    let batch = arg("--batch", 10_000);
    let bits = arg("--shard-bits", 0) as u8;
    let cache_mib = arg("--cache-mib", 64);
    let dir =
        tempfile::tempdir_in(std::env::var("CANDOR_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
            .unwrap();
    let fjall = Arc::new(FjallStore::open_with(dir.path(), FjallConfig::default()).unwrap());
    let store: Arc<dyn Store> = fjall.clone();
    let forest = Forest::open(
        store.clone(),
        TreeConfig {
            shard_bits: bits,
            cache_bytes: cache_mib << 20,
            ..TreeConfig::default()
        },
    )
    .unwrap();
    let mut rng = Rng(1);
    let mut indices: Vec<Index> = Vec::with_capacity(total as usize);
    let mut latest: std::collections::HashMap<Index, Leaf> = std::collections::HashMap::new();
    let mut revisions = vec![0u64; 1 << bits];
    let mut versions = 0u64;
    println!(
        "candor-tree bench: {total} leaves, batches of {batch}, shard_bits {bits}, cache {cache_mib} MiB"
    );
    println!("{:>10} {:>12} {:>10}", "leaves", "leaves/s", "RSS MiB");

    let apply = |items: Vec<(Leaf, Option<StoredOpening>)>, revisions: &mut Vec<u64>| -> f64 {
        let t = Instant::now();
        let mut per: Vec<Vec<(Leaf, Option<StoredOpening>)>> = vec![Vec::new(); 1 << bits];
        let n = items.len();
        for it in items {
            per[shard_of(&it.0.index, bits) as usize].push(it);
        }
        for (s, items) in per.into_iter().enumerate() {
            if !items.is_empty() {
                revisions[s] = forest
                    .shard(s as u32)
                    .unwrap()
                    .apply(&items)
                    .unwrap()
                    .revision;
            }
        }
        n as f64 / t.elapsed().as_secs_f64()
    };

    let make =
        |rng: &mut Rng, index: Index, latest: &mut std::collections::HashMap<Index, Leaf>| {
            let nonce = rng.bytes32();
            let value = rng.bytes32().to_vec();
            let prior = latest.get(&index).copied();
            let version = prior.map_or(1, |l| l.version + 1);
            let c = commit(&nonce, &index, version, &value);
            let leaf = prior.map_or(Leaf::first(index, c), |p| p.next(c));
            latest.insert(index, leaf);
            (leaf, Some((nonce, value)))
        };

    let mut insert_rates = Vec::new();
    let mut done = 0u64;
    while done < total {
        let n = batch.min(total - done);
        let items: Vec<_> = (0..n)
            .map(|_| {
                let i = rng.bytes32();
                indices.push(i);
                make(&mut rng, i, &mut latest)
            })
            .collect();
        let rate = apply(items, &mut revisions);
        done += n;
        versions += n;
        insert_rates.push((done, rate));
        if done.is_multiple_of((total / 10).max(batch)) || done == total {
            println!("{done:>10} {rate:>12.0} {:>10.0}", rss_mib());
        }
    }
    let window = |lo: u64, hi: u64| {
        let v: Vec<f64> = insert_rates
            .iter()
            .filter(|(d, _)| *d > lo && *d <= hi)
            .map(|x| x.1)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let loads_apply = forest.load_counters();
    let at_100k = window(90_000, 110_000);
    let at_end = window(total.saturating_sub(10 * batch), total);
    // Updates of existing labels at the final size.
    let mut upd = Vec::new();
    for _ in 0..5 {
        let items: Vec<_> = (0..batch)
            .map(|_| {
                let i = indices[(rng.next_u64() % indices.len() as u64) as usize];
                make(&mut rng, i, &mut latest)
            })
            .collect();
        versions += batch;
        upd.push(apply(items, &mut revisions));
    }
    let update_rate = upd.iter().sum::<f64>() / upd.len() as f64;
    let loads_upd = forest.load_counters();

    // Lookup proofs: warm-up, then 1 and 2 threads.
    let view = forest.view(revisions.clone()).unwrap();
    let vrf = VrfProof::from_bytes(&[1u8; 80]);
    let mut sizes: Vec<usize> = Vec::new();
    for k in 0..20_000u64 {
        let i = indices[((k * 7919) % indices.len() as u64) as usize];
        let p = view.lookup_proof(&i, vrf, OpeningPolicy::Open).unwrap();
        if k < 10_000 {
            sizes.push(p.encode().len());
        }
    }
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    let proofs_per_sec = |threads: usize| {
        let count = AtomicU64::new(0);
        let dur = Duration::from_secs(3);
        std::thread::scope(|s| {
            for t in 0..threads {
                let view = view.clone();
                let indices = &indices;
                let count = &count;
                s.spawn(move || {
                    let mut r = Rng(100 + t as u64);
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < dur {
                        for _ in 0..64 {
                            let i = indices[(r.next_u64() % indices.len() as u64) as usize];
                            std::hint::black_box(
                                view.lookup_proof(&i, vrf, OpeningPolicy::Open).unwrap(),
                            );
                            n += 1;
                        }
                    }
                    count.fetch_add(n, Ordering::Relaxed);
                });
            }
        });
        count.load(Ordering::Relaxed) as f64 / dur.as_secs_f64()
    };
    // Single thread, per CPU-second of that thread.
    let loads_warm = forest.load_counters();
    let cpu_rate = {
        let mut r = Rng(7);
        let c0 = thread_cpu_ns();
        let n = 20_000u64;
        for _ in 0..n {
            let i = indices[(r.next_u64() % indices.len() as u64) as usize];
            std::hint::black_box(view.lookup_proof(&i, vrf, OpeningPolicy::Open).unwrap());
        }
        n as f64 / ((thread_cpu_ns() - c0).max(1) as f64 / 1e9)
    };
    let loads_cpu = forest.load_counters();
    let p1 = proofs_per_sec(1);
    let p2 = proofs_per_sec(2);
    let rss = rss_mib();
    let diff = |a: [u64; 3], b: [u64; 3]| [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    println!(
        "stride loads [loads, entries scanned, seeks]: inserts {loads_apply:?}, 5 update batches {:?}, 20k warm proofs {:?}",
        diff(loads_apply, loads_upd),
        diff(loads_warm, loads_cpu)
    );

    let logical = |store: &Arc<dyn Store>| {
        let mut out = String::new();
        for space in [candor_store::Space::Tree, candor_store::Space::Values] {
            let (mut n, mut kb, mut vb) = (0u64, 0u64, 0u64);
            let mut by_tag: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
            for kv in candor_store::scan_pages(
                &**store,
                space,
                candor_store::KeyRange::all(),
                candor_store::Direction::Forward,
                4096,
            ) {
                let (k, v) = kv.unwrap();
                n += 1;
                kb += k.len() as u64;
                vb += v.len() as u64;
                let e = by_tag.entry(k[0]).or_default();
                e.0 += 1;
                e.1 += (k.len() + v.len()) as u64;
            }
            out += &format!(
                "{space:?}: {n} entries, {kb} key B, {vb} value B; by record type {:?}\n",
                by_tag
                    .iter()
                    .map(|(t, (n, b))| (*t as char, *n, *b))
                    .collect::<Vec<_>>()
            );
        }
        out
    };
    print!("logical data before pruning:\n{}", logical(&store));
    let config = TreeConfig {
        shard_bits: bits,
        cache_bytes: cache_mib << 20,
        ..TreeConfig::default()
    };
    // After a full compaction fjall still holds the replaced table files until
    // no snapshot can need them; reopening deletes them, so the figure is the
    // steady-state size (tables plus the journal left).
    let reopen = |fjall: Arc<FjallStore>, store: Arc<dyn Store>, forest: Forest| {
        fjall.flush_and_compact().unwrap();
        let live = fjall.live_table_bytes() + fjall.disk_usage().unwrap().journal_bytes;
        drop((fjall, store, forest));
        let fjall = Arc::new(FjallStore::open_with(dir.path(), FjallConfig::default()).unwrap());
        let store: Arc<dyn Store> = fjall.clone();
        let forest = Forest::open(store.clone(), config.clone()).unwrap();
        (fjall, store, forest, live)
    };
    drop(view);
    let (fjall, store, forest, live) = reopen(fjall, store, forest);
    let disk = store.disk_space_bytes().unwrap();
    println!(
        "disk usage after compaction and reopening: {:?}",
        fjall.disk_usage().unwrap()
    );
    if arg("--no-prune", 0) == 0 {
        for (s, r) in revisions.iter().enumerate() {
            forest.shard(s as u32).unwrap().prune(*r).unwrap();
        }
    }
    let (fjall, store, forest, live_pruned) = reopen(fjall, store, forest);
    let disk_pruned = store.disk_space_bytes().unwrap();
    print!("logical data after pruning:\n{}", logical(&store));
    println!(
        "disk usage after pruning, compaction and reopening: {:?}",
        fjall.disk_usage().unwrap()
    );
    drop((fjall, forest));

    println!();
    println!("batch apply, inserts at ~100k leaves:   {at_100k:>10.0} leaves/s");
    println!("batch apply, inserts at ~{total} leaves: {at_end:>10.0} leaves/s");
    println!("batch apply, updates at {total} leaves:  {update_rate:>10.0} leaves/s");
    println!("lookup proofs, warm, 1 thread:          {p1:>10.0} /s");
    println!("lookup proofs, warm, 2 threads:         {p2:>10.0} /s");
    println!("lookup proofs per CPU-second (1 thread): {cpu_rate:>10.0} /s");
    println!("median lookup proof (80 B VRF, 32 B value): {median} B");
    println!(
        "disk per leaf-version, no pruning:      {:>10.1} B ({} B / {versions})",
        disk as f64 / versions as f64,
        disk
    );
    println!(
        "disk per leaf-version, latest revision only: {:>10.1} B",
        disk_pruned as f64 / versions as f64
    );
    println!(
        "live tables + journal before reopening, no pruning / latest only: {:.1} / {:.1} B",
        live as f64 / versions as f64,
        live_pruned as f64 / versions as f64
    );
    println!("RSS after proofs: {rss:.0} MiB");
    println!(
        "{{\"leaves\":{total},\"batch\":{batch},\"shard_bits\":{bits},\"insert_100k\":{at_100k:.0},\"insert_end\":{at_end:.0},\"update_end\":{update_rate:.0},\"proofs_1t\":{p1:.0},\"proofs_2t\":{p2:.0},\"proofs_per_cpu_s\":{cpu_rate:.0},\"median_proof_bytes\":{median},\"disk_per_version\":{:.1},\"disk_per_version_pruned\":{:.1},\"live_per_version\":{:.1},\"live_per_version_pruned\":{:.1},\"rss_mib\":{rss:.0}}}",
        disk as f64 / versions as f64,
        disk_pruned as f64 / versions as f64,
        live as f64 / versions as f64,
        live_pruned as f64 / versions as f64
    );
}
