//! A streamed dump of store key ranges: the snapshot format of state machines whose
//! state lives in a `candor_store::Store` (the shard and the sequencer).
//!
//! # Format (version 1)
//!
//! ```text
//! magic     "CNDRSNP1"                                  8 bytes
//! record*   0x01 ‖ space tag u8 ‖ key len u32be ‖ key ‖ value len u32be ‖ value
//! end       0xFF ‖ record count u64be ‖ BLAKE3(every byte before this frame)
//! ```
//!
//! Records come section by section, each section a key range of one space read in key
//! order from one consistent [`ReadView`]; the sections are whatever the producer lists
//! (the consumer must check every record against the ranges it is willing to write:
//! see [`Section::admits`]). The trailing digest lets the consumer refuse a truncated or
//! corrupted stream *before* it makes the installed state visible, so installers write
//! records as they arrive but flip their visibility markers only after
//! [`RecordReader::next`] returned `None` (which is when the digest was checked).
//!
//! The stream is pull-based ([`RecordStream`] implements [`io::Read`]): it holds one
//! page of records in memory, never the whole dump.

use std::collections::VecDeque;
use std::io::{self, Read};

use candor_store::{Direction, KeyRange, ReadView, Space, Store, StoreError, WriteBatch};

/// The first bytes of every stream.
pub const MAGIC: &[u8; 8] = b"CNDRSNP1";
const FRAME_RECORD: u8 = 0x01;
const FRAME_END: u8 = 0xFF;
/// Longest key a stream may carry (the store's own limit is lower).
const MAX_KEY: usize = 1 << 16;
/// Longest value a stream may carry (the store's own limit is lower).
const MAX_VALUE: usize = 1 << 26;
/// Records read per store scan.
const PAGE: usize = 256;
/// A refill stops once this many bytes are buffered.
const REFILL_BYTES: usize = 256 << 10;

/// One key range of one space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The space.
    pub space: Space,
    /// The keys.
    pub range: KeyRange,
}

impl Section {
    /// A section.
    pub fn new(space: Space, range: KeyRange) -> Self {
        Self { space, range }
    }

    /// Whether a record of `space` at `key` lies in this section.
    pub fn admits(&self, space: Space, key: &[u8]) -> bool {
        self.space == space && self.range.contains(key)
    }
}

/// Whether a record lies in one of `sections`.
pub fn admitted(sections: &[Section], space: Space, key: &[u8]) -> bool {
    sections.iter().any(|s| s.admits(space, key))
}

/// Does `data` start like a record stream? (Lets a logic accept older snapshot forms.)
pub fn is_record_stream(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Magic,
    Records,
    Done,
}

/// Produces the stream of `sections` from a consistent view, page by page.
pub struct RecordStream {
    view: Box<dyn ReadView>,
    sections: VecDeque<Section>,
    buf: Vec<u8>,
    pos: usize,
    hasher: blake3::Hasher,
    records: u64,
    phase: Phase,
}

impl std::fmt::Debug for RecordStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("sections_left", &self.sections.len())
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl RecordStream {
    /// Stream `sections` (in this order) from `view`.
    pub fn new(view: Box<dyn ReadView>, sections: Vec<Section>) -> Self {
        Self {
            view,
            sections: sections.into(),
            buf: Vec::new(),
            pos: 0,
            hasher: blake3::Hasher::new(),
            records: 0,
            phase: Phase::Magic,
        }
    }

    fn push_record(&mut self, space: Space, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(io::Error::other("record too large for a snapshot stream"));
        }
        self.buf.push(FRAME_RECORD);
        self.buf.push(space.tag());
        self.buf
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(key);
        self.buf
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(value);
        self.records += 1;
        Ok(())
    }

    /// Refill the buffer; `false` at the end of the stream.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.pos = 0;
        match self.phase {
            Phase::Done => return Ok(false),
            Phase::Magic => {
                self.buf.extend_from_slice(MAGIC);
                self.phase = Phase::Records;
            }
            Phase::Records => {
                while self.buf.len() < REFILL_BYTES {
                    let Some(section) = self.sections.front_mut() else {
                        break;
                    };
                    let page = self
                        .view
                        .scan(section.space, &section.range, Direction::Forward, PAGE)
                        .map_err(io::Error::other)?;
                    let space = section.space;
                    match page.last() {
                        None => {
                            self.sections.pop_front();
                            continue;
                        }
                        Some((last, _)) if page.len() == PAGE => {
                            section.range = section.range.after(last);
                        }
                        Some(_) => {
                            self.sections.pop_front();
                        }
                    }
                    for (k, v) in &page {
                        self.push_record(space, k, v)?;
                    }
                }
                if self.sections.is_empty() && self.buf.len() < REFILL_BYTES {
                    // Everything is in: hash it, then append the end frame.
                    self.hasher.update(&self.buf);
                    let digest = self.hasher.finalize();
                    self.buf.push(FRAME_END);
                    self.buf.extend_from_slice(&self.records.to_be_bytes());
                    self.buf.extend_from_slice(digest.as_bytes());
                    self.phase = Phase::Done;
                    return Ok(true);
                }
            }
        }
        self.hasher.update(&self.buf);
        Ok(true)
    }
}

impl Read for RecordStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One record of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its space.
    pub space: Space,
    /// Its key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot stream: {what}"),
    )
}

/// Parses a stream, hashing as it goes. Never panics on malformed input; allocations
/// are bounded by the per-record caps.
pub struct RecordReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    records: u64,
    done: bool,
}

impl<R: Read> RecordReader<R> {
    /// Read and check the magic.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let mut magic = [0u8; 8];
        inner
            .read_exact(&mut magic)
            .map_err(|e| bad(format!("header: {e}")))?;
        if &magic != MAGIC {
            return Err(bad("not a record stream (bad magic)"));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&magic);
        Ok(Self {
            inner,
            hasher,
            records: 0,
            done: false,
        })
    }

    /// Read on behalf of the current frame (hashed).
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        (&mut self.inner)
            .take(n as u64)
            .read_to_end(&mut v)
            .map_err(|e| bad(e.to_string()))?;
        if v.len() != n {
            return Err(bad("truncated"));
        }
        self.hasher.update(&v);
        Ok(v)
    }

    fn take_u32(&mut self) -> io::Result<usize> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(&b);
        Ok(u32::from_be_bytes(a) as usize)
    }

    /// The next record; `Ok(None)` once the end frame was read and the record count and
    /// digest checked (and nothing follows it).
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let mut frame = [0u8; 1];
        self.inner
            .read_exact(&mut frame)
            .map_err(|e| bad(format!("frame: {e}")))?;
        match frame[0] {
            FRAME_RECORD => {
                self.hasher.update(&frame);
                let tag = self.take(1)?[0];
                let space = Space::from_tag(tag)
                    .filter(|s| *s != Space::RaftLog)
                    .ok_or_else(|| bad(format!("unknown space tag {tag}")))?;
                let kl = self.take_u32()?;
                if kl > MAX_KEY {
                    return Err(bad("key too long"));
                }
                let key = self.take(kl)?;
                let vl = self.take_u32()?;
                if vl > MAX_VALUE {
                    return Err(bad("value too long"));
                }
                let value = self.take(vl)?;
                self.records += 1;
                Ok(Some(Record { space, key, value }))
            }
            FRAME_END => {
                let mut tail = [0u8; 40];
                self.inner
                    .read_exact(&mut tail)
                    .map_err(|e| bad(format!("end frame: {e}")))?;
                let mut count = [0u8; 8];
                count.copy_from_slice(&tail[..8]);
                if u64::from_be_bytes(count) != self.records {
                    return Err(bad("record count mismatch"));
                }
                if self.hasher.finalize().as_bytes() != &tail[8..] {
                    return Err(bad("digest mismatch"));
                }
                let mut extra = [0u8; 1];
                if self.inner.read(&mut extra)? != 0 {
                    return Err(bad("trailing bytes"));
                }
                self.done = true;
                Ok(None)
            }
            f => Err(bad(format!("unknown frame {f:#x}"))),
        }
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }
}

/// Accumulates puts and writes them in bounded batches ([`Store::write_chunked`]).
pub struct BatchWriter<'a> {
    store: &'a dyn Store,
    batch: WriteBatch,
    flush_at: usize,
}

impl<'a> BatchWriter<'a> {
    /// Flush whenever the pending batch costs `flush_at` bytes or more.
    pub fn new(store: &'a dyn Store, flush_at: usize) -> Self {
        Self {
            store,
            batch: WriteBatch::new(),
            flush_at,
        }
    }

    /// Queue a put; may write.
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.batch.put(space, key, value);
        if self.batch.cost() >= self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    /// Write what is queued (buffered durability).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.batch.is_empty() {
            let b = std::mem::take(&mut self.batch);
            self.store
                .write_chunked(b, candor_store::Durability::Buffered)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_store::{Durability, MemStore};

    fn filled() -> MemStore {
        let s = MemStore::new();
        let mut b = WriteBatch::new();
        for i in 0u32..1000 {
            b.put(Space::Tree, i.to_be_bytes().to_vec(), vec![i as u8; 300]);
            b.put(Space::Meta, format!("m{i:04}").into_bytes(), vec![1; 3]);
        }
        s.write_chunked(b, Durability::Buffered).unwrap();
        s
    }

    fn sections() -> Vec<Section> {
        vec![
            Section::new(
                Space::Tree,
                KeyRange::half_open(10u32.to_be_bytes(), 900u32.to_be_bytes()),
            ),
            Section::new(Space::Meta, KeyRange::prefix(b"m00")),
        ]
    }

    fn dump(s: &MemStore) -> Vec<u8> {
        let mut out = Vec::new();
        RecordStream::new(s.snapshot().unwrap(), sections())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn roundtrip_in_order() {
        let s = filled();
        let bytes = dump(&s);
        let mut r = RecordReader::new(&bytes[..]).unwrap();
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push(rec);
        }
        assert_eq!(got.len(), 890 + 100);
        assert!(got[..890].iter().all(|r| r.space == Space::Tree));
        assert!(got[..890].windows(2).all(|w| w[0].key < w[1].key));
        assert!(got[890..].iter().all(|r| r.space == Space::Meta));
        assert!(got.iter().all(|r| admitted(&sections(), r.space, &r.key)));
        // The view is consistent: later writes do not leak into an open stream.
        let mut stream = RecordStream::new(s.snapshot().unwrap(), sections());
        let mut first = [0u8; 100];
        stream.read_exact(&mut first).unwrap();
        let mut b = WriteBatch::new();
        b.delete_range(Space::Tree, KeyRange::all());
        s.write(&b, Durability::Buffered).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert_eq!([&first[..], &rest[..]].concat(), bytes);
    }

    #[test]
    fn corruption_is_detected() {
        let s = filled();
        let bytes = dump(&s);
        let drain = |b: &[u8]| -> io::Result<()> {
            let mut r = RecordReader::new(b)?;
            while r.next_record()?.is_some() {}
            Ok(())
        };
        drain(&bytes).unwrap();
        // Truncations at many points, flipped bytes, trailing garbage: all refused.
        for cut in (0..bytes.len()).step_by(997) {
            assert!(drain(&bytes[..cut]).is_err(), "truncated at {cut} accepted");
        }
        for at in (0..bytes.len()).step_by(1013) {
            let mut b = bytes.clone();
            b[at] ^= 0x20;
            assert!(drain(&b).is_err(), "flip at {at} accepted");
        }
        let mut b = bytes.clone();
        b.push(0);
        assert!(drain(&b).is_err());
    }

    #[test]
    fn empty_sections() {
        let s = MemStore::new();
        let mut out = Vec::new();
        RecordStream::new(s.snapshot().unwrap(), sections())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 8 + 1 + 8 + 32);
        let mut r = RecordReader::new(&out[..]).unwrap();
        assert!(r.next_record().unwrap().is_none());
    }
}
