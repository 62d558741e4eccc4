//! The crate's one error type.

use std::fmt;

/// Which size limit a write broke (see [`crate::Limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeKind {
    /// One key is longer than [`crate::Limits::max_key_bytes`].
    Key,
    /// One value is longer than [`crate::Limits::max_value_bytes`].
    Value,
    /// The batch costs more than [`crate::Limits::max_batch_bytes`] (see [`crate::WriteBatch::cost`]).
    Batch,
}

impl fmt::Display for SizeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeKind::Key => "key",
            SizeKind::Value => "value",
            SizeKind::Batch => "batch",
        })
    }
}

/// Everything a store operation can fail with.
///
/// Backends map their own errors onto these variants; the mapping decides what a
/// caller may do next: [`StoreError::Unavailable`] may be retried, [`StoreError::TooLarge`]
/// and [`StoreError::InvalidArgument`] are caller bugs (nothing was written),
/// [`StoreError::Poisoned`] and [`StoreError::Corruption`] need an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system I/O error.
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Data on disk failed a checksum or could not be decoded.
    #[error("store data is corrupt: {0}")]
    Corruption(String),
    /// A key, value or batch exceeds the store's [`crate::Limits`]. Nothing was written.
    #[error("{what} too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// Which limit.
        what: SizeKind,
        /// The offending size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The call itself is malformed (e.g. an empty key). Nothing was written.
    #[error("invalid store argument: {0}")]
    InvalidArgument(String),
    /// Another process (or another handle in this one) holds the store open.
    #[error("store is locked by another user: {0}")]
    Locked(String),
    /// An earlier write failed in a way that leaves the on-disk state uncertain (e.g. fsync
    /// failed). The store refuses further writes; reopen it (restart the process) to recover
    /// from the last durable state.
    #[error("store refuses writes after an earlier fatal I/O error; reopen it")]
    Poisoned,
    /// The backend is temporarily unreachable or overloaded; the operation may be retried.
    /// A write that failed this way may or may not have been applied (callers' writes are
    /// idempotent, see the crate docs).
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// A [`crate::Precondition`] of the batch did not hold (another writer changed the
    /// key). Nothing was written.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// Any other backend failure.
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
