//! History proofs: every version of a label, chained to its current leaf in
//! the map.
//!
//! Encoding: `vrf_proof(80) || u32 n || n × opening || [absence] || siblings`.
//! Version `k` (1-based) is the `k`-th opening; its leaf is
//! `(index, k, commitment_k, prev = hash(leaf_{k-1}))` with `prev = 0` for
//! version 1, so the verifier recomputes every link itself and only the last
//! leaf needs a Merkle path. When `n = 0` the label is absent and an absence
//! terminal (tag 2 or 3 of the lookup proof) precedes the siblings.

use super::lookup::{LookupProof, Terminal, VerifiedLookup};
use super::{MAX_VALUE_LEN, Opening, decode_siblings, encode_siblings, fold_path};
use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, ZERO};
use crate::map::{Index, Leaf};
use crate::vrf::{VrfProof, VrfPublicKey};

/// Upper bound on versions in one proof (decoder sanity limit).
pub const MAX_HISTORY_VERSIONS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryProof {
    pub vrf_proof: VrfProof,
    /// Openings of versions 1..=n in order.
    pub versions: Vec<Opening>,
    /// Only when `versions` is empty: `AbsentEmpty` or `AbsentLeaf`.
    pub absence: Option<Terminal>,
    pub siblings: Vec<Digest>,
}

/// One verified version of a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedVersion {
    pub version: u64,
    pub value: Option<Vec<u8>>,
    pub leaf: Leaf,
    pub leaf_hash: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHistory {
    pub index: Index,
    /// Versions 1..=n, empty when the label is absent.
    pub versions: Vec<VerifiedVersion>,
}

impl VerifiedHistory {
    /// Whether `leaf_hash` is version `version` of this history (the SMT check).
    pub fn contains(&self, version: u64, leaf_hash: &Digest) -> bool {
        version >= 1
            && self
                .versions
                .get(version as usize - 1)
                .is_some_and(|v| v.leaf_hash == *leaf_hash)
    }
}

impl HistoryProof {
    pub fn encode(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(128 + 80 * self.versions.len() + 32 * self.siblings.len());
        w.raw(self.vrf_proof.as_bytes());
        w.u32(self.versions.len() as u32);
        for o in &self.versions {
            o.encode(&mut w);
        }
        if self.versions.is_empty() {
            match &self.absence {
                Some(Terminal::AbsentLeaf(leaf)) => {
                    w.u8(3);
                    leaf.encode(&mut w);
                }
                // `None` cannot be produced by decode; encode it as empty so
                // that a hand-built proof still round-trips into a failure.
                _ => {
                    w.u8(2);
                }
            }
        }
        encode_siblings(&mut w, &self.siblings);
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "history proof");
        let vrf_proof = VrfProof::from_bytes(&r.array()?);
        let n = r.u32()? as usize;
        if n > MAX_HISTORY_VERSIONS {
            return Err(decode_err("history proof", format!("{n} versions")));
        }
        let mut versions = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            versions.push(Opening::decode(&mut r)?);
        }
        let absence = if n == 0 {
            Some(match r.u8()? {
                2 => Terminal::AbsentEmpty,
                3 => Terminal::AbsentLeaf(Leaf::decode(&mut r)?),
                t => return Err(decode_err("history proof", format!("bad absence tag {t}"))),
            })
        } else {
            None
        };
        let siblings = decode_siblings(&mut r)?;
        r.finish()?;
        let _ = MAX_VALUE_LEN;
        Ok(HistoryProof {
            vrf_proof,
            versions,
            absence,
            siblings,
        })
    }

    /// Verifies every version of `label` and that the last one is the
    /// label's leaf in the map at `root`.
    pub fn verify(
        &self,
        vrf_key: &VrfPublicKey,
        label: &[u8],
        root: &Digest,
    ) -> Result<VerifiedHistory> {
        if self.versions.is_empty() {
            let terminal = match &self.absence {
                Some(t @ (Terminal::AbsentEmpty | Terminal::AbsentLeaf(_))) => t.clone(),
                _ => {
                    return Err(CoreError::NonCanonical(
                        "empty history without absence proof",
                    ));
                }
            };
            let lp = LookupProof {
                vrf_proof: self.vrf_proof,
                terminal,
                siblings: self.siblings.clone(),
            };
            let VerifiedLookup { index, .. } = lp.verify(vrf_key, label, root)?;
            return Ok(VerifiedHistory {
                index,
                versions: Vec::new(),
            });
        }
        if self.absence.is_some() {
            return Err(CoreError::NonCanonical("absence proof beside versions"));
        }
        let index = vrf_key.verify(label, &self.vrf_proof)?.index();
        let mut prev = ZERO;
        let mut out = Vec::with_capacity(self.versions.len());
        for (i, opening) in self.versions.iter().enumerate() {
            let version = i as u64 + 1;
            let leaf = Leaf {
                index,
                version,
                commitment: opening.commitment(label, version),
                prev,
            };
            prev = leaf.hash();
            out.push(VerifiedVersion {
                version,
                value: opening.value().map(<[u8]>::to_vec),
                leaf,
                leaf_hash: prev,
            });
        }
        let computed = fold_path(&index, prev, true, &self.siblings)?;
        if computed != *root {
            return Err(CoreError::RootMismatch {
                what: "history proof",
            });
        }
        Ok(VerifiedHistory {
            index,
            versions: out,
        })
    }
}
