//! akd (crates.io) as a [`System`], configured as WhatsApp runs it.
//!
//! `WhatsAppV1Configuration`, `AsyncInMemoryDatabase` behind a `StorageManager` with the
//! default cache (item lifetime, size limit and clean interval all left to akd),
//! `HardCodedAkdVRF`, `AzksParallelismConfig::default()`. akd is async; it runs on a tokio
//! multi-thread runtime with one worker per core so that its parallel insertion, preload
//! and VRF paths are used.
//!
//! Sizes are akd's protobuf wire encoding (`akd::proto::specs::types`), the format akd
//! publishes for proofs and audit blobs.

use crate::{BenchError, System, Verified};
use akd::append_only_zks::AzksParallelismConfig;
use akd::ecvrf::HardCodedAkdVRF;
use akd::storage::StorageManager;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::{
    AkdLabel, AkdValue, AppendOnlyProof, Directory, EpochHash, HistoryParams, HistoryProof,
    HistoryVerificationParams, LookupProof, VerifyResult,
};
use protobuf::Message;

type Config = akd::WhatsAppV1Configuration;
type AkdDirectory = Directory<Config, AsyncInMemoryDatabase, HardCodedAkdVRF>;

const NAME: &str = "akd";

/// akd with in-memory storage and the WhatsApp v1 configuration.
pub struct AkdSystem {
    rt: tokio::runtime::Runtime,
    dir: AkdDirectory,
    vrf_public_key: Vec<u8>,
    /// Root before the most recent publish (the empty tree's at first).
    previous: EpochHash,
    /// Root after the most recent publish.
    latest: EpochHash,
}

impl AkdSystem {
    /// An empty directory on a fresh runtime.
    pub fn new() -> Result<Self, BenchError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BenchError::system(NAME, "tokio runtime"))?;
        let storage = StorageManager::new(AsyncInMemoryDatabase::new(), None, None, None);
        let (dir, vrf_public_key, root) = rt.block_on(async {
            let dir = AkdDirectory::new(
                storage,
                HardCodedAkdVRF {},
                AzksParallelismConfig::default(),
            )
            .await
            .map_err(BenchError::system(NAME, "create directory"))?;
            let pk = dir
                .get_public_key()
                .await
                .map_err(BenchError::system(NAME, "get VRF public key"))?;
            let root = dir
                .get_epoch_hash()
                .await
                .map_err(BenchError::system(NAME, "get epoch hash"))?;
            Ok::<_, BenchError>((dir, pk.as_bytes().to_vec(), root))
        })?;
        Ok(AkdSystem {
            rt,
            dir,
            vrf_public_key,
            previous: root.clone(),
            latest: root,
        })
    }

    fn root_check(&self, op: &'static str, root: &EpochHash) -> Result<(), BenchError> {
        // Proofs must be served at the root the client trusts, the latest published one.
        if root.0 == self.latest.0 && root.1 == self.latest.1 {
            Ok(())
        } else {
            Err(BenchError::WrongContent {
                system: NAME,
                op,
                detail: format!("proof at epoch {}, latest is {}", root.0, self.latest.0),
            })
        }
    }
}

fn verified(r: VerifyResult) -> Verified {
    Verified {
        version: r.version,
        value: r.value.0,
    }
}

fn history_params() -> HistoryParams {
    // Complete history: the only mode akd documents as secure.
    HistoryParams::Complete
}

impl System for AkdSystem {
    type Lookup = LookupProof;
    type History = HistoryProof;
    type Audit = AppendOnlyProof;

    fn name(&self) -> &'static str {
        NAME
    }

    fn publish_batch(&mut self, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), BenchError> {
        let updates = batch
            .into_iter()
            .map(|(l, v)| (AkdLabel(l), AkdValue(v)))
            .collect();
        let root = self
            .rt
            .block_on(self.dir.publish(updates))
            .map_err(BenchError::system(NAME, "publish"))?;
        self.previous = std::mem::replace(&mut self.latest, root);
        Ok(())
    }

    fn lookup_proof(&self, label: &[u8]) -> Result<LookupProof, BenchError> {
        let (proof, root) = self
            .rt
            .block_on(self.dir.lookup(AkdLabel(label.to_vec())))
            .map_err(BenchError::system(NAME, "lookup"))?;
        self.root_check("lookup", &root)?;
        Ok(proof)
    }

    fn lookup_proofs_batched(&self, labels: &[Vec<u8>]) -> Result<Vec<LookupProof>, BenchError> {
        let labels: Vec<AkdLabel> = labels.iter().map(|l| AkdLabel(l.clone())).collect();
        let (proofs, root) = self
            .rt
            .block_on(self.dir.batch_lookup(&labels))
            .map_err(BenchError::system(NAME, "batch_lookup"))?;
        self.root_check("batch_lookup", &root)?;
        Ok(proofs)
    }

    fn lookup_size(&self, proof: &LookupProof) -> Result<usize, BenchError> {
        Ok(akd::proto::specs::types::LookupProof::from(proof).compute_size() as usize)
    }

    fn verify_lookup(&self, label: &[u8], proof: LookupProof) -> Result<Verified, BenchError> {
        akd::client::lookup_verify::<Config>(
            &self.vrf_public_key,
            self.latest.hash(),
            self.latest.epoch(),
            AkdLabel(label.to_vec()),
            proof,
        )
        .map(verified)
        .map_err(|e| BenchError::system(NAME, "lookup_verify")(akd::errors::AkdError::from(e)))
    }

    fn history_proof(&self, label: &[u8]) -> Result<HistoryProof, BenchError> {
        let (proof, root) = self
            .rt
            .block_on(
                self.dir
                    .key_history(&AkdLabel(label.to_vec()), history_params()),
            )
            .map_err(BenchError::system(NAME, "key_history"))?;
        self.root_check("key_history", &root)?;
        Ok(proof)
    }

    fn history_size(&self, proof: &HistoryProof) -> Result<usize, BenchError> {
        Ok(akd::proto::specs::types::HistoryProof::from(proof).compute_size() as usize)
    }

    fn verify_history(
        &self,
        label: &[u8],
        proof: HistoryProof,
    ) -> Result<Vec<Verified>, BenchError> {
        akd::client::key_history_verify::<Config>(
            &self.vrf_public_key,
            self.latest.hash(),
            self.latest.epoch(),
            AkdLabel(label.to_vec()),
            proof,
            HistoryVerificationParams::Default {
                history_params: history_params(),
            },
        )
        .map(|v| v.into_iter().map(verified).collect())
        .map_err(|e| BenchError::system(NAME, "key_history_verify")(akd::errors::AkdError::from(e)))
    }

    fn audit_last_epoch(&self) -> Result<AppendOnlyProof, BenchError> {
        self.rt
            .block_on(self.dir.audit(self.previous.epoch(), self.latest.epoch()))
            .map_err(BenchError::system(NAME, "audit"))
    }

    fn audit_size(&self, proof: &AppendOnlyProof) -> Result<usize, BenchError> {
        Ok(akd::proto::specs::types::AppendOnlyProof::from(proof).compute_size() as usize)
    }

    fn verify_audit(&self, proof: AppendOnlyProof) -> Result<(), BenchError> {
        self.rt
            .block_on(akd::auditor::audit_verify::<Config>(
                vec![self.previous.hash(), self.latest.hash()],
                proof,
            ))
            .map_err(BenchError::system(NAME, "audit_verify"))
    }
}
