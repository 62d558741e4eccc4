//! The crate's error type.

use crate::network::TransportError;
use crate::types::{CodecError, GroupId, NodeId};

/// Everything that can go wrong in `candor-raft`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This replica is not the group's leader. Route the request to `leader` (if known).
    #[error("not the leader of group {group}; leader is {leader:?} at {leader_addr:?}")]
    ForwardToLeader {
        /// The group addressed.
        group: GroupId,
        /// The current leader, if this replica knows it.
        leader: Option<NodeId>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// A write's outcome is unknown: it was appended by a leader that lost leadership
    /// before replying, so it may or may not be committed. Retrying needs deduplication.
    #[error("outcome of the write to group {group} is unknown: {detail}")]
    Indeterminate {
        /// The group addressed.
        group: GroupId,
        /// What openraft reported.
        detail: String,
    },
    /// A quorum could not be reached to confirm leadership.
    #[error("group {group}: quorum not reachable: {detail}")]
    QuorumNotEnough {
        /// The group addressed.
        group: GroupId,
        /// What openraft reported.
        detail: String,
    },
    /// The group has stopped (shut down, or a fatal storage/state-machine error).
    #[error("group {group} stopped: {detail}")]
    Stopped {
        /// The group addressed.
        group: GroupId,
        /// Why.
        detail: String,
    },
    /// The group is already running on this node.
    #[error("group {0} is already running on this node")]
    GroupExists(GroupId),
    /// A membership change was rejected.
    #[error("group {group}: membership change rejected: {detail}")]
    Membership {
        /// The group addressed.
        group: GroupId,
        /// What openraft reported.
        detail: String,
    },
    /// Invalid configuration.
    #[error("invalid raft configuration: {0}")]
    Config(String),
    /// TLS material (certificate, key, CA bundle) is missing, malformed or inconsistent.
    #[error("tls: {0}")]
    Tls(String),
    /// Timed out waiting for a condition.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The backing store failed.
    #[error(transparent)]
    Storage(#[from] candor_store::StoreError),
    /// Bytes from disk or network did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The payload is larger than a log entry may be.
    #[error("payload of {size} bytes exceeds the {limit}-byte limit of a log entry")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// Largest accepted.
        limit: usize,
    },
    /// The state machine logic failed.
    #[error("state machine: {0}")]
    StateMachine(String),
}
