//! The one error type of `candor-api`, and the one place it becomes a gRPC
//! status.

use candor_store::StoreError;
use candor_tree::TreeError;
use tonic::{Code, Status};

use crate::publisher::PublishError;

/// Every way an RPC can fail. [`From<ApiError> for Status`] is the only
/// mapping to gRPC codes; messages never contain a label.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or an unknown bearer token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated but not allowed (e.g. an auditor key the operator does
    /// not accept).
    #[error("{0}")]
    PermissionDenied(String),
    /// Bad input; nothing was applied.
    #[error("{0}")]
    InvalidArgument(String),
    /// An epoch that is not (yet) signed.
    #[error("{0}")]
    NotFound(String),
    /// No epoch has been signed yet.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Idempotency key reused for a different label or value.
    #[error("{0}")]
    AlreadyExists(String),
    /// Rate limit, queue full, or a response above the message limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The tenant's publish rate (`limits.tenant_items_per_second`) is spent.
    #[error("tenant publish rate exceeded; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// A dependency cannot be reached now, or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt storage.
    #[error("internal error: {0}")]
    Internal(String),
    /// A tree or epoch-log read failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The shard layer refused or failed a write.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl ApiError {
    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::ResourceExhausted(_) | ApiError::RateLimited { .. } => {
                Code::ResourceExhausted
            }
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
            ApiError::Tree(e) => match e {
                TreeError::NoSuchEpoch { .. } | TreeError::NotSealed { .. } => Code::NotFound,
                TreeError::Store(StoreError::Unavailable(_)) => Code::Unavailable,
                // A pruned revision is gone for good: retrying will not help.
                TreeError::Pruned { .. } => Code::NotFound,
                _ => Code::Internal,
            },
            ApiError::Publish(e) => match e {
                // Indeterminate: the outcome is unknown; the documented
                // remedy (retry with the same idempotency key) is UNAVAILABLE's.
                PublishError::NotLeader { .. }
                | PublishError::Unavailable(_)
                | PublishError::Indeterminate(_) => Code::Unavailable,
                PublishError::IdempotencyConflict => Code::AlreadyExists,
                PublishError::PermissionDenied => Code::PermissionDenied,
                PublishError::InvalidArgument(_) => Code::InvalidArgument,
                PublishError::NotFound(_) => Code::NotFound,
                _ => Code::Internal,
            },
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = e.code();
        if code == Code::Internal {
            // Internal details go to the log, not to the caller.
            tracing::error!(error = %e, "internal error");
            return Status::new(code, "internal error; see the server log");
        }
        let mut s = Status::new(code, e.to_string());
        if let ApiError::RateLimited { retry_after_ms } = e {
            let v = tonic::metadata::MetadataValue::from(retry_after_ms);
            s.metadata_mut().insert("retry-after-ms", v.clone());
            s.metadata_mut().insert("grpc-retry-pushback-ms", v);
        }
        s
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
