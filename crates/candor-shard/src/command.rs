//! What a shard's Raft log carries and what applying it answers (postcard encoded).

use candor_core::{Digest, Index};
use serde::{Deserialize, Serialize};

use crate::error::ShardError;

/// One mutation inside a [`ShardCommand::Publish`] entry.
///
/// Everything apply needs is in the entry (the nonce too, drawn by the proposer), so
/// every replica computes the same leaf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The authenticated tenant; scopes the idempotency key.
    pub tenant: String,
    /// Retry key: a second item with the same (tenant, key) lands once.
    pub idempotency_key: Option<String>,
    /// The label (covered by the commitment).
    #[serde(with = "serde_bytes")]
    pub label: Vec<u8>,
    /// VRF index of the label; must belong to the shard.
    pub index: Index,
    /// The new value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Commitment nonce (the opening), random, chosen by the proposer.
    pub nonce: [u8; 32],
}

/// A shard Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Stage the next version of each item's label.
    Publish {
        /// Proposer's wall clock (ms). Only ages idempotency records; never signed.
        timestamp_ms: u64,
        /// The mutations, applied in order.
        items: Vec<Item>,
    },
    /// Seal the pending labels into the next revision of the shard tree.
    Seal,
    /// Erase one version's value: forget its opening (nonce and value). The leaf,
    /// its commitment and every proof stay valid; the version is served as
    /// redacted from then on. Only the label's owner (the tenant that first
    /// published it) may erase.
    Erase {
        /// The authenticated tenant asking.
        tenant: String,
        /// The label's VRF index; must belong to the shard.
        index: Index,
        /// The version to erase.
        version: u64,
    },
}

impl ShardCommand {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decode; malformed bytes are an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, ShardError> {
        postcard::from_bytes(bytes)
            .map_err(|e| ShardError::InvalidArgument(format!("malformed shard entry: {e}")))
    }
}

/// The result of one [`Item`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemOutcome {
    /// A new leaf: `version`, with the commitment and the previous leaf's hash.
    Applied {
        /// Assigned version.
        version: u64,
        /// Commitment to (nonce, label, version, value).
        commitment: Digest,
        /// Hash of the previous version's leaf (zero for version 1).
        prev: Digest,
    },
    /// A retry of an earlier item with the same idempotency key: its recorded result.
    Duplicate {
        /// The version the first attempt got.
        version: u64,
        /// Its commitment.
        commitment: Digest,
        /// Its previous-leaf hash.
        prev: Digest,
        /// Its nonce (the opening the publisher needs).
        nonce: [u8; 32],
    },
    /// The idempotency key was used before with another label or value.
    Conflict,
    /// The item was refused (e.g. index outside the shard). Nothing changed.
    Invalid(String),
    /// The label belongs to another tenant (the one that first published it).
    /// Nothing changed.
    Forbidden,
}

/// The response of one applied entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardResponse {
    /// One outcome per item, in order.
    Published(Vec<ItemOutcome>),
    /// The shard's latest sealed revision after the seal (unchanged if nothing was
    /// pending).
    Sealed {
        /// Revision number.
        revision: u64,
        /// Labels it changed.
        changed: u64,
    },
    /// The entry did not decode; nothing changed (the applied index still advanced).
    Rejected(String),
    /// The entry had been applied before (shared storage or a restart) and its recorded
    /// response is no longer retained.
    Forgotten,
    /// What an [`ShardCommand::Erase`] did.
    Erased(EraseOutcome),
}

/// The result of an [`ShardCommand::Erase`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EraseOutcome {
    /// The version's value is forgotten (also when it already was).
    Erased,
    /// The label has no such version (or no version at all).
    NotFound,
    /// The label belongs to another tenant (or predates ownership records).
    Forbidden,
    /// The request is malformed (wrong shard, version 0).
    Invalid(String),
}

impl ShardResponse {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decode a response produced by [`crate::ShardLogic`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ShardError> {
        postcard::from_bytes(bytes)
            .map_err(|e| ShardError::Internal(format!("malformed shard response: {e}")))
    }
}
