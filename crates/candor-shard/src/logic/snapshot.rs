//! Shard snapshots between replicas with separate stores (embedded mode).
//!
//! # Format
//!
//! A [`candor_raft::store_snapshot`] record stream read from one consistent store view,
//! taken under the state-machine lock (so it is exactly the state at the adapter's
//! marker). Its sections, in order:
//!
//! 1. `Meta` `candor-shard/ ‖ shard u32be ‖ s`: the [`ShardState`] (first, so a reader
//!    can learn the applied index from the first record);
//! 2. `Tree` `N ‖ shard u16`: node records of the shard;
//! 3. `Tree` `L ‖ index` for the indices whose top `shard_bits` bits are the shard: leaf
//!    version records (with openings);
//! 4. `Tree` `R ‖ shard u16`: revision records;
//! 5. `Meta` `candor-tree/shard/ ‖ shard u16`: the tree's sealed-revision marker;
//! 6. `Meta` `candor-shard/ ‖ shard u32be` except `s` and the Raft markers `m…`:
//!    pending set, idempotency records and queue, stored responses.
//!
//! Keys of different shards never share these ranges (fixed-width shard numbers after
//! distinct tags; leaf keys by index range), so a stream carries one shard exactly.
//! `Values` holds nothing of the tree today (openings live in leaf records).
//!
//! # Install protocol (crash-safe)
//!
//! 1. One synced batch: put the *install record* `candor-shard-install/ ‖ shard u32be`
//!    and delete every `candor-shard/ ‖ shard` record (state, Raft marker, pending,
//!    idempotency, responses). From now on a restart opens the logic with **no**
//!    marker and refusing to apply; openraft then finds its stored copy of the snapshot
//!    (saved before the install began, see `candor_raft`'s state machine docs) ahead of
//!    the state machine and installs it again.
//! 2. Stream the records into the store in bounded batches. Every record is checked to
//!    lie in this shard's ranges. Tree records are *overwritten*, never deleted first:
//!    a revision's records are a function of the committed log, so records of
//!    revisions the replica already had are rewritten with identical bytes and readers
//!    of those revisions see no change. The tree marker and the state record are held
//!    back.
//! 3. After the stream's digest checked out: one synced batch writes the tree marker
//!    (new revisions become readable only now), the state record, the new Raft marker,
//!    and deletes the install record. Then the in-memory state is reloaded.
//!
//! Left behind: tree records the source had pruned but this replica had not (harmless,
//! reclaimed by a later prune).

use std::io::{self, Read};

use candor_raft::store_snapshot::{
    BatchWriter, RecordReader, RecordStream, Section, admitted, is_record_stream,
};
use candor_store::{Durability, KeyRange, Space, WriteBatch, prefix_end};
use candor_tree::layout::shard as layout;

use super::{ShardLogic, ShardState, TAG_MARKER, TAG_STATE, corrupt, dec};
use crate::error::ShardError;

/// Prefix of the install records (outside every `candor-shard/ ‖ shard` prefix).
const INSTALL_PREFIX: &[u8] = b"candor-shard-install/";
/// Bytes of records per store batch while installing.
const INSTALL_BATCH: usize = 4 << 20;

fn io_err(what: &str, e: impl std::fmt::Display) -> ShardError {
    ShardError::Storage(format!("shard snapshot: {what}: {e}"))
}

pub(super) fn install_key(shard: u32) -> Vec<u8> {
    let mut k = INSTALL_PREFIX.to_vec();
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

fn tag_range(prefix: &[u8], from: u8, to: Option<u8>) -> KeyRange {
    let mut a = prefix.to_vec();
    a.push(from);
    let b = match to {
        Some(t) => {
            let mut b = prefix.to_vec();
            b.push(t);
            b
        }
        None => prefix_end(prefix).unwrap_or_default(),
    };
    KeyRange::half_open(a, b)
}

impl ShardLogic {
    /// The sections of this shard's snapshot, in stream order (module docs).
    fn sections(&self) -> Vec<Section> {
        let p = &self.prefix;
        let one = |k: Vec<u8>| {
            let end = candor_store::successor(&k);
            KeyRange::half_open(k, end)
        };
        vec![
            Section::new(Space::Meta, one(self.key(TAG_STATE, &[]))),
            Section::new(Space::Tree, layout::nodes(self.shard)),
            Section::new(Space::Tree, layout::leaves(self.shard, self.shard_bits)),
            Section::new(Space::Tree, layout::revisions(self.shard)),
            Section::new(Space::Meta, one(layout::marker_key(self.shard))),
            Section::new(Space::Meta, tag_range(p, 0, Some(TAG_MARKER))),
            Section::new(Space::Meta, tag_range(p, TAG_MARKER + 1, Some(TAG_STATE))),
            Section::new(Space::Meta, tag_range(p, TAG_STATE + 1, None)),
        ]
    }

    /// The whole shard as a record stream over a consistent view of the store.
    pub(super) fn snapshot_stream(&self) -> Result<Box<dyn Read + Send>, ShardError> {
        let view = self.store.snapshot()?;
        Ok(Box::new(RecordStream::new(view, self.sections())))
    }

    /// Open-time check: an install that did not finish leaves this replica without a
    /// state (see the module docs). Returns whether one was found.
    pub(super) fn interrupted_install(&mut self) -> Result<bool, ShardError> {
        if self.replica.is_some()
            || self
                .store
                .get(Space::Meta, &install_key(self.shard))?
                .is_none()
        {
            return Ok(false);
        }
        tracing::warn!(
            shard = self.shard,
            "an interrupted snapshot install: waiting for the snapshot to be installed again"
        );
        self.state = ShardState::default();
        self.marker = None;
        self.pending.clear();
        self.pending_entries.clear();
        self.installing = true;
        Ok(true)
    }

    /// `StateMachineLogic::restore`: a record stream in embedded mode (full install);
    /// otherwise (shared-state mode, or an index-only snapshot) the store must already
    /// hold the state.
    pub(super) fn restore_from(
        &mut self,
        data: &mut dyn Read,
        marker: &[u8],
    ) -> Result<(), ShardError> {
        let mut head = [0u8; 8];
        let n = candor_read_full(data, &mut head)?;
        let whole = io::Cursor::new(head[..n].to_vec()).chain(data);
        if !is_record_stream(&head[..n]) {
            let mut bytes = Vec::new();
            whole
                .take(1 << 10)
                .read_to_end(&mut bytes)
                .map_err(|e| io_err("read", e))?;
            let (index, _) = postcard::take_from_bytes::<u64>(&bytes)
                .map_err(|e| corrupt(format!("snapshot: {e}")))?;
            return self.restore_in_place(index, marker);
        }
        let mut reader = RecordReader::new(whole).map_err(|e| io_err("read", e))?;
        if self.replica.is_some() {
            // Shared-state mode never ships data: read the index from the first record.
            let first = reader
                .next_record()
                .map_err(|e| io_err("read", e))?
                .ok_or_else(|| corrupt("snapshot without a shard state"))?;
            if first.space != Space::Meta || first.key != self.key(TAG_STATE, &[]) {
                return Err(corrupt("snapshot does not start with the shard state"));
            }
            let st: ShardState = dec("snapshot shard state", &first.value)?;
            return self.restore_in_place(st.applied_index, marker);
        }
        self.install(reader, marker)
    }

    /// The store already holds the state (shared-state mode): only the marker moves.
    fn restore_in_place(&mut self, index: u64, marker: &[u8]) -> Result<(), ShardError> {
        self.reload()?;
        if self.state.applied_index < index {
            return Err(ShardError::Storage(format!(
                "shard {}: snapshot at log index {index} but the store only reached {}; \
                 an index-only snapshot cannot be installed on a store that lacks its state",
                self.shard, self.state.applied_index
            )));
        }
        let mut b = WriteBatch::new();
        b.put(Space::Meta, self.marker_key.clone(), marker.to_vec());
        self.store.write(&b, Durability::Buffered)?;
        self.marker = Some(marker.to_vec());
        Ok(())
    }

    /// Steps 1–3 of the install protocol (module docs).
    fn install<R: Read>(
        &mut self,
        mut reader: RecordReader<R>,
        marker: &[u8],
    ) -> Result<(), ShardError> {
        let sections = self.sections();
        let state_key = self.key(TAG_STATE, &[]);
        let tree_key = layout::marker_key(self.shard);

        // A stream of another shard (or garbage) is refused before anything is touched.
        let first = reader.next_record().map_err(|e| io_err("read", e))?;
        if first
            .as_ref()
            .is_some_and(|r| r.space != Space::Meta || r.key != state_key)
        {
            return Err(corrupt(format!(
                "snapshot does not start with shard {}'s state",
                self.shard
            )));
        }

        // 1. Mark the install, drop the old bookkeeping (and with it the Raft marker).
        let mut b = WriteBatch::new();
        b.put(Space::Meta, install_key(self.shard), vec![1]);
        b.delete_range(Space::Meta, KeyRange::prefix(&self.prefix));
        self.store.write(&b, Durability::Sync)?;
        self.installing = true;
        self.marker = None;

        // 2. Stream the records in.
        let mut state: Option<Vec<u8>> = None;
        let mut tree_marker: Option<Vec<u8>> = None;
        let mut w = BatchWriter::new(&*self.store, INSTALL_BATCH);
        let mut next = first;
        while let Some(r) = next.take() {
            if !admitted(&sections, r.space, &r.key) {
                return Err(corrupt(format!(
                    "snapshot record outside shard {} ({:?})",
                    self.shard, r.space
                )));
            }
            if r.space == Space::Meta && r.key == state_key {
                state = Some(r.value);
            } else if r.space == Space::Meta && r.key == tree_key {
                tree_marker = Some(r.value);
            } else {
                w.put(r.space, r.key, r.value)?;
            }
            next = reader.next_record().map_err(|e| io_err("read", e))?;
        }
        w.flush()?;
        // The digest checked out (next_record returned None).
        let installed_rev = match &tree_marker {
            Some(v) if v.len() >= 9 && v[0] == 1 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&v[1..9]);
                u64::from_be_bytes(a)
            }
            Some(_) => return Err(corrupt("snapshot tree marker of unexpected shape")),
            None => 0,
        };
        let st: ShardState = match &state {
            Some(v) => dec("snapshot shard state", v)?,
            None => ShardState::default(),
        };
        if st.sealed_rev != installed_rev && st.sealed_rev + 1 != installed_rev {
            return Err(corrupt(format!(
                "snapshot records revision {} but its tree is at {installed_rev}",
                st.sealed_rev
            )));
        }

        // 3. Flip: tree marker, state, Raft marker; the install record goes.
        let mut b = WriteBatch::new();
        match tree_marker {
            Some(v) => b.put(Space::Meta, tree_key, v),
            None => b.delete(Space::Meta, tree_key),
        };
        if let Some(v) = state {
            b.put(Space::Meta, state_key, v);
        }
        b.put(Space::Meta, self.marker_key.clone(), marker.to_vec());
        b.delete(Space::Meta, install_key(self.shard));
        self.store.write(&b, Durability::Sync)?;
        self.installing = false;

        // The tree handle re-reads its marker by itself, but only ever moves forward.
        let known = self.tree.latest_revision();
        if known != installed_rev {
            return Err(ShardError::Storage(format!(
                "shard {}: installed tree revision {installed_rev} but the tree handle \
                 reports {known}; restart the node",
                self.shard
            )));
        }
        self.reload()?;
        tracing::info!(
            shard = self.shard,
            applied_index = self.state.applied_index,
            revision = installed_rev,
            records = reader.records(),
            "installed a shard snapshot"
        );
        Ok(())
    }
}

fn candor_read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, ShardError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read", e)),
        }
    }
    Ok(n)
}
