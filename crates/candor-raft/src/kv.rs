//! [`CrashStore`]: a `candor_store::Store` that models power loss, for tests.
//!
//! The Raft log relies on the store contract of `candor-store`: atomic batches, visibility
//! in write order, [`Durability::Buffered`] writes durable at the next `sync` or `Sync`
//! write, and durability closed under prefixes (after a crash the store holds a prefix of
//! the acknowledged batches). `CrashStore` keeps, beside the live state, exactly what a
//! power cut would leave: the batches up to the last sync. Tests "crash" a node by
//! restarting it on [`CrashStore::crash_copy`] and check that nothing acknowledged is lost.

use std::sync::{Arc, Mutex, MutexGuard};

use candor_store::{
    Direction, Durability, KeyRange, KeyValue, Limits, MemStore, ReadView, Space, Store,
    StoreError, WriteBatch,
};

/// An in-memory [`Store`] that can be "crashed". Same limits as the real backends.
pub struct CrashStore {
    live: MemStore,
    state: Mutex<CrashState>,
}

#[derive(Default)]
struct CrashState {
    durable: Vec<WriteBatch>,
    pending: Vec<WriteBatch>,
    syncs: u64,
    fail_writes: bool,
}

impl Default for CrashStore {
    fn default() -> Self {
        Self::new()
    }
}

impl CrashStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            live: MemStore::new(),
            state: Mutex::new(CrashState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CrashState> {
        // Poisoning needs a panic inside this module's short critical sections; the
        // vectors are still consistent then.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replay(batches: &[WriteBatch]) -> Result<Self, StoreError> {
        let store = Self::new();
        for b in batches {
            store.live.write(b, Durability::Buffered)?;
        }
        store.lock().durable = batches.to_vec();
        Ok(store)
    }

    /// The store a power cut would leave behind: only synced batches survive.
    pub fn crash_copy(&self) -> Result<Self, StoreError> {
        let durable = self.lock().durable.clone();
        Self::replay(&durable)
    }

    /// The store after a clean shutdown: every acknowledged batch survives.
    pub fn clean_copy(&self) -> Result<Self, StoreError> {
        let st = self.lock();
        let all: Vec<WriteBatch> = st.durable.iter().chain(&st.pending).cloned().collect();
        drop(st);
        Self::replay(&all)
    }

    /// Number of syncs so far (a probe for group commit).
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// Make every later write and sync fail (a probe for I/O errors).
    pub fn set_fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }
}

impl ReadView for CrashStore {
    fn get(&self, space: Space, key: &[u8]) -> candor_store::Result<Option<Vec<u8>>> {
        self.live.get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> candor_store::Result<Vec<KeyValue>> {
        self.live.scan(space, range, direction, limit)
    }

    fn get_le(
        &self,
        space: Space,
        key: &[u8],
        floor: &[u8],
    ) -> candor_store::Result<Option<KeyValue>> {
        self.live.get_le(space, key, floor)
    }
}

impl Store for CrashStore {
    fn write(&self, batch: &WriteBatch, durability: Durability) -> candor_store::Result<()> {
        // The lock orders the live write and the pending record identically.
        let mut st = self.lock();
        if st.fail_writes {
            return Err(StoreError::Io(std::io::Error::other(
                "injected write failure",
            )));
        }
        self.live.write(batch, Durability::Buffered)?;
        st.pending.push(batch.clone());
        if durability == Durability::Sync {
            let pending = std::mem::take(&mut st.pending);
            st.durable.extend(pending);
            st.syncs += 1;
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.live.limits()
    }

    fn snapshot(&self) -> candor_store::Result<Box<dyn ReadView>> {
        self.live.snapshot()
    }

    fn sync(&self) -> candor_store::Result<()> {
        let mut st = self.lock();
        if st.fail_writes {
            return Err(StoreError::Io(std::io::Error::other(
                "injected sync failure",
            )));
        }
        let pending = std::mem::take(&mut st.pending);
        st.durable.extend(pending);
        st.syncs += 1;
        Ok(())
    }

    fn disk_space_bytes(&self) -> candor_store::Result<u64> {
        self.live.disk_space_bytes()
    }
}

/// Convenience: a fresh [`CrashStore`] as a shared [`Store`].
pub fn crash_store() -> (Arc<CrashStore>, Arc<dyn Store>) {
    let s = Arc::new(CrashStore::new());
    let d: Arc<dyn Store> = Arc::clone(&s) as Arc<dyn Store>;
    (s, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &[u8], v: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(Space::RaftLog, k.to_vec(), v.to_vec());
        b
    }

    #[test]
    fn crash_keeps_only_synced_prefix() {
        let s = CrashStore::new();
        s.write(&put(b"a", b"1"), Durability::Buffered).unwrap();
        s.sync().unwrap();
        let mut b = put(b"b", b"2");
        b.delete(Space::RaftLog, b"a".to_vec());
        s.write(&b, Durability::Buffered).unwrap();
        assert_eq!(s.get(Space::RaftLog, b"a").unwrap(), None);
        let crashed = s.crash_copy().unwrap();
        assert_eq!(
            crashed.get(Space::RaftLog, b"a").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(crashed.get(Space::RaftLog, b"b").unwrap(), None);
        let clean = s.clean_copy().unwrap();
        assert_eq!(
            clean.get(Space::RaftLog, b"b").unwrap(),
            Some(b"2".to_vec())
        );
        // A sync write makes everything before it durable too.
        s.write(&put(b"c", b"3"), Durability::Sync).unwrap();
        let crashed = s.crash_copy().unwrap();
        assert_eq!(
            crashed.get(Space::RaftLog, b"b").unwrap(),
            Some(b"2".to_vec())
        );
    }

    #[test]
    fn injected_failures() {
        let s = CrashStore::new();
        s.set_fail_writes(true);
        assert!(s.write(&put(b"a", b"1"), Durability::Buffered).is_err());
        assert!(s.sync().is_err());
        s.set_fail_writes(false);
        s.write(&put(b"a", b"1"), Durability::Sync).unwrap();
        assert_eq!(s.sync_count(), 1);
    }
}
