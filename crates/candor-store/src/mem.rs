//! In-memory backend for unit tests of other crates.
//!
//! One `BTreeMap` per space behind a lock. Not durable: [`Durability`] is ignored.
//! Clones of a [`MemStore`] share the same data, which is how the conformance suite's
//! "reopen" works for it. Snapshots are copy-on-write: taking one is O(1); the first
//! write while a snapshot is alive copies the maps (fine for tests, which this is for).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::error::Result;
use crate::store::{ReadView, Store};
use crate::types::{Direction, Durability, KeyRange, KeyValue, Limits, Op, Space, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Maps = [Map; Space::ALL.len()];

/// The in-memory backend. Enforces the same [`Limits`] as the embedded one.
#[derive(Clone)]
pub struct MemStore {
    inner: Arc<Inner>,
}

struct Inner {
    data: RwLock<Arc<Maps>>,
    limits: Limits,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store with [`Limits::PORTABLE`].
    pub fn new() -> Self {
        Self::with_limits(Limits::PORTABLE)
    }

    /// An empty store enforcing `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        MemStore {
            inner: Arc::new(Inner {
                data: RwLock::new(Arc::new(Default::default())),
                limits,
            }),
        }
    }

    fn current(&self) -> Arc<Maps> {
        // A poisoned lock only means a writer panicked (allocation failure); the maps are
        // still a valid state because writes are applied after all checks.
        self.inner
            .data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn scan_map(map: &Map, range: &KeyRange, direction: Direction, limit: usize) -> Vec<KeyValue> {
    if range.is_empty() || limit == 0 {
        return Vec::new();
    }
    let it = map.range::<[u8], _>(range.as_bounds());
    let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
    match direction {
        Direction::Forward => it.take(limit).map(clone).collect(),
        Direction::Reverse => it.rev().take(limit).map(clone).collect(),
    }
}

/// A read view over one immutable version of the maps.
struct MemView(Arc<Maps>);

impl ReadView for MemView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0[space.index()].get(key).cloned())
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        Ok(scan_map(&self.0[space.index()], range, direction, limit))
    }
}

impl ReadView for MemStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let g = self.inner.data.read().unwrap_or_else(|e| e.into_inner());
        Ok(g[space.index()].get(key).cloned())
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let g = self.inner.data.read().unwrap_or_else(|e| e.into_inner());
        Ok(scan_map(&g[space.index()], range, direction, limit))
    }

    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        MemView(self.current()).get_many(space, keys)
    }

    fn get_le_many(
        &self,
        space: Space,
        queries: &[(&[u8], &[u8])],
    ) -> Result<Vec<Option<KeyValue>>> {
        MemView(self.current()).get_le_many(space, queries)
    }
}

impl Store for MemStore {
    fn write(&self, batch: &WriteBatch, _durability: Durability) -> Result<()> {
        batch.validate(&self.inner.limits)?;
        let mut g = self.inner.data.write().unwrap_or_else(|e| e.into_inner());
        batch.check_preconditions(|space, key| Ok(g[space.index()].get(key).cloned()))?;
        let maps = Arc::make_mut(&mut *g);
        for op in batch.ops() {
            match op {
                Op::Put { space, key, value } => {
                    maps[space.index()].insert(key.clone(), value.clone());
                }
                Op::Delete { space, key } => {
                    maps[space.index()].remove(key.as_slice());
                }
                Op::DeleteRange { space, range } => {
                    if !range.is_empty() {
                        let map = &mut maps[space.index()];
                        let doomed: Vec<Vec<u8>> = map
                            .range::<[u8], _>(range.as_bounds())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        self.inner.limits
    }

    fn snapshot(&self) -> Result<Box<dyn ReadView>> {
        Ok(Box::new(MemView(self.current())))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn disk_space_bytes(&self) -> Result<u64> {
        let maps = self.current();
        Ok(maps
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}
