//! History proofs: every version of a label, chained to its current leaf in
//! the map ([`HistoryProof`]), or one bounded page of them ([`HistoryPage`]).
//!
//! Encoding: `vrf_proof(80) || u32 n || n × opening || [absence] || siblings`.
//! Version `k` (1-based) is the `k`-th opening; its leaf is
//! `(index, k, commitment_k, prev = hash(leaf_{k-1}))` with `prev = 0` for
//! version 1, so the verifier recomputes every link itself and only the last
//! leaf needs a Merkle path. When `n = 0` the label is absent and an absence
//! terminal (tag 2 or 3 of the lookup proof) precedes the siblings.

use super::lookup::{LookupProof, Terminal, VerifiedLookup};
use super::{
    MAX_LABEL_VERSIONS, MIN_OPENING_LEN, Opening, decode_siblings, encode_siblings, fold_path,
};
use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, ZERO};
use crate::map::{Index, Leaf};
use crate::vrf::{VrfProof, VrfPublicKey};

/// Upper bound on versions in one proof (decoder limit, docs/protocol.md §6.6).
pub const MAX_HISTORY_VERSIONS: usize = MAX_LABEL_VERSIONS;

/// Most versions on one [`HistoryPage`] (decoder limit, §6.4.2).
pub const MAX_PAGE_VERSIONS: usize = 1024;

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
            return Err(decode_err(
                "history proof",
                format!("{n} versions exceed the limit {MAX_HISTORY_VERSIONS}"),
            ));
        }
        if n.saturating_mul(MIN_OPENING_LEN) > r.remaining() {
            return Err(decode_err(
                "history proof",
                format!("{n} versions do not fit in {} bytes", r.remaining()),
            ));
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

// ---------------------------------------------------------------------------
// Paged history (docs/protocol.md §6.4.2)

/// Where the chain of a [`HistoryPage`] is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAnchor {
    /// The first (newest) page: it ends at the label's latest version, whose
    /// leaf is proven in the map at this root; or the label is absent.
    MapRoot(Digest),
    /// Any later page: it ends at `version`, whose leaf hash must be
    /// `leaf_hash` (the `prev` of the newer page), for a label whose latest
    /// version is `latest`.
    Leaf {
        latest: u64,
        version: u64,
        leaf_hash: Digest,
    },
}

/// The body of a [`HistoryPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageBody {
    /// The label is absent (`latest = 0`): an absence terminal and its path.
    Absent {
        absence: Terminal,
        siblings: Vec<Digest>,
    },
    /// Versions `first ..= first + openings.len() - 1`.
    Versions {
        first: u64,
        openings: Vec<Opening>,
        /// Leaf hash of version `first - 1` (`ZERO` when `first = 1`).
        prev: Digest,
        /// The map path of the latest leaf; encoded only when the page ends
        /// at the latest version, empty otherwise.
        siblings: Vec<Digest>,
    },
}

/// A bounded range of a label's versions, chained backwards: the newest page
/// is proven in the map, each older page ends at the leaf the newer page
/// links to. Encoding (§6.4.2):
///
/// ```text
/// vrf_proof[80] || u64 latest || body
/// latest = 0: (u8 2 | u8 3 || leaf[104]) || siblings
/// latest ≥ 1: u64 first || u32 count || count × opening || prev[32]
///             || siblings   (only when first + count - 1 = latest)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub vrf_proof: VrfProof,
    /// The label's latest version at the proof's map root (0: absent).
    pub latest: u64,
    pub body: PageBody,
}

/// What a verified page proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPage {
    pub index: Index,
    /// The label's latest version at the anchoring root (0: absent).
    pub latest: u64,
    /// The page's versions, oldest first.
    pub versions: Vec<VerifiedVersion>,
    /// The anchor of the next (older) page; `None` once version 1 is reached
    /// or when the label is absent.
    pub next: Option<PageAnchor>,
}

impl HistoryPage {
    /// The last version on the page (0 for an absent label).
    pub fn last(&self) -> u64 {
        match &self.body {
            PageBody::Absent { .. } => 0,
            PageBody::Versions {
                first, openings, ..
            } => first.saturating_add(openings.len().saturating_sub(1) as u64),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.raw(self.vrf_proof.as_bytes()).u64(self.latest);
        match &self.body {
            PageBody::Absent { absence, siblings } => {
                match absence {
                    Terminal::AbsentLeaf(leaf) => {
                        w.u8(3);
                        leaf.encode(&mut w);
                    }
                    _ => {
                        w.u8(2);
                    }
                }
                encode_siblings(&mut w, siblings);
            }
            PageBody::Versions {
                first,
                openings,
                prev,
                siblings,
            } => {
                w.u64(*first).u32(openings.len() as u32);
                for o in openings {
                    o.encode(&mut w);
                }
                w.raw(prev);
                if self.last() == self.latest {
                    encode_siblings(&mut w, siblings);
                }
            }
        }
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "history page";
        let mut r = Reader::new(bytes, WHAT);
        let vrf_proof = VrfProof::from_bytes(&r.array()?);
        let latest = r.u64()?;
        let body = if latest == 0 {
            let absence = match r.u8()? {
                2 => Terminal::AbsentEmpty,
                3 => Terminal::AbsentLeaf(Leaf::decode(&mut r)?),
                t => return Err(decode_err(WHAT, format!("bad absence tag {t}"))),
            };
            PageBody::Absent {
                absence,
                siblings: decode_siblings(&mut r)?,
            }
        } else {
            let first = r.u64()?;
            if first == 0 {
                return Err(decode_err(WHAT, "first version 0"));
            }
            let count = r.u32()? as usize;
            if count == 0 || count > MAX_PAGE_VERSIONS {
                return Err(decode_err(
                    WHAT,
                    format!("{count} versions: a page holds 1..={MAX_PAGE_VERSIONS}"),
                ));
            }
            if count * MIN_OPENING_LEN > r.remaining() {
                return Err(decode_err(
                    WHAT,
                    format!("{count} versions do not fit in {} bytes", r.remaining()),
                ));
            }
            let last = first
                .checked_add(count as u64 - 1)
                .filter(|l| *l <= latest)
                .ok_or_else(|| decode_err(WHAT, "the page ends beyond the latest version"))?;
            let mut openings = Vec::with_capacity(count);
            for _ in 0..count {
                openings.push(Opening::decode(&mut r)?);
            }
            let prev = r.array()?;
            let siblings = if last == latest {
                decode_siblings(&mut r)?
            } else {
                Vec::new()
            };
            PageBody::Versions {
                first,
                openings,
                prev,
                siblings,
            }
        };
        r.finish()?;
        Ok(HistoryPage {
            vrf_proof,
            latest,
            body,
        })
    }

    /// Verifies the page for `label` against `anchor` (§6.4.2): the first
    /// page against the map root, every later one against the
    /// [`VerifiedPage::next`] anchor of the page before it.
    pub fn verify(
        &self,
        vrf_key: &VrfPublicKey,
        label: &[u8],
        anchor: &PageAnchor,
    ) -> Result<VerifiedPage> {
        match &self.body {
            PageBody::Absent { absence, siblings } => {
                let PageAnchor::MapRoot(root) = anchor else {
                    return Err(CoreError::Inconsistent(
                        "an absence page follows a page with versions".into(),
                    ));
                };
                if self.latest != 0
                    || !matches!(absence, Terminal::AbsentEmpty | Terminal::AbsentLeaf(_))
                {
                    return Err(CoreError::NonCanonical("absence page with versions"));
                }
                let lp = LookupProof {
                    vrf_proof: self.vrf_proof,
                    terminal: absence.clone(),
                    siblings: siblings.clone(),
                };
                let VerifiedLookup { index, .. } = lp.verify(vrf_key, label, root)?;
                Ok(VerifiedPage {
                    index,
                    latest: 0,
                    versions: Vec::new(),
                    next: None,
                })
            }
            PageBody::Versions {
                first,
                openings,
                prev,
                siblings,
            } => {
                if self.latest == 0
                    || *first == 0
                    || openings.is_empty()
                    || openings.len() > MAX_PAGE_VERSIONS
                {
                    return Err(CoreError::NonCanonical("page shape"));
                }
                let last = first
                    .checked_add(openings.len() as u64 - 1)
                    .filter(|l| *l <= self.latest)
                    .ok_or(CoreError::NonCanonical(
                        "the page ends beyond the latest version",
                    ))?;
                let index = vrf_key.verify(label, &self.vrf_proof)?.index();
                super::lookup::check_link(*first, prev)?;
                let mut link = *prev;
                let mut versions = Vec::with_capacity(openings.len());
                for (i, opening) in openings.iter().enumerate() {
                    let version = first + i as u64;
                    let leaf = Leaf {
                        index,
                        version,
                        commitment: opening.commitment(label, version),
                        prev: link,
                    };
                    link = leaf.hash();
                    versions.push(VerifiedVersion {
                        version,
                        value: opening.value().map(<[u8]>::to_vec),
                        leaf,
                        leaf_hash: link,
                    });
                }
                match anchor {
                    PageAnchor::MapRoot(root) => {
                        if last != self.latest {
                            return Err(CoreError::Context(format!(
                                "the first page must end at the latest version {}, it ends at {last}",
                                self.latest
                            )));
                        }
                        if fold_path(&index, link, true, siblings)? != *root {
                            return Err(CoreError::RootMismatch {
                                what: "history page",
                            });
                        }
                    }
                    PageAnchor::Leaf {
                        latest,
                        version,
                        leaf_hash,
                    } => {
                        if *latest != self.latest {
                            return Err(CoreError::Inconsistent(format!(
                                "pages disagree on the latest version ({latest} and {})",
                                self.latest
                            )));
                        }
                        if last != *version {
                            return Err(CoreError::Context(format!(
                                "the page ends at version {last}, not {version}"
                            )));
                        }
                        if !siblings.is_empty() {
                            return Err(CoreError::NonCanonical("map path on an older page"));
                        }
                        if link != *leaf_hash {
                            return Err(CoreError::RootMismatch {
                                what: "history page chain",
                            });
                        }
                    }
                }
                let next = (*first > 1).then_some(PageAnchor::Leaf {
                    latest: self.latest,
                    version: first - 1,
                    leaf_hash: *prev,
                });
                Ok(VerifiedPage {
                    index,
                    latest: self.latest,
                    versions,
                    next,
                })
            }
        }
    }
}

/// Verifies a complete paged history, newest page first, and returns it as
/// one [`VerifiedHistory`] (versions oldest first). Every page must chain to
/// the one before it, and the last page must reach version 1.
pub fn verify_pages(
    vrf_key: &VrfPublicKey,
    label: &[u8],
    root: &Digest,
    pages: &[HistoryPage],
) -> Result<VerifiedHistory> {
    let mut anchor = Some(PageAnchor::MapRoot(*root));
    let mut index = None;
    let mut chunks = Vec::with_capacity(pages.len());
    for page in pages {
        let a = anchor.ok_or(CoreError::NonCanonical("a page after version 1"))?;
        let v = page.verify(vrf_key, label, &a)?;
        index = Some(v.index);
        anchor = v.next;
        chunks.push(v.versions);
    }
    let index = index.ok_or(CoreError::NonCanonical("no history page"))?;
    if let Some(PageAnchor::Leaf { version, .. }) = anchor {
        return Err(CoreError::VersionChain(format!(
            "the pages stop above version {version}"
        )));
    }
    let versions = chunks.into_iter().rev().flatten().collect();
    Ok(VerifiedHistory { index, versions })
}
