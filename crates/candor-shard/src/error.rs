//! The crate's one error type.

/// Why a publish (or one item of it) failed.
///
/// `Clone` because one failed Raft entry fails every item it carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
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
    /// The request is malformed (wrong shard, too large, ...). Nothing changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store or tree engine failed (I/O, corrupt records). Inside the state machine
    /// this stops the Raft group: a replica that cannot apply an entry must not go on.
    #[error("storage: {0}")]
    Storage(String),
    /// A bug or corrupt data; needs an operator.
    #[error("internal error: {0}")]
    Internal(String),
    /// Shared-state mode: another replica advanced the shard's stored state while this
    /// one was applying, so this replica's write was refused (nothing written). The
    /// state machine catches up and re-applies; callers do not see it.
    #[error("another replica advanced the shard state: {0}")]
    StaleReplica(String),
}

impl ShardError {
    /// Maps a Raft failure of a whole write.
    pub(crate) fn from_raft(e: candor_raft::Error) -> Self {
        use candor_raft::Error as E;
        match e {
            E::ForwardToLeader { leader, .. } => ShardError::NotLeader { leader },
            E::Indeterminate { detail, .. } => ShardError::Indeterminate(detail),
            E::QuorumNotEnough { detail, .. } => ShardError::Unavailable(detail),
            E::Stopped { detail, .. } => {
                ShardError::Unavailable(format!("group stopped: {detail}"))
            }
            E::Timeout(d) => ShardError::Unavailable(d),
            E::Transport(t) => ShardError::Unavailable(t.to_string()),
            E::TooLarge { size, limit } => ShardError::InvalidArgument(format!(
                "entry of {size} bytes exceeds the {limit}-byte limit"
            )),
            other => ShardError::Internal(other.to_string()),
        }
    }
}

impl From<candor_store::StoreError> for ShardError {
    fn from(e: candor_store::StoreError) -> Self {
        match e {
            candor_store::StoreError::PreconditionFailed(m) => ShardError::StaleReplica(m),
            other => ShardError::Storage(other.to_string()),
        }
    }
}

impl From<candor_tree::TreeError> for ShardError {
    fn from(e: candor_tree::TreeError) -> Self {
        match e {
            candor_tree::TreeError::Store(s) => s.into(),
            other => ShardError::Storage(other.to_string()),
        }
    }
}

/// What a caller of the publish seam sees: the same cases, with the state machine's
/// internal ones (`Storage`, `StaleReplica`) as `Internal`.
impl From<ShardError> for candor_publish::PublishError {
    fn from(e: ShardError) -> Self {
        use candor_publish::PublishError as P;
        match e {
            ShardError::NotLeader { leader } => P::NotLeader { leader },
            ShardError::Unavailable(m) => P::Unavailable(m),
            ShardError::Indeterminate(m) => P::Indeterminate(m),
            ShardError::IdempotencyConflict => P::IdempotencyConflict,
            ShardError::InvalidArgument(m) => P::InvalidArgument(m),
            ShardError::Internal(m) => P::Internal(m),
            other @ (ShardError::Storage(_) | ShardError::StaleReplica(_)) => {
                P::Internal(other.to_string())
            }
        }
    }
}
