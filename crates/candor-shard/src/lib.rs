//! # candor-shard: one shard of the Candor map as a Raft state machine
//!
//! Each shard (`2^shard_bits` of them) is one openraft group ([`candor_raft`]); its
//! group id is the shard number. The group orders the shard's mutations, assigns
//! versions, stages leaves into the shard tree ([`candor_tree`]) and seals revisions.
//!
//! ## Protocol
//!
//! * **Publish.** [`ShardPublisher`] (the [`Publisher`] seam) routes each
//!   [`PublishRequest`] to `shard_of(index)`, draws the commitment nonce, and proposes a
//!   [`ShardCommand::Publish`] entry holding every item queued for that shard (batching).
//!   Applying it ([`ShardLogic`]) checks the idempotency key, assigns
//!   `version = latest + 1`, computes `commit(nonce, label, version, value)`, stages the
//!   leaf and its opening, and adds the index to the pending set, all in one store batch.
//!   When `client_write` returns the entry is committed in the quorum and applied, and
//!   the leader signs the SMT (`timestamp = now`, `deadline = now + max_merge_delay`).
//! * **Seal.** Every `seal_interval` the leader of a shard with pending labels proposes
//!   [`ShardCommand::Seal`] ([`spawn_sealer`]); applying it seals the pending labels into
//!   the next revision. A revision therefore exists only once its Seal entry is
//!   committed: the sequencer can use it safely.
//! * **Idempotency.** `(tenant, idempotency_key)` → first result; a retry with the same
//!   label and value gets that result (and a fresh SMT for the same leaf), a different
//!   one gets [`ShardError::IdempotencyConflict`]. Bounded retention: see [`logic`].
//!
//! ## Determinism and exactly-once apply
//!
//! Apply reads only the entry and the store, so every replica (and a replica applying
//! the same entry twice over shared storage) computes the same bytes. See [`logic`] for
//! the key layout and the crash argument, and [`ShardLogic::open_shared`] for
//! shared-state mode (all replicas of a shard over one store, e.g. FoundationDB;
//! snapshots are the applied index alone; replicas' applies must not overlap).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod error;
pub mod logic;
mod publisher;
mod sealer;

pub use candor_publish::{PublishError, PublishReceipt, PublishRequest, Publisher};
pub use command::{EraseOutcome, Item, ItemOutcome, ShardCommand, ShardResponse};
pub use error::ShardError;
pub use logic::{ShardLogic, ShardLogicConfig, ShardState, idempotency_key_hash};
pub use publisher::{PublisherConfig, ShardPublisher, ShardRoute, now_ms};
pub use sealer::{seal_pending, spawn_sealer};
