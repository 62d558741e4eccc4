//! The one error type that crosses the boundary.

use candor_client::ClientError;

/// What kind of security event a [`CandorError::Verification`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VerificationKind {
    /// A signature, proof, VRF output, commitment or consistency check failed,
    /// or a response was malformed.
    Proof,
    /// The service's configuration (keys, parameters) is not the pinned one.
    PinMismatch,
    /// Two different signed heads for one epoch; `evidence` holds both.
    Equivocation,
    /// A Signed Mutation Timestamp was not honoured by its deadline;
    /// `evidence` holds the proof anyone can re-check.
    BrokenPromise,
}

/// Every way a call can fail. Nothing else crosses the boundary: a Rust
/// panic is caught and reported as [`CandorError::Internal`].
///
/// `Verification` is a security event (the service returned something an
/// honest service never returns): report it, never retry it silently. The
/// other variants are ordinary failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum CandorError {
    /// A response did not verify against the pinned configuration.
    #[error("verification failed ({kind:?}): {detail}")]
    Verification {
        kind: VerificationKind,
        detail: String,
        /// Canonical evidence bytes for `Equivocation` and `BrokenPromise`
        /// (`EquivocationEvidence` / `BrokenPromiseEvidence` of candor-client).
        evidence: Option<Vec<u8>>,
    },
    /// The connection could not be established or broke.
    #[error("transport: {detail}")]
    Transport { detail: String },
    /// The server answered with a gRPC error status (code as in gRPC: 3
    /// invalid argument, 5 not found, 8 resource exhausted, 14 unavailable...).
    #[error("server status {code_name} ({code}): {detail}")]
    ServerStatus {
        code: i32,
        code_name: String,
        detail: String,
    },
    /// The caller passed something unusable (empty label, bad pin, bad token).
    #[error("invalid argument: {detail}")]
    InvalidArgument { detail: String },
    /// Persisted state (head tracker, monitor state) is corrupt or belongs to
    /// another configuration.
    #[error("stored state: {detail}")]
    State { detail: String },
    /// `wait_merged` gave up before the SMT was shown merged (not a broken
    /// promise: the deadline may not have passed, or the service is down).
    #[error("timed out: {detail}")]
    Timeout { detail: String },
    /// A bug in the library (a caught panic). Never a verification result.
    #[error("internal error: {detail}")]
    Internal { detail: String },
}

impl CandorError {
    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        CandorError::InvalidArgument {
            detail: detail.into(),
        }
    }

    pub(crate) fn proof(detail: impl Into<String>) -> Self {
        CandorError::Verification {
            kind: VerificationKind::Proof,
            detail: detail.into(),
            evidence: None,
        }
    }
}

impl From<ClientError> for CandorError {
    fn from(e: ClientError) -> Self {
        let detail = e.to_string();
        // Classified by `is_security_event` first, so that any security event
        // the SDK adds later still surfaces as a verification failure.
        if e.is_security_event() {
            let (kind, evidence) = match &e {
                ClientError::PinMismatch { .. } => (VerificationKind::PinMismatch, None),
                ClientError::Equivocation(ev) => {
                    (VerificationKind::Equivocation, Some(ev.to_bytes()))
                }
                ClientError::BrokenPromise(ev) => {
                    (VerificationKind::BrokenPromise, Some(ev.to_bytes()))
                }
                _ => (VerificationKind::Proof, None),
            };
            return CandorError::Verification {
                kind,
                detail,
                evidence,
            };
        }
        match e {
            ClientError::Transport(_) => CandorError::Transport { detail },
            // tonic reports a connection that failed during a call as a
            // status with the transport error as its source; statuses the
            // server sent have none.
            ClientError::Status(s) if std::error::Error::source(&*s).is_some() => {
                CandorError::Transport { detail }
            }
            ClientError::Status(s) => CandorError::ServerStatus {
                code: s.code() as i32,
                code_name: format!("{:?}", s.code()),
                detail: s.message().to_owned(),
            },
            ClientError::InvalidArgument(_) => CandorError::InvalidArgument { detail },
            ClientError::State(_) => CandorError::State { detail },
            _ => CandorError::Internal { detail },
        }
    }
}

pub type Result<T, E = CandorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::CoreError;

    #[test]
    fn security_events_are_verification_errors() {
        let e: CandorError = ClientError::PinMismatch {
            pinned: [1; 32],
            served: [2; 32],
        }
        .into();
        assert!(matches!(
            e,
            CandorError::Verification {
                kind: VerificationKind::PinMismatch,
                ..
            }
        ));
        let e: CandorError = ClientError::Verification {
            what: "lookup proof",
            source: CoreError::Context("x".into()),
        }
        .into();
        assert!(matches!(
            e,
            CandorError::Verification {
                kind: VerificationKind::Proof,
                ..
            }
        ));
    }

    #[test]
    fn statuses_keep_their_code() {
        let e: CandorError = ClientError::from(tonic::Status::not_found("no such epoch")).into();
        match e {
            CandorError::ServerStatus {
                code, code_name, ..
            } => {
                assert_eq!(code, 5);
                assert_eq!(code_name, "NotFound");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
