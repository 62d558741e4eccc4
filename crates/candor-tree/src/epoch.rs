//! The epoch log persisted in space `EpochLog`.

use std::sync::{Arc, Mutex};

use candor_core::checkpoint::{Checkpoint, head_leaf, rfc6962_node, sign_checkpoint};
use candor_core::log::{ConsistencyProof, EpochEntry, InclusionProof, LogNodes, range_root};
use candor_core::rotation::ConfigVersion;
use candor_core::signed::{SignedHead, SigningKeyPair};
use candor_core::{Digest, ZERO};
use candor_store::{Direction, Durability, KeyRange, Space, Store, WriteBatch, scan_pages};

use crate::error::{Result, TreeError, corrupt, invalid};
use crate::view::{Forest, MapView};

use crate::layout::epoch_log::{
    CHUNK, CONFIG, LATEST, SHARD_COUNT as SHARDS, checkpoint_key, config_key, cosig_key,
    cosig_prefix, cp_node_key, head_key, node_key, revs_key, revs_prefix,
};

struct State {
    latest: u64,
    /// Shard count of the revision vectors (0 before the first append).
    shards: usize,
    /// The revision vector of the latest epoch.
    last_revisions: Vec<u64>,
}

/// The append-only epoch log: one signed head per epoch, the log's perfect
/// subtree roots (for inclusion and consistency proofs) and the revision of
/// every shard each epoch covers.
///
/// Key layout (space `EpochLog`): `H | epoch_be64` → signed head;
/// `N | level u8 | i_be64` → perfect subtree root; `V | chunk u16 |
/// epoch_be64` → revisions of shards `chunk·4096 ..` as `u64be` each, written
/// only when that chunk changed (read back with a seek-for-prev); `L` →
/// latest epoch, written last; `C` → shard count; `K | version_be32` → the
/// configuration of that version (1 = the first) as `u32be len || config ||
/// rotation` (the rotation that introduced it; empty for version 1), written by
/// the sequencer ([`EpochLogStore::put_config`]); `A | epoch_be64 | auditor key
/// (32)` → an auditor's canonical cosignature of that epoch's head, the first one
/// kept ([`EpochLogStore::put_cosignature`], written by the sequencer's apply so that
/// every replica holds it).
///
/// One writer at a time appends (the sequencer); any number of readers. Writers on a
/// shared store are safe too: an append is a compare-and-set on `L`, so a handle that
/// is behind the store writes nothing and must [`EpochLogStore::reload`].
#[derive(Clone)]
pub struct EpochLogStore {
    store: Arc<dyn Store>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for EpochLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochLogStore").finish_non_exhaustive()
    }
}

struct Reader<'a>(&'a dyn Store);

impl LogNodes for Reader<'_> {
    type Error = TreeError;
    fn perfect(&self, level: u32, i: u64) -> Result<Digest> {
        match self.0.get(Space::EpochLog, &node_key(level, i))? {
            Some(v) => v
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("epoch log node of unexpected size")),
            None => Err(corrupt(format!("epoch log node ({level}, {i}) is missing"))),
        }
    }
}

/// The checkpoint tree's stored nodes (RFC 6962, SHA-256).
struct CpReader<'a>(&'a dyn Store);

impl LogNodes for CpReader<'_> {
    type Error = TreeError;
    fn perfect(&self, level: u32, i: u64) -> Result<Digest> {
        match self.0.get(Space::EpochLog, &cp_node_key(level, i))? {
            Some(v) => v
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("checkpoint tree node of unexpected size")),
            None => Err(corrupt(format!(
                "checkpoint tree node ({level}, {i}) is missing"
            ))),
        }
    }
    fn node(&self, left: &Digest, right: &Digest) -> Digest {
        rfc6962_node(left, right)
    }
}

/// Stored nodes plus the ones an append would add.
struct Overlay<'a, B> {
    base: B,
    new: &'a [(u32, u64, Digest)],
}

impl<B: LogNodes<Error = TreeError>> LogNodes for Overlay<'_, B> {
    type Error = TreeError;
    fn perfect(&self, level: u32, i: u64) -> Result<Digest> {
        if let Some(n) = self.new.iter().find(|n| n.0 == level && n.1 == i) {
            return Ok(n.2);
        }
        self.base.perfect(level, i)
    }
    fn node(&self, left: &Digest, right: &Digest) -> Digest {
        self.base.node(left, right)
    }
}

/// The perfect nodes that appending `leaf` as leaf `n` creates: the leaf and every
/// parent it completes, the left siblings read from `nodes`.
fn appended_nodes<N: LogNodes<Error = TreeError>>(
    nodes: &N,
    n: u64,
    leaf: Digest,
) -> Result<Vec<(u32, u64, Digest)>> {
    let mut out = vec![(0u32, n, leaf)];
    let (mut level, mut i, mut h) = (0u32, n, leaf);
    while i % 2 == 1 {
        let left = nodes.perfect(level, i - 1)?;
        h = nodes.node(&left, &h);
        level += 1;
        i /= 2;
        out.push((level, i, h));
    }
    Ok(out)
}

/// The stored end of the log: the latest epoch and the shard count per epoch
/// (0, 0 for an empty log), checked for what a damaged record could do.
fn read_end(store: &dyn Store) -> Result<(u64, usize)> {
    let latest = match store.get(Space::EpochLog, LATEST)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| corrupt("latest epoch record of unexpected size"))?,
        ),
        None => 0,
    };
    let shards = match store.get(Space::EpochLog, SHARDS)? {
        Some(v) => u32::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| corrupt("shard count record of unexpected size"))?,
        ) as usize,
        None => 0,
    };
    // 2^shard_bits with shard_bits ≤ 16: a damaged count must not size an
    // allocation (found by the `sequencer_record` fuzz target: 24 GB).
    if shards > 1 << 16 || (shards != 0 && !shards.is_power_of_two()) {
        return Err(corrupt(format!(
            "shard count record says {shards}, not a power of two up to 65536"
        )));
    }
    Ok((latest, shards))
}

impl EpochLogStore {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let (latest, shards) = read_end(&*store)?;
        let me = EpochLogStore {
            store,
            state: Arc::new(Mutex::new(State {
                latest,
                shards,
                last_revisions: Vec::new(),
            })),
        };
        if latest > 0 {
            let revs = me.read_revisions(latest, shards)?;
            me.lock().last_revisions = revs;
        }
        Ok(me)
    }

    /// Re-reads the log's end from the store after something other than this handle
    /// wrote it (a sequencer snapshot install), and returns the latest epoch.
    ///
    /// Only moves forward: a stored log that ends *before* this handle's latest epoch
    /// is an error and changes nothing. Before adopting a new end it checks that the
    /// stored log is whole up to it: the head of the latest epoch is present, names
    /// that epoch as its log size, and its log root is the root of the stored nodes;
    /// the revision vector of that epoch reads back and no shard goes back in
    /// revision. Readers are safe throughout: the store holds every record up to the
    /// new end before this is called, and the in-memory end moves only after the
    /// checks, under the same lock readers take.
    pub fn reload(&self) -> Result<u64> {
        let (latest, shards) = read_end(&*self.store)?;
        let known = self.latest_epoch();
        if latest < known {
            return Err(TreeError::Conflict(format!(
                "the stored epoch log ends at {latest}, behind this handle's {known}"
            )));
        }
        if latest == known {
            // Nothing to adopt (readers poll this): the end was checked when adopted.
            return Ok(latest);
        }
        let revisions = if latest > 0 {
            if shards == 0 {
                return Err(corrupt("epoch log without a shard count"));
            }
            let head = self
                .head(latest)?
                .ok_or_else(|| corrupt(format!("head of the latest epoch {latest} is missing")))?;
            if head.head.epoch != latest || head.head.log_size != latest {
                return Err(corrupt(format!(
                    "head stored for epoch {latest} names epoch {} and log size {}",
                    head.head.epoch, head.head.log_size
                )));
            }
            if range_root(&Reader(&*self.store), 0, latest)? != head.head.log_root {
                return Err(corrupt(format!(
                    "stored log nodes do not match the log root of epoch {latest}"
                )));
            }
            self.read_revisions(latest, shards)?
        } else {
            Vec::new()
        };
        let mut st = self.lock();
        // Checked again under the lock: an append may have run since the first check.
        if latest < st.latest {
            return Err(TreeError::Conflict(format!(
                "the stored epoch log ends at {latest}, behind this handle's {}",
                st.latest
            )));
        }
        if st.shards != 0 && shards != st.shards {
            return Err(corrupt(format!(
                "the stored log records {shards} shards per epoch, this handle {}",
                st.shards
            )));
        }
        if st.last_revisions.iter().zip(&revisions).any(|(a, b)| b < a) {
            return Err(corrupt("a shard goes back in revision in the stored log"));
        }
        st.latest = latest;
        st.shards = shards;
        st.last_revisions = revisions;
        Ok(latest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of epochs in the log (= the latest epoch number).
    /// The deployment's configurations, oldest first (docs/protocol.md §8.1): empty
    /// until the sequencer recorded the first. Versions are consecutive from 1.
    pub fn configs(&self) -> Result<Vec<ConfigVersion>> {
        let mut out = Vec::new();
        for kv in scan_pages(
            &*self.store,
            Space::EpochLog,
            KeyRange::prefix(&[CONFIG]),
            Direction::Forward,
            64,
        ) {
            let (k, v) = kv?;
            let version = k
                .get(1..5)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| corrupt("configuration key of unexpected size"))?;
            if version as usize != out.len() + 1 {
                return Err(corrupt(format!(
                    "configuration version {version} after {}",
                    out.len()
                )));
            }
            let len = v
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| corrupt("configuration record too short"))?
                as usize;
            let rest = &v[4..];
            if rest.len() < len {
                return Err(corrupt("configuration record too short"));
            }
            out.push(ConfigVersion {
                config: rest[..len].to_vec(),
                rotation: rest[len..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Adds the record of configuration `version` (1 = the first) to `batch`.
    pub fn put_config(batch: &mut WriteBatch, version: u32, v: &ConfigVersion) {
        let mut value = Vec::with_capacity(4 + v.config.len() + v.rotation.len());
        value.extend_from_slice(&(v.config.len() as u32).to_be_bytes());
        value.extend_from_slice(&v.config);
        value.extend_from_slice(&v.rotation);
        batch.put(Space::EpochLog, config_key(version), value);
    }

    /// The signed C2SP checkpoint of `epoch` (a signed note), if one was signed
    /// (epochs appended before checkpoints existed have none).
    pub fn checkpoint(&self, epoch: u64) -> Result<Option<String>> {
        self.check_epoch(epoch)?;
        match self.store.get(Space::EpochLog, &checkpoint_key(epoch))? {
            Some(v) => Ok(Some(
                String::from_utf8(v).map_err(|_| corrupt("stored checkpoint is not UTF-8"))?,
            )),
            None => Ok(None),
        }
    }

    /// The checkpoint tree's root over epochs `1..=size`.
    pub fn checkpoint_root(&self, size: u64) -> Result<Digest> {
        let (latest, _) = self.check_epoch(size)?;
        self.fill_checkpoint_tree(latest)?;
        range_root(&CpReader(&*self.store), 0, size)
    }

    /// RFC 6962 consistency proof between checkpoint-tree sizes `first ≤ second`
    /// (what a C2SP witness checks; verify with `rfc6962_node`).
    pub fn checkpoint_consistency(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        let (latest, _) = self.check_epoch(second)?;
        if first > second {
            return Err(invalid(format!("size {first} is beyond size {second}")));
        }
        self.fill_checkpoint_tree(latest)?;
        ConsistencyProof::generate(&CpReader(&*self.store), first, second)
    }

    /// RFC 6962 inclusion proof of epoch `epoch`'s signed head (leaf `epoch - 1`)
    /// in the checkpoint tree of `size` epochs.
    pub fn checkpoint_inclusion(&self, epoch: u64, size: u64) -> Result<InclusionProof> {
        let (latest, _) = self.check_epoch(size)?;
        if epoch == 0 || epoch > size {
            return Err(invalid(format!("epoch {epoch} is not in a tree of {size}")));
        }
        self.fill_checkpoint_tree(latest)?;
        InclusionProof::generate(&CpReader(&*self.store), epoch - 1, size)
    }

    /// Adds `auditor`'s cosignature of `epoch` to `batch`. The caller verified it
    /// against the stored head and checked that none is stored yet (the first stays).
    pub fn put_cosignature(batch: &mut WriteBatch, epoch: u64, auditor: &[u8; 32], encoded: &[u8]) {
        batch.put(Space::EpochLog, cosig_key(epoch, auditor), encoded.to_vec());
    }

    /// Stores a cosignature the caller verified against the stored head, straight
    /// into this store: for a store every member shares (FoundationDB), or a
    /// single-process one. The first stays, also against a concurrent writer (a
    /// compare-and-set on the key's absence). `Ok(true)`: stored now.
    pub fn store_cosignature(
        &self,
        epoch: u64,
        auditor: &[u8; 32],
        encoded: &[u8],
    ) -> Result<bool> {
        let key = cosig_key(epoch, auditor);
        if self.store.get(Space::EpochLog, &key)?.is_some() {
            return Ok(false);
        }
        let mut b = WriteBatch::new();
        b.require(Space::EpochLog, key.clone(), None);
        b.put(Space::EpochLog, key, encoded.to_vec());
        match self.store.write(&b, Durability::Sync) {
            Ok(()) => Ok(true),
            Err(candor_store::StoreError::PreconditionFailed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored cosignature of `auditor` over `epoch`, if any.
    pub fn cosignature(&self, epoch: u64, auditor: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .store
            .get(Space::EpochLog, &cosig_key(epoch, auditor))?)
    }

    /// Every stored cosignature of `epoch`, as (auditor key, canonical cosignature),
    /// in auditor-key order.
    pub fn cosignatures(&self, epoch: u64) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        let prefix = cosig_prefix(epoch);
        let mut out = Vec::new();
        for kv in scan_pages(
            &*self.store,
            Space::EpochLog,
            KeyRange::prefix(&prefix),
            Direction::Forward,
            256,
        ) {
            let (k, v) = kv?;
            let auditor: [u8; 32] = k
                .get(prefix.len()..)
                .and_then(|a| a.try_into().ok())
                .ok_or_else(|| corrupt("cosignature key of unexpected size"))?;
            out.push((auditor, v));
        }
        Ok(out)
    }

    pub fn latest_epoch(&self) -> u64 {
        self.lock().latest
    }

    /// The signed head of the latest epoch.
    pub fn latest(&self) -> Result<Option<SignedHead>> {
        let e = self.latest_epoch();
        if e == 0 { Ok(None) } else { self.head(e) }
    }

    /// The signed head of `epoch`.
    pub fn head(&self, epoch: u64) -> Result<Option<SignedHead>> {
        match self.store.get(Space::EpochLog, &head_key(epoch))? {
            Some(v) => Ok(Some(
                SignedHead::decode(&v).map_err(|e| corrupt(format!("stored head: {e}")))?,
            )),
            None => Ok(None),
        }
    }

    /// New perfect nodes if `leaf` is appended as entry `n` (0-based).
    fn new_nodes(&self, n: u64, leaf: Digest) -> Result<Vec<(u32, u64, Digest)>> {
        appended_nodes(&Reader(&*self.store), n, leaf)
    }

    /// Makes sure the checkpoint tree holds the heads of epochs `1..=latest`:
    /// a log written before the tree existed (or installed from a member that did
    /// not keep it) is filled in from its stored heads, which are what the tree
    /// hashes, so every member computes the same nodes.
    fn fill_checkpoint_tree(&self, latest: u64) -> Result<()> {
        if latest == 0
            || self
                .store
                .get(Space::EpochLog, &cp_node_key(0, latest - 1))?
                .is_some()
        {
            return Ok(());
        }
        // The first missing leaf: the tree is filled in order.
        let (mut lo, mut hi) = (0u64, latest - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self
                .store
                .get(Space::EpochLog, &cp_node_key(0, mid))?
                .is_some()
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut b = WriteBatch::new();
        for n in lo..latest {
            let head = self
                .head(n + 1)?
                .ok_or_else(|| corrupt(format!("the head of epoch {} is missing", n + 1)))?;
            let nodes = appended_nodes(
                &Overlay {
                    base: CpReader(&*self.store),
                    new: &[],
                },
                n,
                head_leaf(&head),
            )?;
            for (level, i, d) in nodes {
                b.put(Space::EpochLog, cp_node_key(level, i), d.to_vec());
            }
            // Written as it goes: later leaves read the nodes of earlier ones.
            if b.len() >= 4096 || n + 1 == latest {
                self.store.write(&b, Durability::Buffered)?;
                b = WriteBatch::new();
            }
        }
        Ok(())
    }

    /// The log size and root after appending `entry` as the next epoch: what
    /// the sequencer puts in the head it signs.
    pub fn prepare(&self, entry: &EpochEntry) -> Result<(u64, Digest)> {
        let latest = self.latest_epoch();
        if entry.epoch != latest + 1 {
            return Err(invalid(format!(
                "next epoch is {}, not {}",
                latest + 1,
                entry.epoch
            )));
        }
        let nodes = self.new_nodes(latest, entry.leaf_hash())?;
        let o = Overlay {
            base: Reader(&*self.store),
            new: &nodes,
        };
        Ok((entry.epoch, range_root(&o, 0, entry.epoch)?))
    }

    /// Appends the signed head of the next epoch with the revision of every
    /// shard it covers (`2^shard_bits` entries, the same count every epoch).
    /// Checks that the head's epoch, log size and log root extend this log.
    /// Appending the identical head again is a no-op; a different head for a
    /// stored epoch is a [`TreeError::Conflict`].
    pub fn append(&self, head: &SignedHead, revisions: &[u64]) -> Result<()> {
        self.append_signed(head, revisions, None)
    }

    /// [`Self::append`], and with `signer` (the head key) the epoch's C2SP
    /// checkpoint signed in the same atomic write (`candor_core::checkpoint`; none
    /// when the namespace cannot be a note key name). The checkpoint tree grows
    /// with every append either way.
    pub fn append_signed(
        &self,
        head: &SignedHead,
        revisions: &[u64],
        signer: Option<&SigningKeyPair>,
    ) -> Result<()> {
        let mut st = self.lock();
        let h = &head.head;
        if h.epoch <= st.latest {
            return match self.store.get(Space::EpochLog, &head_key(h.epoch))? {
                Some(v) if v == head.encode() => Ok(()),
                _ => Err(TreeError::Conflict(format!(
                    "epoch {} already has another head",
                    h.epoch
                ))),
            };
        }
        if h.epoch != st.latest + 1 {
            return Err(invalid(format!(
                "next epoch is {}, not {}",
                st.latest + 1,
                h.epoch
            )));
        }
        if h.log_size != h.epoch {
            return Err(invalid("head log size must equal its epoch"));
        }
        if revisions.is_empty() || !revisions.len().is_power_of_two() || revisions.len() > 1 << 16 {
            return Err(invalid(
                "revision vector length must be a power of two ≤ 2^16",
            ));
        }
        if st.shards != 0 && st.shards != revisions.len() {
            return Err(invalid(format!(
                "the log records {} shards per epoch, not {}",
                st.shards,
                revisions.len()
            )));
        }
        if let Some((i, _)) = st
            .last_revisions
            .iter()
            .zip(revisions)
            .enumerate()
            .find(|(_, (a, b))| b < a)
        {
            return Err(invalid(format!("shard {i} goes back in revision")));
        }
        let entry = EpochEntry::of_head(head);
        let nodes = self.new_nodes(st.latest, entry.leaf_hash())?;
        let root = range_root(
            &Overlay {
                base: Reader(&*self.store),
                new: &nodes,
            },
            0,
            h.epoch,
        )?;
        if root != h.log_root {
            return Err(TreeError::Conflict(format!(
                "head of epoch {} has a log root that does not extend this log",
                h.epoch
            )));
        }
        let mut batch = WriteBatch::new();
        batch.put(Space::EpochLog, head_key(h.epoch), head.encode());
        for (level, i, d) in &nodes {
            batch.put(Space::EpochLog, node_key(*level, *i), d.to_vec());
        }
        self.fill_checkpoint_tree(st.latest)?;
        let cp_nodes = appended_nodes(&CpReader(&*self.store), st.latest, head_leaf(head))?;
        if let Some(key) = signer {
            let root = range_root(
                &Overlay {
                    base: CpReader(&*self.store),
                    new: &cp_nodes,
                },
                0,
                h.epoch,
            )?;
            let cp = Checkpoint {
                origin: h.namespace.clone(),
                size: h.epoch,
                root,
                extensions: Vec::new(),
            };
            if let Ok(note) = sign_checkpoint(&cp, key) {
                batch.put(Space::EpochLog, checkpoint_key(h.epoch), note.into_bytes());
            }
        }
        for (level, i, d) in &cp_nodes {
            batch.put(Space::EpochLog, cp_node_key(*level, *i), d.to_vec());
        }
        for (c, chunk) in revisions.chunks(CHUNK).enumerate() {
            let prev = st.last_revisions.chunks(CHUNK).nth(c);
            if prev != Some(chunk) {
                let mut v = Vec::with_capacity(chunk.len() * 8);
                for r in chunk {
                    v.extend_from_slice(&r.to_be_bytes());
                }
                batch.put(Space::EpochLog, revs_key(c, h.epoch), v);
            }
        }
        if st.shards == 0 {
            batch.put(
                Space::EpochLog,
                SHARDS.to_vec(),
                (revisions.len() as u32).to_be_bytes().to_vec(),
            );
        }
        batch.put(
            Space::EpochLog,
            LATEST.to_vec(),
            h.epoch.to_be_bytes().to_vec(),
        );
        // Compare-and-set on the log's end: another writer on a shared store (a
        // sequencer replica in shared-state mode) may have appended since this handle
        // last looked; then nothing is written and the caller reloads
        // (`StoreError::PreconditionFailed` inside `TreeError::Store`).
        batch.require(
            Space::EpochLog,
            LATEST.to_vec(),
            (st.latest > 0).then(|| st.latest.to_be_bytes().to_vec()),
        );
        self.store.write(&batch, Durability::Sync)?;
        st.latest = h.epoch;
        st.shards = revisions.len();
        st.last_revisions = revisions.to_vec();
        Ok(())
    }

    fn read_revisions(&self, epoch: u64, shards: usize) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(shards);
        for c in 0..shards.div_ceil(CHUNK) {
            let want = (shards - c * CHUNK).min(CHUNK);
            let (_, v) = self
                .store
                .get_le(Space::EpochLog, &revs_key(c, epoch), &revs_prefix(c))?
                .ok_or_else(|| {
                    corrupt(format!(
                        "no revision vector chunk {c} at or before epoch {epoch}"
                    ))
                })?;
            if v.len() != want * 8 {
                return Err(corrupt("revision vector chunk of unexpected size"));
            }
            out.extend(
                v.chunks_exact(8)
                    .map(|b| u64::from_be_bytes(b.try_into().expect("8"))),
            );
        }
        Ok(out)
    }

    fn check_epoch(&self, epoch: u64) -> Result<(u64, usize)> {
        let st = self.lock();
        if epoch == 0 || epoch > st.latest {
            return Err(TreeError::NoSuchEpoch {
                epoch,
                latest: st.latest,
            });
        }
        Ok((st.latest, st.shards))
    }

    /// The revision of every shard at `epoch`.
    pub fn revisions(&self, epoch: u64) -> Result<Vec<u64>> {
        let (_, shards) = self.check_epoch(epoch)?;
        self.read_revisions(epoch, shards)
    }

    /// The map as of `epoch`.
    pub fn view(&self, forest: &Forest, epoch: u64) -> Result<MapView> {
        forest.view(self.revisions(epoch)?)
    }

    /// Proof that `epoch` is in the log of `tree_size` epochs.
    pub fn inclusion_proof(&self, epoch: u64, tree_size: u64) -> Result<InclusionProof> {
        let (latest, _) = self.check_epoch(epoch)?;
        if tree_size < epoch || tree_size > latest {
            return Err(invalid(format!(
                "log size {tree_size} must be in {epoch}..={latest}"
            )));
        }
        InclusionProof::generate(&Reader(&*self.store), epoch - 1, tree_size)
    }

    /// Proof that the log of `first` epochs is a prefix of the log of `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof> {
        let latest = self.latest_epoch();
        if first > second || second > latest {
            return Err(invalid(format!(
                "consistency needs first ≤ second ≤ {latest}, got {first} and {second}"
            )));
        }
        ConsistencyProof::generate(&Reader(&*self.store), first, second)
    }

    /// Root of the log of the first `size` epochs.
    pub fn root_at(&self, size: u64) -> Result<Digest> {
        let latest = self.latest_epoch();
        if size > latest {
            return Err(invalid(format!("log has {latest} epochs, not {size}")));
        }
        if size == 0 {
            return Ok(ZERO);
        }
        range_root(&Reader(&*self.store), 0, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::signed::{EpochHead, SigningKeyPair};
    use candor_store::MemStore;

    fn append(log: &EpochLogStore, key: &SigningKeyPair, epoch: u64) {
        let entry = EpochEntry {
            epoch,
            timestamp_ms: epoch,
            map_root: [epoch as u8; 32],
        };
        let (log_size, log_root) = log.prepare(&entry).unwrap();
        let head = EpochHead {
            namespace: "test".into(),
            epoch,
            timestamp_ms: epoch,
            map_root: entry.map_root,
            log_size,
            log_root,
            config_digest: [9; 32],
        }
        .sign(key);
        log.append(&head, &[epoch, epoch]).unwrap();
    }

    fn dump(store: &dyn Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        candor_store::scan_pages(
            store,
            Space::EpochLog,
            candor_store::KeyRange::all(),
            candor_store::Direction::Forward,
            256,
        )
        .map(|kv| kv.unwrap())
        .collect()
    }

    fn head_for(log: &EpochLogStore, key: &SigningKeyPair, epoch: u64, ts: u64) -> SignedHead {
        let entry = EpochEntry {
            epoch,
            timestamp_ms: ts,
            map_root: [epoch as u8; 32],
        };
        let (log_size, log_root) = log.prepare(&entry).unwrap();
        EpochHead {
            namespace: "test".into(),
            epoch,
            timestamp_ms: ts,
            map_root: entry.map_root,
            log_size,
            log_root,
            config_digest: [9; 32],
        }
        .sign(key)
    }

    /// Two writers on one store (sequencer replicas in shared-state mode): a handle
    /// behind the store's end writes nothing, even a head that would fork the log;
    /// after `reload` the identical head is a no-op and a different one a conflict.
    #[test]
    fn append_is_compare_and_set_on_the_end() {
        let key = SigningKeyPair::from_seed(&[1; 32]);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let a = EpochLogStore::open(Arc::clone(&store)).unwrap();
        let b = EpochLogStore::open(Arc::clone(&store)).unwrap();
        let h1 = head_for(&a, &key, 1, 10);
        let fork = head_for(&b, &key, 1, 11);
        a.append(&h1, &[1, 1]).unwrap();
        let before = dump(&*store);
        let err = b.append(&fork, &[1, 1]).unwrap_err();
        assert!(
            matches!(
                err,
                TreeError::Store(candor_store::StoreError::PreconditionFailed(_))
            ),
            "{err:?}"
        );
        let err = b.append(&h1, &[1, 1]).unwrap_err();
        assert!(matches!(err, TreeError::Store(_)), "{err:?}");
        assert_eq!(dump(&*store), before, "a refused append wrote");
        assert_eq!(b.reload().unwrap(), 1);
        b.append(&h1, &[1, 1]).unwrap();
        assert!(matches!(
            b.append(&fork, &[1, 1]),
            Err(TreeError::Conflict(_))
        ));
        let h2 = head_for(&b, &key, 2, 20);
        b.append(&h2, &[2, 2]).unwrap();
        assert_eq!(a.reload().unwrap(), 2);
        assert_eq!(a.latest().unwrap().unwrap(), h2);
    }

    /// A second handle over the store (as after a snapshot install) catches up with
    /// `reload`, never goes back, and its readers always find the heads it announces.
    #[test]
    fn reload_moves_forward_only() {
        let key = SigningKeyPair::from_seed(&[1; 32]);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let writer = EpochLogStore::open(Arc::clone(&store)).unwrap();
        let reader = EpochLogStore::open(Arc::clone(&store)).unwrap();
        assert_eq!(reader.reload().unwrap(), 0);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (r, stop) = (reader.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let e = r.latest_epoch();
                    assert!(e >= seen, "went back from {seen} to {e}");
                    if e > 0 {
                        // `latest()` reads the end again: a reload may have moved it.
                        assert!(r.latest().unwrap().unwrap().head.epoch >= e);
                        assert_eq!(r.revisions(e).unwrap(), vec![e, e]);
                    }
                    seen = e;
                }
            })
        };
        for e in 1..=40 {
            append(&writer, &key, e);
            if e % 3 == 0 {
                assert_eq!(reader.reload().unwrap(), e);
            }
        }
        assert_eq!(reader.reload().unwrap(), 40);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        assert_eq!(reader.root_at(40).unwrap(), writer.root_at(40).unwrap());
        // The store's end moved back: refused, nothing changes.
        let mut b = WriteBatch::new();
        b.put(
            Space::EpochLog,
            LATEST.to_vec(),
            39u64.to_be_bytes().to_vec(),
        );
        store.write(&b, Durability::Sync).unwrap();
        assert!(reader.reload().is_err());
        assert_eq!(reader.latest_epoch(), 40);
        // A damaged log (a node missing) is refused before the end moves.
        let fresh = EpochLogStore::open(Arc::new(MemStore::new())).unwrap();
        let mut b = WriteBatch::new();
        b.put(
            Space::EpochLog,
            LATEST.to_vec(),
            40u64.to_be_bytes().to_vec(),
        );
        // Log of 40 = nodes (5, 0) and (3, 4).
        b.delete(Space::EpochLog, node_key(5, 0));
        store.write(&b, Durability::Sync).unwrap();
        let other = EpochLogStore {
            store: Arc::clone(&store),
            state: Arc::clone(&fresh.state),
        };
        assert!(other.reload().is_err());
        assert_eq!(other.latest_epoch(), 0);
    }

    /// Regression (`sequencer_record` fuzz target): a damaged shard count must be
    /// refused, never used to size the revision vector (it asked for 24 GB).
    #[test]
    fn a_damaged_shard_count_is_refused() {
        let key = SigningKeyPair::from_seed(&[1; 32]);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let log = EpochLogStore::open(Arc::clone(&store)).unwrap();
        append(&log, &key, 1);
        for bad in [u32::MAX, 3, (1 << 16) + 1, 1 << 17] {
            let mut b = WriteBatch::default();
            b.put(Space::EpochLog, SHARDS.to_vec(), bad.to_be_bytes().to_vec());
            store.write(&b, Durability::Sync).unwrap();
            let Err(err) = EpochLogStore::open(Arc::clone(&store)) else {
                panic!("a shard count of {bad} was accepted");
            };
            assert!(err.to_string().contains("shard count"), "{err}");
            // A handle already open refuses to reload and keeps its end.
            assert!(log.reload().is_err());
            assert_eq!(log.latest_epoch(), 1);
        }
    }
}
