//! The one error type of `candor-client`.

use candor_core::{CoreError, Digest};

use crate::evidence::{BrokenPromiseEvidence, EquivocationEvidence};

/// Every way an SDK or auditor call can fail.
///
/// Two families must be told apart:
///
/// * **Operational** ([`Transport`](Self::Transport), [`Status`](Self::Status),
///   [`InvalidArgument`](Self::InvalidArgument), [`State`](Self::State)):
///   the network, the server's documented statuses, the caller's input, or
///   corrupt local state. Retrying or fixing the input may help.
/// * **Security events** ([`Verification`](Self::Verification),
///   [`PinMismatch`](Self::PinMismatch), [`Equivocation`](Self::Equivocation),
///   [`BrokenPromise`](Self::BrokenPromise)): the service returned something
///   that is not what an honest service would return. Never retry these
///   silently; log them, and for the last two keep the evidence, which any
///   third party can re-check with the pinned configuration
///   ([`ClientError::is_security_event`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be established.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),

    /// The server answered with a gRPC error status (see the statuses
    /// documented in `proto/candor/v1/candor.proto`). Boxed: a `Status` is
    /// large and errors should be cheap to move.
    #[error("gRPC status {}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),

    /// A response did not verify: bad signature, wrong proof, wrong VRF,
    /// wrong commitment, inconsistent log, time going back... This is a
    /// security event: the response is not what an honest service sends.
    #[error("verification failed ({what}): {source}")]
    Verification {
        /// What was being verified.
        what: &'static str,
        #[source]
        source: CoreError,
    },

    /// The configuration the service serves is not the pinned one (keys or
    /// parameters changed, or this is another service).
    #[error(
        "configuration digest {} does not match the pinned {}",
        hex::encode(served),
        hex::encode(pinned)
    )]
    PinMismatch { pinned: Digest, served: Digest },

    /// The service signed two different heads for one epoch. The evidence
    /// holds both signed heads.
    #[error("equivocation: two different signed heads for epoch {}", .0.epoch())]
    Equivocation(Box<EquivocationEvidence>),

    /// A Signed Mutation Timestamp was not honoured: a signed head after its
    /// merge deadline exists and the last epoch before the deadline does not
    /// contain the promised leaf. The evidence is verifiable by anyone.
    #[error(
        "broken promise: version {} of the label is not in any epoch up to its merge deadline {}",
        .0.smt.smt.version,
        .0.smt.smt.merge_deadline_ms
    )]
    BrokenPromise(Box<BrokenPromiseEvidence>),
    /// No head from epoch `from` to `to` carries the cosignatures a
    /// [`crate::CosignerPolicy`] requires (the auditors lag, or do not accept
    /// these heads).
    #[error("no head in epochs {from}..={to} is cosigned by {threshold} of the required auditors")]
    NotCosigned {
        threshold: usize,
        from: u64,
        to: u64,
    },

    /// A head served as the latest is not fresh (docs/protocol.md §9.4):
    /// older than the last head this client saw, older than the maximum head
    /// age, or dated ahead of the local clock. The service is replaying an
    /// old state (or a proxy is), or it stopped signing epochs. Either way
    /// the answer must not be shown as current.
    #[error("stale head: {0}")]
    StaleHead(StaleHead),

    /// The caller passed something unusable (empty label, bad token, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Persisted state (head tracker, auditor state) is corrupt or belongs
    /// to another configuration.
    #[error("stored state: {0}")]
    State(CoreError),
}

impl ClientError {
    /// True for the variants that mean the service misbehaved (see the type
    /// docs): these must be reported, not retried.
    pub fn is_security_event(&self) -> bool {
        matches!(
            self,
            ClientError::Verification { .. }
                | ClientError::PinMismatch { .. }
                | ClientError::Equivocation(_)
                | ClientError::BrokenPromise(_)
                | ClientError::StaleHead(_)
        )
    }

    /// The gRPC status code when this is a [`ClientError::Status`].
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Status(Box::new(s))
    }
}

/// `map_err` helper: a core verification failure about `what`.
pub(crate) fn vfail(what: &'static str) -> impl FnOnce(CoreError) -> ClientError {
    move |source| ClientError::Verification { what, source }
}

/// A verification failure built from a message (malformed response fields).
pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> ClientError {
    ClientError::Verification {
        what,
        source: CoreError::Decode {
            what,
            why: why.into(),
        },
    }
}

/// Why a head served as the latest was refused ([`ClientError::StaleHead`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleHead {
    /// The served head is older than one this client already verified.
    #[error(
        "the service served epoch {served_epoch} as the latest, but this client already saw epoch {seen_epoch}"
    )]
    OlderThanSeen { served_epoch: u64, seen_epoch: u64 },
    /// The served head's timestamp is more than the maximum head age ago.
    #[error(
        "the latest head served (epoch {epoch}, timestamp {timestamp_ms} ms) is {age_ms} ms old, more than the maximum head age of {max_age_ms} ms"
    )]
    TooOld {
        epoch: u64,
        timestamp_ms: u64,
        age_ms: u64,
        max_age_ms: u64,
    },
    /// The served head's timestamp is ahead of the local clock by more than
    /// the allowance (a post-dated head would stay "fresh" for longer).
    #[error(
        "the latest head served (epoch {epoch}) is dated {ahead_ms} ms ahead of the local clock, more than the allowance of {allowance_ms} ms"
    )]
    FromTheFuture {
        epoch: u64,
        ahead_ms: u64,
        allowance_ms: u64,
    },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
