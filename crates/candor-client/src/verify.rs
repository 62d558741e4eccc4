//! Pure verification of decoded gRPC responses: no network, no clock, no
//! state. The async [`Client`](crate::Client) calls these on every answer;
//! they are public so that other transports, tests and offline tools can use
//! exactly the same checks.
//!
//! Every function takes the configuration the caller pinned and trusts
//! nothing else. The protobuf "convenience" fields (epoch, version, value,
//! index, ...) are ignored: every result is built from the canonical signed
//! bytes and proofs only. Failures are [`ClientError::Verification`] (or
//! [`ClientError::PinMismatch`] / [`ClientError::Equivocation`]), i.e.
//! security events.

use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::map::{Index, Leaf, commit};
use candor_core::proof::audit::{AuditProof, VerifiedChange};
use candor_core::proof::history::{
    HistoryPage, HistoryProof, PageAnchor, VerifiedHistory as CoreHistory, VerifiedPage,
    VerifiedVersion,
};
use candor_core::proof::lookup::{LookupProof, VerifiedEntry};
use candor_core::rotation::{ConfigChain, ConfigVersion, Configs};
use candor_core::signed::{
    Cosignature, EpochHead, PublicConfig, SignedHead, SignedMutationTimestamp,
};
use candor_core::vrf::VrfProof;
pub use candor_core::vrf_memo::VrfMemo;
use candor_core::{CoreError, Digest, ZERO};
use candor_proto::candor::v1 as pb;

use crate::error::{ClientError, Result, StaleHead, malformed, vfail};
use crate::evidence::EquivocationEvidence;
use crate::pin::PinnedConfig;

/// A publish whose SMT was checked against the label and value sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPublish {
    /// The label published.
    pub label: Vec<u8>,
    /// The signed promise (signature, namespace, shard and deadline verified).
    pub smt: SignedMutationTimestamp,
    /// The version assigned (from the SMT).
    pub version: u64,
    /// The label's VRF index (VRF proof verified; equals the SMT's index).
    pub index: Index,
    /// The leaf of this version, recomputed by the client; its hash is the
    /// SMT's leaf hash.
    pub leaf: Leaf,
    pub leaf_hash: Digest,
    /// The commitment opening: with it and the value anyone can recompute
    /// the commitment.
    pub nonce: [u8; 32],
    /// The idempotency key the request carried (retry with it to learn the
    /// outcome of an interrupted publish).
    pub idempotency_key: String,
}

impl VerifiedPublish {
    /// The SMT's merge deadline (ms since the Unix epoch).
    pub fn merge_deadline_ms(&self) -> u64 {
        self.smt.smt.merge_deadline_ms
    }
}

/// A verified lookup answer at one signed epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLookup {
    /// The signed head the proof was checked against (signature verified).
    pub head: SignedHead,
    /// The label's VRF index.
    pub index: Index,
    /// The label's current version, `None` when it is absent at this epoch.
    pub entry: Option<VerifiedEntry>,
}

impl VerifiedLookup {
    pub fn epoch(&self) -> u64 {
        self.head.head.epoch
    }
    pub fn is_found(&self) -> bool {
        self.entry.is_some()
    }
    pub fn version(&self) -> Option<u64> {
        self.entry.as_ref().map(|e| e.version)
    }
    /// The value, `None` when absent or when its opening was deleted (then
    /// only the commitment is proven: check [`Self::is_found`]).
    pub fn value(&self) -> Option<&[u8]> {
        self.entry.as_ref().and_then(|e| e.value.as_deref())
    }
}

/// A verified history of one label up to one signed epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHistory {
    /// The signed head the proof was checked against.
    pub head: SignedHead,
    /// Every version 1..=n, chained, the last one proven in the map.
    pub history: CoreHistory,
}

impl VerifiedHistory {
    pub fn epoch(&self) -> u64 {
        self.head.head.epoch
    }
    pub fn index(&self) -> &Index {
        &self.history.index
    }
    pub fn versions(&self) -> &[VerifiedVersion] {
        &self.history.versions
    }
    /// The latest version at this epoch (0 when absent).
    pub fn latest_version(&self) -> u64 {
        self.history.versions.len() as u64
    }
    /// Whether version `version` of this history has leaf hash `leaf_hash`:
    /// the check that an SMT was honoured.
    pub fn contains(&self, version: u64, leaf_hash: &Digest) -> bool {
        self.history.contains(version, leaf_hash)
    }
}

/// A verified epoch transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAudit {
    /// Head of `epoch - 1`; `None` for epoch 1 (transition from the empty map).
    pub previous: Option<SignedHead>,
    pub head: SignedHead,
    /// Every label that changed, with all its new leaves, in index order.
    pub changes: Vec<VerifiedChange>,
}

fn arr32(what: &'static str, b: &[u8]) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| malformed(what, format!("expected 32 bytes, got {}", b.len())))
}

fn check_link(version: u64, prev: &Digest) -> std::result::Result<(), CoreError> {
    match (version, *prev == ZERO) {
        (0, _) => Err(CoreError::VersionChain("version 0".into())),
        (1, false) => Err(CoreError::VersionChain(
            "version 1 must link to zero".into(),
        )),
        (v, true) if v > 1 => Err(CoreError::VersionChain(format!(
            "version {v} links to zero"
        ))),
        _ => Ok(()),
    }
}

/// Checks a served configuration chain (`GetConfigResponse.config` and
/// `.history`, docs/protocol.md §8.1) against the pin: the pinned
/// configuration must be in it and every rotation must verify.
pub fn config_chain(pin: &PinnedConfig, resp: &pb::GetConfigResponse) -> Result<ConfigChain> {
    if resp.history.is_empty() {
        return Ok(ConfigChain::single(config(pin, &resp.config)?));
    }
    if resp.history.last().map(|v| &v.config) != Some(&resp.config) {
        return Err(ClientError::Verification {
            what: "configuration chain",
            source: CoreError::Context("the served configuration is not the chain's last".into()),
        });
    }
    let versions: Vec<ConfigVersion> = resp
        .history
        .iter()
        .map(|v| ConfigVersion {
            config: v.config.clone(),
            rotation: v.rotation.clone(),
        })
        .collect();
    let pinned = pin.digest();
    ConfigChain::verify(&versions, &pinned).map_err(|e| match e {
        CoreError::Context(_) if !versions_contain(&versions, &pinned) => {
            ClientError::PinMismatch {
                pinned,
                served: PublicConfig::decode(&resp.config)
                    .map(|c| c.digest())
                    .unwrap_or_default(),
            }
        }
        e => vfail("configuration chain")(e),
    })
}

fn versions_contain(versions: &[ConfigVersion], digest: &Digest) -> bool {
    versions
        .iter()
        .any(|v| PublicConfig::decode(&v.config).is_ok_and(|c| &c.digest() == digest))
}

/// Checks the served configuration against the pin and returns it.
pub fn config(pin: &PinnedConfig, config_bytes: &[u8]) -> Result<PublicConfig> {
    let served = PublicConfig::decode(config_bytes).map_err(vfail("public configuration"))?;
    let (pinned, got) = (pin.digest(), served.digest());
    if pinned != got {
        return Err(ClientError::PinMismatch {
            pinned,
            served: got,
        });
    }
    Ok(served)
}

/// Decodes a signed head and checks its signature, namespace and
/// configuration digest.
pub fn head(config: &(impl Configs + ?Sized), bytes: &[u8]) -> Result<SignedHead> {
    config
        .decode_head(bytes)
        .map_err(vfail("signed epoch head"))
}

/// [`head`], plus: when `expected_epoch` is given, the head is for it.
pub fn head_at(
    config: &(impl Configs + ?Sized),
    bytes: &[u8],
    expected_epoch: Option<u64>,
) -> Result<SignedHead> {
    let h = head(config, bytes)?;
    if let Some(e) = expected_epoch
        && h.head.epoch != e
    {
        return Err(ClientError::Verification {
            what: "signed epoch head",
            source: CoreError::Context(format!("asked for epoch {e}, got epoch {}", h.head.epoch)),
        });
    }
    Ok(h)
}

/// Signed heads already verified against one pinned configuration, kept by
/// their exact encoding: a lookup answered at a head seen a moment ago skips
/// its signature check (about a quarter of a lookup's verification time).
/// Sound because Ed25519 verification is a function of the bytes: identical
/// bytes verified once verify again. Holds the last [`HeadCache::CAPACITY`] heads;
/// use one cache per configuration (a [`crate::Client`] has its own).
#[derive(Debug, Default, Clone)]
pub struct HeadCache {
    entries: std::collections::VecDeque<(Vec<u8>, SignedHead)>,
}

impl HeadCache {
    /// Heads remembered.
    pub const CAPACITY: usize = 4;

    /// [`head_at`], answered from the cache when `bytes` were verified before.
    pub fn head_at(
        &mut self,
        config: &(impl Configs + ?Sized),
        bytes: &[u8],
        expected_epoch: Option<u64>,
    ) -> Result<SignedHead> {
        let h = match self.find(bytes) {
            Some(h) => h,
            None => {
                let h = head(config, bytes)?;
                self.remember(bytes, &h);
                h
            }
        };
        Self::check_epoch(h, expected_epoch)
    }

    /// [`Self::head_at`] on a shared cache, verifying a new head's signature
    /// without holding the lock.
    pub fn head_at_shared(
        cache: &std::sync::Mutex<HeadCache>,
        config: &(impl Configs + ?Sized),
        bytes: &[u8],
        expected_epoch: Option<u64>,
    ) -> Result<SignedHead> {
        let lock = || cache.lock().unwrap_or_else(|p| p.into_inner());
        let cached = lock().find(bytes);
        let h = match cached {
            Some(h) => h,
            None => {
                let h = head(config, bytes)?;
                lock().remember(bytes, &h);
                h
            }
        };
        Self::check_epoch(h, expected_epoch)
    }

    fn find(&self, bytes: &[u8]) -> Option<SignedHead> {
        self.entries
            .iter()
            .find(|(b, _)| b.as_slice() == bytes)
            .map(|(_, h)| h.clone())
    }

    fn remember(&mut self, bytes: &[u8], h: &SignedHead) {
        if self.entries.len() == Self::CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((bytes.to_vec(), h.clone()));
    }

    fn check_epoch(h: SignedHead, expected_epoch: Option<u64>) -> Result<SignedHead> {
        if let Some(e) = expected_epoch
            && h.head.epoch != e
        {
            return Err(ClientError::Verification {
                what: "signed epoch head",
                source: CoreError::Context(format!(
                    "asked for epoch {e}, got epoch {}",
                    h.head.epoch
                )),
            });
        }
        Ok(h)
    }
}

/// Verifies a `PublishResponse` for (`label`, `value`):
///
/// 1. the SMT's signature under the pinned SMT key, its namespace, that its
///    shard owns its index, and that its deadline is its timestamp plus the
///    configured maximum merge delay;
/// 2. the VRF proof: `index = VRF(label)` under the pinned VRF key, and it
///    is the SMT's index;
/// 3. the commitment: `commit(nonce, label, version, value)` with the SMT's
///    version (and it equals the response's `commitment` field);
/// 4. the leaf `(index, version, commitment, prev_leaf_hash)` (with
///    `prev = 0` exactly for version 1) hashes to the SMT's leaf hash.
///
/// After this the SMT is a signed promise about *this* label and value.
pub fn publish(
    config: &(impl Configs + ?Sized),
    label: &[u8],
    value: &[u8],
    idempotency_key: &str,
    resp: &pb::PublishResponse,
) -> Result<VerifiedPublish> {
    publish_memo(
        &VrfMemo::new(0),
        config,
        label,
        value,
        idempotency_key,
        resp,
    )
}

/// [`publish`], with step 2 answered by `vrfs` when it verified this exact
/// VRF proof for `label` before (every update of a label after the first).
pub fn publish_memo(
    vrfs: &VrfMemo,
    config: &(impl Configs + ?Sized),
    label: &[u8],
    value: &[u8],
    idempotency_key: &str,
    resp: &pb::PublishResponse,
) -> Result<VerifiedPublish> {
    let smt = SignedMutationTimestamp::decode(&resp.smt).map_err(vfail("SMT"))?;
    config.verify_smt(&smt).map_err(vfail("SMT"))?;
    let m = &smt.smt;

    let proof = VrfProof::from_slice(&resp.vrf_proof)
        .map_err(|e| vfail("publish VRF proof")(CoreError::Vrf(e)))?;
    let index = vrfs
        .verify(&config.base().vrf_key, label, &proof)
        .map_err(|e| vfail("publish VRF proof")(CoreError::Vrf(e)))?
        .index();
    if index != m.index {
        return Err(ClientError::Verification {
            what: "publish VRF proof",
            source: CoreError::Context("the SMT's index is not VRF(label)".into()),
        });
    }

    let nonce = arr32("publish nonce", &resp.nonce)?;
    let commitment = commit(&nonce, label, m.version, value);
    if resp.commitment.as_slice() != commitment.as_slice() {
        return Err(ClientError::Verification {
            what: "publish commitment",
            source: CoreError::Context(
                "the commitment does not open to the label and value sent".into(),
            ),
        });
    }
    let prev = arr32("publish prev_leaf_hash", &resp.prev_leaf_hash)?;
    check_link(m.version, &prev).map_err(vfail("publish prev_leaf_hash"))?;
    let leaf = Leaf {
        index,
        version: m.version,
        commitment,
        prev,
    };
    let leaf_hash = leaf.hash();
    if leaf_hash != m.leaf_hash {
        return Err(ClientError::Verification {
            what: "publish leaf",
            source: CoreError::Context(
                "the SMT's leaf hash is not the leaf of this label, version and value".into(),
            ),
        });
    }
    Ok(VerifiedPublish {
        label: label.to_vec(),
        version: m.version,
        index,
        leaf,
        leaf_hash,
        nonce,
        idempotency_key: idempotency_key.to_owned(),
        smt,
    })
}

/// Rejects an SMT whose timestamp lies more than `max_skew_ms` in the
/// future of `now_ms`: a service could otherwise post-date SMTs to push
/// their deadlines out.
pub fn smt_timestamp(smt: &SignedMutationTimestamp, now_ms: u64, max_skew_ms: u64) -> Result<()> {
    if smt.smt.timestamp_ms > now_ms.saturating_add(max_skew_ms) {
        return Err(ClientError::Verification {
            what: "SMT timestamp",
            source: CoreError::Context(format!(
                "SMT timestamp {} is more than {max_skew_ms} ms after the local clock {now_ms}",
                smt.smt.timestamp_ms
            )),
        });
    }
    Ok(())
}

/// Verifies a `LookupResponse` for `label`: the signed head (and, when
/// `requested_epoch` is set, that it is that epoch), then the lookup proof
/// against the head's map root, including the VRF proof and the commitment
/// opening. Consistency of the head with earlier heads is the caller's
/// business ([`crate::HeadTracker`]).
pub fn lookup(
    config: &(impl Configs + ?Sized),
    label: &[u8],
    requested_epoch: Option<u64>,
    resp: &pb::LookupResponse,
) -> Result<VerifiedLookup> {
    lookup_cached(
        &std::sync::Mutex::default(),
        &VrfMemo::new(0),
        config,
        label,
        requested_epoch,
        resp,
    )
}

/// [`lookup`] with the head's signature check answered by `heads` when the
/// same head bytes were verified before, and the VRF proof's by `vrfs` (both
/// locked only to look up and remember, not while verifying).
pub fn lookup_cached(
    heads: &std::sync::Mutex<HeadCache>,
    vrfs: &VrfMemo,
    config: &(impl Configs + ?Sized),
    label: &[u8],
    requested_epoch: Option<u64>,
    resp: &pb::LookupResponse,
) -> Result<VerifiedLookup> {
    let head = HeadCache::head_at_shared(heads, config, &resp.signed_head, requested_epoch)?;
    let proof = LookupProof::decode(&resp.proof).map_err(vfail("lookup proof"))?;
    let v = proof
        .verify_memo(vrfs, &config.base().vrf_key, label, &head.head.map_root)
        .map_err(vfail("lookup proof"))?;
    Ok(VerifiedLookup {
        head,
        index: v.index,
        entry: v.entry,
    })
}

/// Verifies a `HistoryResponse` for `label`, as [`lookup`]: every version
/// from 1 is recomputed and chained, the last one is proven in the map at
/// the head's root.
pub fn history(
    config: &(impl Configs + ?Sized),
    label: &[u8],
    requested_epoch: Option<u64>,
    resp: &pb::HistoryResponse,
) -> Result<VerifiedHistory> {
    let head = head_at(config, &resp.signed_head, requested_epoch)?;
    let proof = HistoryProof::decode(&resp.proof).map_err(vfail("history proof"))?;
    let history = proof
        .verify(&config.base().vrf_key, label, &head.head.map_root)
        .map_err(vfail("history proof"))?;
    Ok(VerifiedHistory { head, history })
}

/// Verifies a `ConsistencyResponse` between two heads the caller already
/// holds (verified): the served heads must be exactly those (a different
/// validly signed head for the same epoch is [`ClientError::Equivocation`]),
/// and the proof must show `older`'s log is a prefix of `newer`'s, with
/// timestamps not going back (`verify_head_extension`).
pub fn consistency(
    config: &(impl Configs + ?Sized),
    resp: &pb::ConsistencyResponse,
    older: &SignedHead,
    newer: &SignedHead,
) -> Result<HeadExtensionProof> {
    for (mine, served) in [(older, &resp.from_head), (newer, &resp.to_head)] {
        // The very bytes of a head already verified: nothing to check again.
        if *served == mine.encode() {
            continue;
        }
        let served = head_at(config, served, Some(mine.head.epoch))?;
        if served != *mine {
            return Err(ClientError::Equivocation(Box::new(EquivocationEvidence {
                first: mine.clone(),
                second: served,
            })));
        }
    }
    let proof = HeadExtensionProof::decode(&resp.proof).map_err(vfail("consistency proof"))?;
    verify_head_extension(older, newer, &proof).map_err(vfail("consistency proof"))?;
    Ok(proof)
}

/// Verifies an `AuditResponse` for `epoch` on its own: both heads signed,
/// the previous head is `epoch - 1` (absent exactly for epoch 1, where the
/// transition starts from the empty map, root zero), and the transition
/// proof recomputes the previous map root and then, with the changes
/// applied, the new one. The auditor adds the checks that need memory
/// (same previous head as it verified before, its own log, time).
pub fn audit(
    config: &(impl Configs + ?Sized),
    epoch: u64,
    resp: &pb::AuditResponse,
) -> Result<VerifiedAudit> {
    let head = head_at(config, &resp.head, Some(epoch))?;
    let previous = if epoch == 1 {
        if !resp.previous_head.is_empty() {
            return Err(malformed(
                "audit previous head",
                "epoch 1 has no previous head",
            ));
        }
        None
    } else {
        Some(head_at(config, &resp.previous_head, Some(epoch - 1))?)
    };
    let old_root = previous.as_ref().map_or(ZERO, |p| p.head.map_root);
    let proof = AuditProof::decode(&resp.proof).map_err(vfail("audit proof"))?;
    let changes = proof
        .verify(&old_root, &head.head.map_root)
        .map_err(vfail("audit proof"))?;
    Ok(VerifiedAudit {
        previous,
        head,
        changes,
    })
}

/// A C2SP checkpoint verified against the configuration chain
/// ([`checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The signed note as served (what a witness's add-checkpoint takes).
    pub note: String,
    /// Its body.
    pub checkpoint: candor_core::checkpoint::Checkpoint,
    /// The signed head of the same epoch, the tree's last leaf.
    pub head: SignedHead,
    /// The RFC 6962 consistency proof from the requested old size (SHA-256).
    pub consistency: Vec<Digest>,
}

/// Verifies a `GetCheckpoint` answer (docs/protocol.md §11): the head verifies
/// under the chain; the note is signed by the head key of the head's configuration
/// under the key name = namespace; its origin is the namespace and its size the
/// head's epoch; the head is the tree's last leaf (inclusion proof); and, with
/// `old = (size, root)`, the consistency proof from that checkpoint verifies.
pub fn checkpoint(
    chain: &ConfigChain,
    resp: &pb::GetCheckpointResponse,
    old: Option<(u64, Digest)>,
) -> Result<VerifiedCheckpoint> {
    use candor_core::checkpoint::{head_leaf, open_checkpoint, rfc6962_node};
    use candor_core::log::{ConsistencyProof, InclusionProof};
    let what = "checkpoint";
    let head = head(chain, &resp.head)?;
    let config = chain.get(&head.head.config_digest).ok_or_else(|| {
        vfail(what)(CoreError::Context(
            "head of an unknown configuration".into(),
        ))
    })?;
    let (cp, _) =
        open_checkpoint(&resp.note, &config.namespace, &config.head_key).map_err(vfail(what))?;
    if cp.size != head.head.epoch || resp.size != cp.size {
        return Err(vfail(what)(CoreError::Context(format!(
            "checkpoint of size {} with the head of epoch {}",
            cp.size, head.head.epoch
        ))));
    }
    let digests = |v: &[Vec<u8>]| -> Result<Vec<Digest>> {
        v.iter()
            .map(|d| {
                d.as_slice()
                    .try_into()
                    .map_err(|_| malformed(what, "a proof hash is not 32 bytes"))
            })
            .collect()
    };
    let inclusion = InclusionProof {
        leaf_index: cp.size - 1,
        tree_size: cp.size,
        path: digests(&resp.head_inclusion)?,
    };
    inclusion
        .verify_with(&head_leaf(&head), &cp.root, rfc6962_node)
        .map_err(vfail(what))?;
    let consistency = digests(&resp.consistency)?;
    if let Some((size, root)) = old {
        if size > cp.size {
            return Err(vfail(what)(CoreError::Inconsistent(format!(
                "checkpoint of size {} after one of size {size}",
                cp.size
            ))));
        }
        ConsistencyProof {
            first: size,
            second: cp.size,
            path: consistency.clone(),
        }
        .verify_with(&root, &cp.root, rfc6962_node)
        .map_err(vfail(what))?;
    }
    Ok(VerifiedCheckpoint {
        note: resp.note.clone(),
        checkpoint: cp,
        head,
        consistency,
    })
}

/// Decodes a cosignature and checks it covers exactly `head`.
pub fn cosignature(head: &EpochHead, bytes: &[u8]) -> Result<Cosignature> {
    let c = Cosignature::decode(bytes).map_err(vfail("cosignature"))?;
    c.verify(head).map_err(vfail("cosignature"))?;
    Ok(c)
}

/// The freshness rule (docs/protocol.md §9.4) for a head served as the
/// latest: its epoch is at least `seen_epoch` (the newest epoch this client
/// had verified before it asked), its timestamp is at most `max_age_ms`
/// before `now_ms`, and at most `allowance_ms` after it.
pub fn freshness(
    head: &SignedHead,
    seen_epoch: Option<u64>,
    now_ms: u64,
    max_age_ms: u64,
    allowance_ms: u64,
) -> Result<()> {
    let h = &head.head;
    if let Some(seen) = seen_epoch
        && h.epoch < seen
    {
        return Err(ClientError::StaleHead(StaleHead::OlderThanSeen {
            served_epoch: h.epoch,
            seen_epoch: seen,
        }));
    }
    let age = now_ms.saturating_sub(h.timestamp_ms);
    if age > max_age_ms {
        return Err(ClientError::StaleHead(StaleHead::TooOld {
            epoch: h.epoch,
            timestamp_ms: h.timestamp_ms,
            age_ms: age,
            max_age_ms,
        }));
    }
    let ahead = h.timestamp_ms.saturating_sub(now_ms);
    if ahead > allowance_ms {
        return Err(ClientError::StaleHead(StaleHead::FromTheFuture {
            epoch: h.epoch,
            ahead_ms: ahead,
            allowance_ms,
        }));
    }
    Ok(())
}

/// Verifies a paged `HistoryResponse` for `label` (docs/protocol.md
/// §6.4.2): the signed head (and, when `requested_epoch` is set, that it is
/// that epoch), then the page against `anchor`: `None` for the first page
/// (the head's map root), else the [`VerifiedPage::next`] anchor of the
/// page before it. Later pages must come with the first page's head
/// (`first_head`): a different head for that epoch is equivocation.
pub fn history_page(
    config: &(impl Configs + ?Sized),
    label: &[u8],
    requested_epoch: Option<u64>,
    resp: &pb::HistoryResponse,
    anchor: Option<(&SignedHead, &PageAnchor)>,
) -> Result<(SignedHead, VerifiedPage)> {
    let head = head_at(config, &resp.signed_head, requested_epoch)?;
    let page = HistoryPage::decode(&resp.page).map_err(vfail("history page"))?;
    let anchor = match anchor {
        None => PageAnchor::MapRoot(head.head.map_root),
        Some((first, a)) => {
            if head != *first {
                return Err(ClientError::Equivocation(Box::new(EquivocationEvidence {
                    first: first.clone(),
                    second: head,
                })));
            }
            *a
        }
    };
    let v = page
        .verify(&config.base().vrf_key, label, &anchor)
        .map_err(vfail("history page"))?;
    Ok((head, v))
}
