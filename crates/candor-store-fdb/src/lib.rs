//! FoundationDB backend of Candor's storage traits ([`candor_store::Store`] /
//! [`candor_store::ReadView`]), for clusters: every replica of a shard and every api
//! replica read the same state.
//!
//! # Building
//!
//! The backend is behind the cargo feature **`fdb`**, off by default. Without it this
//! crate holds only what needs no FoundationDB client (key layout, limits, configuration,
//! errors), so the workspace builds and tests on a machine without libclang or libfdb_c.
//! With it, the crate uses the `foundationdb` crate (0.11, API version **7.3**, headers
//! embedded: no system FoundationDB headers needed); building needs libclang (bindgen),
//! linking and running need `libfdb_c` 7.3 or newer (the FoundationDB client package).
//!
//! # Keyspace
//!
//! One store is one subspace of the cluster, its root (default `("candor", namespace)`,
//! tuple-encoded, see [`FdbConfig`]); each [`candor_store::Space`] is the sub-subspace
//! `root + (tag,)` with [`candor_store::Space::tag`]; user keys follow raw. The exact
//! layout, and why user keys are not tuple-encoded, is on [`Keyspace`].
//!
//! # How the contract maps onto FoundationDB
//!
//! - **Atomic batches.** A [`candor_store::WriteBatch`] is one FoundationDB transaction,
//!   run through the binding's retry loop (`Database::run`: conflicts and transient errors
//!   are retried with backoff, up to [`FdbConfig::timeout`]). Puts are `set`, deletes
//!   `clear`, range deletes `clear_range`, in batch order (FoundationDB applies a
//!   transaction's mutations in order, so "a put after a range delete wins" holds).
//! - **Order and read-your-writes.** Every live read call is a fresh read-only transaction:
//!   its read version covers every commit acknowledged before it started (FoundationDB is
//!   causally consistent), and one call reads at one version.
//! - **Durability.** A FoundationDB commit is durable on return: it is on the transaction
//!   logs of every replica (fsynced) before the client hears of it. `Durability::Sync` and
//!   `Durability::Buffered` therefore both mean "committed", and `sync()` is a no-op.
//! - **Limits.** FoundationDB allows 10,000 B per key (prefix included), 100,000 B per
//!   value and 10,000,000 B per transaction (mutations plus conflict ranges). The store
//!   reports [`candor_store::Store::limits`] derived from the layout so that *every* batch
//!   within them commits: the key limit is 10,000 less the space prefix (about 9,980 B
//!   for the default root), the value limit 100,000 B, and the batch limit is the 9 MB
//!   budget divided by the worst FoundationDB-bytes-to-cost ratio of any single operation
//!   (about 3.7 MB of cost by default; see [`Keyspace::safe_batch_cost`]).
//!   `write_chunked` splits by those limits, so each chunk is one transaction that fits.
//!   These limits are below [`candor_store::Limits::PORTABLE`] because the portable cost
//!   model counts a key twice while FoundationDB counts it about three times (mutation plus
//!   conflict range `[key, key\0)`), plus the prefix on each.
//! - **Snapshots.** [`candor_store::Store::snapshot`] is a read-only transaction whose read
//!   version is fixed when the snapshot is taken. FoundationDB serves a read version for
//!   5 s only: after that the view's reads fail with `StoreError::Unavailable`
//!   (`transaction_too_old`), as the trait documents.
//! - **5-second rule for reads.** A live `scan` is one transaction too, so a scan that
//!   takes longer than 5 s fails and is retried, then times out: keep `limit`s
//!   proportional, as the trait asks, and page with `scan_pages`.
//! - **Disk space.** [`candor_store::Store::disk_space_bytes`] is FoundationDB's estimate
//!   of the logical bytes (keys with prefix plus values) under the root, from its byte
//!   sample (`get_estimated_range_size_bytes`), counted exactly by a bounded scan when the
//!   estimate is small (the sample is coarse there). Replication and storage-engine
//!   overhead are not included: multiply by the replication factor for raw disk.
//!
//! # Retries, `commit_unknown_result` and idempotency
//!
//! When a commit's outcome is unknown (`commit_unknown_result`, a lost connection) the
//! retry loop runs the transaction again, so a batch could be applied twice. A batch of
//! blind puts, deletes and range deletes is idempotent on its own (applying it twice in a
//! row leaves the state of applying it once), so the only hazard is another writer
//! touching the same keys between the two applications. Candor's callers are built so
//! that does not matter: keys are partitioned by shard and written by one applier per
//! shard; values are deterministic functions of the Raft entry (tree nodes keyed by
//! revision); the apply of a Raft entry writes the shard's applied index in the same
//! transaction. On top of that, with [`FdbConfig::commit_markers`] (default on) each
//! batch also writes a unique marker key `(handle id, sequence number)`; a retry that
//! follows a maybe-committed attempt first reads its marker (a conflict-checked read) and,
//! when present, returns success without writing again, which turns "at least once" into
//! "exactly once" for every failure the retry loop sees. Markers older than an hour are
//! cleared in passing. What remains is the documented trait case: a write that fails
//! (timeout) with `StoreError::Unavailable` may or may not have been applied, and the
//! caller's retry is idempotent. FoundationDB 7.3's own `automatic_idempotency` option
//! does the same server-side but is marked "not ready for general use", so it is not
//! used.
//!
//! # Shared-state shards
//!
//! In a cluster every replica of a shard group opens an `FdbStore` on the same cluster
//! and root, and `candor_shard::ShardLogic::open_shared` over it (its module docs have the
//! full argument). How that maps onto this backend:
//!
//! - **Apply = one transaction.** A Raft entry's effects (leaves, openings, idempotency
//!   records), the shard's state record with its new applied index and, for the last
//!   entry of an adapter batch, the replica's own applied marker are one
//!   [`candor_store::WriteBatch`], so one `Store::write`, so one transaction: a replica
//!   sees an entry wholly applied or not at all. The batch is bounded by the Raft entry
//!   size (which the log store's value limit caps), so it fits a transaction.
//! - **Seal = chunked, marker last.** A Seal's tree writes go through `write_chunked`
//!   (several transactions, the tree's shard marker last), then one transaction records
//!   the revision in the shard state. A replica that finds the tree one revision ahead of
//!   the state finishes the bookkeeping instead of sealing again.
//! - **Lagging replicas** read the state record (one `get` per apply batch), reload when
//!   it is ahead, and skip entries at or below it: no snapshot is transferred; a Raft
//!   snapshot is the applied index alone.
//! - **`commit_unknown_result`** is absorbed by the commit markers above, so a retried
//!   apply transaction lands once.
//! - **Overlapping applies** are guarded by [`candor_store::Precondition`]s: this
//!   backend checks each as a conflict-checked `get` inside the write transaction, so a
//!   concurrent writer of the key forces a retry that then sees the new value and fails
//!   the precondition ([`candor_store::StoreError::PreconditionFailed`], nothing
//!   written). The shard state machine puts its state record in every entry's batch as
//!   one; see `candor_shard::logic` for what seals still need.
//!
//! # Ordering: revisions in keys, no versionstamps
//!
//! The backend needs no versionstamps. Versioned data is ordered by the shard's own
//! revision, which callers put in keys (`node_id || revision_be`), and the store only has
//! to keep byte order, which raw keys after a fixed prefix do. Versionstamps would be
//! wrong here: they are assigned at commit, so the replicas of a shard (and a retried
//! apply) would produce *different* keys for the same Raft entry, breaking idempotent
//! re-application and making the data depend on which node applied it; they are also
//! specific to one cluster's commit versions (not portable to the embedded backend, not
//! meaningful after a restore into another cluster). The revision is deterministic,
//! replicated by Raft, known before the write, and identical on every backend.
//!
//! # The client network
//!
//! FoundationDB's client runs one network thread per process, started once and never
//! restartable. `start_network` starts it on first use (every `FdbStore::open` calls it;
//! a `OnceLock` makes it idempotent and thread-safe) and registers an `atexit` hook that
//! stops and joins it before the C library's own exit-time destructors run, as the C API
//! requires. `stop_network` stops it earlier, for good. Client trace logs and
//! other network options can be set through FoundationDB's environment variables
//! (`FDB_NETWORK_OPTION_TRACE_ENABLE=/var/log/fdb-client`, ...).
//!
//! # Testing
//!
//! `tests/conformance.rs` runs the shared suite (`candor_store::conformance`) against a
//! real cluster when `CANDOR_FDB_CLUSTER_FILE` is set and the crate is built with
//! `--features fdb`; otherwise it prints a loud `SKIPPED` line and passes. The layout,
//! clamping and size accounting are unit-tested without the feature.

mod error;
mod keyspace;

#[cfg(feature = "fdb")]
mod backend;
#[cfg(feature = "fdb")]
mod network;

pub use error::{FdbStoreError, codes};
/// The tuple-layer subspace type used for [`FdbConfig::root`] (re-exported from
/// `foundationdb-tuple`, the same type as `foundationdb::tuple::Subspace`).
pub use foundationdb_tuple::Subspace;
pub use keyspace::{
    CLUSTER_FILE_ENV, DEFAULT_TRANSACTION_BUDGET, FDB_MAX_KEY_BYTES, FDB_MAX_TRANSACTION_BYTES,
    FDB_MAX_VALUE_BYTES, FORMAT, FdbConfig, Keyspace, MAX_ROOT_PREFIX_BYTES,
};

#[cfg(feature = "fdb")]
pub use backend::FdbStore;
#[cfg(feature = "fdb")]
pub use network::{start_network, stop_network};

/// The FoundationDB API version this crate is built against (feature `fdb-7_3` of the
/// `foundationdb` crate).
pub const API_VERSION: i32 = 730;
