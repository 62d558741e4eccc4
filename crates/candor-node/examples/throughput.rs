//! Throughput smoke test of `Node` (not a test: timings are only reported).
//!
//! ```text
//! cargo run --release -p candor-node --example throughput -- [publishers] [items per call] [seconds] [update %] [seal ms] [idempotency keys 0/1] [max inflight per shard] [target rate/s, 0 = as fast as possible]
//! ```
//!
//! Defaults: 64 publishers, 16 items per call, 10 s, 0 % updates, 250 ms seal interval,
//! no idempotency keys, 1 entry in flight per shard. Indices are BLAKE3 of
//! the label (the VRF is the API's cost, measured elsewhere). Reports mutations/s, the
//! latency of a publish call (= SMT latency: the SMT is signed when the call returns)
//! p50/p99, and the merge delay (signed head timestamp − SMT timestamp) of a sample.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candor_core::signed::SigningKeyPair;
use candor_core::vrf::VrfSecretKey;
use candor_node::{Node, NodeConfig, NodeKeys, PublishReceipt, PublishRequest};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let publishers = arg(1, 64) as usize;
    let per_call = arg(2, 16) as usize;
    let seconds = arg(3, 10);
    let update_pct = arg(4, 0);
    let seal_ms = arg(5, 250);
    let with_keys = arg(6, 0) == 1;
    let inflight = arg(7, 1) as usize;
    let rate = arg(8, 0);
    let seed: u64 = std::env::var("CANDOR_BENCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir()?;
    let keys = NodeKeys {
        head: SigningKeyPair::from_seed(&[1; 32]),
        smt: SigningKeyPair::from_seed(&[2; 32]),
        vrf_public: VrfSecretKey::from_bytes(&[3; 32]).public_key(),
    };
    let mut config = NodeConfig::new(dir.path(), "bench.candor", keys);
    config.seal_interval = Duration::from_millis(seal_ms);
    config.max_inflight = inflight;
    let node = Node::start(config).await?;
    println!(
        "publishers={publishers} items/call={per_call} seconds={seconds} updates={update_pct}% \
         seal={seal_ms}ms keys={with_keys} inflight={inflight} rate={rate} seed={seed} shards={}",
        1 << node.config().shard_bits
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for p in 0..publishers {
        let publisher = node.publisher();
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        let counter = Arc::clone(&counter);
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (p as u64).wrapping_mul(0x9e37_79b9));
            let mut lat = Vec::new();
            let mut sample: Vec<PublishReceipt> = Vec::new();
            let mut errors = 0u64;
            // Open loop at `rate`: each publisher makes one call per period.
            let mut tick = (rate > 0).then(|| {
                let period = Duration::from_secs_f64((publishers * per_call) as f64 / rate as f64);
                let mut t = tokio::time::interval(period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let reqs: Vec<PublishRequest> = (0..per_call)
                    .map(|_| {
                        let issued = counter.load(Ordering::Relaxed);
                        let n = if issued > 0 && rng.random_range(0..100) < update_pct {
                            rng.random_range(0..issued)
                        } else {
                            counter.fetch_add(1, Ordering::Relaxed)
                        };
                        let label = format!("user-{n}@example.com");
                        PublishRequest {
                            tenant: "bench".into(),
                            idempotency_key: with_keys
                                .then(|| format!("{p}-{}", rng.random::<u64>())),
                            index: *blake3::hash(label.as_bytes()).as_bytes(),
                            label: label.into_bytes(),
                            value: rng.random::<[u8; 32]>().to_vec(),
                        }
                    })
                    .collect();
                let t = Instant::now();
                match publisher.publish(reqs).await {
                    Ok(res) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        for r in res {
                            match r {
                                Ok(r) => {
                                    done.fetch_add(1, Ordering::Relaxed);
                                    if rng.random_range(0..1000) == 0 {
                                        sample.push(r);
                                    }
                                }
                                Err(_) => errors += 1,
                            }
                        }
                    }
                    Err(_) => errors += per_call as u64,
                }
            }
            (lat, sample, errors)
        }));
    }
    let mut last = 0;
    for s in 1..=seconds {
        tokio::time::sleep_until((start + Duration::from_secs(s)).into()).await;
        let d = done.load(Ordering::Relaxed);
        println!(
            "t={s:>3}s  {:>8} mutations/s  epoch {}",
            d - last,
            node.epochs().latest_epoch()
        );
        last = d;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut lat = Vec::new();
    let mut sample = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, s, e) = h.await?;
        lat.extend(l);
        sample.extend(s);
        errors += e;
    }
    lat.sort_unstable();
    let total = done.load(Ordering::Relaxed);
    println!(
        "total {total} mutations in {:.1}s = {:.0} mutations/s, errors {errors}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "publish call latency (SMT latency) ms: p50 {:.1}  p99 {:.1}  max {:.1}  ({} calls)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        lat.len()
    );
    // Merge delay of a sample: first signed head whose map holds the SMT's version.
    let e = node.flush_epoch().await?;
    let epochs = node.epochs();
    let forest = node.forest();
    let mut delays = Vec::new();
    for r in &sample {
        let (mut lo, mut hi) = (1u64, e);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let v = epochs
                .view(&forest, mid)?
                .leaf(&r.leaf.index)?
                .map_or(0, |l| l.version);
            if v >= r.leaf.version {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        let h = epochs.head(lo)?.expect("head");
        delays.push(h.head.timestamp_ms.saturating_sub(r.smt.smt.timestamp_ms) * 1000);
    }
    delays.sort_unstable();
    println!(
        "merge delay ms (sample of {}): p50 {:.0}  p99 {:.0}",
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.99)
    );
    println!(
        "store on disk: {:.1} MiB",
        node.store().disk_space_bytes()? as f64 / (1 << 20) as f64
    );
    node.shutdown().await;
    Ok(())
}
