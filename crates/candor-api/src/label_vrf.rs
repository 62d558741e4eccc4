//! Labels' VRF evaluations, computed once per label.
//!
//! `VRF(label)` (the tree index and its proof) is most of a publish's CPU cost
//! (about 150 µs of one core). RFC 9381 proofs are deterministic, so a label's
//! evaluation never changes: it is computed when the label is first published
//! and kept, in memory (a bounded cache for hot labels) and in the store's
//! [`Space::LabelVrf`] (every published label), and an update or a lookup of a
//! published label reads it instead of evaluating again.
//!
//! Only publishes write the store: a lookup may name any label, published or
//! not, and must not grow the disk. The records are derived data, local to the
//! process's store: missing or unreadable ones are evaluated again (and
//! rewritten by the next publish), and a failed write costs only speed.
//!
//! A record is not trusted as read: a publish puts the label's leaf at the
//! record's index *before* the publisher can check the SMT's VRF proof, so a
//! damaged record (a flipped bit the store's checksums missed, a record
//! written under another key) would put a label at a wrong index for good.
//! Each record therefore carries a 16-byte BLAKE3 tag over the label, index
//! and proof, keyed from the VRF secret; a record whose tag does not match is
//! counted (`candor_store_damaged_records_total{space="label-vrf"}`), logged
//! and evaluated again (and rewritten by the next publish).
//! Checking the tag costs well under a microsecond, verifying the proof about
//! as much as evaluating it.
//!
//! Records are keyed by a BLAKE3 keyed hash of the label, with a key derived
//! from the VRF secret: the disk holds no label, and one cannot test a guessed
//! label (a phone number, say) against it without the VRF secret.
//!
//! Record: `0x02 || index (32) || proof (80) || tag (16)`, tag =
//! `BLAKE3-keyed(derive_key("candor 2026 label-vrf record tag v1", seed),
//! label || index || proof)[..16]`. Any other length or version is absent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candor_core::Index;
use candor_core::vrf::{VRF_PROOF_LEN, VrfProof, VrfSecretKey};
use candor_store::{Durability, Space, Store, WriteBatch};
use quick_cache::sync::Cache;

const KEY_CONTEXT: &str = "candor 2026 label-vrf record key v1";
const TAG_CONTEXT: &str = "candor 2026 label-vrf record tag v1";
/// Version 1 (no tag) never left development; it reads as absent.
const RECORD_VERSION: u8 = 2;
const TAG_LEN: usize = 16;
const RECORD_LEN: usize = 1 + 32 + VRF_PROOF_LEN + TAG_LEN;

/// Index and proof of one label.
pub type Evaluation = (Index, VrfProof);

/// See the module docs.
pub struct LabelVrfs {
    vrf: VrfSecretKey,
    record_key: [u8; 32],
    tag_key: [u8; 32],
    cache: Cache<[u8; 32], Evaluation>,
    store: Option<Arc<dyn Store>>,
    /// Answered from the store (not from memory).
    pub stored: AtomicU64,
    /// Evaluated.
    pub evaluated: AtomicU64,
    /// Store reads or writes that failed (the evaluation was used regardless).
    pub store_errors: AtomicU64,
    /// Records read whose tag did not match (damaged): evaluated again.
    pub damaged: AtomicU64,
}

impl LabelVrfs {
    /// Evaluations under `vrf`, the last `cache_entries` used kept in memory,
    /// every published label's in `store` (`None`: memory only).
    pub fn new(vrf: VrfSecretKey, cache_entries: usize, store: Option<Arc<dyn Store>>) -> Self {
        let seed = vrf.to_bytes();
        let record_key = blake3::derive_key(KEY_CONTEXT, &seed);
        let tag_key = blake3::derive_key(TAG_CONTEXT, &seed);
        LabelVrfs {
            vrf,
            record_key,
            tag_key,
            cache: Cache::new(cache_entries.max(1)),
            store,
            stored: AtomicU64::new(0),
            evaluated: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
        }
    }

    /// The in-memory cache (for its metrics).
    pub fn cache(&self) -> &Cache<[u8; 32], Evaluation> {
        &self.cache
    }

    fn key(&self, label: &[u8]) -> [u8; 32] {
        blake3::keyed_hash(&self.record_key, label).into()
    }

    /// A label's evaluation for a read (lookup, history, erase): memory, then
    /// the store, then evaluated (and kept in memory only).
    pub fn get(&self, label: &[u8]) -> Evaluation {
        let key = self.key(label);
        if let Some(v) = self.cache.get(&key) {
            return v;
        }
        let v = match self.read(&[(&key[..], label)]).pop().flatten() {
            Some(v) => v,
            None => self.evaluate(label),
        };
        self.cache.insert(key, v);
        v
    }

    /// The evaluations of labels about to be published: those neither in
    /// memory nor in the store are evaluated and written to the store (one
    /// batch, buffered: a record lost in a crash is evaluated again).
    pub fn for_publish(&self, labels: &[Vec<u8>]) -> Vec<Evaluation> {
        let keys: Vec<[u8; 32]> = labels.iter().map(|l| self.key(l)).collect();
        let mut out: Vec<Option<Evaluation>> = keys.iter().map(|k| self.cache.get(k)).collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let wanted: Vec<(&[u8], &[u8])> = missing
                .iter()
                .map(|&i| (&keys[i][..], &labels[i][..]))
                .collect();
            let mut batch = WriteBatch::new();
            for (&i, found) in missing.iter().zip(self.read(&wanted)) {
                let v = found.unwrap_or_else(|| {
                    let v = self.evaluate(&labels[i]);
                    batch.put(
                        Space::LabelVrf,
                        keys[i].to_vec(),
                        self.encode(&labels[i], &v),
                    );
                    v
                });
                self.cache.insert(keys[i], v);
                out[i] = Some(v);
            }
            if let Some(store) = &self.store
                && !batch.is_empty()
                && let Err(e) = store.write(&batch, Durability::Buffered)
            {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "could not keep labels' VRF evaluations; they will be evaluated again");
            }
        }
        out.into_iter().flatten().collect()
    }

    fn evaluate(&self, label: &[u8]) -> Evaluation {
        self.evaluated.fetch_add(1, Ordering::Relaxed);
        let (out, proof) = self.vrf.evaluate(label);
        (out.index(), proof)
    }

    /// The stored records of `(key, label)` pairs (`None`: absent, damaged,
    /// unreadable or no store).
    fn read(&self, wanted: &[(&[u8], &[u8])]) -> Vec<Option<Evaluation>> {
        let Some(store) = &self.store else {
            return vec![None; wanted.len()];
        };
        let keys: Vec<&[u8]> = wanted.iter().map(|(k, _)| *k).collect();
        match store.get_many(Space::LabelVrf, &keys) {
            Ok(values) => values
                .into_iter()
                .zip(wanted)
                .map(|(v, (_, label))| {
                    let v = v?;
                    let found = self.decode(label, &v);
                    if found.is_some() {
                        self.stored.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.damaged.fetch_add(1, Ordering::Relaxed);
                        candor_telemetry::metrics().store_damaged_record("label-vrf");
                        tracing::warn!(
                            record_bytes = v.len(),
                            "a label's stored VRF evaluation is damaged or of another key; evaluating it again"
                        );
                    }
                    found
                })
                .collect(),
            Err(e) => {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "could not read labels' VRF evaluations; evaluating them");
                vec![None; keys.len()]
            }
        }
    }

    fn tag(&self, label: &[u8], index: &Index, proof: &VrfProof) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.tag_key);
        h.update(label);
        h.update(index);
        h.update(proof.as_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&h.finalize().as_bytes()[..TAG_LEN]);
        tag
    }

    fn encode(&self, label: &[u8], (index, proof): &Evaluation) -> Vec<u8> {
        let mut v = Vec::with_capacity(RECORD_LEN);
        v.push(RECORD_VERSION);
        v.extend_from_slice(index);
        v.extend_from_slice(proof.as_bytes());
        v.extend_from_slice(&self.tag(label, index, proof));
        v
    }

    /// Strict: anything but a whole record of this version whose tag matches
    /// `label` is absent.
    fn decode(&self, label: &[u8], bytes: &[u8]) -> Option<Evaluation> {
        if bytes.len() != RECORD_LEN || bytes[0] != RECORD_VERSION {
            return None;
        }
        let index: Index = bytes[1..33].try_into().ok()?;
        let proof = VrfProof::from_slice(&bytes[33..33 + VRF_PROOF_LEN]).ok()?;
        let tag = &bytes[33 + VRF_PROOF_LEN..];
        // Not secret-dependent timing that matters: the tag guards against
        // damage and foreign records, and a forger would need the VRF seed.
        (tag == self.tag(label, &index, &proof)).then_some((index, proof))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_store::{Direction, KeyRange, MemStore, ReadView};

    fn labels(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("label-{i}").into_bytes()).collect()
    }

    #[test]
    fn a_published_label_is_evaluated_once_even_after_a_restart() {
        let sk = VrfSecretKey::from_bytes(&[3; 32]);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let a = LabelVrfs::new(VrfSecretKey::from_bytes(&[3; 32]), 2, Some(store.clone()));
        let ls = labels(5);
        let first = a.for_publish(&ls);
        assert_eq!(a.evaluated.load(Ordering::Relaxed), 5);
        for (l, (index, proof)) in ls.iter().zip(&first) {
            let (out, p) = sk.evaluate(l);
            assert_eq!((out.index(), p), (*index, *proof));
        }
        // Updates, lookups and a new process over the same store: no evaluation.
        assert_eq!(a.for_publish(&ls), first);
        let b = LabelVrfs::new(VrfSecretKey::from_bytes(&[3; 32]), 2, Some(store.clone()));
        assert_eq!(b.for_publish(&ls), first);
        assert_eq!(b.get(&ls[4]), first[4]);
        assert_eq!(a.evaluated.load(Ordering::Relaxed), 5);
        assert_eq!(b.evaluated.load(Ordering::Relaxed), 0);
        // The store holds no label in clear.
        let rows = store
            .scan(
                Space::LabelVrf,
                &KeyRange::all(),
                Direction::Forward,
                usize::MAX,
            )
            .unwrap();
        assert_eq!(rows.len(), 5);
        assert!(
            rows.iter()
                .all(|(k, _)| !ls.iter().any(|l| k.windows(l.len()).any(|w| w == l)))
        );
    }

    #[test]
    fn lookups_do_not_grow_the_store_and_bad_records_are_evaluated_again() {
        let sk = VrfSecretKey::from_bytes(&[4; 32]);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let a = LabelVrfs::new(VrfSecretKey::from_bytes(&[4; 32]), 16, Some(store.clone()));
        let (out, proof) = sk.evaluate(b"never-published");
        assert_eq!(a.get(b"never-published"), (out.index(), proof));
        assert!(
            store
                .scan(
                    Space::LabelVrf,
                    &KeyRange::all(),
                    Direction::Forward,
                    usize::MAX
                )
                .unwrap()
                .is_empty()
        );
        // A truncated, a version 1 (untagged), an over-long record, one with a
        // flipped bit in the index (the proof still parses) and another label's
        // whole valid record: each is damaged, evaluated afresh.
        let ls = labels(5);
        let good = a.for_publish(&ls);
        let record = |i: usize| store.get(Space::LabelVrf, &a.key(&ls[i])).unwrap().unwrap();
        let mut flipped = record(3);
        flipped[1] ^= 0x01;
        let mut batch = WriteBatch::new();
        for (i, bad) in [
            vec![2u8; 10],
            vec![1u8; RECORD_LEN],
            vec![2u8; RECORD_LEN + 1],
            flipped,
            record(0),
        ]
        .into_iter()
        .enumerate()
        {
            batch.put(Space::LabelVrf, a.key(&ls[i]).to_vec(), bad);
        }
        store.write(&batch, Durability::Sync).unwrap();
        let b = LabelVrfs::new(sk, 16, Some(store.clone()));
        assert_eq!(b.for_publish(&ls), good);
        assert_eq!(b.evaluated.load(Ordering::Relaxed), 5);
        assert_eq!(b.damaged.load(Ordering::Relaxed), 5);
        // ... and rewritten.
        let c = LabelVrfs::new(VrfSecretKey::from_bytes(&[4; 32]), 16, Some(store));
        assert_eq!(c.for_publish(&ls), good);
        assert_eq!(c.evaluated.load(Ordering::Relaxed), 0);
    }
}
