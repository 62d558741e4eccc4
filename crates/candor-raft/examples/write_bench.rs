//! Performance smoke test: one single-node group on the embedded store, concurrent
//! `client_write`s through the whole stack (propose, append + fsync, commit, apply).
//!
//! ```text
//! cargo run --release -p candor-raft --example write_bench -- [writes] [writers] [payload_bytes] [groups] [fjall|mem]
//! ```
//! Defaults: 50000 writes, 64 writers, 100-byte payloads, 1 group, fjall (fsync on).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candor_raft::testing::AppendLog;
use candor_raft::{CrashStore, GroupId, InProcessNetwork, RaftNode, RaftNodeConfig};
use candor_store::{
    Direction, Durability, FjallStore, KeyRange, KeyValue, Limits, ReadView, Space, Store,
    WriteBatch,
};

/// Counts syncs, to show group commit at work.
struct Counting<S> {
    inner: S,
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl<S: Store> ReadView for Counting<S> {
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
    fn get_le(
        &self,
        space: Space,
        key: &[u8],
        floor: &[u8],
    ) -> candor_store::Result<Option<KeyValue>> {
        self.inner.get_le(space, key, floor)
    }
}

impl<S: Store> Store for Counting<S> {
    fn write(&self, batch: &WriteBatch, durability: Durability) -> candor_store::Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if durability == Durability::Sync {
            self.syncs.fetch_add(1, Ordering::Relaxed);
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
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync()
    }
    fn disk_space_bytes(&self) -> candor_store::Result<u64> {
        self.inner.disk_space_bytes()
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let writes = arg(1, 50_000);
    let writers = arg(2, 64);
    let payload = usize::try_from(arg(3, 100))?;
    let groups = arg(4, 1);
    let backend = std::env::args().nth(5).unwrap_or_else(|| "fjall".into());

    let dir = tempfile::tempdir()?;
    let store: Arc<Counting<Arc<dyn Store>>> = Arc::new(Counting {
        inner: match backend.as_str() {
            "mem" => Arc::new(CrashStore::new()) as Arc<dyn Store>,
            _ => Arc::new(FjallStore::open(dir.path())?) as Arc<dyn Store>,
        },
        syncs: AtomicU64::new(0),
        writes: AtomicU64::new(0),
    });
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;

    let net = InProcessNetwork::new(0);
    let node = RaftNode::new(
        RaftNodeConfig::new(1, "local"),
        Arc::clone(&dyn_store),
        net.endpoint(1),
    )?;
    net.register(&node);
    let mut gs = Vec::new();
    for g in 0..groups {
        let mut prefix = b"bench/".to_vec();
        prefix.extend_from_slice(&g.to_be_bytes());
        let logic = AppendLog::open(Arc::clone(&dyn_store), &prefix)?;
        let group = node.start_group(GroupId(g), logic).await?;
        group
            .initialize([(1, "local".to_string())].into_iter().collect())
            .await?;
        group.wait_for_leader(Duration::from_secs(10)).await?;
        gs.push(group);
    }

    let syncs0 = store.syncs.load(Ordering::Relaxed);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let next = Arc::clone(&next);
        let g = gs[usize::try_from(w % groups)?].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return Ok::<_, candor_raft::Error>(lat);
                }
                let mut data = vec![0u8; payload];
                data[..8.min(payload)].copy_from_slice(&i.to_be_bytes()[..8.min(payload)]);
                let t = Instant::now();
                g.client_write(data).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let syncs = store.syncs.load(Ordering::Relaxed) - syncs0;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "backend={backend} groups={groups} writers={writers} payload={payload}B writes={writes}"
    );
    println!(
        "elapsed={:.2}s  throughput={:.0} writes/s  syncs={syncs} ({:.1} writes/sync)",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        writes as f64 / syncs.max(1) as f64
    );
    println!(
        "latency p50={:?} p99={:?} max={:?}",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
    node.shutdown().await;
    Ok(())
}
