//! The crate's one error type, and its mapping onto [`candor_store::StoreError`].

use std::path::PathBuf;

use candor_store::StoreError;

/// FoundationDB error codes this crate treats specially (see FoundationDB's
/// `error-codes` reference).
pub mod codes {
    /// `transaction_too_old`: the read version is older than 5 s.
    pub const TRANSACTION_TOO_OLD: i32 = 1007;
    /// `future_version`: a storage server is behind the read version.
    pub const FUTURE_VERSION: i32 = 1009;
    /// `not_committed`: a conflict.
    pub const NOT_COMMITTED: i32 = 1020;
    /// `commit_unknown_result`: the commit may or may not have been applied.
    pub const COMMIT_UNKNOWN_RESULT: i32 = 1021;
    /// `transaction_timed_out`: the transaction (with its retries) exceeded its timeout.
    pub const TRANSACTION_TIMED_OUT: i32 = 1031;
    /// `process_behind`: a storage server is overloaded.
    pub const PROCESS_BEHIND: i32 = 1037;
    /// `database_locked`: the cluster is locked (e.g. during a DR switchover).
    pub const DATABASE_LOCKED: i32 = 1038;
    /// `transaction_too_large`: the commit exceeds the transaction size limit.
    pub const TRANSACTION_TOO_LARGE: i32 = 2101;
}

/// Everything this crate can fail with. Converts into [`StoreError`] (the trait methods
/// return that) with the retry semantics the store contract defines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FdbStoreError {
    /// An error reported by the FoundationDB client.
    #[error("FoundationDB error {code}: {message}")]
    Fdb {
        /// FoundationDB error code.
        code: i32,
        /// FoundationDB's description of the code.
        message: String,
        /// FoundationDB classifies the error as transient (retrying may succeed).
        retryable: bool,
    },
    /// The FoundationDB client network could not be started, or was stopped.
    #[error("FoundationDB client network: {0}")]
    Network(String),
    /// The configuration is unusable (root prefix, budget, cluster file path...).
    #[error("invalid FoundationDB store configuration: {0}")]
    Config(String),
    /// The cluster file cannot be read.
    #[error("FoundationDB cluster file {path}: {source}")]
    ClusterFile {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The keyspace holds data written by an incompatible version of this backend.
    #[error("FoundationDB keyspace {root} has format {found:?}, this build reads {expected:?}")]
    Format {
        /// The root prefix, printable.
        root: String,
        /// The format marker found.
        found: String,
        /// The format marker this build writes.
        expected: String,
    },
    /// FoundationDB returned something that breaks the key layout (a key outside the range
    /// asked for).
    #[error("FoundationDB data does not match the key layout: {0}")]
    Layout(String),
    /// A binding-level failure with no FoundationDB code.
    #[error("FoundationDB binding error: {0}")]
    Binding(String),
}

impl FdbStoreError {
    /// Whether retrying the same operation later may succeed (what
    /// [`StoreError::Unavailable`] means).
    pub fn is_transient(&self) -> bool {
        match self {
            FdbStoreError::Fdb {
                code, retryable, ..
            } => {
                *retryable
                    || matches!(
                        *code,
                        codes::TRANSACTION_TOO_OLD
                            | codes::FUTURE_VERSION
                            | codes::NOT_COMMITTED
                            | codes::COMMIT_UNKNOWN_RESULT
                            | codes::TRANSACTION_TIMED_OUT
                            | codes::PROCESS_BEHIND
                            | codes::DATABASE_LOCKED
                    )
            }
            _ => false,
        }
    }
}

impl From<FdbStoreError> for StoreError {
    fn from(e: FdbStoreError) -> Self {
        if e.is_transient() {
            return StoreError::Unavailable(e.to_string());
        }
        match e {
            FdbStoreError::Config(m) => StoreError::InvalidArgument(m),
            FdbStoreError::ClusterFile { path, source } => StoreError::Io(std::io::Error::new(
                source.kind(),
                format!("FoundationDB cluster file {}: {source}", path.display()),
            )),
            e @ (FdbStoreError::Format { .. } | FdbStoreError::Layout(_)) => {
                StoreError::Corruption(e.to_string())
            }
            e => StoreError::Backend(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fdb(code: i32, retryable: bool) -> FdbStoreError {
        FdbStoreError::Fdb {
            code,
            message: "m".into(),
            retryable,
        }
    }

    #[test]
    fn transient_errors_are_unavailable() {
        for code in [
            codes::TRANSACTION_TOO_OLD,
            codes::COMMIT_UNKNOWN_RESULT,
            codes::TRANSACTION_TIMED_OUT,
            codes::DATABASE_LOCKED,
        ] {
            assert!(matches!(
                StoreError::from(fdb(code, false)),
                StoreError::Unavailable(_)
            ));
        }
        assert!(matches!(
            StoreError::from(fdb(4242, true)),
            StoreError::Unavailable(_)
        ));
        assert!(StoreError::from(fdb(4242, true)).is_retryable());
    }

    #[test]
    fn other_errors_keep_their_meaning() {
        assert!(matches!(
            StoreError::from(fdb(2000, false)),
            StoreError::Backend(_)
        ));
        assert!(matches!(
            StoreError::from(FdbStoreError::Config("x".into())),
            StoreError::InvalidArgument(_)
        ));
        assert!(matches!(
            StoreError::from(FdbStoreError::Layout("x".into())),
            StoreError::Corruption(_)
        ));
        let io = FdbStoreError::ClusterFile {
            path: "/nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        match StoreError::from(io) {
            StoreError::Io(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
                assert!(e.to_string().contains("/nope"));
            }
            other => panic!("{other:?}"),
        }
    }
}
