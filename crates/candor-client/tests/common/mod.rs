//! A deterministic in-memory Candor "service" built from candor-core's
//! reference implementations (ReferenceMap, MemoryLog, signing keys), which
//! produces exactly the protobuf responses the real server sends. Tests use
//! it directly (pure verification, auditor) or behind a fake gRPC server
//! (`server`).

#![allow(dead_code)]

pub mod server;

use candor_core::log::{EpochEntry, HeadExtensionProof, MemoryLog};
use candor_core::map::{Index, Leaf, random_nonce, shard_of};
use candor_core::reference::ReferenceMap;
use candor_core::signed::{
    EpochHead, MutationTimestamp, PublicConfig, SignedHead, SignedMutationTimestamp, SigningKeyPair,
};
use candor_core::vrf::VrfSecretKey;
use candor_proto::candor::v1 as pb;

pub const NAMESPACE: &str = "client-test";
pub const START_MS: u64 = 1_700_000_000_000;

/// The local clock rounded down to a second (never before [`START_MS`]).
pub fn start_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (now - now % 1000).max(START_MS)
}
pub const EPOCH_MS: u64 = 1_000;
pub const MMD_MS: u64 = 10_000;

pub struct World {
    pub vrf: VrfSecretKey,
    pub head_key: SigningKeyPair,
    pub smt_key: SigningKeyPair,
    pub config: PublicConfig,
    /// The current map, including mutations not yet in an epoch.
    pub map: ReferenceMap,
    /// `epochs[e - 1]` is the map of epoch `e`.
    pub epochs: Vec<ReferenceMap>,
    pub heads: Vec<SignedHead>,
    pub log: MemoryLog,
    pub clock_ms: u64,
}

impl World {
    pub fn new(shard_bits: u8) -> Self {
        Self::with_seed(shard_bits, 1)
    }

    pub fn with_seed(shard_bits: u8, seed: u8) -> Self {
        let vrf = VrfSecretKey::from_bytes(&[seed; 32]);
        let head_key = SigningKeyPair::from_seed(&[seed.wrapping_add(1); 32]);
        let smt_key = SigningKeyPair::from_seed(&[seed.wrapping_add(2); 32]);
        let config = PublicConfig {
            namespace: NAMESPACE.into(),
            vrf_key: vrf.public_key(),
            head_key: head_key.public_key(),
            smt_key: smt_key.public_key(),
            shard_bits,
            epoch_interval_ms: EPOCH_MS,
            max_merge_delay_ms: MMD_MS,
        };
        World {
            vrf,
            head_key,
            smt_key,
            config,
            map: ReferenceMap::new(),
            epochs: Vec::new(),
            heads: Vec::new(),
            log: MemoryLog::new(),
            // The service's clock starts at the local clock, so that heads
            // served as the latest pass the SDK's freshness rule (its
            // epochs then run ahead of real time, one interval per step).
            clock_ms: start_ms(),
        }
    }

    pub fn index(&self, label: &[u8]) -> Index {
        self.vrf.evaluate(label).0.index()
    }

    pub fn latest_epoch(&self) -> u64 {
        self.heads.len() as u64
    }

    fn smt(&self, index: Index, leaf: &Leaf) -> SignedMutationTimestamp {
        MutationTimestamp {
            namespace: self.config.namespace.clone(),
            index,
            version: leaf.version,
            leaf_hash: leaf.hash(),
            shard: shard_of(&index, self.config.shard_bits),
            timestamp_ms: self.clock_ms,
            merge_deadline_ms: self.clock_ms + MMD_MS,
        }
        .sign(&self.smt_key)
    }

    fn publish_response(&self, label: &[u8], nonce: [u8; 32], leaf: &Leaf) -> pb::PublishResponse {
        let (_, vrf_proof) = self.vrf.evaluate(label);
        let smt = self.smt(leaf.index, leaf);
        pb::PublishResponse {
            smt: smt.encode(),
            version: leaf.version,
            index: leaf.index.to_vec(),
            shard: smt.smt.shard,
            vrf_proof: vrf_proof.to_bytes().to_vec(),
            nonce: nonce.to_vec(),
            commitment: leaf.commitment.to_vec(),
            prev_leaf_hash: leaf.prev.to_vec(),
            leaf_hash: leaf.hash().to_vec(),
            timestamp_ms: smt.smt.timestamp_ms,
            merge_deadline_ms: smt.smt.merge_deadline_ms,
        }
    }

    /// Publishes into the current map (merged at the next seal).
    pub fn publish(&mut self, label: &[u8], value: &[u8]) -> pb::PublishResponse {
        let index = self.index(label);
        let nonce = self.nonce(&index, value);
        let leaf = self.map.publish(index, label, value, Some(nonce));
        self.publish_response(label, nonce, &leaf)
    }

    /// Deterministic nonces, so that two worlds fed the same mutations are
    /// identical (forks share their common prefix).
    fn nonce(&self, index: &Index, value: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(index);
        h.update(&(self.map.versions(index).len() as u64).to_be_bytes());
        h.update(value);
        *h.finalize().as_bytes()
    }

    /// Signs an SMT for the next version of `label` but never applies it:
    /// a promise the service will break.
    pub fn publish_dropped(&mut self, label: &[u8], value: &[u8]) -> pb::PublishResponse {
        let index = self.index(label);
        let nonce = random_nonce();
        let mut scratch = self.map.clone();
        let leaf = scratch.publish(index, label, value, Some(nonce));
        self.publish_response(label, nonce, &leaf)
    }

    /// Seals an epoch at `clock + EPOCH_MS`.
    pub fn seal(&mut self) -> SignedHead {
        let ts = self.clock_ms + EPOCH_MS;
        self.seal_at(ts)
    }

    pub fn seal_at(&mut self, ts: u64) -> SignedHead {
        self.clock_ms = ts;
        let epoch = self.heads.len() as u64 + 1;
        let map_root = self.map.root();
        self.log.append(
            EpochEntry {
                epoch,
                timestamp_ms: ts,
                map_root,
            }
            .leaf_hash(),
        );
        let head = EpochHead {
            namespace: self.config.namespace.clone(),
            epoch,
            timestamp_ms: ts,
            map_root,
            log_size: epoch,
            log_root: self.log.root(),
            config_digest: self.config.digest(),
        }
        .sign(&self.head_key);
        self.epochs.push(self.map.clone());
        self.heads.push(head.clone());
        head
    }

    pub fn head(&self, epoch: u64) -> &SignedHead {
        &self.heads[epoch as usize - 1]
    }

    fn epoch_or_latest(&self, epoch: Option<u64>) -> u64 {
        epoch.unwrap_or(self.latest_epoch())
    }

    pub fn config_response(&self) -> pb::GetConfigResponse {
        pb::GetConfigResponse {
            config: self.config.encode(),
            namespace: self.config.namespace.clone(),
            suite: "candor-v1".into(),
            vrf_public_key: self.config.vrf_key.to_bytes().to_vec(),
            epoch_public_key: self.config.head_key.0.to_vec(),
            smt_public_key: self.config.smt_key.0.to_vec(),
            epoch_interval_ms: EPOCH_MS,
            max_merge_delay_ms: MMD_MS,
            shard_bits: u32::from(self.config.shard_bits),
            config_digest: self.config.digest().to_vec(),
            limits: Some(pb::ServiceLimits {
                max_label_bytes: 1024,
                max_value_bytes: 65536,
                max_batch_items: 1000,
                max_idempotency_key_bytes: 128,
                idempotency_retention_ms: 86_400_000,
                max_message_bytes: 16 << 20,
            }),
            history: Vec::new(),
        }
    }

    pub fn head_response(&self, epoch: u64) -> pb::SignedHeadResponse {
        let h = self.head(epoch);
        pb::SignedHeadResponse {
            epoch,
            signed_head: h.encode(),
            timestamp_ms: h.head.timestamp_ms,
        }
    }

    pub fn lookup_response(&self, label: &[u8], epoch: Option<u64>) -> pb::LookupResponse {
        let e = self.epoch_or_latest(epoch);
        let map = &self.epochs[e as usize - 1];
        let proof = map.lookup_proof(&self.vrf, label);
        let versions = map.versions(&self.index(label));
        let last = versions.last();
        pb::LookupResponse {
            epoch: e,
            proof: proof.encode(),
            signed_head: self.head(e).encode(),
            found: last.is_some(),
            version: last.map_or(0, |v| v.leaf.version),
            value: last
                .and_then(|v| v.opening.as_ref())
                .map(|o| o.1.clone())
                .unwrap_or_default(),
        }
    }

    pub fn history_response(&self, label: &[u8], epoch: Option<u64>) -> pb::HistoryResponse {
        let e = self.epoch_or_latest(epoch);
        let map = &self.epochs[e as usize - 1];
        let proof = map.history_proof(&self.vrf, label);
        pb::HistoryResponse {
            epoch: e,
            proof: proof.encode(),
            signed_head: self.head(e).encode(),
            entries: Vec::new(),
            page: Vec::new(),
            next_last_version: 0,
        }
    }

    /// A history page at epoch `e` ending at `last` (0: the latest).
    pub fn history_page_response(
        &self,
        label: &[u8],
        e: u64,
        last: u64,
        size: usize,
    ) -> pb::HistoryResponse {
        let map = &self.epochs[e as usize - 1];
        let page = map.history_page(&self.vrf, label, (last > 0).then_some(last), size);
        let next = match &page.body {
            candor_core::proof::history::PageBody::Versions { first, .. } => first - 1,
            _ => 0,
        };
        pb::HistoryResponse {
            epoch: e,
            proof: Vec::new(),
            signed_head: self.head(e).encode(),
            entries: Vec::new(),
            page: page.encode(),
            next_last_version: next,
        }
    }

    pub fn consistency_response(&self, from: u64, to: u64) -> pb::ConsistencyResponse {
        pb::ConsistencyResponse {
            proof: HeadExtensionProof::generate(&self.log, from, to)
                .expect("log nodes exist")
                .encode(),
            from_head: self.head(from).encode(),
            to_head: self.head(to).encode(),
        }
    }

    pub fn audit_response(&self, epoch: u64) -> pb::AuditResponse {
        let empty = ReferenceMap::new();
        let old = if epoch == 1 {
            &empty
        } else {
            &self.epochs[epoch as usize - 2]
        };
        let proof = self.epochs[epoch as usize - 1].audit_proof(old);
        pb::AuditResponse {
            epoch,
            proof: proof.encode(),
            previous_head: if epoch == 1 {
                Vec::new()
            } else {
                self.head(epoch - 1).encode()
            },
            head: self.head(epoch).encode(),
            changed_labels: proof.changes.len() as u64,
        }
    }
}
