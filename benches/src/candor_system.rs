//! Candor's tree engine as a [`System`], doing in process what the service does per
//! publish and per proof.
//!
//! One publish batch is one epoch, built the way the service builds it:
//!
//! 1. per label: `VRF(label)` as the api gets it ([`LabelVrfs::for_publish`]: evaluated,
//!    output and proof, for a label never published before, read from the store's
//!    label-vrf records for an update), the label's newest leaf
//!    (a store read: the shard assigns `version = latest + 1`), a fresh random nonce, the
//!    commitment and the leaf chained to its predecessor;
//! 2. per shard (`2^4` shards): one sealed revision holding the shard's part of the batch
//!    ([`ShardTree::apply`]: leaf records, openings, the changed tree nodes and the
//!    revision record in one chunked write, synced on the embedded store);
//! 3. the epoch: the map view over every shard's latest revision, the epoch log entry, the
//!    signed head (Ed25519), appended to the persistent epoch log.
//!
//! Lookup and history proofs are generated at the latest epoch's view and include the VRF
//! proof, read as the api reads it ([`LabelVrfs::get`]: its memory cache, then the
//! store's records of published labels). Verification uses `candor_core`'s verifiers
//! against the latest map root, as a client does after checking the signed head once per
//! epoch. Sizes are the canonical encodings (`encode()`), the bytes the gRPC API carries
//! in its `bytes` proof fields.
//!
//! ## Parallelism (2 cores)
//!
//! Where the service itself runs work in parallel, this does too, on rayon's global pool
//! (one thread per core): the per-label VRF and commitment work of a publish, the shards'
//! seals (independent shard groups; inside a seal the tree engine parallelises disjoint
//! subtrees itself), and the batch lookup row (an api serves concurrent lookups on every
//! core). The one-at-a-time lookup, history and audit rows run on one thread.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candor_api::label_vrf::LabelVrfs;
use candor_core::log::EpochEntry;
use candor_core::map::{Index, Leaf, commit, random_nonce, shard_of};
use candor_core::proof::audit::{AuditProof, PrunedNode};
use candor_core::proof::history::HistoryProof;
use candor_core::proof::lookup::LookupProof;
use candor_core::signed::{EpochHead, PublicConfig, SigningKeyPair};
use candor_core::vrf::{VrfPublicKey, VrfSecretKey};
use candor_store::{FjallConfig, FjallStore, MemStore, Store};
use candor_tree::{
    EpochLogStore, Forest, MapView, OpeningPolicy, ShardTree, StoredOpening, TreeConfig,
};
use rayon::prelude::*;
use serde::Serialize;

use crate::{BenchError, System, Verified};

const NAME: &str = "candor";

/// `log2` of the shard count used by the comparison.
pub const SHARD_BITS: u8 = 4;

/// Which store the trees live on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Backend {
    /// The embedded store (fjall) in a fresh temporary directory, synced seals: the
    /// production path of `candor dev` and single-node deployments.
    Embedded,
    /// The in-memory store (tests): the tree engine without disk I/O.
    Memory,
}

impl Backend {
    /// Short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded (fjall)",
            Backend::Memory => "in-memory",
        }
    }
}

/// Where the time of one publish batch went (seconds).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PublishPhases {
    /// Labels in the batch.
    pub labels: usize,
    /// VRF, newest-leaf read, nonce, commitment, leaf (parallel over labels).
    pub prepare_secs: f64,
    /// Sealing one revision per shard (parallel over shards).
    pub seal_secs: f64,
    /// Map view, epoch log entry, signed head, epoch log append.
    pub epoch_secs: f64,
}

/// Figures that explain Candor's rows: what the VRF costs alone, what the tree engine
/// costs without it, and what the audit proof is made of.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Explain {
    /// `VrfSecretKey::evaluate` (output and proof), µs each, one thread.
    pub vrf_evaluate_us: f64,
    /// `VrfPublicKey::verify`, µs each, one thread.
    pub vrf_verify_us: f64,
    /// Lookup proofs per second from the tree alone (VRF computed beforehand, as with
    /// the api's VRF cache), one at a time.
    pub lookup_gen_cached_vrf_per_s: f64,
    /// The same on every core.
    pub lookup_gen_cached_vrf_all_cores_per_s: f64,
    /// Audit proof of the last epoch: bytes of old leaves (tag + 104 B each).
    pub audit_old_leaf_bytes: usize,
    /// Old leaves in the pruned tree.
    pub audit_old_leaves: usize,
    /// Bytes of opaque subtree hashes (tag + 32 B each).
    pub audit_opaque_bytes: usize,
    /// Opaque subtrees.
    pub audit_opaques: usize,
    /// Bytes of interior-node and empty-subtree tags.
    pub audit_tag_bytes: usize,
    /// Bytes of the change list (count, then index, count and commitments per label).
    pub audit_change_bytes: usize,
}

/// Candor's tree engine over one store, with a VRF key and a head-signing key.
pub struct CandorSystem {
    backend: Backend,
    /// Keeps the embedded store's directory alive; removed on drop.
    _dir: Option<tempfile::TempDir>,
    shards: Vec<ShardTree>,
    forest: Forest,
    epochs: EpochLogStore,
    vrf: VrfSecretKey,
    /// The api's view of labels' VRFs: evaluated once per label.
    vrfs: LabelVrfs,
    vrf_public: VrfPublicKey,
    head_key: SigningKeyPair,
    config: PublicConfig,
    /// Latest sealed revision of every shard.
    revisions: Vec<u64>,
    /// The map before the most recent publish (empty at first).
    previous: MapView,
    /// The map after the most recent publish.
    latest: MapView,
    last_timestamp_ms: u64,
    phases: Vec<PublishPhases>,
}

fn sys_err<E>(op: &'static str) -> impl FnOnce(E) -> BenchError
where
    E: std::error::Error + Send + Sync + 'static,
{
    BenchError::system(NAME, op)
}

fn wrong(op: &'static str, detail: String) -> BenchError {
    BenchError::WrongContent {
        system: NAME,
        op,
        detail,
    }
}

impl CandorSystem {
    /// An empty map with `2^SHARD_BITS` shards on `backend`, fresh keys.
    pub fn new(backend: Backend) -> Result<Self, BenchError> {
        let (dir, store): (Option<tempfile::TempDir>, Arc<dyn Store>) = match backend {
            Backend::Embedded => {
                // CANDOR_BENCH_DIR puts the store on a chosen disk (the default is /tmp).
                let dir = match std::env::var_os("CANDOR_BENCH_DIR") {
                    Some(base) => tempfile::tempdir_in(base),
                    None => tempfile::tempdir(),
                }?;
                let store = FjallStore::open_with(dir.path(), FjallConfig::default())
                    .map_err(sys_err("open embedded store"))?;
                (Some(dir), Arc::new(store))
            }
            Backend::Memory => (None, Arc::new(MemStore::new())),
        };
        let forest = Forest::open(
            store.clone(),
            TreeConfig {
                shard_bits: SHARD_BITS,
                ..TreeConfig::default()
            },
        )
        .map_err(sys_err("open forest"))?;
        let shards = (0..forest.shard_count())
            .map(|s| forest.shard(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sys_err("open shard"))?;
        let epochs = EpochLogStore::open(store.clone()).map_err(sys_err("open epoch log"))?;
        let vrf = VrfSecretKey::generate();
        let vrfs = LabelVrfs::new(
            VrfSecretKey::from_bytes(&vrf.to_bytes()),
            candor_api::ApiOptions::default().vrf_cache_entries,
            Some(store),
        );
        let vrf_public = vrf.public_key();
        let head_key = SigningKeyPair::generate();
        let config = PublicConfig {
            namespace: "bench.candor".into(),
            vrf_key: vrf_public,
            head_key: head_key.public_key(),
            smt_key: SigningKeyPair::generate().public_key(),
            shard_bits: SHARD_BITS,
            epoch_interval_ms: 1000,
            max_merge_delay_ms: 10_000,
        };
        let revisions = vec![0u64; shards.len()];
        let empty = forest
            .view(revisions.clone())
            .map_err(sys_err("empty view"))?;
        Ok(CandorSystem {
            backend,
            _dir: dir,
            shards,
            forest,
            epochs,
            vrf,
            vrfs,
            vrf_public,
            head_key,
            config,
            revisions,
            previous: empty.clone(),
            latest: empty,
            last_timestamp_ms: 0,
            phases: Vec::new(),
        })
    }

    /// The store backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Phase timings of every publish batch so far, in order.
    pub fn phases(&self) -> &[PublishPhases] {
        &self.phases
    }

    /// One label's next leaf and opening: newest leaf, nonce, commitment.
    fn prepare(
        &self,
        label: &[u8],
        index: Index,
        value: Vec<u8>,
    ) -> Result<(u32, Leaf, StoredOpening), BenchError> {
        let shard = shard_of(&index, SHARD_BITS);
        let tree = &self.shards[shard as usize];
        let prior = tree
            .latest_leaf(&index)
            .map_err(sys_err("read newest leaf"))?;
        let version = prior.map_or(1, |l| l.version + 1);
        let nonce = random_nonce();
        let c = commit(&nonce, label, version, &value);
        let leaf = prior.map_or(Leaf::first(index, c), |p| p.next(c));
        Ok((shard, leaf, (nonce, value)))
    }

    /// Appends the epoch of the current revisions: view, log entry, signed head.
    fn sign_epoch(&mut self) -> Result<(), BenchError> {
        let view = self
            .forest
            .view(self.revisions.clone())
            .map_err(sys_err("map view"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Epoch timestamps never go back.
        let timestamp_ms = now.max(self.last_timestamp_ms);
        let entry = EpochEntry {
            epoch: self.epochs.latest_epoch() + 1,
            timestamp_ms,
            map_root: view.root_hash(),
        };
        let (log_size, log_root) = self
            .epochs
            .prepare(&entry)
            .map_err(sys_err("prepare epoch"))?;
        let head = EpochHead {
            namespace: self.config.namespace.clone(),
            epoch: entry.epoch,
            timestamp_ms,
            map_root: entry.map_root,
            log_size,
            log_root,
            config_digest: self.config.digest(),
        }
        .sign(&self.head_key);
        self.epochs
            .append(&head, &self.revisions)
            .map_err(sys_err("append epoch"))?;
        self.last_timestamp_ms = timestamp_ms;
        self.previous = std::mem::replace(&mut self.latest, view);
        Ok(())
    }

    /// Checks that the latest signed head verifies under the configuration and matches
    /// the latest view (what a client checks once per epoch).
    pub fn check_latest_head(&self) -> Result<(), BenchError> {
        let head = self
            .epochs
            .latest()
            .map_err(sys_err("read head"))?
            .ok_or_else(|| wrong("read head", "no epoch signed".into()))?;
        head.verify(&self.config).map_err(sys_err("verify head"))?;
        if head.head.map_root != self.latest.root_hash() {
            return Err(wrong(
                "verify head",
                "head does not sign the latest root".into(),
            ));
        }
        Ok(())
    }

    /// Measures [`Explain`] on `labels` (published labels) at the latest epoch.
    pub fn explain(&self, labels: &[Vec<u8>]) -> Result<Explain, BenchError> {
        let n = labels.len().max(1) as f64;
        let t = Instant::now();
        let evaluated: Vec<_> = labels.iter().map(|l| self.vrf.evaluate(l)).collect();
        let vrf_evaluate_us = t.elapsed().as_secs_f64() * 1e6 / n;
        let t = Instant::now();
        for (l, (_, proof)) in labels.iter().zip(&evaluated) {
            self.vrf_public
                .verify(l, proof)
                .map_err(sys_err("VRF verify"))?;
        }
        let vrf_verify_us = t.elapsed().as_secs_f64() * 1e6 / n;
        let one = |(out, proof): &(candor_core::vrf::VrfOutput, candor_core::vrf::VrfProof)| {
            self.latest
                .lookup_proof(&out.index(), *proof, OpeningPolicy::Open)
                .map_err(sys_err("lookup proof"))
        };
        let t = Instant::now();
        for e in &evaluated {
            one(e)?;
        }
        let lookup_gen_cached_vrf_per_s = n / t.elapsed().as_secs_f64();
        let t = Instant::now();
        evaluated
            .par_iter()
            .map(one)
            .collect::<Result<Vec<_>, _>>()?;
        let lookup_gen_cached_vrf_all_cores_per_s = n / t.elapsed().as_secs_f64();

        let audit = self.audit_last_epoch()?;
        let mut x = Explain {
            vrf_evaluate_us,
            vrf_verify_us,
            lookup_gen_cached_vrf_per_s,
            lookup_gen_cached_vrf_all_cores_per_s,
            audit_change_bytes: audit.encode().len(),
            ..Explain::default()
        };
        let mut stack = vec![&audit.old_tree];
        while let Some(node) = stack.pop() {
            match node {
                PrunedNode::Empty => x.audit_tag_bytes += 1,
                PrunedNode::Opaque(_) => {
                    x.audit_opaques += 1;
                    x.audit_opaque_bytes += 33;
                }
                PrunedNode::Leaf(_) => {
                    x.audit_old_leaves += 1;
                    x.audit_old_leaf_bytes += 1 + candor_core::map::LEAF_LEN;
                }
                PrunedNode::Interior(l, r) => {
                    x.audit_tag_bytes += 1;
                    stack.push(l);
                    stack.push(r);
                }
            }
        }
        // What is not the pruned tree is the change list.
        x.audit_change_bytes -= x.audit_old_leaf_bytes + x.audit_opaque_bytes + x.audit_tag_bytes;
        Ok(x)
    }

    fn check_value(
        op: &'static str,
        version: u64,
        value: Option<&[u8]>,
    ) -> Result<Verified, BenchError> {
        match value {
            Some(v) => Ok(Verified {
                version,
                value: v.to_vec(),
            }),
            None => Err(wrong(op, format!("version {version} has no opening"))),
        }
    }
}

impl System for CandorSystem {
    type Lookup = LookupProof;
    type History = HistoryProof;
    type Audit = AuditProof;

    fn name(&self) -> &'static str {
        NAME
    }

    fn publish_batch(&mut self, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), BenchError> {
        let labels = batch.len();
        let t = Instant::now();
        // The api evaluates in chunks of 64 on the blocking pool.
        let labels_only: Vec<Vec<u8>> = batch.iter().map(|(l, _)| l.clone()).collect();
        let evaluations: Vec<_> = labels_only
            .par_chunks(64)
            .flat_map_iter(|c| self.vrfs.for_publish(c))
            .collect();
        let prepared = batch
            .into_par_iter()
            .zip(evaluations)
            .map(|((label, value), (index, _))| self.prepare(&label, index, value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut per_shard: Vec<Vec<(Leaf, Option<StoredOpening>)>> =
            vec![Vec::new(); self.shards.len()];
        for (s, leaf, opening) in prepared {
            per_shard[s as usize].push((leaf, Some(opening)));
        }
        let prepare_secs = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let sealed = per_shard
            .par_iter()
            .enumerate()
            .filter(|(_, items)| !items.is_empty())
            .map(|(s, items)| {
                self.shards[s]
                    .apply(items)
                    .map(|r| (s, r.revision))
                    .map_err(sys_err("seal shard revision"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (s, rev) in sealed {
            self.revisions[s] = rev;
        }
        let seal_secs = t.elapsed().as_secs_f64();

        let t = Instant::now();
        self.sign_epoch()?;
        let epoch_secs = t.elapsed().as_secs_f64();
        // What a client checks once per epoch; a few hundred µs per batch.
        self.check_latest_head()?;
        self.phases.push(PublishPhases {
            labels,
            prepare_secs,
            seal_secs,
            epoch_secs,
        });
        Ok(())
    }

    fn lookup_proof(&self, label: &[u8]) -> Result<LookupProof, BenchError> {
        let (index, proof) = self.vrfs.get(label);
        self.latest
            .lookup_proof(&index, proof, OpeningPolicy::Open)
            .map_err(sys_err("lookup proof"))
    }

    fn lookup_proofs_batched(&self, labels: &[Vec<u8>]) -> Result<Vec<LookupProof>, BenchError> {
        // No batch API: an api node serves concurrent lookups on every core.
        labels.par_iter().map(|l| self.lookup_proof(l)).collect()
    }

    fn lookup_size(&self, proof: &LookupProof) -> Result<usize, BenchError> {
        Ok(proof.encode().len())
    }

    fn verify_lookup(&self, label: &[u8], proof: LookupProof) -> Result<Verified, BenchError> {
        let v = proof
            .verify(&self.vrf_public, label, &self.latest.root_hash())
            .map_err(sys_err("lookup verify"))?;
        let entry = v
            .entry
            .ok_or_else(|| wrong("lookup verify", "label proved absent".into()))?;
        Self::check_value("lookup verify", entry.version, entry.value.as_deref())
    }

    fn history_proof(&self, label: &[u8]) -> Result<HistoryProof, BenchError> {
        let (index, proof) = self.vrfs.get(label);
        self.latest
            .history_proof(&index, proof)
            .map_err(sys_err("history proof"))
    }

    fn history_size(&self, proof: &HistoryProof) -> Result<usize, BenchError> {
        Ok(proof.encode().len())
    }

    fn verify_history(
        &self,
        label: &[u8],
        proof: HistoryProof,
    ) -> Result<Vec<Verified>, BenchError> {
        let h = proof
            .verify(&self.vrf_public, label, &self.latest.root_hash())
            .map_err(sys_err("history verify"))?;
        // Candor lists versions oldest first; the runner wants newest first.
        h.versions
            .iter()
            .rev()
            .map(|v| Self::check_value("history verify", v.version, v.value.as_deref()))
            .collect()
    }

    fn audit_last_epoch(&self) -> Result<AuditProof, BenchError> {
        self.latest
            .audit_proof(&self.previous)
            .map_err(sys_err("audit proof"))
    }

    fn audit_size(&self, proof: &AuditProof) -> Result<usize, BenchError> {
        Ok(proof.encode().len())
    }

    fn verify_audit(&self, proof: AuditProof) -> Result<(), BenchError> {
        let changes = proof
            .verify(&self.previous.root_hash(), &self.latest.root_hash())
            .map_err(sys_err("audit verify"))?;
        // The update epoch changed exactly the labels of its batch.
        let want = self.phases.last().map_or(0, |p| p.labels);
        if changes.len() != want {
            return Err(wrong(
                "audit verify",
                format!("{} changes proved, {want} published", changes.len()),
            ));
        }
        Ok(())
    }
}
