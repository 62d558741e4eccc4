//! Lookup proofs: membership (with the value's opening) or non-membership of
//! a label in the map at one root.
//!
//! Encoding: `vrf_proof(80) || tag(u8) || body || siblings`, where the tag is
//! 0 = member, value opened; 1 = member, opening deleted; 2 = absent, the
//! path ends in an empty subtree; 3 = absent, the path ends in another label's
//! leaf.

use super::{Opening, decode_siblings, encode_siblings, fold_path};
use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, ZERO};
use crate::map::{Index, Leaf, common_prefix_len};
use crate::vrf::{VrfProof, VrfPublicKey};
use crate::vrf_memo::VrfMemo;

/// Where the lookup path ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    /// The label is present: its current version, the link to its previous
    /// leaf, and the value's opening (or commitment).
    Member {
        version: u64,
        prev: Digest,
        opening: Opening,
    },
    /// The label is absent: its path ends in an empty subtree.
    AbsentEmpty,
    /// The label is absent: its path ends in the leaf of another index.
    AbsentLeaf(Leaf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupProof {
    pub vrf_proof: VrfProof,
    pub terminal: Terminal,
    pub siblings: Vec<Digest>,
}

/// What a verified lookup proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLookup {
    pub index: Index,
    /// `None` when the label is absent at this root.
    pub entry: Option<VerifiedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    pub version: u64,
    /// `None` when the opening was deleted.
    pub value: Option<Vec<u8>>,
    pub leaf: Leaf,
    pub leaf_hash: Digest,
}

impl LookupProof {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(120 + 32 * self.siblings.len());
        self.encode_into(&mut w);
        w.into_vec()
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.raw(self.vrf_proof.as_bytes());
        match &self.terminal {
            Terminal::Member {
                version,
                prev,
                opening,
            } => match opening {
                Opening::Open { nonce, value } => {
                    w.u8(0).u64(*version).raw(prev).raw(nonce).bytes32(value);
                }
                Opening::Redacted { commitment } => {
                    w.u8(1).u64(*version).raw(prev).raw(commitment);
                }
            },
            Terminal::AbsentEmpty => {
                w.u8(2);
            }
            Terminal::AbsentLeaf(leaf) => {
                w.u8(3);
                leaf.encode(w);
            }
        }
        encode_siblings(w, &self.siblings);
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "lookup proof");
        let p = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(p)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let vrf_proof = VrfProof::from_bytes(&r.array()?);
        let terminal = match r.u8()? {
            0 => Terminal::Member {
                version: r.u64()?,
                prev: r.array()?,
                opening: Opening::Open {
                    nonce: r.array()?,
                    value: r.bytes32(super::MAX_VALUE_LEN)?.to_vec(),
                },
            },
            1 => Terminal::Member {
                version: r.u64()?,
                prev: r.array()?,
                opening: Opening::Redacted {
                    commitment: r.array()?,
                },
            },
            2 => Terminal::AbsentEmpty,
            3 => Terminal::AbsentLeaf(Leaf::decode(r)?),
            t => {
                return Err(decode_err(
                    "lookup proof",
                    format!("unknown terminal tag {t}"),
                ));
            }
        };
        let siblings = decode_siblings(r)?;
        Ok(LookupProof {
            vrf_proof,
            terminal,
            siblings,
        })
    }

    /// Verifies the proof for `label` against the map `root`.
    ///
    /// 1. `index` = first 32 bytes of `VRF.verify(vrf_key, label, vrf_proof)`.
    /// 2. The terminal hash: the member's leaf (commitment recomputed from the
    ///    opening), zero for an empty subtree, or the other leaf's hash, whose
    ///    index must differ from `index` yet share its first `depth` bits.
    /// 3. Fold the siblings up to the root and compare with `root`.
    pub fn verify(
        &self,
        vrf_key: &VrfPublicKey,
        label: &[u8],
        root: &Digest,
    ) -> Result<VerifiedLookup> {
        self.verify_memo(&VrfMemo::new(0), vrf_key, label, root)
    }

    /// [`Self::verify`], with step 1 answered by `memo` when it verified this
    /// exact VRF proof for `label` before (see [`crate::vrf_memo`]).
    pub fn verify_memo(
        &self,
        memo: &VrfMemo,
        vrf_key: &VrfPublicKey,
        label: &[u8],
        root: &Digest,
    ) -> Result<VerifiedLookup> {
        let index = memo.verify(vrf_key, label, &self.vrf_proof)?.index();
        let depth = self.siblings.len();
        let (terminal, is_leaf, entry) = match &self.terminal {
            Terminal::Member {
                version,
                prev,
                opening,
            } => {
                check_link(*version, prev)?;
                let leaf = Leaf {
                    index,
                    version: *version,
                    commitment: opening.commitment(label, *version),
                    prev: *prev,
                };
                let h = leaf.hash();
                let entry = VerifiedEntry {
                    version: *version,
                    value: opening.value().map(<[u8]>::to_vec),
                    leaf,
                    leaf_hash: h,
                };
                (h, true, Some(entry))
            }
            Terminal::AbsentEmpty => (ZERO, false, None),
            Terminal::AbsentLeaf(other) => {
                if other.index == index || common_prefix_len(&other.index, &index) < depth {
                    return Err(CoreError::NonCanonical(
                        "non-membership leaf is not on the label's path",
                    ));
                }
                check_link(other.version, &other.prev)?;
                (other.hash(), true, None)
            }
        };
        let computed = fold_path(&index, terminal, is_leaf, &self.siblings)?;
        if computed != *root {
            return Err(CoreError::RootMismatch {
                what: "lookup proof",
            });
        }
        Ok(VerifiedLookup { index, entry })
    }
}

/// Version 1 links to zero; any later version links to a non-zero hash.
pub(crate) fn check_link(version: u64, prev: &Digest) -> Result<()> {
    match (version, *prev == ZERO) {
        (0, _) => Err(CoreError::VersionChain("version 0".into())),
        (1, true) => Ok(()),
        (1, false) => Err(CoreError::VersionChain(
            "version 1 must link to zero".into(),
        )),
        (_, true) => Err(CoreError::VersionChain(format!(
            "version {version} links to zero"
        ))),
        _ => Ok(()),
    }
}
