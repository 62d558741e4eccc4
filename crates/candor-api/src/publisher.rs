//! The write seam between the API and the shard layer (see
//! `notes/SERVICE_SEAM.md`): the API validates, authenticates and computes
//! the VRF index; a [`Publisher`] orders the mutation in its shard and signs
//! the SMT.
//!
//! These types mirror the shard crate's. Until `candor-node` is wired in,
//! they are defined here so the API and its tests do not wait for it.

use candor_core::map::{Index, Leaf};
use candor_core::signed::SignedMutationTimestamp;

/// One mutation as the API hands it to the shard layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Authenticated tenant (the bearer token's owner).
    pub tenant: String,
    /// Scoped per tenant; a retry with the same key lands once.
    pub idempotency_key: Option<String>,
    /// Needed by the shard: the commitment covers the label.
    pub label: Vec<u8>,
    /// `VRF(label)`, computed by the API, which holds the VRF key.
    pub index: Index,
    pub value: Vec<u8>,
}

/// What the shard returns for one applied mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    pub smt: SignedMutationTimestamp,
    /// (index, version, commitment, prev).
    pub leaf: Leaf,
    /// The commitment opening, returned to the publisher only.
    pub nonce: [u8; 32],
}

/// Why the shard layer refused or could not apply a mutation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("not the shard leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("shard unavailable: {0}")]
    Unavailable(String),
    #[error("idempotency key already used for a different label or value")]
    IdempotencyConflict,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// Orders mutations in their shards.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Routes each item to its shard; returns only after each item is
    /// committed and applied, with a freshly signed SMT. The outer error
    /// fails the whole call; inner errors are per item.
    async fn publish(
        &self,
        items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishReceipt, ShardError>>, ShardError>;
}
