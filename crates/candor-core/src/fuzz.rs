//! Checks that every decoder of untrusted bytes must pass on *any* input; the
//! cargo-fuzz targets under `fuzz/` call them with libFuzzer's inputs, and
//! `tests/fuzz_corpus.rs` replays the committed corpora on stable Rust (CI).
//!
//! For every wire object: decoding never panics; whatever decodes re-encodes to
//! exactly the input (one canonical encoding, docs/protocol.md §6); and
//! verification of whatever decodes, against fixed keys and roots, never panics.
//! A violated check panics, which is what the fuzzer reports.

use crate::hash::{Digest, ZERO};
use crate::log::{ConsistencyProof, HeadExtensionProof, InclusionProof, verify_head_extension};
use crate::proof::audit::AuditProof;
use crate::proof::history::{HistoryPage, HistoryProof};
use crate::proof::lookup::LookupProof;
use crate::rotation::SignedRotation;
use crate::signed::{Cosignature, PublicConfig, SignedHead, SignedMutationTimestamp};
use crate::vrf::VrfSecretKey;

/// The decoders, by fuzz target name.
pub const TARGETS: &[&str] = &[
    "lookup_proof",
    "history_proof",
    "history_page",
    "audit_proof",
    "inclusion_proof",
    "consistency_proof",
    "head_extension",
    "public_config",
    "signed_head",
    "smt",
    "cosignature",
    "config_rotation",
];

/// A fixed deployment the decoded objects are verified against.
fn config() -> PublicConfig {
    use crate::signed::SigningKeyPair;
    PublicConfig {
        namespace: "fuzz.candor".into(),
        vrf_key: VrfSecretKey::from_bytes(&[7; 32]).public_key(),
        head_key: SigningKeyPair::from_seed(&[8; 32]).public_key(),
        smt_key: SigningKeyPair::from_seed(&[9; 32]).public_key(),
        shard_bits: 2,
        epoch_interval_ms: 1000,
        max_merge_delay_ms: 10_000,
    }
}

fn roundtrip<T>(
    target: &str,
    data: &[u8],
    decode: fn(&[u8]) -> crate::Result<T>,
    encode: fn(&T) -> Vec<u8>,
) -> Option<T> {
    let v = decode(data).ok()?;
    let again = encode(&v);
    assert!(
        again == data,
        "{target}: decoded input re-encodes to other bytes ({} in, {} out)",
        data.len(),
        again.len()
    );
    Some(v)
}

/// Runs the checks of fuzz target `target` on `data`. Panics on a violation;
/// an unknown target name panics too.
pub fn check(target: &str, data: &[u8]) {
    let label: &[u8] = b"alice@example.com";
    let root: Digest = [0x5a; 32];
    match target {
        "lookup_proof" => {
            if let Some(p) = roundtrip(target, data, LookupProof::decode, LookupProof::encode) {
                let _ = p.verify(&config().vrf_key, label, &root);
            }
        }
        "history_proof" => {
            if let Some(p) = roundtrip(target, data, HistoryProof::decode, HistoryProof::encode) {
                let _ = p.verify(&config().vrf_key, label, &root);
            }
        }
        "history_page" => {
            let _ = roundtrip(target, data, HistoryPage::decode, HistoryPage::encode);
        }
        "audit_proof" => {
            if let Some(p) = roundtrip(target, data, AuditProof::decode, AuditProof::encode) {
                let _ = p.verify(&ZERO, &root);
            }
        }
        "inclusion_proof" => {
            if let Some(p) = roundtrip(target, data, InclusionProof::decode, InclusionProof::encode)
            {
                let _ = p.verify(&root, &root);
            }
        }
        "consistency_proof" => {
            if let Some(p) = roundtrip(
                target,
                data,
                ConsistencyProof::decode,
                ConsistencyProof::encode,
            ) {
                let _ = p.verify(&root, &root);
            }
        }
        "head_extension" => {
            let _ = roundtrip(
                target,
                data,
                HeadExtensionProof::decode,
                HeadExtensionProof::encode,
            );
        }
        "public_config" => {
            let _ = roundtrip(target, data, PublicConfig::decode, PublicConfig::encode);
        }
        "signed_head" => {
            if let Some(h) = roundtrip(target, data, SignedHead::decode, SignedHead::encode) {
                let cfg = config();
                let _ = h.verify(&cfg);
                // Extension of a head by itself (the equal-epoch rule), never a panic.
                if let Ok(p) = HeadExtensionProof::decode(&[0, 0]) {
                    let _ = verify_head_extension(&h, &h, &p);
                }
            }
        }
        "smt" => {
            if let Some(s) = roundtrip(
                target,
                data,
                SignedMutationTimestamp::decode,
                SignedMutationTimestamp::encode,
            ) {
                let _ = s.verify(&config());
            }
        }
        "cosignature" => {
            let _ = roundtrip(target, data, Cosignature::decode, Cosignature::encode);
        }
        "config_rotation" => {
            if let Some(r) = roundtrip(target, data, SignedRotation::decode, SignedRotation::encode)
            {
                let old = config();
                let new = PublicConfig {
                    head_key: crate::signed::SigningKeyPair::from_seed(&[10; 32]).public_key(),
                    ..config()
                };
                let _ = r.verify(&old, &new);
                // A chain of the two, verified from either end.
                let versions = [
                    crate::rotation::ConfigVersion {
                        config: old.encode(),
                        rotation: Vec::new(),
                    },
                    crate::rotation::ConfigVersion {
                        config: new.encode(),
                        rotation: data.to_vec(),
                    },
                ];
                let _ = crate::rotation::ConfigChain::verify(&versions, &new.digest());
            }
        }
        other => panic!("unknown fuzz target {other:?} (one of {TARGETS:?})"),
    }
}
