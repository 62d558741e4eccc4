//! The shared state of all shard trees over one store: configuration,
//! caches, and the record readers every other module uses.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use candor_core::map::{Index, Leaf, Subtree};
use candor_store::{Direction, KeyRange, Space, Store, prefix_end};
use quick_cache::Weighter;

use crate::error::{Result, TreeError, corrupt, invalid};
use crate::keys::{
    self, MAX_SUFFIX, bits, get_compact, leaf_key, leaf_prefix, mask, meta_shard_key, node_key,
    node_pos_key, parse_leaf, parse_leaf_key, parse_node_key, put_compact, rev_key,
};
use crate::node::{LeafRef, Node, STRIDE, Stride};
use crate::shard::StoredOpening;

/// Tuning of a [`crate::Forest`].
#[derive(Debug, Clone)]
pub struct TreeConfig {
    /// `log2` of the number of shards (0..=16). Fixed for the life of a store:
    /// opening a store with another value fails.
    pub shard_bits: u8,
    /// Memory budget of the node cache (strides and revision records), bytes;
    /// up to 9 MiB of it holds the current strides of the top two levels.
    /// Default 64 MiB.
    pub cache_bytes: u64,
    /// Durability of [`crate::ShardTree::seal`] writes. Default `Sync`.
    pub seal_durability: candor_store::Durability,
    /// A seal hashes child subtrees in parallel (rayon) when a subtree has at
    /// least this many changes. Default 512.
    pub parallel_threshold: usize,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            shard_bits: 0,
            cache_bytes: 64 << 20,
            seal_durability: candor_store::Durability::Sync,
            parallel_threshold: 512,
        }
    }
}

/// Root of one shard at one revision, as its revision record holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RevRec {
    pub leaves: u64,
    pub root: Node,
}

impl RevRec {
    pub const EMPTY: RevRec = RevRec {
        leaves: 0,
        root: Node::Empty,
    };

    pub fn subtree(&self) -> Subtree {
        Subtree {
            hash: self.root.hash(),
            leaves: self.leaves,
        }
    }

    /// `1 || leaves u64 || node value || compact(rev)` (rev only for a non-empty root).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(90);
        v.push(1);
        v.extend_from_slice(&self.leaves.to_be_bytes());
        self.root.encode_value(&mut v);
        if let Some(r) = self.root.rev() {
            put_compact(&mut v, r);
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<RevRec> {
        if b.len() < 10 || b[0] != 1 {
            return Err(corrupt("revision record of unexpected shape"));
        }
        let leaves = u64::from_be_bytes(b[1..9].try_into().expect("8"));
        let (node, used) = Node::decode_value(&b[9..], 0)?;
        let rest = &b[9 + used..];
        let root = match node {
            Node::Empty => {
                if !rest.is_empty() {
                    return Err(corrupt("trailing bytes in revision record"));
                }
                Node::Empty
            }
            Node::Single { leaf, .. } => {
                let (rev, n) = get_compact(rest)?;
                if n != rest.len() {
                    return Err(corrupt("trailing bytes in revision record"));
                }
                Node::Single { leaf, rev }
            }
            Node::Multi { hash, .. } => {
                let (rev, n) = get_compact(rest)?;
                if n != rest.len() {
                    return Err(corrupt("trailing bytes in revision record"));
                }
                Node::Multi { hash, rev }
            }
        };
        if root.class() as u64 != leaves.min(2) {
            return Err(corrupt(
                "revision record leaf count disagrees with its root",
            ));
        }
        Ok(RevRec { leaves, root })
    }
}

/// Persistent per-shard state (space Meta).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ShardMeta {
    /// Latest sealed revision (0 = none).
    pub latest: u64,
    /// Oldest revision still readable.
    pub retained_from: u64,
    /// A seal of revision `latest + 1` that may have been partly written,
    /// with the digest of its input.
    pub pending: Option<(u64, [u8; 32])>,
}

impl ShardMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(58);
        v.push(1);
        v.extend_from_slice(&self.latest.to_be_bytes());
        v.extend_from_slice(&self.retained_from.to_be_bytes());
        if let Some((r, d)) = &self.pending {
            v.extend_from_slice(&r.to_be_bytes());
            v.extend_from_slice(d);
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<ShardMeta> {
        if (b.len() != 17 && b.len() != 57) || b[0] != 1 {
            return Err(corrupt("shard state record of unexpected shape"));
        }
        let latest = u64::from_be_bytes(b[1..9].try_into().expect("8"));
        let retained_from = u64::from_be_bytes(b[9..17].try_into().expect("8"));
        let pending = if b.len() == 57 {
            Some((
                u64::from_be_bytes(b[17..25].try_into().expect("8")),
                b[25..57].try_into().expect("32"),
            ))
        } else {
            None
        };
        if retained_from > latest {
            return Err(corrupt("shard state: retained revision beyond the latest"));
        }
        Ok(ShardMeta {
            latest,
            retained_from,
            pending,
        })
    }
}

/// In-process state of one shard (shared by its handles).
#[derive(Debug)]
pub(crate) struct ShardState {
    /// Held while sealing or pruning: one writer per shard.
    pub meta: Mutex<ShardMeta>,
    /// Copies of `meta.latest` / `meta.retained_from` for readers, which
    /// must not wait for a running seal.
    pub latest: std::sync::atomic::AtomicU64,
    pub retained_from: std::sync::atomic::AtomicU64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct StrideKey {
    pub shard: u32,
    pub depth: u16,
    pub prefix: Index,
    pub rev: u64,
}

#[derive(Clone)]
pub(crate) enum Cached {
    Stride(Arc<Stride>),
    Rev(RevRec),
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    Stride(StrideKey),
    Rev(u32, u64),
}

#[derive(Clone)]
pub(crate) struct CacheWeighter;

impl Weighter<CacheKey, Cached> for CacheWeighter {
    fn weight(&self, _k: &CacheKey, v: &Cached) -> u64 {
        64 + match v {
            Cached::Stride(s) => s.weight(),
            Cached::Rev(_) => std::mem::size_of::<RevRec>() as u64,
        }
    }
}

pub(crate) type NodeCache = quick_cache::sync::Cache<CacheKey, Cached, CacheWeighter>;

pub(crate) struct ForestInner {
    pub store: Arc<dyn Store>,
    pub config: TreeConfig,
    /// Strides and revision records, bounded by weight.
    pub cache: NodeCache,
    /// The newest known version of every stride above [`TOP_DEPTH`] (see
    /// there), by position: at most one per position, so bounded whatever
    /// the history, and never evicted by the lower levels' churn.
    pub top: Mutex<HashMap<TopKey, (u64, Arc<Stride>)>>,
    pub shards: Mutex<HashMap<u32, Arc<ShardState>>>,
    /// Stride loads from the store: (loads, entries scanned, seeks).
    pub loads: [std::sync::atomic::AtomicU64; 3],
}

/// The newest version of each stride of a node shallower than this (its
/// children at depth 16 or above: one per shard root above 16 and 256 at
/// depth 8, whatever the labels held) is kept apart from the weighted cache.
/// Every seal of a shard rewrites its top strides, so the cache holds many
/// superseded versions of them, and loading one scans every stored version
/// of its children, which grows with the labels (about 256 x labels / 65,536
/// records: 7,400 at 1.9M labels). In the weighted cache the new versions
/// were evicted before the next seal read them (a superseded version is
/// never read again by the writer), and these reloads were most of the
/// records read at scale (docs/performance.md).
pub(crate) const TOP_DEPTH: usize = 2 * STRIDE;

/// What [`TreeConfig::cache_bytes`] sets aside for the current top strides
/// (the rest of the budget is the weighted cache), or a quarter of a small
/// budget: the 256 at depth 8 weigh 8.4 MB once all their children exist
/// (33 KB each, from a few hundred thousand labels on), shard roots above
/// depth 16 a few KB each.
const TOP_RESERVE: u64 = 9 << 20;

/// A position above [`TOP_DEPTH`]: (shard, depth, prefix).
pub(crate) type TopKey = (u32, u16, Index);

/// More entries than this in one stride's key range and the reader switches
/// to one seek per child position (long histories without pruning). A seek
/// costs about as much as scanning a few hundred entries, so scanning wins
/// up to a few hundred versions per child position.
const STRIDE_SCAN_LIMIT: usize = 256 << STRIDE;

impl ForestInner {
    pub fn new(store: Arc<dyn Store>, config: TreeConfig) -> ForestInner {
        // Recency matters more than frequency here: a seal inserts the strides
        // it built and the next seal (or a proof at the new epoch) reads them.
        // quick_cache's default keeps only 3% for first-time entries, which
        // evicts them before that read; give them half.
        let make = |bytes: u64| {
            let options = quick_cache::OptionsBuilder::new()
                .estimated_items_capacity((bytes / 1024).max(16) as usize)
                .weight_capacity(bytes.max(1 << 16))
                .hot_allocation(0.5)
                .build()
                .expect("valid cache options");
            quick_cache::sync::Cache::with_options(
                options,
                CacheWeighter,
                Default::default(),
                Default::default(),
            )
        };
        let top = TOP_RESERVE.min(config.cache_bytes / 4);
        ForestInner {
            cache: make(config.cache_bytes - top),
            top: Mutex::new(HashMap::new()),
            store,
            config,
            shards: Mutex::new(HashMap::new()),
            loads: Default::default(),
        }
    }

    pub fn shard_bits(&self) -> usize {
        self.config.shard_bits as usize
    }

    pub fn shard_count(&self) -> u32 {
        1u32 << self.config.shard_bits
    }

    /// Depth of the stored nodes below `depth`: the next multiple of
    /// [`STRIDE`] (and 256). Stored depths are aligned whatever the shard
    /// bits, so a shard root's stride is shorter and every lower level is
    /// the same as with one shard: how many leaves a stride holds, and so
    /// which levels fit the cache, does not depend on the shard count.
    pub fn child_depth(depth: usize) -> usize {
        ((depth / STRIDE + 1) * STRIDE).min(256)
    }

    pub fn read_meta(&self, shard: u32) -> Result<ShardMeta> {
        match self.store.get(Space::Meta, &meta_shard_key(shard))? {
            Some(v) => ShardMeta::decode(&v),
            None => Ok(ShardMeta::default()),
        }
    }

    /// The root of `shard` at revision `rev`.
    pub fn rev_rec(&self, shard: u32, rev: u64) -> Result<RevRec> {
        if rev == 0 {
            return Ok(RevRec::EMPTY);
        }
        let key = CacheKey::Rev(shard, rev);
        if let Some(Cached::Rev(r)) = self.cache.get(&key) {
            return Ok(r);
        }
        let rec = match self.store.get(Space::Tree, &rev_key(shard, rev))? {
            Some(v) => RevRec::decode(&v)?,
            None => {
                let meta = self.read_meta(shard)?;
                return Err(if rev > meta.latest {
                    TreeError::NotSealed {
                        shard,
                        revision: rev,
                        latest: meta.latest,
                    }
                } else if rev < meta.retained_from {
                    TreeError::Pruned {
                        shard,
                        revision: rev,
                        retained_from: meta.retained_from,
                    }
                } else {
                    corrupt(format!("shard {shard}: revision record {rev} is missing"))
                });
            }
        };
        if let Node::Single { leaf, .. } = &rec.root
            && keys::mask(&leaf.index, self.shard_bits()) != shard_prefix(shard, self.shard_bits())
        {
            return Err(corrupt("shard root leaf belongs to another shard"));
        }
        self.cache.insert(key, Cached::Rev(rec));
        Ok(rec)
    }

    pub fn cache_rev(&self, shard: u32, rev: u64, rec: RevRec) {
        self.cache
            .insert(CacheKey::Rev(shard, rev), Cached::Rev(rec));
    }

    /// Caches a stride. A top stride newer than the one held for its
    /// position replaces it, and the one it replaces moves to the weighted
    /// cache (readers of the last signed epoch may still need it).
    pub fn cache_stride(&self, key: StrideKey, s: Arc<Stride>) {
        if (key.depth as usize) < TOP_DEPTH {
            let tk = (key.shard, key.depth, key.prefix);
            let mut top = self.top.lock().unwrap_or_else(|e| e.into_inner());
            match top.get(&tk) {
                Some(held) if held.0 >= key.rev => {}
                _ => {
                    if let Some((rev, old)) = top.insert(tk, (key.rev, s.clone())) {
                        let old_key = StrideKey { rev, ..key.clone() };
                        drop(top);
                        self.cache
                            .insert(CacheKey::Stride(old_key), Cached::Stride(old));
                    }
                    return;
                }
            }
        }
        self.cache.insert(CacheKey::Stride(key), Cached::Stride(s));
    }

    /// The top stride held for `key`'s position, if it is `key`'s version.
    fn top_stride(&self, key: &StrideKey) -> Option<Arc<Stride>> {
        if key.depth as usize >= TOP_DEPTH {
            return None;
        }
        let top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        top.get(&(key.shard, key.depth, key.prefix))
            .filter(|held| held.0 == key.rev)
            .map(|held| held.1.clone())
    }

    /// Bytes held by the top strides (for the cache telemetry).
    pub fn top_weight(&self) -> u64 {
        let top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        top.values().map(|(_, s)| 64 + s.weight()).sum()
    }

    /// The children (one stride down) of the `Multi` node at `(depth, prefix)`
    /// written at revision `rev`, checked against its `hash`.
    pub fn stride(
        &self,
        shard: u32,
        depth: usize,
        prefix: &Index,
        rev: u64,
        hash: &[u8; 32],
    ) -> Result<Arc<Stride>> {
        let key = StrideKey {
            shard,
            depth: depth as u16,
            prefix: *prefix,
            rev,
        };
        if let Some(s) = self.top_stride(&key) {
            return Ok(s);
        }
        let ck = CacheKey::Stride(key.clone());
        if let Some(Cached::Stride(s)) = self.cache.get(&ck) {
            return Ok(s);
        }
        self.loads[0].fetch_add(1, Ordering::Relaxed);
        let s = Arc::new(self.load_stride(shard, depth, prefix, rev)?);
        let root = s.root();
        if root.class != 2 || root.hash != *hash {
            return Err(corrupt(format!(
                "shard {shard}: children of node at depth {depth} (revision {rev}) do not hash to it"
            )));
        }
        self.cache_stride(key, s.clone());
        Ok(s)
    }

    fn load_stride(&self, shard: u32, depth: usize, prefix: &Index, rev: u64) -> Result<Stride> {
        let cd = Self::child_depth(depth);
        let k = cd - depth;
        if k == 0 {
            return Err(corrupt("interior node at depth 256"));
        }
        let lo = *prefix;
        let hi = keys::extend(prefix, depth, k, (1 << k) - 1);
        let start = node_key(shard, cd, &lo, 0);
        let end = prefix_end(&node_pos_key(shard, cd, &hi)).ok_or_else(|| corrupt("key range"))?;
        let range = KeyRange::half_open(start, end);
        // Latest version <= rev of every child position, in suffix order
        // (versions of one position are consecutive keys, oldest first). The
        // visit reads records in place (no copy, no allocation per record).
        let mut children: Vec<(u16, Node)> = Vec::new();
        let mut scanned = 0usize;
        let mut failed: Option<TreeError> = None;
        self.store.scan_each(
            Space::Tree,
            &range,
            Direction::Forward,
            &mut |key, value| {
                scanned += 1;
                if scanned > STRIDE_SCAN_LIMIT {
                    return Ok(false);
                }
                match self.stride_child(key, value, rev, cd, prefix, depth, k) {
                    Ok(None) => {}
                    Ok(Some((s, node))) => match children.last_mut() {
                        Some(last) if last.0 == s => last.1 = node,
                        _ => children.push((s, node)),
                    },
                    Err(e) => {
                        failed = Some(e);
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.loads[1].fetch_add(scanned.min(STRIDE_SCAN_LIMIT) as u64, Ordering::Relaxed);
        if scanned > STRIDE_SCAN_LIMIT {
            return self.load_stride_by_seek(shard, depth, prefix, rev);
        }
        Ok(Stride::build(k, children))
    }

    /// One record of a stride scan: its child position and node, or `None`
    /// for a version newer than `rev`.
    #[allow(clippy::too_many_arguments)]
    fn stride_child(
        &self,
        key: &[u8],
        value: &[u8],
        rev: u64,
        cd: usize,
        prefix: &Index,
        depth: usize,
        k: usize,
    ) -> Result<Option<(u16, Node)>> {
        let (p, r) = parse_node_key(key, cd)?;
        if mask(&p, depth) != *prefix {
            return Err(corrupt("stride scan left its range"));
        }
        if r > rev {
            return Ok(None);
        }
        let s = bits(&p, depth, k) as u16;
        Ok(Some((
            s,
            self.decode_child(value, r, cd, prefix, depth, k, s)?,
        )))
    }

    /// One reverse seek per child position: bounded cost however many
    /// versions a position has.
    fn load_stride_by_seek(
        &self,
        shard: u32,
        depth: usize,
        prefix: &Index,
        rev: u64,
    ) -> Result<Stride> {
        let cd = Self::child_depth(depth);
        let k = cd - depth;
        let mut children = Vec::new();
        self.loads[2].fetch_add(1 << k, Ordering::Relaxed);
        for s in 0..(1usize << k) {
            let p = keys::extend(prefix, depth, k, s);
            let floor = node_pos_key(shard, cd, &p);
            let key = node_key(shard, cd, &p, rev);
            if let Some((kk, v)) = self.store.get_le(Space::Tree, &key, &floor)? {
                let (pp, r) = parse_node_key(&kk, cd)?;
                if pp != p {
                    return Err(corrupt("seek left its node position"));
                }
                children.push((
                    s as u16,
                    self.decode_child(&v, r, cd, prefix, depth, k, s as u16)?,
                ));
            }
        }
        Ok(Stride::build(k, children))
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_child(
        &self,
        v: &[u8],
        r: u64,
        cd: usize,
        prefix: &Index,
        depth: usize,
        k: usize,
        s: u16,
    ) -> Result<Node> {
        let n = Node::decode_record(v, r)?;
        if let Node::Single { leaf, .. } = &n
            && mask(&leaf.index, cd) != keys::extend(prefix, depth, k, s as usize)
        {
            return Err(corrupt("leaf reference stored under another position"));
        }
        if cd == 256 && matches!(n, Node::Multi { .. }) {
            return Err(corrupt("interior node at depth 256"));
        }
        Ok(n)
    }

    /// Leaf record `(index, version)`.
    pub fn read_leaf(&self, index: &Index, version: u64) -> Result<Option<Leaf>> {
        match self.store.get(Space::Tree, &leaf_key(index, version))? {
            Some(v) => Ok(Some(parse_leaf(*index, version, &v)?)),
            None => Ok(None),
        }
    }

    /// The leaf a tree node references, checked against the reference's hash.
    pub fn resolve(&self, r: &LeafRef) -> Result<Leaf> {
        Ok(self.resolve_with_opening(r, false)?.0)
    }

    /// [`ForestInner::resolve`], and with `opening` also the version's
    /// opening if it is still kept (same record: one read).
    pub fn resolve_with_opening(
        &self,
        r: &LeafRef,
        opening: bool,
    ) -> Result<(Leaf, Option<StoredOpening>)> {
        let v = self
            .store
            .get(Space::Tree, &leaf_key(&r.index, r.version))?
            .ok_or_else(|| {
                corrupt(format!(
                    "leaf record {} v{} referenced by the tree is missing",
                    hex(&r.index),
                    r.version
                ))
            })?;
        let leaf = parse_leaf(r.index, r.version, &v)?;
        if leaf.hash() != r.hash {
            return Err(corrupt("leaf record does not match the tree's hash of it"));
        }
        let opening = if opening {
            keys::parse_opening(&v)?
        } else {
            None
        };
        Ok((leaf, opening))
    }

    /// Newest leaf record of `index` (staged or sealed).
    pub fn latest_leaf(&self, index: &Index) -> Result<Option<Leaf>> {
        let floor = leaf_prefix(index);
        let mut key = floor.clone();
        key.push(MAX_SUFFIX);
        match self.store.get_le(Space::Tree, &key, &floor)? {
            Some((k, v)) => {
                let (i, ver) = parse_leaf_key(&k)?;
                if i != *index {
                    return Err(corrupt("leaf seek left its index"));
                }
                Ok(Some(parse_leaf(i, ver, &v)?))
            }
            None => Ok(None),
        }
    }

    /// Leaf records of `index` for versions `from..=to` (all must exist).
    pub fn leaf_range(&self, index: &Index, from: u64, to: u64) -> Result<Vec<Leaf>> {
        Ok(self
            .leaf_range_with_openings(index, from, to)?
            .into_iter()
            .map(|x| x.0)
            .collect())
    }

    /// [`ForestInner::leaf_range`] with each version's opening, if kept.
    pub fn leaf_range_with_openings(
        &self,
        index: &Index,
        from: u64,
        to: u64,
    ) -> Result<Vec<(Leaf, Option<StoredOpening>)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let start = leaf_key(index, from);
        let end = leaf_key(index, to);
        let range = KeyRange::inclusive(start, end);
        let mut out = Vec::with_capacity((to - from + 1).min(1024) as usize);
        for kv in
            candor_store::scan_pages(&*self.store, Space::Tree, range, Direction::Forward, 256)
        {
            let (k, v) = kv?;
            let (i, ver) = parse_leaf_key(&k)?;
            if i != *index || ver != from + out.len() as u64 {
                return Err(corrupt(format!(
                    "leaf versions of {} are not contiguous",
                    hex(index)
                )));
            }
            out.push((parse_leaf(i, ver, &v)?, keys::parse_opening(&v)?));
        }
        if out.len() as u64 != to - from + 1 {
            return Err(corrupt(format!(
                "leaf versions {from}..={to} of {} are incomplete",
                hex(index)
            )));
        }
        Ok(out)
    }

    pub fn shard_state(&self, shard: u32) -> Result<Arc<ShardState>> {
        if shard >= self.shard_count() {
            return Err(invalid(format!(
                "shard {shard} out of range (2^{} shards)",
                self.config.shard_bits
            )));
        }
        let mut map = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(&shard) {
            return Ok(s.clone());
        }
        let meta = self.read_meta(shard)?;
        let st = Arc::new(ShardState {
            meta: Mutex::new(meta),
            latest: meta.latest.into(),
            retained_from: meta.retained_from.into(),
        });
        map.insert(shard, st.clone());
        Ok(st)
    }
}

/// The first `shard_bits` bits of every index of `shard`, as a masked index.
pub(crate) fn shard_prefix(shard: u32, shard_bits: usize) -> Index {
    let mut p = [0u8; 32];
    if shard_bits > 0 {
        let v = shard << (32 - shard_bits);
        p[..4].copy_from_slice(&v.to_be_bytes());
    }
    p
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Forest;
    use candor_core::map::{Leaf, commit};

    /// Both ways of reading a stride (one scan, one seek per child) agree at
    /// every stored node of every revision, with histories of several versions.
    #[test]
    fn stride_scan_and_seek_agree() {
        let store: Arc<dyn Store> = Arc::new(candor_store::MemStore::new());
        let forest = Forest::open(store, TreeConfig::default()).unwrap();
        let tree = forest.shard(0).unwrap();
        let mut x = 7u64;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            x
        };
        let mut latest: Vec<Leaf> = Vec::new();
        for round in 0..12u64 {
            let mut items = Vec::new();
            for i in 0..300u64 {
                // New labels near each other (deep strides) and updates.
                if round > 0 && i % 3 == 0 {
                    let j = (next() % latest.len() as u64) as usize;
                    let c = commit(&[1; 32], &latest[j].index, latest[j].version + 1, b"v");
                    if items
                        .iter()
                        .all(|(l, _): &(Leaf, _)| l.index != latest[j].index)
                    {
                        latest[j] = latest[j].next(c);
                        items.push((latest[j], None));
                    }
                } else {
                    let mut index = [0u8; 32];
                    index[..8].copy_from_slice(&(next() & 0xFFFF_F000_0000_0000).to_be_bytes());
                    index[8..16].copy_from_slice(&next().to_be_bytes());
                    if latest.iter().any(|l| l.index == index) {
                        continue;
                    }
                    let leaf = Leaf::first(index, commit(&[1; 32], &index, 1, b"v"));
                    latest.push(leaf);
                    items.push((leaf, None));
                }
            }
            tree.apply(&items).unwrap();
        }
        let inner = &forest.inner;
        let mut checked = 0;
        for rev in 1..=tree.latest_revision() {
            let mut todo = vec![(0usize, [0u8; 32], inner.rev_rec(0, rev).unwrap().root)];
            while let Some((depth, prefix, node)) = todo.pop() {
                let Node::Multi { rev: r, .. } = node else {
                    continue;
                };
                let a = inner.load_stride(0, depth, &prefix, r).unwrap();
                let b = inner.load_stride_by_seek(0, depth, &prefix, r).unwrap();
                assert_eq!(a.children, b.children);
                assert_eq!(a.root(), b.root());
                checked += 1;
                let cd = ForestInner::child_depth(depth);
                for (s, n) in &a.children {
                    todo.push((
                        cd,
                        keys::extend(&prefix, depth, cd - depth, *s as usize),
                        *n,
                    ));
                }
            }
        }
        assert!(checked > 100, "{checked} strides checked");
    }

    /// The top strides stay in memory however small the weighted cache and
    /// however much the lower levels churn: a seal after many others loads
    /// no stride above depth 16 from the store, one version per position is
    /// held, and a replaced version still serves readers of its revision.
    #[test]
    fn top_strides_survive_the_lower_levels_churn() {
        let store: Arc<dyn Store> = Arc::new(candor_store::MemStore::new());
        let config = TreeConfig {
            shard_bits: 0,
            // The weighted cache's floor (64 KiB): far less than one round's strides.
            cache_bytes: 1 << 16,
            ..TreeConfig::default()
        };
        let forest = Forest::open(store, config).unwrap();
        let tree = forest.shard(0).unwrap();
        let mut x = 11u64;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            x
        };
        let mut roots = Vec::new();
        for _ in 0..8 {
            let items: Vec<_> = (0..2_000)
                .map(|_| {
                    let mut index = [0u8; 32];
                    for c in index.chunks_mut(8) {
                        c.copy_from_slice(&next().to_be_bytes());
                    }
                    (Leaf::first(index, commit(&[1; 32], &index, 1, b"v")), None)
                })
                .collect();
            tree.apply(&items).unwrap();
            roots.push(forest.inner.rev_rec(0, tree.latest_revision()).unwrap());
        }
        let inner = &forest.inner;
        {
            let top = inner.top.lock().unwrap();
            // The root stride and the 256 at depth 8, one version each.
            assert_eq!(top.len(), 257, "one held version per top position");
            assert!(top.values().all(|(r, _)| *r == tree.latest_revision()));
        }
        // Reading every top stride of the latest revision loads nothing.
        let before = forest.load_counters()[0];
        let latest = *roots.last().unwrap();
        let Node::Multi { hash, rev } = latest.root else {
            panic!("root is not interior")
        };
        let root = inner.stride(0, 0, &[0u8; 32], rev, &hash).unwrap();
        for (s, n) in &root.children {
            let Node::Multi { hash, rev } = *n else {
                continue;
            };
            let p = keys::extend(&[0u8; 32], 0, STRIDE, *s as usize);
            inner.stride(0, STRIDE, &p, rev, &hash).unwrap();
        }
        assert_eq!(
            forest.load_counters()[0],
            before,
            "top strides read from the store"
        );
        // An older revision's root stride still reads (from the weighted
        // cache or the store) and checks against its hash.
        let Node::Multi { hash, rev } = roots[3].root else {
            panic!("root is not interior")
        };
        assert!(rev < tree.latest_revision());
        inner.stride(0, 0, &[0u8; 32], rev, &hash).unwrap();
    }
}
