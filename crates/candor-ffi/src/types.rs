//! Records crossing the boundary: plain data, every field verified before a
//! record is built (or, for `verified`, a description of those checks).

use candor_client::{MonitorEvent as SdkEvent, PinnedConfig, VerifiedHistory, VerifiedLookup};
use candor_client::{VerifiedPublish, candor_core};
use candor_core::signed::SignedHead;

use crate::error::{CandorError, Result};

/// What the client trusts before it talks to the service: the service's
/// configuration (keys and parameters), shipped with the app or obtained out
/// of band, or its 32-byte digest.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Pin {
    /// The configuration digest as 64 hex characters (`candor dev` prints it).
    Digest { hex: String },
    /// The configuration in its canonical encoding (`config.bin` written by
    /// `candor dev` / `candor serve`, or `GetConfig`'s `config` bytes).
    Config { bytes: Vec<u8> },
}

impl Pin {
    pub(crate) fn to_pinned(&self) -> Result<PinnedConfig> {
        Ok(match self {
            Pin::Digest { hex } => PinnedConfig::from_hex_digest(hex)?,
            Pin::Config { bytes } => PinnedConfig::from_config_bytes(bytes)?,
        })
    }
}

/// A signed epoch head whose signature was verified under the pinned head key
/// and whose configuration digest is the pinned one.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Head {
    pub epoch: u64,
    /// Milliseconds since the Unix epoch, as signed by the service.
    pub timestamp_ms: u64,
    pub namespace: String,
    /// Root of the label map at this epoch (32 bytes).
    pub map_root: Vec<u8>,
    /// Size and root of the epoch log (the append-only log of heads).
    pub log_size: u64,
    pub log_root: Vec<u8>,
    /// Digest of the configuration the head was signed under (= the pin).
    pub config_digest: Vec<u8>,
    /// The canonical signed head, to store, gossip or hand to
    /// `Client.observe_head` / `Verifier.verify_head` elsewhere.
    pub signed: Vec<u8>,
}

impl From<&SignedHead> for Head {
    fn from(h: &SignedHead) -> Self {
        Head {
            epoch: h.head.epoch,
            timestamp_ms: h.head.timestamp_ms,
            namespace: h.head.namespace.clone(),
            map_root: h.head.map_root.to_vec(),
            log_size: h.head.log_size,
            log_root: h.head.log_root.to_vec(),
            config_digest: h.head.config_digest.to_vec(),
            signed: h.encode(),
        }
    }
}

pub(crate) fn decode_head(
    config: &(impl candor_core::rotation::Configs + ?Sized),
    bytes: &[u8],
) -> Result<SignedHead> {
    Ok(candor_client::verify::head(config, bytes)?)
}

/// A publish whose Signed Mutation Timestamp (SMT) was verified against
/// exactly the label and value sent.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PublishResult {
    pub label: Vec<u8>,
    /// The version assigned to this value (1 for the label's first value).
    pub version: u64,
    /// The label's VRF index (32 bytes; VRF proof verified).
    pub index: Vec<u8>,
    /// Hash of the leaf this version adds to the map: the SMT promises it.
    pub leaf_hash: Vec<u8>,
    /// The value's commitment and its opening (nonce).
    pub commitment: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Leaf hash of the previous version (32 zero bytes for version 1).
    pub prev_leaf_hash: Vec<u8>,
    pub shard: u32,
    /// The SMT's timestamp and the deadline by which a signed epoch must
    /// contain this version (ms since the Unix epoch).
    pub timestamp_ms: u64,
    pub merge_deadline_ms: u64,
    /// The canonical signed SMT: a promise anyone can check with the
    /// configuration. Keep it until `wait_merged` succeeds.
    pub smt: Vec<u8>,
    /// Retry a publish with this key to learn the outcome of an interrupted
    /// call without publishing twice.
    pub idempotency_key: String,
    /// The checks that passed.
    pub verified: Vec<String>,
}

pub(crate) const PUBLISH_CHECKS: &[&str] = &[
    "SMT signature under the pinned SMT key, namespace, shard and merge deadline",
    "SMT timestamp not in the future of the local clock beyond the allowed skew",
    "VRF proof: the index is VRF(label) under the pinned VRF key, equal to the SMT's",
    "commitment opens to exactly the label, version and value sent",
    "leaf (index, version, commitment, previous leaf) hashes to the SMT's leaf hash",
];

impl From<VerifiedPublish> for PublishResult {
    fn from(p: VerifiedPublish) -> Self {
        PublishResult {
            version: p.version,
            index: p.index.to_vec(),
            leaf_hash: p.leaf_hash.to_vec(),
            commitment: p.leaf.commitment.to_vec(),
            nonce: p.nonce.to_vec(),
            prev_leaf_hash: p.leaf.prev.to_vec(),
            shard: p.smt.smt.shard,
            timestamp_ms: p.smt.smt.timestamp_ms,
            merge_deadline_ms: p.smt.smt.merge_deadline_ms,
            smt: p.smt.encode(),
            idempotency_key: p.idempotency_key,
            label: p.label,
            verified: checks(PUBLISH_CHECKS),
        }
    }
}

/// A verified lookup answer at one signed epoch.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LookupResult {
    pub label: Vec<u8>,
    /// The head the proof was checked against.
    pub head: Head,
    /// The label's VRF index (32 bytes).
    pub index: Vec<u8>,
    /// Whether the label has a value at this epoch (absence is proven too).
    pub found: bool,
    pub version: Option<u64>,
    /// The value; `None` when absent, or when found but its opening was
    /// deleted (then only the commitment is proven).
    pub value: Option<Vec<u8>>,
    pub leaf_hash: Option<Vec<u8>>,
    pub commitment: Option<Vec<u8>>,
    /// The checks that passed.
    pub verified: Vec<String>,
}

pub(crate) const HEAD_CHECKS: &[&str] =
    &["head signature under the pinned head key; namespace and configuration digest are the pin's"];
pub(crate) const TRACK_CHECK: &str =
    "head consistent with every head this client saw before (consistency proof; no equivocation)";
pub(crate) const LOOKUP_CHECKS: &[&str] = &[
    "VRF proof: the index is VRF(label) under the pinned VRF key",
    "inclusion (or absence) proof recomputes the head's map root",
    "value opens the leaf's commitment for this label and version",
];
pub(crate) const HISTORY_CHECKS: &[&str] = &[
    "VRF proof: the index is VRF(label) under the pinned VRF key",
    "every version from 1 recomputed, each leaf linked to the previous one",
    "the last version proven in the head's map root",
    "values open their commitments",
];

pub(crate) fn checks(groups: &[&str]) -> Vec<String> {
    groups.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) fn lookup_result(label: &[u8], v: &VerifiedLookup, tracked: bool) -> LookupResult {
    let mut verified = checks(HEAD_CHECKS);
    verified.extend(checks(LOOKUP_CHECKS));
    if tracked {
        verified.push(TRACK_CHECK.to_owned());
    }
    let e = v.entry.as_ref();
    LookupResult {
        label: label.to_vec(),
        head: Head::from(&v.head),
        index: v.index.to_vec(),
        found: e.is_some(),
        version: e.map(|e| e.version),
        value: e.and_then(|e| e.value.clone()),
        leaf_hash: e.map(|e| e.leaf_hash.to_vec()),
        commitment: e.map(|e| e.leaf.commitment.to_vec()),
        verified,
    }
}

/// One version in a verified history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryVersion {
    pub version: u64,
    /// `None` when the value's opening was deleted (the version still counts).
    pub value: Option<Vec<u8>>,
    pub leaf_hash: Vec<u8>,
    pub commitment: Vec<u8>,
    pub prev_leaf_hash: Vec<u8>,
}

/// Every version of a label up to one signed epoch, verified.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryResult {
    pub label: Vec<u8>,
    pub head: Head,
    pub index: Vec<u8>,
    /// Versions 1..=n in order (empty when the label is absent).
    pub versions: Vec<HistoryVersion>,
    /// n (0 when absent).
    pub latest_version: u64,
    /// The checks that passed.
    pub verified: Vec<String>,
}

pub(crate) fn history_result(label: &[u8], h: &VerifiedHistory, tracked: bool) -> HistoryResult {
    let mut verified = checks(HEAD_CHECKS);
    verified.extend(checks(HISTORY_CHECKS));
    if tracked {
        verified.push(TRACK_CHECK.to_owned());
    }
    HistoryResult {
        label: label.to_vec(),
        head: Head::from(&h.head),
        index: h.index().to_vec(),
        versions: h
            .versions()
            .iter()
            .map(|v| HistoryVersion {
                version: v.version,
                value: v.value.clone(),
                leaf_hash: v.leaf_hash.to_vec(),
                commitment: v.leaf.commitment.to_vec(),
                prev_leaf_hash: v.leaf.prev.to_vec(),
            })
            .collect(),
        latest_version: h.latest_version(),
        verified,
    }
}

/// Proof that an SMT was honoured: a signed head with a timestamp at or
/// before the merge deadline whose map holds the promised leaf.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MergeResult {
    pub label: Vec<u8>,
    pub version: u64,
    pub leaf_hash: Vec<u8>,
    /// The including epoch's head.
    pub head: Head,
    /// The label's verified history at that epoch.
    pub history: HistoryResult,
    /// Canonical history proof bytes at that epoch, for third parties.
    pub history_proof: Vec<u8>,
    /// The checks that passed.
    pub verified: Vec<String>,
}

/// What one monitor check found about a watched label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MonitorEventKind {
    /// A version the owner published is now in a signed epoch.
    Confirmed,
    /// **Alarm.** A version the owner did not publish is in the history.
    UnexpectedChange,
    /// **Alarm.** A version seen earlier now has a different leaf.
    HistoryRewritten,
    /// **Alarm.** The history is shorter than in an earlier check.
    Rollback,
}

/// One finding of `Monitor.poll`. Fields that do not apply to the kind are
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MonitorEvent {
    pub kind: MonitorEventKind,
    /// True for everything but `Confirmed`: someone published or rewrote
    /// the owner's keys.
    pub alarm: bool,
    pub label: Vec<u8>,
    pub epoch: u64,
    /// The version concerned (`Confirmed`, `UnexpectedChange`,
    /// `HistoryRewritten`).
    pub version: Option<u64>,
    /// `UnexpectedChange`: the unexpected leaf; `HistoryRewritten`: the new leaf.
    pub leaf_hash: Option<Vec<u8>>,
    /// `HistoryRewritten`: the leaf seen before.
    pub previous_leaf_hash: Option<Vec<u8>>,
    /// `Rollback`: the history lengths before and now.
    pub previous_length: Option<u64>,
    pub length: Option<u64>,
}

impl From<SdkEvent> for MonitorEvent {
    fn from(e: SdkEvent) -> Self {
        let alarm = e.is_alarm();
        let base = |kind, label, epoch| MonitorEvent {
            kind,
            alarm,
            label,
            epoch,
            version: None,
            leaf_hash: None,
            previous_leaf_hash: None,
            previous_length: None,
            length: None,
        };
        match e {
            SdkEvent::Confirmed {
                label,
                version,
                epoch,
            } => MonitorEvent {
                version: Some(version),
                ..base(MonitorEventKind::Confirmed, label, epoch)
            },
            SdkEvent::UnexpectedChange {
                label,
                version,
                leaf_hash,
                epoch,
            } => MonitorEvent {
                version: Some(version),
                leaf_hash: Some(leaf_hash.to_vec()),
                ..base(MonitorEventKind::UnexpectedChange, label, epoch)
            },
            SdkEvent::HistoryRewritten {
                label,
                version,
                before,
                now,
                epoch,
            } => MonitorEvent {
                version: Some(version),
                leaf_hash: Some(now.to_vec()),
                previous_leaf_hash: Some(before.to_vec()),
                ..base(MonitorEventKind::HistoryRewritten, label, epoch)
            },
            SdkEvent::Rollback {
                label,
                previously,
                now,
                epoch,
            } => MonitorEvent {
                previous_length: Some(previously),
                length: Some(now),
                ..base(MonitorEventKind::Rollback, label, epoch)
            },
        }
    }
}

/// A (version, leaf hash) pair the owner published, for `Monitor.watch`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct KnownVersion {
    pub version: u64,
    pub leaf_hash: Vec<u8>,
}

pub(crate) fn digest(what: &str, b: &[u8]) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| CandorError::invalid(format!("{what} must be 32 bytes, got {}", b.len())))
}
