//! Candor's storage abstraction: one narrow, synchronous, transactional ordered
//! key-value interface ([`Store`] + [`ReadView`]), an embedded crash-safe backend
//! ([`FjallStore`], on fjall 3), an in-memory backend for tests ([`MemStore`]), and the
//! conformance suite every backend must pass (`conformance`, feature `test-util`).
//!
//! # Data model
//!
//! The store is a fixed set of [`Space`]s; each is an ordered map from non-empty byte keys
//! to byte values. Callers build their own key layout inside a space (shard id first,
//! big-endian integers so byte order is numeric order). Versioned data is written as
//! `id || version_be` and read with [`ReadView::get_le`] ("the greatest key `<= k` that is
//! `>= floor`"), one reverse seek.
//!
//! # Contract (every backend, checked by the conformance suite)
//!
//! - **Atomic batches.** [`Store::write`] applies a [`WriteBatch`] (puts, deletes, range
//!   deletes, over any spaces, in order) all or nothing, also across crashes. A reader
//!   never sees part of a batch: every single read call observes one point in time.
//! - **Order.** Batches become visible in the order their `write` calls return; a read that
//!   starts after a write returned sees it (read-your-writes).
//! - **Durability.** [`Durability::Sync`]: on return the batch survives power loss; and so
//!   does every batch acknowledged before it (durability is prefix-closed).
//!   [`Durability::Buffered`]: survives a crash of the process, maybe not of the machine,
//!   until the next `Sync` write or [`Store::sync`]. After any crash the store holds a
//!   prefix of the acknowledged batches plus possibly some unacknowledged ones, each
//!   whole.
//! - **Limits.** Every write is checked against [`Store::limits`] ([`Limits::PORTABLE`] by
//!   default everywhere: key ≤ 9,000 B, value ≤ 100,000 B, batch cost ≤ 8,000,000 B,
//!   FoundationDB's limits with head room) and refused whole with
//!   [`StoreError::TooLarge`]. Keys must be non-empty.
//! - **Large writes.** [`Store::write_chunked`] takes a batch of any size and applies it as
//!   consecutive atomic chunks in order. After a crash or error, a prefix of the chunks is
//!   applied. Callers make such writes idempotent and put their completion marker (applied
//!   index, sealed revision...) as the last operation.
//! - **Snapshots.** [`Store::snapshot`] returns a cheap, consistent, read-only view for
//!   short read sequences (a proof built from several reads). It is *not* for long-lived
//!   reads: FoundationDB read versions expire after 5 s; epochs are read through
//!   versioned keys instead.
//! - **Errors, not panics.** Nothing read from disk can make a backend panic; corrupt data
//!   is [`StoreError::Corruption`].
//!
//! # Why this shape
//!
//! - *Synchronous and object safe.* Both backends are blocking underneath (fjall does
//!   blocking I/O; the FoundationDB client runs its own network thread and its futures
//!   can be waited on). A sync trait keeps backends simple and lets callers choose:
//!   `Arc<dyn Store>` for runtime selection, `spawn_blocking` from async code. Scans
//!   return owned, bounded pages rather than iterators borrowing the store, which keeps
//!   the trait object safe and maps one-to-one onto FoundationDB range reads (which
//!   cannot outlive a 5 s transaction anyway).
//! - *Fixed spaces rather than one flat keyspace.* On FoundationDB a space is a one-byte
//!   prefix ([`Space::tag`]), i.e. one logical keyspace as the design asks. On fjall each
//!   space is its own LSM tree with its own tuning, so Raft-log churn (append, purge)
//!   never fragments the Merkle-tree data and compactions stay independent; atomic
//!   batches still span spaces.
//! - *Range deletes in the batch.* FoundationDB clears ranges natively; fjall 3 has no
//!   range tombstones, so the embedded backend expands a range delete into point
//!   tombstones for the keys present at commit time, under its writer lock so the
//!   expansion is exact. Cost is proportional to the keys removed (Raft-log purges,
//!   pruning old tree revisions), which is what those callers do anyway.
//!
//! # Backends
//!
//! [`FjallStore`] (embedded): fjall 3 is a pure-Rust LSM engine with cross-keyspace
//! atomic write batches, a checksummed write-ahead journal whose recovery discards a torn
//! last batch, MVCC snapshots, lz4 block compression and a bounded block cache. An LSM
//! fits Candor's write pattern (large batches of small, random-keyed values, mostly
//! appended versions) far better than a copy-on-write B-tree; redb (the fallback) is a
//! fine B-tree but rewrites a page path per key and its large transactions amplify writes.
//! See [`FjallConfig`] for the memory budget knobs and [`FjallStore`] for how the contract
//! maps onto fjall (durability modes, why every read goes through a fjall snapshot).
//!
//! # Advice for callers
//!
//! - **Key layout.** Fixed-width or otherwise prefix-free ids before a big-endian version
//!   (`id || rev_be`), so that `get_le(id || r, id)` can never land on another id.
//! - **Group commit.** Write a run of batches `Buffered`, then one `Sync` write or
//!   [`Store::sync`]: every earlier batch becomes durable with it.
//! - **Reads cost.** On the embedded backend a point `get` costs about one block lookup
//!   (~6-8 µs with 1M entries and the data larger than the cache); `get_le` and `scan`
//!   build an LSM range iterator, ~1.3-2× a point get and more while many level-0 tables
//!   wait for compaction. Callers on the hot path (the tree engine serving proofs) should
//!   cache the upper tree levels themselves and use `get_many` / `get_le_many` for
//!   batches (one snapshot; concurrent on FoundationDB).
//! - **Async.** Everything blocks: call from `spawn_blocking` (or a dedicated thread) in
//!   async code.
//! - **Measuring bytes on disk.** [`FjallStore::flush_and_compact`] then
//!   [`FjallStore::disk_usage`] gives the steady-state table bytes without journal noise.

mod embedded;
mod error;
#[cfg(feature = "test-util")]
mod mem;
mod store;
mod types;

#[cfg(feature = "test-util")]
pub mod conformance;

pub use embedded::{DiskUsage, FjallConfig, FjallStore};
pub use error::{Result, SizeKind, StoreError};
#[cfg(feature = "test-util")]
pub use mem::MemStore;
pub use store::{ReadView, SCAN_EACH_PAGE, ScanPages, Store, Visit, scan_pages};
pub use types::{
    Direction, Durability, KeyRange, KeyValue, Limits, OP_OVERHEAD_BYTES, Op, Precondition, Space,
    WriteBatch, prefix_end, successor,
};

/// `use candor_store::prelude::*;` brings the traits into scope (their methods need it).
pub mod prelude {
    pub use crate::{Durability, KeyRange, ReadView, Space, Store, WriteBatch};
}
