//! # candor-tree: the storage-backed map engine and epoch log of Candor
//!
//! The map (see `candor_core::map`) is one compressed sparse Merkle tree over
//! 256-bit indices, split into `2^b` shards (`b = shard_bits`, 0..=16); shard
//! `s` owns the subtree at depth `b` whose prefix is `s`. This crate stores
//! each shard's subtree, versioned by *revision* (revision 0 is empty; each
//! [`ShardTree::seal`] makes the next one), and assembles the global map of
//! an epoch from one revision per shard ([`MapView`]). Every proof it builds
//! is byte-identical to what [`candor_core::reference::ReferenceMap`] builds
//! from the same leaves; the verifiers in `candor_core::proof` judge them.
//!
//! ## Contracts
//!
//! * **Staging.** A mutation writes its leaf record (with the opening) with
//!   [`ShardTree::stage`] into the caller's batch (e.g. with the Raft
//!   entry's other effects). The caller assigns `version = latest + 1` from
//!   [`ShardTree::latest_leaf`]. Staged leaves join the tree at the next seal
//!   that lists their index.
//! * **Sealing.** [`ShardTree::seal`] builds revision `latest + 1` from the
//!   newest staged leaf of each listed index. Every touched node is hashed
//!   once per seal; disjoint subtrees are hashed in parallel (rayon). Only
//!   changed nodes are written, under new keys, then the revision record and
//!   last the shard's sealed-revision marker, with `write_chunked`: a crash
//!   leaves the previous revision intact. Redoing the same seal is
//!   idempotent; a different seal of the same revision number first deletes
//!   the half-written one (found through the pending marker).
//! * **Reads** at any retained revision: roots, paths, leaves, diffs; global
//!   lookup, history and audit proofs through a [`MapView`]. Reads never see
//!   a later revision's records (every read is bounded by the revision).
//! * **One writer per shard**, any number of readers: handles of one
//!   [`Forest`] share the shard's state; readers in another forest or
//!   process see new seals and prunes through the shard's marker in the
//!   store (re-read when a revision beyond the known one is asked for).
//! * **Retention.** [`ShardTree::prune`] makes revisions before a bound
//!   unreadable ([`TreeError::Pruned`]) and deletes the node versions only
//!   they needed. Leaf records (and openings) are never pruned (history).
//! * **Errors.** Nothing read from disk can panic: malformed or inconsistent
//!   records are [`TreeError::Corruption`] (strides are checked against
//!   their parent's hash, leaf records against the tree's hash of them).
//!
//! ## Layout
//!
//! Nodes are stored only at depth `b` (the shard root) and at the multiples
//! of [`STRIDE`] = 8 below it (and 256), a *stride* of at most 8 binary
//! levels apart (the shard root's is shorter when 8 does not divide `b`, so
//! the lower levels are the same whatever the shard count); the levels in
//! between are recomputed from the stored ones (at most 255 joins, of which
//! only those over two non-empty sides hash; cached). A stored position
//! holds one of: a lone leaf (*Single*: the leaf's hash, index and version)
//! or a subtree of two or more leaves (*Multi*: its hash). A lone leaf is
//! stored at the shallowest stored depth where it is alone, so its record
//! moves down a stride when another label arrives beneath it. Empty
//! positions have no record; a label is never removed, so a position never
//! becomes empty again. Storing every eighth level keeps the records per
//! leaf-version (and so disk usage) low, and with 8 levels per stride a
//! label's path at a million labels crosses one stored level that is too
//! big to stay cached (depth 16) instead of two with a stride of 4: a
//! proof or an update reads about one stride from the store there.
//! Reading a stride is one short range scan (all versions of up to 256
//! child positions; beyond [`STRIDE`]-dependent bounds, one seek per
//! child).
//!
//! Space `Tree`:
//! * `N | shard u16 | depth-1 u8 | prefix (⌈depth/8⌉ bytes) | c(rev)` →
//!   `1 | leaf hash | index | c(version)` (Single) or `2 | hash` (Multi).
//!   `c(x)` is an order-preserving compact integer (length byte, then the
//!   significant big-endian bytes). The children of a Multi written at
//!   revision `r` are, for each child position, its latest record with
//!   revision `≤ r` (records only change when their parent does, so this is
//!   exact, and a stride is immutable once written: it is cached by
//!   `(position, r)`).
//! * `L | index | c(version)` → `commitment | prev [| nonce(32) | value]`:
//!   leaf version records, with the opening until it is forgotten
//!   ([`ShardTree::forget`] rewrites the record without it). One record per
//!   version keeps one key per leaf-version on disk and lets a lookup proof
//!   read leaf and opening with one point read.
//! * `R | shard u16 | rev u64be` → `1 | leaf count u64 | root node | c(root rev)`.
//!
//! Space `Meta`: `candor-tree/config` → `2 | shard_bits | stride`;
//! `candor-tree/shard/ | shard u16` → `1 | latest u64 | retained_from u64
//! [| pending rev u64 | input digest]`: the sealed-revision marker.
//!
//! Space `EpochLog`: see [`EpochLogStore`].
//!
//! Audit proofs and [`ShardTree::changed`] find the changed labels by
//! walking two revisions side by side and skipping every subtree whose hash
//! did not change, so no per-revision change list is stored.
//!
//! ## Caching
//!
//! One bounded cache per [`Forest`] ([`TreeConfig::cache_bytes`]) holds
//! strides (a stored node's children plus the binary levels between) and
//! revision records. Entries are immutable, keyed by position and the
//! revision that wrote them, so they never need invalidation; a seal inserts
//! the strides it built, so the upper levels stay warm for the next seal and
//! for proofs. The newest version of each stride of the top two levels
//! (nodes above depth 16: at most 256 plus the shard roots) is held apart,
//! one per position, out of a fixed reserve of the budget: a seal rewrites
//! them every time, and loading one reads every stored version of its
//! children, which grows with the labels held, so the churn of the lower
//! levels must not evict them. A version a seal replaces moves to the
//! weighted cache for the readers of the last signed epoch.
//!
//! ## Cost model
//!
//! A cache miss costs one range scan of the store (the children of one
//! stored node, all their versions), a proof one point read for the leaf
//! record with its opening. With the embedded store a range scan costs tens of
//! microseconds (it merges every sorted run of the LSM tree), so throughput
//! at a million labels is bounded by how much of the stride working set the
//! cache holds; see the crate's bench (`benches/tree.rs`). A miss loads a
//! whole stride (up to 256 children), so the cache must at least hold the
//! strides above the level that does not fit (about 10 MB per million
//! labels); below that proofs get several times dearer.

mod epoch;
mod error;
mod forest;
mod keys;
pub mod layout;
mod nav;
mod node;
mod shard;
mod view;

pub use epoch::EpochLogStore;
pub use error::{Result, TreeError};
pub use forest::TreeConfig;
pub use node::STRIDE;
pub use shard::{
    LabelDiff, PathEnd, PruneStats, SealedRevision, ShardPath, ShardTree, StoredOpening,
};
pub use view::{Forest, MapView, OpeningPolicy};
