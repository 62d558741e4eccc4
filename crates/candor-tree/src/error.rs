//! The one error type of `candor-tree`.

use candor_core::CoreError;
use candor_store::StoreError;

/// Everything a tree or epoch-log operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The store failed (I/O, limits, unavailable...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A protocol-level error from `candor-core` (e.g. a caller-supplied
    /// argument out of range).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A record read from the store is not what this crate writes. Never
    /// caused by caller input; needs an operator.
    #[error("tree data is corrupt: {0}")]
    Corruption(String),
    /// The revision was removed by [`crate::ShardTree::prune`].
    #[error(
        "shard {shard}: revision {revision} was pruned (oldest retained revision is {retained_from})"
    )]
    Pruned {
        shard: u32,
        revision: u64,
        retained_from: u64,
    },
    /// The revision has not been sealed yet.
    #[error("shard {shard}: revision {revision} is not sealed (latest sealed is {latest})")]
    NotSealed {
        shard: u32,
        revision: u64,
        latest: u64,
    },
    /// The epoch is not in the epoch log.
    #[error("epoch {epoch} is not in the epoch log (latest is {latest})")]
    NoSuchEpoch { epoch: u64, latest: u64 },
    /// An append or seal contradicts what is already stored (e.g. a second,
    /// different head for an epoch).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A caller-supplied argument is invalid (wrong shard, bad version...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = TreeError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: impl Into<String>) -> TreeError {
    TreeError::Corruption(what.into())
}

pub(crate) fn invalid(what: impl Into<String>) -> TreeError {
    TreeError::InvalidArgument(what.into())
}
