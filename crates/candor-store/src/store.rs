//! The storage traits every backend implements.

use std::sync::Arc;

use crate::error::Result;
use crate::types::{Direction, Durability, KeyRange, KeyValue, Limits, Space, WriteBatch};

/// Read access to one consistent or live view of the store.
///
/// Implemented by every [`Store`] (reads the latest committed state) and by the views
/// [`Store::snapshot`] returns (reads one fixed point in time).
///
/// Consistency: each single call (`get`, `scan`, `get_le`, `get_many`, `get_le_many`)
/// reads from one point in time, so it never observes part of a batch. Two calls on a live
/// store may observe different points; use [`Store::snapshot`] for several reads of one
/// state.
pub trait ReadView: Send + Sync {
    /// The value of `key` in `space`, if present.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Up to `limit` entries of `space` within `range`, in `direction` order (ascending
    /// for [`Direction::Forward`], descending for [`Direction::Reverse`]). An empty range or
    /// `limit == 0` gives an empty vector. Backends may need one round trip per call, so
    /// keep `limit` proportional to what you need; page with [`KeyRange::after`] /
    /// [`KeyRange::before`] or [`scan_pages`].
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<KeyValue>>;

    /// Visits the entries of `space` within `range` in `direction` order, handing each
    /// key and value to `visit` without copying them where the backend allows, until
    /// `visit` returns `Ok(false)`, returns an error (passed on), or the range ends.
    ///
    /// Consistency is that of [`scan_pages`]: one point in time on a snapshot; on a live
    /// store each page of [`SCAN_EACH_PAGE`] entries is, the whole visit need not be.
    /// The default reads those pages with [`ReadView::scan`]; the embedded backend
    /// iterates one snapshot in place (no allocation per entry), which is what the
    /// tree's stride loads rely on at scale.
    fn scan_each(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        let mut range = range.clone();
        let mut page_len = 256;
        loop {
            let page = self.scan(space, &range, direction, page_len)?;
            for (k, v) in &page {
                if !visit(k, v)? {
                    return Ok(());
                }
            }
            if page.len() < page_len {
                return Ok(());
            }
            let last = &page.last().expect("full page").0;
            range = match direction {
                Direction::Forward => range.after(last),
                Direction::Reverse => range.before(last),
            };
            page_len = SCAN_EACH_PAGE;
        }
    }

    /// "Seek for prev": the entry with the greatest key `k` such that `floor <= k <= key`.
    ///
    /// This is how versioned data is read: with keys `id || revision_be`, the latest
    /// version of `id` at or before revision `r` is `get_le(space, id || r_be, id)`.
    /// Backends implement it with a single reverse seek.
    fn get_le(&self, space: Space, key: &[u8], floor: &[u8]) -> Result<Option<KeyValue>> {
        let range = KeyRange::inclusive(floor, key);
        Ok(self
            .scan(space, &range, Direction::Reverse, 1)?
            .into_iter()
            .next())
    }

    /// [`ReadView::get`] for many keys at once, from one point in time. Results are in the
    /// order of `keys`. Remote backends issue the reads concurrently.
    fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(space, k)).collect()
    }

    /// [`ReadView::get_le`] for many `(key, floor)` pairs at once, from one point in time.
    fn get_le_many(
        &self,
        space: Space,
        queries: &[(&[u8], &[u8])],
    ) -> Result<Vec<Option<KeyValue>>> {
        queries
            .iter()
            .map(|(k, f)| self.get_le(space, k, f))
            .collect()
    }
}

/// The visitor of [`ReadView::scan_each`]: gets each key and value in place and says
/// whether to go on.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Entries per [`ReadView::scan`] call in the default [`ReadView::scan_each`] (after a
/// first page of 256: most visits stop early).
pub const SCAN_EACH_PAGE: usize = 4096;

/// A transactional ordered key-value store: the one interface between Candor and its
/// storage (see the crate docs for the full contract).
///
/// Object safe: hold it as `Arc<dyn Store>` (or generically as `S: Store`; `Arc<S>` and
/// `Box<S>` implement it too). Synchronous: async callers wrap calls in `spawn_blocking`.
pub trait Store: ReadView + 'static {
    /// Applies `batch` atomically: all of it or none of it, also across crashes; concurrent
    /// readers see all of it or none of it. Batches become visible in the order their
    /// `write` calls return, and a write is visible to every read that starts after it
    /// returns. On return the batch is as durable as `durability` says.
    ///
    /// The batch must pass [`WriteBatch::validate`] against [`Store::limits`], else
    /// [`crate::StoreError::TooLarge`] / [`crate::StoreError::InvalidArgument`] and nothing
    /// is written. Every [`crate::Precondition`] of the batch is checked atomically with
    /// its writes: if one does not hold, nothing is written and the error is
    /// [`crate::StoreError::PreconditionFailed`]. On any other error the batch may or may
    /// not have been applied (e.g. a lost commit acknowledgment on a remote backend), but
    /// never partly.
    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<()>;

    /// Writes a batch of any size as consecutive atomic chunks (see [`WriteBatch::split`]),
    /// in order, and returns the number of chunks.
    ///
    /// Contract: each chunk is atomic, chunks are applied in order, and after a crash or an
    /// error some prefix of the chunks (possibly none, possibly all) is applied. Readers
    /// may observe the state between two chunks. Callers therefore make chunked writes
    /// idempotent and put their completion marker (e.g. an applied index) as the *last*
    /// operation, so the marker is present only if everything before it is. With
    /// `Durability::Sync` every chunk is durable on return (the default implementation
    /// writes all but the last chunk `Buffered` and relies on the prefix rule of
    /// [`Durability::Sync`]).
    fn write_chunked(&self, batch: WriteBatch, durability: Durability) -> Result<usize> {
        let chunks = batch.split(&self.limits())?;
        let n = chunks.len();
        for (i, chunk) in chunks.iter().enumerate() {
            let d = if i + 1 == n {
                durability
            } else {
                Durability::Buffered
            };
            self.write(chunk, d)?;
        }
        Ok(n)
    }

    /// The limits [`Store::write`] enforces.
    fn limits(&self) -> Limits;

    /// A read-only view of the current state that later writes do not change. Cheap on
    /// every backend. Keep it short-lived: it pins old data (embedded) or expires after a
    /// few seconds (FoundationDB read versions live 5 s, after which reads fail with
    /// [`crate::StoreError::Unavailable`]). Long-lived reads of a signed epoch use
    /// versioned keys instead.
    fn snapshot(&self) -> Result<Box<dyn ReadView>>;

    /// Makes every write acknowledged so far durable (as if it had been written with
    /// [`Durability::Sync`]).
    fn sync(&self) -> Result<()>;

    /// Bytes this store occupies on disk (allocated blocks of its files: sparse or
    /// preallocated space not counted). Approximate; call [`Store::sync`] first for a
    /// stable figure. In-memory backends report the bytes of keys and values held.
    fn disk_space_bytes(&self) -> Result<u64>;
}

/// Iterates over every entry of `range` in `space`, reading `page` entries per
/// [`ReadView::scan`] call. Each page is consistent; the iteration as a whole is not
/// (entries written meanwhile may or may not appear), unless `view` is a snapshot.
pub fn scan_pages<'a, V: ReadView + ?Sized>(
    view: &'a V,
    space: Space,
    range: KeyRange,
    direction: Direction,
    page: usize,
) -> ScanPages<'a, V> {
    ScanPages {
        view,
        space,
        range: Some(range),
        direction,
        page: page.max(1),
        buf: Vec::new().into_iter(),
    }
}

/// Iterator returned by [`scan_pages`].
pub struct ScanPages<'a, V: ?Sized> {
    view: &'a V,
    space: Space,
    range: Option<KeyRange>,
    direction: Direction,
    page: usize,
    buf: std::vec::IntoIter<KeyValue>,
}

impl<V: ReadView + ?Sized> Iterator for ScanPages<'_, V> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(kv) = self.buf.next() {
            return Some(Ok(kv));
        }
        let range = self.range.take()?;
        let page = match self
            .view
            .scan(self.space, &range, self.direction, self.page)
        {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if page.len() == self.page
            && let Some((last, _)) = page.last()
        {
            self.range = Some(match self.direction {
                Direction::Forward => range.after(last),
                Direction::Reverse => range.before(last),
            });
        }
        self.buf = page.into_iter();
        self.buf.next().map(Ok)
    }
}

macro_rules! forward_read_view {
    ($($ptr:ident),*) => {$(
        impl<T: ReadView + ?Sized> ReadView for $ptr<T> {
            fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
                (**self).get(space, key)
            }
            fn scan(
                &self,
                space: Space,
                range: &KeyRange,
                direction: Direction,
                limit: usize,
            ) -> Result<Vec<KeyValue>> {
                (**self).scan(space, range, direction, limit)
            }
            fn scan_each(
                &self,
                space: Space,
                range: &KeyRange,
                direction: Direction,
                visit: &mut Visit<'_>,
            ) -> Result<()> {
                (**self).scan_each(space, range, direction, visit)
            }
            fn get_le(&self, space: Space, key: &[u8], floor: &[u8]) -> Result<Option<KeyValue>> {
                (**self).get_le(space, key, floor)
            }
            fn get_many(&self, space: Space, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
                (**self).get_many(space, keys)
            }
            fn get_le_many(
                &self,
                space: Space,
                queries: &[(&[u8], &[u8])],
            ) -> Result<Vec<Option<KeyValue>>> {
                (**self).get_le_many(space, queries)
            }
        }

        impl<T: Store + ?Sized> Store for $ptr<T> {
            fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<()> {
                (**self).write(batch, durability)
            }
            fn write_chunked(&self, batch: WriteBatch, durability: Durability) -> Result<usize> {
                (**self).write_chunked(batch, durability)
            }
            fn limits(&self) -> Limits {
                (**self).limits()
            }
            fn snapshot(&self) -> Result<Box<dyn ReadView>> {
                (**self).snapshot()
            }
            fn sync(&self) -> Result<()> {
                (**self).sync()
            }
            fn disk_space_bytes(&self) -> Result<u64> {
                (**self).disk_space_bytes()
            }
        }
    )*};
}

forward_read_view!(Arc, Box);
