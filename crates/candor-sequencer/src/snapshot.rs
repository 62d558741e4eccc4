//! Sequencer snapshots between members with separate stores: the format, the install
//! protocol and the checks (the crate docs describe them; this is the code).

use std::io::{self, Read};

use candor_core::Digest;
use candor_core::log::{LogNodes, range_root};
use candor_core::signed::SignedHead;
use candor_raft::store_snapshot::{
    BatchWriter, Record, RecordReader, RecordStream, Section, admitted, is_record_stream,
};
use candor_store::{Durability, KeyRange, Space, Store, WriteBatch, prefix_end, successor};
use tracing::info;

use crate::{
    PREFIX, SPACE, SequencerError, SequencerLogic, SequencerState, TAG_MARKER, TAG_STATE, corrupt,
    key,
};

/// The install record (space `Meta`, outside the `candor-seq/` prefix).
pub(crate) const INSTALL_KEY: &[u8] = b"candor-seq-install";
/// Bytes of records per store batch while installing.
const INSTALL_BATCH: usize = 4 << 20;

// The epoch log's key layout is `candor_tree`'s (one owner).
use candor_tree::layout::epoch_log::{
    CHUNK as LOG_CHUNK, HEAD as LOG_HEAD, LATEST as LOG_LATEST, NODE as LOG_NODE,
    SHARD_COUNT as LOG_SHARDS, head_key, node_key, revs_prefix,
};

fn snap_err(what: impl std::fmt::Display) -> SequencerError {
    SequencerError::Snapshot(what.to_string())
}

fn one(k: &[u8]) -> KeyRange {
    KeyRange::half_open(k.to_vec(), successor(k))
}

/// The leading sections (one record each at most): the state, the epoch log's end and
/// its shard count. They are held back during an install and written last.
fn front_sections() -> Vec<Section> {
    vec![
        Section::new(SPACE, one(&key(TAG_STATE, &[]))),
        Section::new(Space::EpochLog, one(LOG_LATEST)),
        Section::new(Space::EpochLog, one(LOG_SHARDS)),
    ]
}

/// Everything else: the sequencer's other `Meta` records except its Raft marker (shard
/// roots), then the rest of the epoch log.
fn rest_sections() -> Vec<Section> {
    let tag = |t: u8| key(t, &[]);
    let meta_end = prefix_end(PREFIX).unwrap_or_default();
    vec![
        Section::new(SPACE, KeyRange::half_open(PREFIX.to_vec(), tag(TAG_MARKER))),
        Section::new(
            SPACE,
            KeyRange::half_open(successor(&tag(TAG_MARKER)), tag(TAG_STATE)),
        ),
        Section::new(
            SPACE,
            KeyRange::half_open(successor(&tag(TAG_STATE)), meta_end),
        ),
        Section::new(
            Space::EpochLog,
            KeyRange::half_open(Vec::new(), LOG_SHARDS.to_vec()),
        ),
        Section::new(
            Space::EpochLog,
            KeyRange::half_open(successor(LOG_SHARDS), LOG_LATEST.to_vec()),
        ),
        Section::new(Space::EpochLog, KeyRange::at_least(successor(LOG_LATEST))),
    ]
}

/// Epoch-log nodes read from the store (for checking a log root before it is adopted).
struct StoredNodes<'a>(&'a dyn Store);

impl LogNodes for StoredNodes<'_> {
    type Error = SequencerError;
    fn perfect(&self, level: u32, i: u64) -> Result<Digest, SequencerError> {
        match self.0.get(Space::EpochLog, &node_key(level, i))? {
            Some(v) => v
                .as_slice()
                .try_into()
                .map_err(|_| snap_err("epoch log node of unexpected size")),
            None => Err(snap_err(format!(
                "the snapshot lacks epoch log node ({level}, {i})"
            ))),
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, SequencerError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(snap_err(format!("read: {e}"))),
        }
    }
    Ok(n)
}

fn next<R: Read>(reader: &mut RecordReader<R>) -> Result<Option<Record>, SequencerError> {
    reader
        .next_record()
        .map_err(|e| snap_err(format!("read: {e}")))
}

fn be_u64(what: &str, v: &[u8]) -> Result<u64, SequencerError> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        snap_err(format!("{what} of unexpected size"))
    })?))
}

impl SequencerLogic {
    /// The full snapshot: a record stream over one consistent store view. Taken under
    /// the state-machine lock, so the view is exactly the state at the current marker.
    pub(crate) fn snapshot_stream(&self) -> Result<Box<dyn Read + Send>, SequencerError> {
        let view = self.store.snapshot()?;
        let mut sections = front_sections();
        sections.extend(rest_sections());
        Ok(Box::new(RecordStream::new(view, sections)))
    }

    /// `StateMachineLogic::restore`: a record stream is installed; anything else is the
    /// older index-only form.
    pub(crate) fn restore_from(
        &mut self,
        data: &mut dyn Read,
        marker: &[u8],
    ) -> Result<(), SequencerError> {
        let mut head = [0u8; 8];
        let n = read_full(data, &mut head)?;
        let whole = io::Cursor::new(head[..n].to_vec()).chain(data);
        if is_record_stream(&head[..n]) {
            let reader = RecordReader::new(whole).map_err(|e| snap_err(format!("read: {e}")))?;
            return self.install(reader, marker);
        }
        let mut bytes = Vec::new();
        whole
            .take(1 << 10)
            .read_to_end(&mut bytes)
            .map_err(|e| snap_err(format!("read: {e}")))?;
        let snap: SequencerState = postcard::from_bytes(&bytes).map_err(corrupt)?;
        self.restore_in_place(&snap, marker)
    }

    /// Index-only snapshot: only storage that already holds its state can install it.
    fn restore_in_place(
        &mut self,
        snap: &SequencerState,
        marker: &[u8],
    ) -> Result<(), SequencerError> {
        self.load()?;
        if self.installing {
            return Err(snap_err(
                "an interrupted install can only be completed by a full snapshot, \
                 not an index-only one",
            ));
        }
        if self.state.applied_index < snap.applied_index {
            return Err(snap_err(format!(
                "index-only snapshot at log index {} but the store only reached {}; \
                 a member with its own store needs a full snapshot",
                snap.applied_index, self.state.applied_index
            )));
        }
        let mut b = WriteBatch::new();
        b.put(SPACE, self.marker_key.clone(), marker.to_vec());
        self.store.write(&b, Durability::Buffered)?;
        self.marker = Some(marker.to_vec());
        Ok(())
    }

    /// The install protocol (crate docs, "Snapshots").
    fn install<R: Read>(
        &mut self,
        mut reader: RecordReader<R>,
        marker: &[u8],
    ) -> Result<(), SequencerError> {
        let front = front_sections();
        let rest = rest_sections();

        // 0. The leading records, and every check that needs nothing but them, before
        //    anything is touched.
        let mut held: [Option<Vec<u8>>; 3] = [None, None, None];
        let mut stage = 0;
        let mut rec = next(&mut reader)?;
        while let Some(r) = rec.take() {
            match (stage..front.len()).find(|&i| front[i].admits(r.space, &r.key)) {
                Some(i) => {
                    held[i] = Some(r.value);
                    stage = i + 1;
                    rec = next(&mut reader)?;
                }
                None => {
                    rec = Some(r);
                    break;
                }
            }
        }
        if let Some(r) = &rec
            && !admitted(&rest, r.space, &r.key)
        {
            return Err(snap_err(format!(
                "not a sequencer snapshot (a record of space {:?} outside its ranges)",
                r.space
            )));
        }
        let [state_rec, latest_rec, shards_rec] = held;
        let st: SequencerState = match &state_rec {
            Some(v) => postcard::from_bytes(v).map_err(corrupt)?,
            None => SequencerState::default(),
        };
        let latest = match &latest_rec {
            Some(v) => be_u64("epoch log end", v)?,
            None => 0,
        };
        let shards = 1u64 << self.public.shard_bits;
        if let Some(v) = &shards_rec
            && v.as_slice() != (shards as u32).to_be_bytes()
        {
            return Err(snap_err(format!(
                "the snapshot's epoch log has another shard count than 2^{}",
                self.public.shard_bits
            )));
        }
        if latest > 0 && shards_rec.is_none() {
            return Err(snap_err("the snapshot's epoch log has no shard count"));
        }
        // The log may be one epoch ahead of the bookkeeping (a crash between the two
        // writes of an apply), never behind it or further ahead.
        if latest < st.epoch || latest > st.epoch + 1 {
            return Err(snap_err(format!(
                "the snapshot records epoch {} but its epoch log ends at {latest}",
                st.epoch
            )));
        }
        let known = self.epochs.latest_epoch();
        if latest < known {
            return Err(snap_err(format!(
                "the snapshot's epoch log ends at {latest}, this member's at {known}; \
                 an epoch log never goes back"
            )));
        }

        // 1. Mark the install and drop the old bookkeeping (and with it the marker).
        let mut b = WriteBatch::new();
        b.put(SPACE, INSTALL_KEY.to_vec(), vec![1]);
        b.delete_range(SPACE, KeyRange::prefix(PREFIX));
        self.store.write(&b, Durability::Sync)?;
        self.installing = true;
        self.marker = None;

        // 2. Stream the rest in. Epoch-log records are overwritten, never deleted first:
        //    those of epochs this member has are identical (checked for the heads), so
        //    its readers see no change.
        let mut top: Option<Vec<u8>> = None;
        let mut w = BatchWriter::new(&*self.store, INSTALL_BATCH);
        while let Some(r) = rec.take() {
            if !admitted(&rest, r.space, &r.key) {
                return Err(snap_err(format!(
                    "a record of space {:?} outside the sequencer's ranges",
                    r.space
                )));
            }
            if r.space == Space::EpochLog && r.key.first() == Some(&LOG_HEAD) {
                let e = be_u64("head key", &r.key[1..])?;
                if e == 0 || e > latest {
                    return Err(snap_err(format!(
                        "a head for epoch {e} in a log of {latest} epochs"
                    )));
                }
                if e <= known
                    && let Some(mine) = self.store.get(Space::EpochLog, &r.key)?
                    && mine != r.value
                {
                    return Err(snap_err(format!(
                        "the snapshot's head of epoch {e} differs from this member's \
                         (a forked epoch log)"
                    )));
                }
                if e == latest {
                    top = Some(r.value.clone());
                }
            }
            w.put(r.space, r.key, r.value)?;
            rec = next(&mut reader)?;
        }
        w.flush()?;
        // The digest checked out (the reader returned None).

        // 3. Check the installed log before its end is written: the latest head is
        //    signed under this configuration, the stored nodes give its log root and
        //    the revision vector reads back.
        if latest > 0 {
            let head = top.ok_or_else(|| snap_err("the head of the latest epoch is missing"))?;
            let head = SignedHead::decode(&head)
                .map_err(|e| snap_err(format!("head of epoch {latest}: {e}")))?;
            head.verify(&self.public)
                .map_err(|e| snap_err(format!("head of epoch {latest}: {e}")))?;
            if head.head.epoch != latest || head.head.log_size != latest {
                return Err(snap_err(format!(
                    "the head stored for epoch {latest} is for epoch {}",
                    head.head.epoch
                )));
            }
            if range_root(&StoredNodes(&*self.store), 0, latest)? != head.head.log_root {
                return Err(snap_err(format!(
                    "the snapshot's log nodes do not give the log root of epoch {latest}"
                )));
            }
            for c in 0..(shards as usize).div_ceil(LOG_CHUNK) {
                let p = revs_prefix(c);
                let mut k = p.clone();
                k.extend_from_slice(&latest.to_be_bytes());
                if self.store.get_le(Space::EpochLog, &k, &p)?.is_none() {
                    return Err(snap_err(format!(
                        "the snapshot lacks revision chunk {c} of epoch {latest}"
                    )));
                }
            }
        }

        // 4. The epoch log's end (and shard count) moves, stale records beyond it go,
        //    and the shared handle re-reads it (checked again, forward only).
        let mut b = WriteBatch::new();
        if let Some(v) = latest_rec {
            b.put(Space::EpochLog, LOG_LATEST.to_vec(), v);
        }
        if let Some(v) = shards_rec {
            b.put(Space::EpochLog, LOG_SHARDS.to_vec(), v);
        }
        delete_beyond(&mut b, latest, shards as usize);
        self.store.write(&b, Durability::Sync)?;
        let reloaded = self.epochs.reload()?;
        if reloaded != latest {
            return Err(snap_err(format!(
                "installed an epoch log of {latest} epochs but it reads back {reloaded}"
            )));
        }

        // 5. The bookkeeping agrees with the log before it is made visible.
        let (revisions, roots) = self.load_roots(&*self.store)?;
        self.check_against_log(&st, &revisions)?;

        // 5. (cont.) Flip: state, this member's Raft marker; the install record goes.
        let mut b = WriteBatch::new();
        if let Some(v) = state_rec {
            b.put(SPACE, key(TAG_STATE, &[]), v);
        }
        b.put(SPACE, self.marker_key.clone(), marker.to_vec());
        b.delete(SPACE, INSTALL_KEY.to_vec());
        self.store.write(&b, Durability::Sync)?;
        self.state = st;
        self.revisions = revisions;
        self.roots = roots;
        self.marker = Some(marker.to_vec());
        self.installing = false;
        if st.epoch > 0 {
            self.publish(self.epochs.head(st.epoch)?);
        }
        info!(
            applied_index = st.applied_index,
            epoch = st.epoch,
            epoch_log = latest,
            records = reader.records(),
            "installed a sequencer snapshot"
        );
        Ok(())
    }
}

/// Deletes the epoch-log records beyond epoch `latest`: heads, revision chunks and the
/// perfect nodes that cover a later epoch (an earlier, interrupted install of a longer
/// log may have left them).
fn delete_beyond(b: &mut WriteBatch, latest: u64, shards: usize) {
    let Some(first) = latest.checked_add(1) else {
        return;
    };
    b.delete_range(
        Space::EpochLog,
        KeyRange::half_open(head_key(first), vec![LOG_HEAD + 1]),
    );
    for c in 0..shards.div_ceil(LOG_CHUNK) {
        let p = revs_prefix(c);
        let mut k = p.clone();
        k.extend_from_slice(&first.to_be_bytes());
        b.delete_range(
            Space::EpochLog,
            KeyRange::half_open(k, prefix_end(&p).unwrap_or_default()),
        );
    }
    // Node (level, i) covers epochs i·2^level + 1 ..= (i+1)·2^level: it belongs to a
    // log of `latest` epochs iff i < latest >> level.
    for level in 0u8..64 {
        let mut k = vec![LOG_NODE, level];
        k.extend_from_slice(&(latest >> level).to_be_bytes());
        b.delete_range(
            Space::EpochLog,
            KeyRange::half_open(k, vec![LOG_NODE, level + 1]),
        );
    }
}
