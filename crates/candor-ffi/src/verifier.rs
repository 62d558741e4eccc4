//! Verification of raw response bytes, for callers that bring their own
//! transport (a gRPC stack of their platform, a relay, a cache): the same
//! checks the client runs, as pure functions over the canonical bytes the
//! gRPC responses carry. No network, no clock (except where the caller
//! passes one), no state: head consistency across calls is the caller's
//! business (`verify_consistency`, or use `Client`).

use std::sync::Arc;

use candor_client::PinnedConfig;
use candor_client::candor_core::signed::{PublicConfig, SignedMutationTimestamp};
use candor_client::candor_core::vrf::VrfProof;
use candor_client::verify;
use candor_proto::candor::v1 as pb;

use crate::error::{CandorError, Result};
use crate::runtime::guard;
use crate::types::{
    HEAD_CHECKS, Head, HistoryResult, LookupResult, Pin, PublishResult, checks, history_result,
    lookup_result,
};

/// Verifies raw bytes against one pinned configuration.
#[derive(Debug, uniffi::Object)]
pub struct Verifier {
    config: PublicConfig,
}

/// The fields of a `PublishResponse` the verification needs (everything else
/// in the response is a convenience copy and is ignored).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PublishResponseParts {
    pub smt: Vec<u8>,
    pub vrf_proof: Vec<u8>,
    pub nonce: Vec<u8>,
    pub commitment: Vec<u8>,
    pub prev_leaf_hash: Vec<u8>,
}

/// The fields of a `ConsistencyResponse`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConsistencyResponseParts {
    pub proof: Vec<u8>,
    pub from_head: Vec<u8>,
    pub to_head: Vec<u8>,
}

/// The decoded, signature-checked SMT.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SmtInfo {
    pub namespace: String,
    pub index: Vec<u8>,
    pub version: u64,
    pub leaf_hash: Vec<u8>,
    pub shard: u32,
    pub timestamp_ms: u64,
    pub merge_deadline_ms: u64,
}

fn pb_publish(p: PublishResponseParts) -> pb::PublishResponse {
    pb::PublishResponse {
        smt: p.smt,
        vrf_proof: p.vrf_proof,
        nonce: p.nonce,
        commitment: p.commitment,
        prev_leaf_hash: p.prev_leaf_hash,
        ..Default::default()
    }
}

#[uniffi::export]
impl Verifier {
    /// A verifier for the configuration `pin` designates. With `Pin.Config`,
    /// `served_config` may be omitted; with `Pin.Digest` it is required (the
    /// `config` bytes of `GetConfig`) and must hash to the pinned digest.
    #[uniffi::constructor(default(served_config = None))]
    pub fn new(pin: Pin, served_config: Option<Vec<u8>>) -> Result<Arc<Self>> {
        guard(|| {
            let pinned = pin.to_pinned()?;
            let config = match (served_config, pinned) {
                (Some(bytes), pinned) => verify::config(&pinned, &bytes)?,
                (None, PinnedConfig::Config(c)) => *c,
                (None, PinnedConfig::Digest(_)) => {
                    return Err(CandorError::invalid(
                        "a digest pin needs the served configuration bytes",
                    ));
                }
            };
            Ok(Arc::new(Verifier { config }))
        })
    }

    /// The configuration's digest, 64 hex characters.
    pub fn config_digest(&self) -> String {
        hex::encode(self.config.digest())
    }

    /// A signed epoch head (`signed_head` of any response): signature,
    /// namespace, configuration digest, and the epoch when `expected_epoch`
    /// is given.
    #[uniffi::method(default(expected_epoch = None))]
    pub fn verify_head(&self, signed_head: Vec<u8>, expected_epoch: Option<u64>) -> Result<Head> {
        guard(|| {
            let h = verify::head_at(&self.config, &signed_head, expected_epoch)?;
            Ok(Head::from(&h))
        })
    }

    /// A Signed Mutation Timestamp on its own: signature under the SMT key,
    /// namespace, shard and deadline.
    pub fn verify_smt(&self, smt: Vec<u8>) -> Result<SmtInfo> {
        guard(|| {
            let s = SignedMutationTimestamp::decode(&smt)
                .and_then(|s| s.verify(&self.config).map(|()| s))
                .map_err(|e| CandorError::proof(format!("SMT: {e}")))?;
            let m = s.smt;
            Ok(SmtInfo {
                namespace: m.namespace,
                index: m.index.to_vec(),
                version: m.version,
                leaf_hash: m.leaf_hash.to_vec(),
                shard: m.shard,
                timestamp_ms: m.timestamp_ms,
                merge_deadline_ms: m.merge_deadline_ms,
            })
        })
    }

    /// A publish response for (`label`, `value`) sent with `idempotency_key`.
    /// `now_ms`: the local clock (ms since the Unix epoch) to reject
    /// post-dated SMTs with `max_clock_skew_ms` of slack; `None` skips that
    /// check.
    #[uniffi::method(default(now_ms = None, max_clock_skew_ms = 300000))]
    pub fn verify_publish(
        &self,
        label: Vec<u8>,
        value: Vec<u8>,
        idempotency_key: String,
        response: PublishResponseParts,
        now_ms: Option<u64>,
        max_clock_skew_ms: u64,
    ) -> Result<PublishResult> {
        guard(|| {
            let resp = pb_publish(response);
            let p = verify::publish(&self.config, &label, &value, &idempotency_key, &resp)?;
            let mut r = PublishResult::from(p.clone());
            match now_ms {
                Some(now) => verify::smt_timestamp(&p.smt, now, max_clock_skew_ms)?,
                None => r.verified.retain(|c| !c.starts_with("SMT timestamp")),
            }
            Ok(r)
        })
    }

    /// A lookup response for `label` (`requested_epoch`: the epoch asked for,
    /// `None` for latest): the head, then the proof against its map root.
    pub fn verify_lookup(
        &self,
        label: Vec<u8>,
        requested_epoch: Option<u64>,
        signed_head: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<LookupResult> {
        guard(|| {
            let resp = pb::LookupResponse {
                signed_head,
                proof,
                ..Default::default()
            };
            let v = verify::lookup(&self.config, &label, requested_epoch, &resp)?;
            Ok(lookup_result(&label, &v, false))
        })
    }

    /// A history response for `label`, as `verify_lookup`.
    pub fn verify_history(
        &self,
        label: Vec<u8>,
        requested_epoch: Option<u64>,
        signed_head: Vec<u8>,
        proof: Vec<u8>,
    ) -> Result<HistoryResult> {
        guard(|| {
            let resp = pb::HistoryResponse {
                signed_head,
                proof,
                ..Default::default()
            };
            let h = verify::history(&self.config, &label, requested_epoch, &resp)?;
            Ok(history_result(&label, &h, false))
        })
    }

    /// A consistency response between two signed heads the caller holds
    /// (`older` has the smaller epoch): the served heads must be exactly
    /// these (`Equivocation` otherwise) and `older`'s log a prefix of
    /// `newer`'s.
    pub fn verify_consistency(
        &self,
        older: Vec<u8>,
        newer: Vec<u8>,
        response: ConsistencyResponseParts,
    ) -> Result<Vec<String>> {
        guard(|| {
            let a = verify::head(&self.config, &older)?;
            let b = verify::head(&self.config, &newer)?;
            let ConsistencyResponseParts {
                proof,
                from_head,
                to_head,
            } = response;
            let resp = pb::ConsistencyResponse {
                proof,
                from_head,
                to_head,
            };
            verify::consistency(&self.config, &resp, &a, &b)?;
            let mut v = checks(HEAD_CHECKS);
            v.push("the served heads are exactly the two given".into());
            v.push(
                "the older head's epoch log is a prefix of the newer one's; time never goes back"
                    .into(),
            );
            Ok(v)
        })
    }

    /// Whether `vrf_proof` proves `index` is the VRF output for `label`
    /// under the pinned VRF key (returns the index).
    pub fn verify_vrf(&self, label: Vec<u8>, vrf_proof: Vec<u8>) -> Result<Vec<u8>> {
        guard(|| {
            let p = VrfProof::from_slice(&vrf_proof)
                .map_err(|e| CandorError::proof(format!("VRF proof: {e}")))?;
            let out = self
                .config
                .vrf_key
                .verify(&label, &p)
                .map_err(|e| CandorError::proof(format!("VRF proof: {e}")))?;
            Ok(out.index().to_vec())
        })
    }
}
