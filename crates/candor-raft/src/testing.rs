//! Test support: a small reference [`StateMachineLogic`] for tests, benchmarks and as an
//! example for the shard and sequencer (an append-only list of payloads persisted in a
//! `candor_store::Store`), and the pieces every deterministic simulation uses
//! ([`on_virtual_clock`], [`MessageRecorder`], [`first_divergence`]).

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::in_process::{FaultHook, MessageInfo, Verdict};
use rand::rngs::StdRng;

use crate::state_machine::{ApplyBatch, StateMachineLogic};
use crate::types::{decode, encode};
use candor_store::{
    Direction, Durability, KeyRange, Space, Store, StoreError, WriteBatch, scan_pages,
};

const TAG_ITEM: u8 = b'i';
const TAG_MARKER: u8 = b'm';
const SPACE: Space = Space::Meta;

/// Appends every applied payload to a list; the response to an entry is its 1-based
/// position in the list as `u64` big-endian. Each batch (items + marker) is one atomic
/// buffered store write, as a real state machine would do it.
pub struct AppendLog {
    kv: Arc<dyn Store>,
    prefix: Vec<u8>,
    items: Vec<Vec<u8>>,
    marker: Option<Vec<u8>>,
}

impl AppendLog {
    /// Open (or recover) the list stored under `prefix` in `kv`.
    pub fn open(kv: Arc<dyn Store>, prefix: &[u8]) -> Result<Self, StoreError> {
        let mut this = Self {
            kv,
            prefix: prefix.to_vec(),
            items: Vec::new(),
            marker: None,
        };
        this.marker = this.kv.get(SPACE, &this.key(TAG_MARKER, &[]))?;
        let range = KeyRange::half_open(this.key(TAG_ITEM, &[]), this.key(TAG_ITEM + 1, &[]));
        this.items = scan_pages(&*this.kv, SPACE, range, Direction::Forward, 1024)
            .map(|r| r.map(|(_, v)| v))
            .collect::<Result<_, _>>()?;
        Ok(this)
    }

    fn key(&self, tag: u8, rest: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.push(tag);
        k.extend_from_slice(rest);
        k
    }

    /// Every payload applied so far, in log order.
    pub fn items(&self) -> &[Vec<u8>] {
        &self.items
    }

    /// Decode a response produced by this logic.
    pub fn position(response: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(response.try_into().ok()?))
    }
}

impl StateMachineLogic for AppendLog {
    type Error = StoreError;

    fn apply(&mut self, batch: ApplyBatch<'_>) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut b = WriteBatch::new();
        let mut responses = Vec::with_capacity(batch.entries.len());
        let base = self.items.len() as u64;
        for (i, e) in (0u64..).zip(batch.entries) {
            let pos = base + i + 1;
            b.put(
                SPACE,
                self.key(TAG_ITEM, &pos.to_be_bytes()),
                e.data.to_vec(),
            );
            responses.push(pos.to_be_bytes().to_vec());
        }
        // The marker goes last: a chunked write that stops midway leaves no marker for
        // the partial batch, and re-applying it rewrites the same keys.
        b.put(SPACE, self.key(TAG_MARKER, &[]), batch.marker.to_vec());
        self.kv.write_chunked(b, Durability::Buffered)?;
        self.items
            .extend(batch.entries.iter().map(|e| e.data.to_vec()));
        self.marker = Some(batch.marker.to_vec());
        Ok(responses)
    }

    fn applied_marker(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.marker.clone())
    }

    /// The items, encoded in memory (this logic is small; store-backed logics stream
    /// from a store view instead, see [`crate::store_snapshot`]).
    fn snapshot(&self) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
        let bytes = encode(&self.items)
            .map_err(|e| StoreError::Corruption(format!("append-log snapshot: {e}")))?;
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }

    fn restore(&mut self, data: &mut dyn std::io::Read, marker: &[u8]) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        let items: Vec<Vec<u8>> = decode(&bytes)
            .map_err(|e| StoreError::Corruption(format!("append-log snapshot: {e}")))?;
        let mut b = WriteBatch::new();
        b.delete_range(
            SPACE,
            KeyRange::half_open(self.key(TAG_ITEM, &[]), self.key(TAG_ITEM + 1, &[])),
        );
        for (pos, item) in (1u64..).zip(&items) {
            b.put(SPACE, self.key(TAG_ITEM, &pos.to_be_bytes()), item.clone());
        }
        b.put(SPACE, self.key(TAG_MARKER, &[]), marker.to_vec());
        self.kv.write_chunked(b, Durability::Buffered)?;
        self.items = items;
        self.marker = Some(marker.to_vec());
        Ok(())
    }
}

/// Runs `f` as a deterministic simulation: a fresh current-thread runtime with a paused
/// clock, the thread seeded with `seed` ([`candor_sim::seed_thread`]: openraft's draws,
/// SMT nonces, the virtual wall clock, blocking work inline).
pub fn on_virtual_clock<T>(seed: u64, f: impl Future<Output = T>) -> T {
    candor_sim::seed_thread(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let out = rt.block_on(f);
    drop(rt);
    candor_sim::unseed_thread();
    out
}

/// A fault hook that decides nothing and records every message: virtual time since it
/// was made, endpoints, group, kind and size. Two runs of one seed must record the same.
pub struct MessageRecorder {
    start: tokio::time::Instant,
    lines: Mutex<Vec<String>>,
}

impl MessageRecorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(MessageRecorder {
            start: tokio::time::Instant::now(),
            lines: Mutex::new(Vec::new()),
        })
    }

    /// Everything recorded so far (and starts again).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl FaultHook for MessageRecorder {
    fn decide(&self, m: &MessageInfo, _rng: &mut StdRng) -> Option<Verdict> {
        let line = format!(
            "{:>9}us {}->{} g{} {:?} {}B",
            self.start.elapsed().as_micros(),
            m.from,
            m.to,
            m.group.0,
            m.kind,
            m.len
        );
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        None
    }
}

/// Where two recordings part: the first differing position with a few lines of each
/// around it, or `None` when they are equal.
pub fn first_divergence(a: &[String], b: &[String]) -> Option<String> {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))?;
    let around = |v: &[String]| v[i.saturating_sub(3)..(i + 3).min(v.len())].join("\n  ");
    Some(format!(
        "runs part at message {i} of {}/{}:\nfirst run:\n  {}\nsecond run:\n  {}",
        a.len(),
        b.len(),
        around(a),
        around(b)
    ))
}
