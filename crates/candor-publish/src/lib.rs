//! # candor-publish: the write seam between the API and the shard layer
//!
//! The API (`candor-api`) validates, authenticates and computes each label's VRF
//! index, then hands the batch to a [`Publisher`]; the shard layer (`candor-shard`'s
//! `ShardPublisher`) orders each mutation in its shard's Raft group and signs an SMT
//! once it is applied. This crate holds only the seam (the trait, its request,
//! receipt and error), so that the API depends on neither the shard crate nor Raft.
//!
//! The route of a write is fixed: a front-door proxy (`candor serve --role api`), if
//! any, forwards the call once to a member; the member's [`Publisher`] sends each
//! shard's entry to that shard's leader (at most one more hop).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use candor_core::Index;
use candor_core::map::Leaf;
use candor_core::signed::SignedMutationTimestamp;

/// One mutation to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRequest {
    /// Authenticated tenant (the bearer token owner).
    pub tenant: String,
    /// Scoped per tenant: a retry with the same key lands once.
    pub idempotency_key: Option<String>,
    /// The label (the commitment covers it).
    pub label: Vec<u8>,
    /// VRF index of the label, computed by the API (which holds the VRF key).
    pub index: Index,
    /// The new value.
    pub value: Vec<u8>,
}

/// What a successful publish returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The Signed Mutation Timestamp: the promise of inclusion by its deadline.
    pub smt: SignedMutationTimestamp,
    /// The new leaf (index, version, commitment, prev).
    pub leaf: Leaf,
    /// The opening of the commitment, returned to the publisher only.
    pub nonce: [u8; 32],
}

/// Why a publish (or one item of it) failed.
///
/// `Clone` because one failed Raft entry fails every item it carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// This node does not lead the item's shard group; retry at `leader` (a Raft node id)
    /// if known.
    #[error("not the leader of the shard group (leader: {leader:?})")]
    NotLeader {
        /// The leader's node id, if this node knows it.
        leader: Option<u64>,
    },
    /// The shard cannot take writes right now (no quorum, shutting down, stopped group).
    /// Safe to retry; with an idempotency key a retry lands at most once.
    #[error("shard unavailable: {0}")]
    Unavailable(String),
    /// The write may or may not have been applied (leadership changed mid-write). Retry
    /// with the same idempotency key to learn the outcome without a duplicate.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The idempotency key was already used by this tenant for another label or value.
    #[error("idempotency key already used with a different label or value")]
    IdempotencyConflict,
    /// The label belongs to another tenant (labels are owned by the tenant that first
    /// published them). Nothing changed.
    #[error("the label belongs to another tenant")]
    PermissionDenied,
    /// The request is malformed (wrong shard, too large, ...). Nothing changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A storage failure, a bug or corrupt data; needs an operator.
    #[error("internal error: {0}")]
    Internal(String),
    /// What the request names does not exist (an erase of a version the label does
    /// not have). Nothing changed.
    #[error("not found: {0}")]
    NotFound(String),
}

/// The write seam between the API and the shards.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Routes each item to its shard (`shard_of(index, shard_bits)`); the items of one
    /// shard go into one Raft entry (or a few, if they exceed an entry). Returns only
    /// after each item's entry is committed and applied, with a freshly signed SMT.
    /// The outer error fails the whole call (nothing was proposed); inner errors are
    /// per item, in request order.
    async fn publish(
        &self,
        items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishReceipt, PublishError>>, PublishError>;

    /// Erases the value of `version` of the label at `index` (its opening is
    /// forgotten; the leaf, its commitment and every proof stay valid, and the
    /// version is served as redacted). Only the label's owner (`tenant`) may.
    /// Returns once the erase is applied by the shard's group. Idempotent.
    async fn erase(&self, tenant: String, index: Index, version: u64) -> Result<(), PublishError>;
}

/// The write seam for auditor cosignatures: the API checks the auditor key and the
/// signature, then stores through a [`CosignatureLog`] so that every member serves
/// the cosignature after any member is lost (the sequencer's Raft group with
/// embedded stores, the shared store with FoundationDB).
#[async_trait::async_trait]
pub trait CosignatureLog: Send + Sync + 'static {
    /// Stores `cosignature` (canonical encoding) durably on a quorum (or in the shared
    /// store) before it returns. `Ok(true)`: stored now; `Ok(false)`: a cosignature of
    /// that auditor for that epoch was stored before, and the first stays. A retry
    /// after an error is safe: storing is idempotent.
    async fn submit(&self, cosignature: Vec<u8>) -> Result<bool, PublishError>;
}
