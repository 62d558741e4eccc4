//! Shared-state mode, cost of following: a replica that finds the store ahead on
//! every batch (the usual follower with FoundationDB) reads only what the new entries
//! staged, not the whole pending set again. Counts store reads (deterministic), never
//! time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candor_core::Index;
use candor_core::map::shard_of;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::{ApplyBatch, CommittedEntry, LogId, StateMachineLogic};
use candor_shard::{Item, ShardCommand, ShardLogic, ShardLogicConfig, ShardResponse};
use candor_store::{
    Direction, Durability, KeyRange, KeyValue, Limits, MemStore, ReadView, Space, Store, WriteBatch,
};
use candor_tree::{Forest, TreeConfig};

const BITS: u8 = 1;
const SHARD: u32 = 1;
const PER_ENTRY: u32 = 8;
const ENTRIES: u64 = 40;

/// Counts point reads and scans.
struct Counting {
    inner: MemStore,
    reads: AtomicU64,
}

impl ReadView for Counting {
    fn get(&self, space: Space, key: &[u8]) -> candor_store::Result<Option<Vec<u8>>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> candor_store::Result<Vec<KeyValue>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.scan(space, range, direction, limit)
    }
}

impl Store for Counting {
    fn write(&self, batch: &WriteBatch, durability: Durability) -> candor_store::Result<()> {
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

fn index_of(n: u32) -> Index {
    let mut i = *blake3::hash(&n.to_be_bytes()).as_bytes();
    i[0] |= 0x80;
    debug_assert_eq!(shard_of(&i, BITS), SHARD);
    i
}

fn entry(e: u64) -> Vec<u8> {
    let items = (0..PER_ENTRY)
        .map(|k| {
            // Half new labels, half updates of labels staged earlier (still pending).
            let n = if k % 2 == 0 {
                e as u32 * PER_ENTRY + k
            } else {
                k
            };
            Item {
                tenant: "t".into(),
                idempotency_key: None,
                label: n.to_be_bytes().to_vec(),
                index: index_of(n),
                value: e.to_be_bytes().to_vec(),
                nonce: *blake3::hash(&(e * 100 + u64::from(k)).to_be_bytes()).as_bytes(),
            }
        })
        .collect();
    ShardCommand::Publish {
        timestamp_ms: 1_000 + e,
        items,
    }
    .encode()
}

fn apply_one(logic: &mut ShardLogic, index: u64, data: &[u8]) -> ShardResponse {
    let log_id = LogId {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    };
    let committed = [CommittedEntry { log_id, data }];
    let out = logic
        .apply(ApplyBatch {
            entries: &committed,
            last_log_id: log_id,
            marker: &index.to_be_bytes(),
        })
        .expect("apply");
    ShardResponse::decode(&out[0]).expect("response")
}

#[test]
fn a_follower_reads_only_what_the_new_entries_staged() {
    let store = Arc::new(Counting {
        inner: MemStore::new(),
        reads: AtomicU64::new(0),
    });
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    let tree = TreeConfig {
        shard_bits: BITS,
        ..TreeConfig::default()
    };
    let leader_forest = Forest::open(Arc::clone(&dyn_store), tree.clone()).unwrap();
    let follower_forest = Forest::open(Arc::clone(&dyn_store), tree).unwrap();
    let config = ShardLogicConfig::default();
    let mut leader = ShardLogic::open_shared(&leader_forest, SHARD, 1, config.clone()).unwrap();
    let mut follower = ShardLogic::open_shared(&follower_forest, SHARD, 2, config).unwrap();
    let mut per_batch = Vec::new();
    for e in 1..=ENTRIES {
        let data = entry(e);
        let first = apply_one(&mut leader, e, &data);
        assert!(matches!(first, ShardResponse::Published(_)), "{first:?}");
        let before = store.reads.load(Ordering::Relaxed);
        // The follower finds the entry applied: it catches up and answers from the
        // stored response.
        let again = apply_one(&mut follower, e, &data);
        per_batch.push(store.reads.load(Ordering::Relaxed) - before);
        assert_eq!(again, first, "entry {e}");
    }
    println!("store reads per follower batch: {per_batch:?}");
    // The pending set grows by PER_ENTRY / 2 labels per entry (no seal); re-reading it
    // would cost more than 4 × 30 = 120 reads per batch by the end. The new entry's
    // labels, the state, its pending record and its stored response cost a constant.
    let worst_late = per_batch[30..].iter().max().copied().unwrap_or(0);
    assert!(
        worst_late <= u64::from(PER_ENTRY) * 4 + 16,
        "a follower batch read {worst_late} times: {per_batch:?}"
    );
}
