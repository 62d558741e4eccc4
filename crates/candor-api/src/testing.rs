//! An in-process backend for tests (feature `test-util`): publishes are
//! applied straight to the tree (stage and seal in one step, no Raft) and
//! epochs are signed when the test asks ([`LocalNode::seal_epoch`]) or by a
//! ticker ([`LocalNode::spawn_ticker`]). It follows the same protocol as the
//! real node (versions, commitments, SMTs, epoch heads), so everything it
//! produces verifies with the SDK; it is not durable against crashes in the
//! middle of a publish and keeps idempotency records in memory only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candor_core::log::EpochEntry;
use candor_core::map::{Leaf, commit, random_nonce, shard_of};
use candor_core::signed::{EpochHead, MutationTimestamp, PublicConfig, SignedHead, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_sim::watch;
use candor_store::{MemStore, Store};
use candor_tree::{EpochLogStore, Forest, TreeConfig, TreeError};

use crate::publisher::{CosignatureLog, PublishError, PublishReceipt, PublishRequest, Publisher};
use crate::service::Backend;

fn now_ms() -> u64 {
    candor_sim::wall_ms()
}

type IdemKey = (String, String);
/// Idempotency records: (tenant, key) → (label, value, receipt).
type IdemMap = HashMap<IdemKey, (Vec<u8>, Vec<u8>, PublishReceipt)>;

/// See the module docs.
pub struct LocalNode {
    store: Arc<dyn Store>,
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    heads: watch::Sender<Option<SignedHead>>,
    config: PublicConfig,
    head_key: SigningKeyPair,
    smt_key: SigningKeyPair,
    /// Serialises writes (one writer, as one Raft leader per shard would).
    write: Mutex<IdemMap>,
    /// Each label's owner: the tenant that first published it.
    owners: Mutex<HashMap<candor_core::Index, String>>,
}

/// Keys of a test deployment.
pub struct TestKeys {
    pub vrf: VrfSecretKey,
    pub head: SigningKeyPair,
    pub smt: SigningKeyPair,
}

impl TestKeys {
    pub fn generate() -> Self {
        TestKeys {
            vrf: VrfSecretKey::generate(),
            head: SigningKeyPair::generate(),
            smt: SigningKeyPair::generate(),
        }
    }

    pub fn config(
        &self,
        namespace: &str,
        shard_bits: u8,
        epoch_interval_ms: u64,
        max_merge_delay_ms: u64,
    ) -> PublicConfig {
        PublicConfig {
            namespace: namespace.into(),
            vrf_key: self.vrf.public_key(),
            head_key: self.head.public_key(),
            smt_key: self.smt.public_key(),
            shard_bits,
            epoch_interval_ms,
            max_merge_delay_ms,
        }
    }
}

impl LocalNode {
    /// Opens (or reopens) a node over `store`.
    pub fn open(
        store: Arc<dyn Store>,
        config: PublicConfig,
        head_key: SigningKeyPair,
        smt_key: SigningKeyPair,
    ) -> Result<Arc<Self>, TreeError> {
        let forest = Forest::open(
            store.clone(),
            TreeConfig {
                shard_bits: config.shard_bits,
                ..TreeConfig::default()
            },
        )?;
        let epochs = Arc::new(EpochLogStore::open(store.clone())?);
        let (heads, _) = watch::channel(epochs.latest()?);
        Ok(Arc::new(LocalNode {
            store,
            forest,
            epochs,
            heads,
            config,
            head_key,
            smt_key,
            write: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
        }))
    }

    /// A fresh node on a [`MemStore`] with random keys; returns the VRF
    /// secret for the API.
    pub fn in_memory(shard_bits: u8) -> (Arc<Self>, VrfSecretKey) {
        let keys = TestKeys::generate();
        let config = keys.config("candor-test", shard_bits, 1000, 10_000);
        let node = Self::open(Arc::new(MemStore::new()), config, keys.head, keys.smt)
            .expect("a memory store opens");
        (node, keys.vrf)
    }

    pub fn config(&self) -> &PublicConfig {
        &self.config
    }

    pub fn epochs(&self) -> &Arc<EpochLogStore> {
        &self.epochs
    }

    /// What [`crate::KtService::new`] needs.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend {
            publisher: self.clone(),
            cosignatures: self.clone(),
            forest: self.forest.clone(),
            epochs: self.epochs.clone(),
            heads: self.heads.subscribe(),
            currency: None,
            config: self.config.clone(),
            label_vrfs: Some(self.store.clone()),
        }
    }

    /// Signs the next epoch over the latest sealed revision of every shard.
    pub fn seal_epoch(&self) -> Result<SignedHead, TreeError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.forest.shard_count();
        let revisions = (0..n)
            .map(|s| Ok(self.forest.shard(s)?.latest_revision()))
            .collect::<Result<Vec<u64>, TreeError>>()?;
        let view = self.forest.view(revisions.clone())?;
        let prev = self.epochs.latest()?;
        let entry = EpochEntry {
            epoch: self.epochs.latest_epoch() + 1,
            timestamp_ms: now_ms().max(prev.map_or(0, |h| h.head.timestamp_ms)),
            map_root: view.root_hash(),
        };
        let (log_size, log_root) = self.epochs.prepare(&entry)?;
        let head = EpochHead {
            namespace: self.config.namespace.clone(),
            epoch: entry.epoch,
            timestamp_ms: entry.timestamp_ms,
            map_root: entry.map_root,
            log_size,
            log_root,
            config_digest: self.config.digest(),
        }
        .sign(&self.head_key);
        self.epochs.append(&head, &revisions)?;
        self.heads.send_replace(Some(head.clone()));
        Ok(head)
    }

    /// Seals an epoch every `interval` until the returned handle is aborted.
    pub fn spawn_ticker(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(interval);
            loop {
                t.tick().await;
                let m = me.clone();
                if let Ok(Err(e)) = candor_sim::spawn_blocking(move || m.seal_epoch()).await {
                    tracing::error!(error = %e, "test epoch failed");
                }
            }
        })
    }

    fn apply_one(
        &self,
        idem: &mut IdemMap,
        r: PublishRequest,
    ) -> Result<PublishReceipt, PublishError> {
        let idem_key = r.idempotency_key.clone().map(|k| (r.tenant.clone(), k));
        if let Some(k) = &idem_key
            && let Some((label, value, receipt)) = idem.get(k)
        {
            return if *label == r.label && *value == r.value {
                Ok(receipt.clone())
            } else {
                Err(PublishError::IdempotencyConflict)
            };
        }
        let internal = |e: TreeError| PublishError::Internal(e.to_string());
        {
            let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
            let owner = owners.entry(r.index).or_insert_with(|| r.tenant.clone());
            if *owner != r.tenant {
                return Err(PublishError::PermissionDenied);
            }
        }
        let shard = self.forest.shard_for(&r.index).map_err(internal)?;
        let prev = shard.latest_leaf(&r.index).map_err(internal)?;
        let version = prev.map_or(1, |l| l.version + 1);
        let nonce = random_nonce();
        let commitment = commit(&nonce, &r.label, version, &r.value);
        let leaf = match prev {
            Some(p) => p.next(commitment),
            None => Leaf::first(r.index, commitment),
        };
        shard
            .apply(&[(leaf, Some((nonce, r.value.clone())))])
            .map_err(internal)?;
        let now = now_ms();
        let smt = MutationTimestamp {
            namespace: self.config.namespace.clone(),
            index: r.index,
            version,
            leaf_hash: leaf.hash(),
            shard: shard_of(&r.index, self.config.shard_bits),
            timestamp_ms: now,
            merge_deadline_ms: now + self.config.max_merge_delay_ms,
        }
        .sign(&self.smt_key);
        let receipt = PublishReceipt { smt, leaf, nonce };
        if let Some(k) = idem_key {
            idem.insert(k, (r.label, r.value, receipt.clone()));
        }
        Ok(receipt)
    }
}

/// One process, one store: cosignatures go straight into its epoch log.
#[async_trait::async_trait]
impl CosignatureLog for LocalNode {
    async fn submit(&self, cosignature: Vec<u8>) -> Result<bool, PublishError> {
        let c = candor_core::signed::Cosignature::decode(&cosignature)
            .map_err(|e| PublishError::InvalidArgument(format!("cosignature: {e}")))?;
        self.epochs
            .store_cosignature(c.epoch, &c.auditor_key.0, &cosignature)
            .map_err(|e| PublishError::Internal(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Publisher for LocalNode {
    async fn publish(
        &self,
        items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<PublishReceipt, PublishError>>, PublishError> {
        let mut idem = self.write.lock().unwrap_or_else(|e| e.into_inner());
        Ok(items
            .into_iter()
            .map(|r| self.apply_one(&mut idem, r))
            .collect())
    }

    async fn erase(
        &self,
        tenant: String,
        index: candor_core::Index,
        version: u64,
    ) -> Result<(), PublishError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let owner = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned();
        if owner.as_deref().is_some_and(|o| o != tenant) {
            return Err(PublishError::PermissionDenied);
        }
        let internal = |e: TreeError| PublishError::Internal(e.to_string());
        let shard = self.forest.shard_for(&index).map_err(internal)?;
        let mut b = candor_store::WriteBatch::new();
        if version == 0 || !shard.forget(&mut b, &index, version).map_err(internal)? {
            return Err(PublishError::NotFound(format!(
                "the label has no version {version}"
            )));
        }
        self.forest
            .store()
            .write(&b, candor_store::Durability::Sync)
            .map_err(|e| PublishError::Internal(e.to_string()))
    }
}
