//! Property tests: proofs from the reference map verify, and altering any
//! byte of a proof, root, label, value, signature or head makes verification
//! fail with an error (never a panic).

use candor_core::hash::Digest;
use candor_core::log::{
    ConsistencyProof, EpochEntry, HeadExtensionProof, InclusionProof, MemoryLog,
    verify_head_extension,
};
use candor_core::map::{Subtree, combine_shard_roots};
use candor_core::proof::audit::AuditProof;
use candor_core::proof::history::HistoryProof;
use candor_core::proof::lookup::LookupProof;
use candor_core::reference::ReferenceMap;
use candor_core::signed::{
    Cosignature, EpochHead, MutationTimestamp, PublicConfig, SignedHead, SignedMutationTimestamp,
    SigningKeyPair,
};
use candor_core::vrf::VrfSecretKey;
use proptest::prelude::*;

fn vrf() -> VrfSecretKey {
    VrfSecretKey::from_bytes(&[7u8; 32])
}

fn label(i: u32) -> Vec<u8> {
    format!("user-{i}@example.com").into_bytes()
}

/// Builds a map with labels 0..n, then `updates` extra versions.
fn build(n: u32, updates: &[u32]) -> ReferenceMap {
    let sk = vrf();
    let mut m = ReferenceMap::new();
    for i in 0..n {
        let l = label(i);
        let idx = sk.evaluate(&l).0.index();
        m.publish(idx, &l, &i.to_be_bytes(), Some([i as u8; 32]));
    }
    // Updates only touch labels that exist (an empty map stays empty).
    for (k, u) in updates.iter().enumerate().filter(|_| n > 0) {
        let l = label(u % n);
        let idx = sk.evaluate(&l).0.index();
        m.publish(idx, &l, &(k as u64).to_be_bytes(), None);
    }
    m
}

fn flips(len: usize) -> impl Iterator<Item = (usize, u8)> {
    // Every byte position, with a fixed bit pattern per position.
    (0..len).map(|i| (i, 1u8 << (i % 8)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn lookup_proofs_verify_and_resist_tampering(n in 0u32..40, ups in prop::collection::vec(0u32..40, 0..10), probe in 0u32..80) {
        let sk = vrf();
        let pk = sk.public_key();
        let m = build(n, &ups);
        let root = m.root();
        let l = label(probe);
        let proof = m.lookup_proof(&sk, &l);
        let out = proof.verify(&pk, &l, &root).expect("valid proof verifies");
        prop_assert_eq!(out.entry.is_some(), probe < n);
        let bytes = proof.encode();
        prop_assert_eq!(LookupProof::decode(&bytes).unwrap(), proof.clone());
        for (i, mask) in flips(bytes.len()) {
            let mut b = bytes.clone();
            b[i] ^= mask;
            let res = LookupProof::decode(&b).and_then(|p| p.verify(&pk, &l, &root));
            prop_assert!(res.is_err(), "flipping byte {} of {} still verified", i, bytes.len());
        }
        // Wrong root, wrong label.
        let mut bad_root = root;
        bad_root[5] ^= 1;
        prop_assert!(proof.verify(&pk, &l, &bad_root).is_err());
        prop_assert!(proof.verify(&pk, &label(probe + 1000), &root).is_err());
    }

    #[test]
    fn history_proofs_verify_and_resist_tampering(n in 1u32..30, ups in prop::collection::vec(0u32..30, 0..12), probe in 0u32..40) {
        let sk = vrf();
        let pk = sk.public_key();
        let m = build(n, &ups);
        let root = m.root();
        let l = label(probe);
        let proof = m.history_proof(&sk, &l);
        let h = proof.verify(&pk, &l, &root).expect("valid proof verifies");
        let expected = if probe < n { 1 + ups.iter().filter(|u| *u % n == probe).count() } else { 0 };
        prop_assert_eq!(h.versions.len(), expected);
        let bytes = proof.encode();
        prop_assert_eq!(HistoryProof::decode(&bytes).unwrap(), proof.clone());
        for (i, mask) in flips(bytes.len()) {
            let mut b = bytes.clone();
            b[i] ^= mask;
            let res = HistoryProof::decode(&b).and_then(|p| p.verify(&pk, &l, &root));
            prop_assert!(res.is_err(), "flipping byte {} still verified", i);
        }
    }

    #[test]
    fn audit_proofs_verify_and_resist_tampering(n in 0u32..40, more in 0u32..10, ups in prop::collection::vec(0u32..50, 0..15)) {
        let sk = vrf();
        let old = build(n, &[]);
        let mut new = old.clone();
        for i in n..n + more {
            let l = label(i);
            new.publish(sk.evaluate(&l).0.index(), &l, b"v", None);
        }
        let total = n + more;
        for u in &ups {
            if total == 0 { break; }
            let l = label(u % total);
            new.publish(sk.evaluate(&l).0.index(), &l, b"w", None);
        }
        let (r0, r1) = (old.root(), new.root());
        let proof = new.audit_proof(&old);
        let changes = proof.verify(&r0, &r1).expect("valid audit proof verifies");
        prop_assert_eq!(changes.len(), proof.changes.len());
        for c in &changes {
            let versions = new.versions(&c.index);
            prop_assert_eq!(c.new_leaves.last().unwrap(), &versions.last().unwrap().leaf);
        }
        let bytes = proof.encode();
        prop_assert_eq!(AuditProof::decode(&bytes).unwrap(), proof.clone());
        for (i, mask) in flips(bytes.len()) {
            let mut b = bytes.clone();
            b[i] ^= mask;
            let res = AuditProof::decode(&b).and_then(|p| p.verify(&r0, &r1));
            prop_assert!(res.is_err(), "flipping byte {} still verified", i);
        }
        if r0 != r1 {
            prop_assert!(proof.verify(&r1, &r0).is_err());
        }
    }

    #[test]
    fn shard_roots_compose_to_the_global_root(n in 0u32..60, bits in 0u8..6) {
        let m = build(n, &[]);
        let shards: Vec<Subtree> = (0..1u32 << bits).map(|s| m.shard_root(bits, s)).collect();
        prop_assert_eq!(combine_shard_roots(&shards).unwrap().hash, m.root());
    }
}

#[test]
fn audit_with_intermediate_versions_is_a_full_chain() {
    let sk = vrf();
    let old = build(5, &[]);
    let mut new = old.clone();
    let l = label(2);
    let idx = sk.evaluate(&l).0.index();
    for v in 0..3u8 {
        new.publish(idx, &l, &[v], None);
    }
    let proof = new.audit_proof(&old);
    let changes = proof.verify(&old.root(), &new.root()).unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(c.old.unwrap().version, 1);
    let versions: Vec<u64> = c.new_leaves.iter().map(|l| l.version).collect();
    assert_eq!(versions, vec![2, 3, 4]);
    // Dropping an intermediate version breaks the chain to the new root.
    let mut cut = proof.clone();
    cut.changes[0].commitments.remove(1);
    assert!(cut.verify(&old.root(), &new.root()).is_err());
}

#[test]
fn redacted_values_still_verify_without_the_value() {
    let sk = vrf();
    let mut m = build(10, &[]);
    let l = label(3);
    let idx = sk.evaluate(&l).0.index();
    assert!(m.forget(&idx, 1));
    let p = m.lookup_proof(&sk, &l);
    let out = p.verify(&sk.public_key(), &l, &m.root()).unwrap();
    let e = out.entry.unwrap();
    assert_eq!(e.version, 1);
    assert!(e.value.is_none());
}

#[test]
fn log_proofs_for_every_size_and_pair() {
    let mut log = MemoryLog::new();
    let mut roots: Vec<Digest> = vec![log.root()];
    for e in 1..=40u64 {
        log.append(
            EpochEntry {
                epoch: e,
                timestamp_ms: e * 1000,
                map_root: [e as u8; 32],
            }
            .leaf_hash(),
        );
        roots.push(log.root());
    }
    for size in 1..=40u64 {
        for i in 0..size {
            let p = InclusionProof::generate(&log, i, size).unwrap();
            let leaf = EpochEntry {
                epoch: i + 1,
                timestamp_ms: (i + 1) * 1000,
                map_root: [(i + 1) as u8; 32],
            }
            .leaf_hash();
            p.verify(&leaf, &roots[size as usize]).unwrap();
            let q = InclusionProof::decode(&p.encode()).unwrap();
            assert_eq!(p, q);
            let mut bad = leaf;
            bad[0] ^= 1;
            assert!(p.verify(&bad, &roots[size as usize]).is_err());
        }
        for first in 1..=size {
            let p = ConsistencyProof::generate(&log, first, size).unwrap();
            p.verify(&roots[first as usize], &roots[size as usize])
                .unwrap_or_else(|e| panic!("consistency {first}->{size}: {e}"));
            let enc = p.encode();
            for (i, mask) in flips(enc.len()) {
                let mut b = enc.clone();
                b[i] ^= mask;
                let res = ConsistencyProof::decode(&b).and_then(|q| {
                    q.verify(&roots[first as usize], &roots[size as usize])
                        .map(|_| q)
                });
                // A flip in the sizes may describe another (valid) pair only if
                // it names the same sizes; anything else must fail.
                if let Ok(q) = res {
                    panic!("tampered consistency proof {first}->{size} verified: {q:?}");
                }
            }
            if first < size {
                let mut other = roots[first as usize];
                other[1] ^= 1;
                assert!(p.verify(&other, &roots[size as usize]).is_err());
            }
        }
    }
}

fn config() -> (PublicConfig, SigningKeyPair, SigningKeyPair) {
    let head = SigningKeyPair::from_seed(&[1; 32]);
    let smt = SigningKeyPair::from_seed(&[2; 32]);
    let c = PublicConfig {
        namespace: "example.com/kt".into(),
        vrf_key: vrf().public_key(),
        head_key: head.public_key(),
        smt_key: smt.public_key(),
        shard_bits: 4,
        epoch_interval_ms: 1000,
        max_merge_delay_ms: 10_000,
    };
    (c, head, smt)
}

#[test]
fn signed_heads_smts_and_cosignatures_reject_every_altered_byte() {
    let (cfg, head_key, smt_key) = config();
    assert_eq!(PublicConfig::decode(&cfg.encode()).unwrap(), cfg);
    let head = EpochHead {
        namespace: cfg.namespace.clone(),
        epoch: 7,
        timestamp_ms: 1_700_000_000_000,
        map_root: [3; 32],
        log_size: 7,
        log_root: [4; 32],
        config_digest: cfg.digest(),
    };
    let sh = head.clone().sign(&head_key);
    let enc = sh.encode();
    SignedHead::decode_verified(&enc, &cfg).unwrap();
    for (i, mask) in flips(enc.len()) {
        let mut b = enc.clone();
        b[i] ^= mask;
        assert!(
            SignedHead::decode_verified(&b, &cfg).is_err(),
            "head byte {i}"
        );
    }
    // A head signed with the SMT key is not a head.
    assert!(head.clone().sign(&smt_key).verify(&cfg).is_err());

    let idx = vrf().evaluate(b"alice").0.index();
    let smt = MutationTimestamp {
        namespace: cfg.namespace.clone(),
        index: idx,
        version: 1,
        leaf_hash: [9; 32],
        shard: candor_core::map::shard_of(&idx, cfg.shard_bits),
        timestamp_ms: 1_700_000_000_000,
        merge_deadline_ms: 1_700_000_010_000,
    }
    .sign(&smt_key);
    let enc = smt.encode();
    SignedMutationTimestamp::decode(&enc)
        .unwrap()
        .verify(&cfg)
        .unwrap();
    for (i, mask) in flips(enc.len()) {
        let mut b = enc.clone();
        b[i] ^= mask;
        let r = SignedMutationTimestamp::decode(&b).and_then(|s| s.verify(&cfg));
        assert!(r.is_err(), "smt byte {i}");
    }

    let auditor = SigningKeyPair::from_seed(&[5; 32]);
    let cs = Cosignature::create(&head, &auditor, 1_700_000_001_000);
    let enc = cs.encode();
    Cosignature::decode(&enc).unwrap().verify(&head).unwrap();
    for (i, mask) in flips(enc.len()) {
        let mut b = enc.clone();
        b[i] ^= mask;
        let r = Cosignature::decode(&b).and_then(|c| c.verify(&head));
        assert!(r.is_err(), "cosignature byte {i}");
    }
}

#[test]
fn head_extension_catches_equivocation_and_time_going_back() {
    let (cfg, key, _) = config();
    let mut log = MemoryLog::new();
    let mut heads = Vec::new();
    for e in 1..=5u64 {
        let entry = EpochEntry {
            epoch: e,
            timestamp_ms: 1000 * e,
            map_root: [e as u8; 32],
        };
        log.append(entry.leaf_hash());
        heads.push(
            EpochHead {
                namespace: cfg.namespace.clone(),
                epoch: e,
                timestamp_ms: entry.timestamp_ms,
                map_root: entry.map_root,
                log_size: e,
                log_root: log.root(),
                config_digest: cfg.digest(),
            }
            .sign(&key),
        );
    }
    let p = HeadExtensionProof::generate(&log, 2, 5).unwrap();
    verify_head_extension(&heads[1], &heads[4], &p).unwrap();
    let enc = p.encode();
    assert_eq!(HeadExtensionProof::decode(&enc).unwrap(), p);
    for (i, mask) in flips(enc.len()) {
        let mut b = enc.clone();
        b[i] ^= mask;
        let r = HeadExtensionProof::decode(&b)
            .and_then(|q| verify_head_extension(&heads[1], &heads[4], &q));
        assert!(r.is_err(), "extension proof byte {i}");
    }
    // An old head whose map root is not the one in the log is caught.
    let mut forged = heads[1].head.clone();
    forged.map_root = [0xAB; 32];
    let forged = forged.sign(&key);
    assert!(verify_head_extension(&forged, &heads[4], &p).is_err());
    // Time going back.
    let mut back = heads[4].head.clone();
    back.timestamp_ms = 1;
    assert!(verify_head_extension(&heads[1], &back.sign(&key), &p).is_err());
    // Another head for epoch 5 is equivocation.
    let mut other = heads[4].head.clone();
    other.map_root = [0xEE; 32];
    let other = other.sign(&key);
    assert!(verify_head_extension(&heads[4], &other, &p).is_err());
}
