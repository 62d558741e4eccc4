//! Evidence of misbehaviour that anyone holding the service's public
//! configuration can re-check offline, and a canonical byte encoding for it
//! (so a client can save it, send it to its provider or publish it).
//!
//! The encodings use the `candor-core` codec (big-endian integers,
//! length-prefixed fields, strict decoding) and start with a tag naming the
//! kind of evidence.

use candor_core::codec::{Reader, Writer};
use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::proof::history::HistoryProof;
use candor_core::signed::{PublicConfig, SignedHead, SignedMutationTimestamp};
use candor_core::{CoreError, Result};

const TAG_EQUIVOCATION: &[u8] = b"candor-v1 evidence: equivocation";
const TAG_BROKEN_PROMISE: &[u8] = b"candor-v1 evidence: broken promise";
/// Decoder bound for one signed object or proof inside evidence.
const MAX_FIELD: usize = 256 << 20;

/// Two validly signed, different heads for one epoch. The service promises
/// exactly one signed head per epoch, ever; two are proof that different
/// clients were (or could be) shown different histories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationEvidence {
    pub first: SignedHead,
    pub second: SignedHead,
}

impl EquivocationEvidence {
    pub fn epoch(&self) -> u64 {
        self.first.head.epoch
    }

    /// Checks both signatures under `config`, that both heads are for the
    /// same epoch and that they differ.
    pub fn verify(&self, config: &PublicConfig) -> Result<()> {
        self.first.verify(config)?;
        self.second.verify(config)?;
        if self.first.head.epoch != self.second.head.epoch {
            return Err(CoreError::InvalidArgument(
                "the two heads are for different epochs".into(),
            ));
        }
        if self.first == self.second {
            return Err(CoreError::InvalidArgument(
                "the two heads are identical".into(),
            ));
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str8(TAG_EQUIVOCATION)
            .bytes32(&self.first.encode())
            .bytes32(&self.second.encode());
        w.into_vec()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "equivocation evidence");
        r.expect_str8(TAG_EQUIVOCATION)?;
        let first = SignedHead::decode(r.bytes32(MAX_FIELD)?)?;
        let second = SignedHead::decode(r.bytes32(MAX_FIELD)?)?;
        r.finish()?;
        Ok(Self { first, second })
    }
}

/// The last epoch signed before an SMT's deadline, with the label's history
/// at that epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadWithHistory {
    pub head: SignedHead,
    /// Canonical `HistoryProof` bytes of the label at `head.epoch`.
    pub history_proof: Vec<u8>,
}

/// Proof that an SMT was not honoured.
///
/// The service promised (by signing `smt`) that a signed epoch with a
/// timestamp ≤ the merge deadline holds the label at a version ≥ v whose
/// history chain contains the SMT's leaf hash. The evidence is:
///
/// * `first_after_deadline`: a signed head whose timestamp is past the
///   deadline, so the service had its chance;
/// * `last_before_deadline`: the signed head of the epoch just before it
///   (timestamp ≤ deadline; epochs are numbered without gaps, so it is the
///   last epoch that could have honoured the promise) with the label's
///   history proof at that epoch, which does not contain the leaf, and
///   `consistency`, which proves both heads are on one log. `None` when the
///   first epoch ever signed is already after the deadline.
///
/// Checking only the last epoch before the deadline suffices: a label's
/// history is one hash chain that only grows, so a leaf present in an
/// earlier epoch is present at every later one of the same log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenPromiseEvidence {
    pub label: Vec<u8>,
    pub smt: SignedMutationTimestamp,
    pub last_before_deadline: Option<HeadWithHistory>,
    pub first_after_deadline: SignedHead,
    /// From `last_before_deadline.head` to `first_after_deadline`.
    pub consistency: Option<HeadExtensionProof>,
}

impl BrokenPromiseEvidence {
    /// Re-checks the evidence under `config`. `Ok` means the promise was
    /// provably broken.
    pub fn verify(&self, config: &PublicConfig) -> Result<()> {
        self.smt.verify(config)?;
        let m = &self.smt.smt;
        let after = &self.first_after_deadline;
        after.verify(config)?;
        if after.head.timestamp_ms <= m.merge_deadline_ms {
            return Err(CoreError::InvalidArgument(
                "the head after the deadline is not after it".into(),
            ));
        }
        let Some(before) = &self.last_before_deadline else {
            if after.head.epoch != 1 {
                return Err(CoreError::InvalidArgument(
                    "no head before the deadline given, but the head after it is not epoch 1"
                        .into(),
                ));
            }
            return Ok(());
        };
        let b = &before.head;
        b.verify(config)?;
        if b.head.timestamp_ms > m.merge_deadline_ms {
            return Err(CoreError::InvalidArgument(
                "the head before the deadline is after it".into(),
            ));
        }
        if b.head.epoch.checked_add(1) != Some(after.head.epoch) {
            return Err(CoreError::InvalidArgument(
                "the two heads are not consecutive epochs".into(),
            ));
        }
        let proof = self
            .consistency
            .as_ref()
            .ok_or_else(|| CoreError::InvalidArgument("consistency proof missing".into()))?;
        verify_head_extension(b, after, proof)?;
        let history = HistoryProof::decode(&before.history_proof)?.verify(
            &config.vrf_key,
            &self.label,
            &b.head.map_root,
        )?;
        if history.index != m.index {
            return Err(CoreError::InvalidArgument(
                "the label is not the SMT's label".into(),
            ));
        }
        if history.contains(m.version, &m.leaf_hash) {
            return Err(CoreError::InvalidArgument(
                "the promised leaf is in the epoch before the deadline".into(),
            ));
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str8(TAG_BROKEN_PROMISE)
            .bytes32(&self.label)
            .bytes32(&self.smt.encode());
        match &self.last_before_deadline {
            Some(b) => {
                w.u8(1).bytes32(&b.head.encode()).bytes32(&b.history_proof);
            }
            None => {
                w.u8(0);
            }
        }
        w.bytes32(&self.first_after_deadline.encode());
        match &self.consistency {
            Some(p) => {
                w.u8(1).bytes32(&p.encode());
            }
            None => {
                w.u8(0);
            }
        }
        w.into_vec()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "broken promise evidence");
        r.expect_str8(TAG_BROKEN_PROMISE)?;
        let label = r.bytes32(MAX_FIELD)?.to_vec();
        let smt = SignedMutationTimestamp::decode(r.bytes32(MAX_FIELD)?)?;
        let last_before_deadline = match r.u8()? {
            0 => None,
            1 => Some(HeadWithHistory {
                head: SignedHead::decode(r.bytes32(MAX_FIELD)?)?,
                history_proof: r.bytes32(MAX_FIELD)?.to_vec(),
            }),
            t => return Err(bad_flag(t)),
        };
        let first_after_deadline = SignedHead::decode(r.bytes32(MAX_FIELD)?)?;
        let consistency = match r.u8()? {
            0 => None,
            1 => Some(HeadExtensionProof::decode(r.bytes32(MAX_FIELD)?)?),
            t => return Err(bad_flag(t)),
        };
        r.finish()?;
        Ok(Self {
            label,
            smt,
            last_before_deadline,
            first_after_deadline,
            consistency,
        })
    }
}

fn bad_flag(t: u8) -> CoreError {
    CoreError::Decode {
        what: "evidence",
        why: format!("bad presence flag {t}"),
    }
}
