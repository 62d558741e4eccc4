//! # candor-client: the Candor SDK and auditor
//!
//! A verifying client for the Candor key transparency service
//! (`proto/candor/v1/candor.proto`, suite `candor-v1`). Nothing the service
//! says is believed until it is checked with [`candor_core`] against a
//! configuration the caller pinned.
//!
//! ## Layers
//!
//! * [`verify`]: pure functions from decoded gRPC responses to verified
//!   results. No network, no clock; unit-testable and reusable.
//! * [`HeadTracker`]: pure memory of the last verified epoch head
//!   (persistable), which turns single signed heads into a consistent view.
//! * [`Client`]: a thin async layer over tonic (retries, bearer token, head
//!   tracking) calling the two above on every answer.
//! * [`monitor`]: owner monitoring; [`auditor`]: third-party auditing;
//!   [`contact`]: contact verification codes; [`evidence`]: portable proofs
//!   of misbehaviour.
//!
//! ## What each check guarantees
//!
//! * **Pinning** ([`PinnedConfig`], [`verify::config`]): the service's
//!   keys and parameters are the ones the app ships with (or the digest of
//!   them). Every head carries the configuration digest, so a key change is
//!   visible and rejected. [`Client::connect_tofu`] exists for tools and
//!   first runs; it trusts whatever it is served.
//! * **Publish** ([`verify::publish`]): the SMT is signed by the SMT key for
//!   this namespace, its shard owns its index, its deadline is the promised
//!   maximum merge delay after its timestamp; the VRF proof shows the index
//!   is this label's; the commitment opens to exactly the label, version and
//!   value sent; the leaf built from them (linked to the previous version)
//!   is the leaf the SMT signs. The SMT is then a signed, checkable promise
//!   that *this value* will be in a signed epoch by the deadline. Its
//!   timestamp may not be in the future of the local clock by more than a
//!   skew allowance (a post-dated SMT would stretch the deadline).
//! * **Lookup** ([`verify::lookup`]): the head is signed under the pinned
//!   configuration (and is the epoch asked for); the VRF proof gives the
//!   label's index; the path recomputes the head's map root from the label's
//!   leaf (value opened against its commitment) or proves no leaf exists at
//!   that index. Together with head tracking: every client that looks the
//!   label up at that epoch gets the same answer.
//! * **History** ([`verify::history`]): every version from 1 on, each leaf
//!   recomputed and linked to the previous one, the last one proven in the
//!   map. No version can be hidden from the owner.
//! * **Freshness** ([`Freshness`], [`verify::freshness`]): a head served as
//!   the latest is refused ([`ClientError::StaleHead`]) when it is older
//!   than the last head the client saw (persist the [`HeadTracker`] to keep
//!   that memory across sessions) or older than the maximum head age derived
//!   from the epoch interval (docs/protocol.md §9.4).
//! * **Head tracking** ([`HeadTracker`], [`Client::observe_head`]): every head
//!   seen, whatever the call, must be on the same append-only epoch log as
//!   the last verified head (consistency proof, timestamps never going
//!   back); two signed heads for one epoch are
//!   [`ClientError::Equivocation`] with both heads as evidence.
//! * **Merge** ([`Client::wait_merged`]): the promise of an SMT is kept iff
//!   a signed epoch with a timestamp ≤ the deadline holds the label with the
//!   SMT's leaf (version v, exact leaf hash) in its history chain; otherwise
//!   [`ClientError::BrokenPromise`] with evidence anyone can re-check
//!   ([`BrokenPromiseEvidence::verify`]).
//! * **Owner monitoring** ([`Monitor`]): the owner's own label holds no
//!   version the owner did not publish, and its history is never shortened
//!   or rewritten.
//! * **Auditing** ([`auditor::Auditor`]): every epoch transition changes
//!   exactly the leaves it lists (with complete version chains), the epoch
//!   log recomputed by the auditor matches every head, time never goes back,
//!   SMTs shown to it were honoured; verified heads are cosigned.
//! * **Contact codes** ([`contact::contact_code`]): two people confirm each
//!   sees the other's real keys.
//!
//! ## Errors
//!
//! One error type, [`ClientError`]. [`ClientError::is_security_event`]
//! separates misbehaviour of the service (verification failures, pin
//! mismatch, equivocation, broken promises) from ordinary failures
//! (transport, gRPC status, bad input).

pub mod auditor;
pub mod client;
pub mod contact;
pub mod error;
pub mod evidence;
pub mod monitor;
pub mod pin;
pub mod tracker;
pub mod verify;
pub mod witness;

pub use auditor::{
    AuditEvent, AuditMode, AuditSummary, Auditor, AuditorOptions, EpochReport, SmtStatus,
    audit_range,
};
pub use client::{
    Client, ClientOptions, CosignerPolicy, Freshness, MergeEvidence, PublishItem, RetryPolicy,
    new_idempotency_key,
};
pub use contact::contact_code;
pub use error::{ClientError, Result, StaleHead};
pub use evidence::{BrokenPromiseEvidence, EquivocationEvidence, HeadWithHistory};
pub use monitor::{Monitor, MonitorEvent, MonitorState};
pub use pin::PinnedConfig;
pub use tracker::{HeadCheck, HeadStateFile, HeadTracker};
pub use verify::{VerifiedAudit, VerifiedHistory, VerifiedLookup, VerifiedPublish};

/// Re-exported so SDK users need not depend on the core crate for the types
/// in this API.
pub use candor_core;

/// TLS settings for [`Client::connect_tls`] (tonic's, re-exported so SDK users need
/// not depend on tonic to build them).
pub mod tls {
    pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};
}
