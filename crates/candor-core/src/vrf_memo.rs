//! Remembering VRF proofs already verified.
//!
//! A client sees the same label's VRF proof again and again: in the answer to
//! every update of the label and every lookup of it. RFC 9381 proofs are
//! deterministic (one proof per key and input), so a proof whose exact bytes
//! were verified before for the same key and label verifies again, to the same
//! output: [`VrfMemo`] answers such a check from memory (one BLAKE3 hash, about
//! a microsecond) instead of verifying again (about 120 µs).
//!
//! It answers only for the exact `(key, label, proof)` bytes it verified,
//! identified by their BLAKE3 hash (domain-separated, length-prefixed label), so
//! a wrong proof, or a right proof for another label or key, is verified in
//! full and fails as before. Its soundness is BLAKE3's collision resistance,
//! which the tree's hashes already rely on. It is bounded: two generations of
//! at most `capacity` entries each; when the newer one fills up, the older one
//! is dropped (an approximate least-recently-used order at O(1) cost).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::vrf::{VrfError, VrfOutput, VrfProof, VrfPublicKey};

const MEMO_CONTEXT: &str = "candor 2026 vrf memo v1";

#[derive(Default)]
struct Generations {
    newer: HashMap<[u8; 32], VrfOutput>,
    older: HashMap<[u8; 32], VrfOutput>,
}

/// A bounded memory of verified VRF proofs. Shared between threads: it
/// locks only to look up or insert, never while verifying.
pub struct VrfMemo {
    capacity: usize,
    inner: Mutex<Generations>,
}

impl std::fmt::Debug for VrfMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrfMemo")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for VrfMemo {
    /// 65,536 entries per generation (at most about 13 MiB).
    fn default() -> Self {
        VrfMemo::new(1 << 16)
    }
}

impl VrfMemo {
    /// A memo of at most `2 × capacity` proofs; `capacity` 0 remembers nothing
    /// (every check verifies in full).
    pub fn new(capacity: usize) -> Self {
        VrfMemo {
            capacity,
            inner: Mutex::new(Generations::default()),
        }
    }

    /// Proofs remembered.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.newer.len() + g.older.len()
    }

    /// Whether it remembers nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`VrfPublicKey::verify`], answered from memory when these exact bytes
    /// verified before.
    pub fn verify(
        &self,
        key: &VrfPublicKey,
        alpha: &[u8],
        proof: &VrfProof,
    ) -> Result<VrfOutput, VrfError> {
        if self.capacity == 0 {
            return key.verify(alpha, proof);
        }
        let id = memo_id(key, alpha, proof);
        if let Some(out) = self.get(&id) {
            return Ok(out);
        }
        let out = key.verify(alpha, proof)?;
        self.insert(id, out);
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic elsewhere cannot leave the maps inconsistent: every update is
        // a single insert or swap.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &[u8; 32]) -> Option<VrfOutput> {
        let mut g = self.lock();
        if let Some(out) = g.newer.get(id) {
            return Some(*out);
        }
        let out = g.older.remove(id)?;
        Self::put(&mut g, self.capacity, *id, out);
        Some(out)
    }

    fn insert(&self, id: [u8; 32], out: VrfOutput) {
        let mut g = self.lock();
        Self::put(&mut g, self.capacity, id, out);
    }

    fn put(g: &mut Generations, capacity: usize, id: [u8; 32], out: VrfOutput) {
        if g.newer.len() >= capacity {
            g.older = std::mem::take(&mut g.newer);
        }
        g.newer.insert(id, out);
    }
}

/// `BLAKE3-derive-key(context, key || len(alpha) as u64 LE || alpha || proof)`.
fn memo_id(key: &VrfPublicKey, alpha: &[u8], proof: &VrfProof) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(MEMO_CONTEXT);
    h.update(key.as_bytes());
    h.update(&(alpha.len() as u64).to_le_bytes());
    h.update(alpha);
    h.update(proof.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrf::VrfSecretKey;

    fn flip(p: &VrfProof, byte: usize) -> VrfProof {
        let mut b = p.to_bytes();
        b[byte] ^= 1;
        VrfProof::from_bytes(&b)
    }

    #[test]
    fn a_remembered_proof_answers_only_for_its_own_bytes() {
        let sk = VrfSecretKey::from_bytes(&[7; 32]);
        let pk = sk.public_key();
        let (out, proof) = sk.evaluate(b"alice");
        let memo = VrfMemo::new(4);
        assert_eq!(memo.verify(&pk, b"alice", &proof), Ok(out));
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.verify(&pk, b"alice", &proof), Ok(out));
        // Same proof, other label; other key; every altered byte: verified in full, refused.
        assert!(memo.verify(&pk, b"alicf", &proof).is_err());
        let other = VrfSecretKey::from_bytes(&[8; 32]).public_key();
        assert!(memo.verify(&other, b"alice", &proof).is_err());
        for i in 0..crate::vrf::VRF_PROOF_LEN {
            assert!(
                memo.verify(&pk, b"alice", &flip(&proof, i)).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(memo.len(), 1, "failures are not remembered");
    }

    #[test]
    fn the_memo_is_bounded_and_keeps_what_is_used() {
        let sk = VrfSecretKey::from_bytes(&[9; 32]);
        let pk = sk.public_key();
        let memo = VrfMemo::new(2);
        let labels: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i]).collect();
        let proofs: Vec<_> = labels.iter().map(|l| sk.evaluate(l)).collect();
        for (l, (out, p)) in labels.iter().zip(&proofs) {
            assert_eq!(memo.verify(&pk, l, p), Ok(*out));
            assert!(memo.len() <= 4);
        }
        // Every answer is still right whether remembered or not.
        for (l, (out, p)) in labels.iter().zip(&proofs) {
            assert_eq!(memo.verify(&pk, l, p), Ok(*out));
        }
        let off = VrfMemo::new(0);
        assert_eq!(off.verify(&pk, &labels[0], &proofs[0].1), Ok(proofs[0].0));
        assert!(off.is_empty());
    }
}
