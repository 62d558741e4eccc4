//! The narrow key-value seam the Raft log store is written against.
//!
//! The log store needs five things from a store: point reads, ordered range scans,
//! "greatest key ≤ k" (seek-for-prev), atomic batch writes, and a durability barrier.
//! [`RaftKv`] names exactly those, so the embedded `candor-store` backend (or anything
//! else) plugs in through a thin adapter.
//!
//! # Durability contract (the part the log store relies on)
//!
//! * A [`RaftKv::write`] is atomic and, once it returns, visible to every later read
//!   from any thread.
//! * After a crash, the surviving writes are a **prefix** of the write order (a
//!   write-ahead-log property). [`Durability::Buffered`] writes may be lost, but never a
//!   buffered write while a later one survives.
//! * [`RaftKv::sync`] (and a [`Durability::Sync`] write) makes every write that returned
//!   before it durable.
//!
//! Raft appends are written `Buffered` (cheap, immediately readable) and acknowledged to
//! openraft only after a later `sync` returned, so one fsync covers every append, vote
//! and truncation queued behind it, across all groups sharing the store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// How durable a write must be when [`RaftKv::write`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (fsync) before returning.
    Sync,
    /// Visible immediately, durable at the next sync.
    Buffered,
}

/// One mutation in a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
    /// Remove every key in `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// An ordered list of mutations applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Queue a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put(key, value));
    }
    /// Queue a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete(key));
    }
    /// Queue a range delete of `[start, end)`.
    pub fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(WriteOp::DeleteRange(start, end));
    }
    /// Number of queued operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The queued operations, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }
    /// Consume the batch.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }
}

/// A failure reported by the key-value backend.
#[derive(Debug, thiserror::Error)]
#[error("kv store: {message}")]
pub struct KvError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl KvError {
    /// An error with only a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }
    /// Wrap a backend error.
    pub fn wrap(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// A key/value pair as returned by scans.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// The store operations the Raft log needs. See the module docs for the contract.
pub trait RaftKv: Send + Sync + 'static {
    /// Point read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Ascending pairs with `start <= key < end`, at most `limit` of them.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>, KvError>;
    /// The pair with the greatest key `<= key`, if any.
    fn seek_for_prev(&self, key: &[u8]) -> Result<Option<KvPair>, KvError>;
    /// Apply `batch` atomically.
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), KvError>;
    /// Make every write that returned before this call durable.
    fn sync(&self) -> Result<(), KvError>;
}

impl<T: RaftKv + ?Sized> RaftKv for Arc<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        (**self).get(key)
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>, KvError> {
        (**self).scan(start, end, limit)
    }
    fn seek_for_prev(&self, key: &[u8]) -> Result<Option<KvPair>, KvError> {
        (**self).seek_for_prev(key)
    }
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), KvError> {
        (**self).write(batch, durability)
    }
    fn sync(&self) -> Result<(), KvError> {
        (**self).sync()
    }
}

/// An in-memory [`RaftKv`] that models crashes: it keeps the state a power cut would
/// leave (everything up to the last sync) beside the live state, so tests can check
/// that nothing acknowledged is lost.
#[derive(Default)]
pub struct MemKv {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    // Buffered batches since the last sync, in write order.
    pending: Vec<Vec<WriteOp>>,
    syncs: u64,
    fail_writes: bool,
}

fn apply_ops(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::Put(k, v) => {
                map.insert(k.clone(), v.clone());
            }
            WriteOp::Delete(k) => {
                map.remove(k);
            }
            WriteOp::DeleteRange(s, e) => {
                if s < e {
                    let doomed: Vec<Vec<u8>> = map
                        .range::<[u8], _>((Bound::Included(&s[..]), Bound::Excluded(&e[..])))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
    }
}

impl MemKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        // A panic while holding the lock leaves consistent maps (each op is applied
        // whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store a power cut would leave behind: only synced writes survive.
    pub fn crash_copy(&self) -> MemKv {
        let st = self.lock();
        MemKv {
            state: Mutex::new(MemState {
                live: st.durable.clone(),
                durable: st.durable.clone(),
                ..MemState::default()
            }),
        }
    }

    /// The store after a clean shutdown: every write survives.
    pub fn clean_copy(&self) -> MemKv {
        let st = self.lock();
        MemKv {
            state: Mutex::new(MemState {
                live: st.live.clone(),
                durable: st.live.clone(),
                ..MemState::default()
            }),
        }
    }

    /// Number of syncs performed (a test probe for group commit).
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Make every later write fail (a test probe for I/O errors).
    pub fn set_fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// True when no key is live.
    pub fn is_empty(&self) -> bool {
        self.lock().live.is_empty()
    }
}

impl RaftKv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.lock().live.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>, KvError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .live
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn seek_for_prev(&self, key: &[u8]) -> Result<Option<KvPair>, KvError> {
        Ok(self
            .lock()
            .live
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), KvError> {
        let mut st = self.lock();
        if st.fail_writes {
            return Err(KvError::msg("injected write failure"));
        }
        let ops = batch.into_ops();
        apply_ops(&mut st.live, &ops);
        st.pending.push(ops);
        if durability == Durability::Sync {
            drop(st);
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), KvError> {
        let mut st = self.lock();
        if st.fail_writes {
            return Err(KvError::msg("injected sync failure"));
        }
        let pending = std::mem::take(&mut st.pending);
        for ops in &pending {
            apply_ops(&mut st.durable, ops);
        }
        st.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_prefix() {
        let kv = MemKv::new();
        let mut b = WriteBatch::new();
        b.put(b"a".to_vec(), b"1".to_vec());
        kv.write(b, Durability::Buffered).unwrap();
        kv.sync().unwrap();
        let mut b = WriteBatch::new();
        b.put(b"b".to_vec(), b"2".to_vec());
        b.delete(b"a".to_vec());
        kv.write(b, Durability::Buffered).unwrap();
        assert_eq!(kv.get(b"a").unwrap(), None);
        let crashed = kv.crash_copy();
        assert_eq!(crashed.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(crashed.get(b"b").unwrap(), None);
        let clean = kv.clean_copy();
        assert_eq!(clean.get(b"b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn scan_and_seek_for_prev() {
        let kv = MemKv::new();
        let mut b = WriteBatch::new();
        for i in 0u8..10 {
            b.put(vec![i], vec![i]);
        }
        b.delete_range(vec![3], vec![5]);
        kv.write(b, Durability::Sync).unwrap();
        let got: Vec<u8> = kv
            .scan(&[2], &[7], 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(got, vec![2, 5, 6]);
        assert_eq!(
            kv.seek_for_prev(&[4]).unwrap().map(|(k, _)| k),
            Some(vec![2])
        );
        assert_eq!(kv.scan(&[7], &[2], 100).unwrap(), vec![]);
    }
}
