//! The one error type of `candor-core`.

use crate::vrf::VrfError;

/// Every way a decode or a verification can fail. Verifiers never panic on
/// untrusted input; they return one of these.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The bytes are not a canonical encoding of the expected object.
    #[error("malformed {what}: {why}")]
    Decode { what: &'static str, why: String },
    /// A VRF proof or key failed.
    #[error("VRF: {0}")]
    Vrf(#[from] VrfError),
    /// An Ed25519 signature did not verify (strict verification).
    #[error("bad signature on {0}")]
    Signature(&'static str),
    /// A public key is not a valid Ed25519 point.
    #[error("invalid public key for {0}")]
    PublicKey(&'static str),
    /// A recomputed Merkle root differs from the expected one.
    #[error("{what}: root mismatch")]
    RootMismatch { what: &'static str },
    /// The proof is structurally valid but not in the canonical form.
    #[error("non-canonical proof: {0}")]
    NonCanonical(&'static str),
    /// A label's version chain is broken (gap, wrong link, wrong start).
    #[error("version chain broken: {0}")]
    VersionChain(String),
    /// The object belongs to another namespace, suite or configuration.
    #[error("context mismatch: {0}")]
    Context(String),
    /// Two signed objects contradict each other (equivocation, time going back,
    /// a broken SMT promise).
    #[error("inconsistent: {0}")]
    Inconsistent(String),
    /// A caller-supplied argument is out of range (not untrusted input).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

pub(crate) fn decode_err(what: &'static str, why: impl Into<String>) -> CoreError {
    CoreError::Decode {
        what,
        why: why.into(),
    }
}
