//! Paged history proofs (docs/protocol.md §6.4.2), the decoder limits
//! (§6.6), the Ed25519 key and signature rules (§9) and the equal-epoch
//! head extension rule (§7): valid inputs verify, every altered byte and
//! every input beyond a limit fails with a typed error, never a panic.

use candor_core::CoreError;
use candor_core::codec::Writer;
use candor_core::log::{
    ConsistencyProof, EpochEntry, HeadExtensionProof, InclusionProof, MemoryLog,
    verify_head_extension,
};
use candor_core::proof::audit::AuditProof;
use candor_core::proof::history::{
    HistoryPage, HistoryProof, MAX_PAGE_VERSIONS, PageAnchor, verify_pages,
};
use candor_core::reference::ReferenceMap;
use candor_core::signed::{EpochHead, PublicConfig, PublicKey, SignedHead, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use proptest::prelude::*;

fn vrf() -> VrfSecretKey {
    VrfSecretKey::from_bytes(&[9u8; 32])
}

fn label(i: u32) -> Vec<u8> {
    format!("pager-{i}@example.com").into_bytes()
}

/// `n` labels; label 0 gets `extra` more versions, some of them forgotten.
fn build(n: u32, extra: u32, forget_every: u32) -> ReferenceMap {
    let sk = vrf();
    let mut m = ReferenceMap::new();
    for i in 0..n {
        let l = label(i);
        m.publish(sk.evaluate(&l).0.index(), &l, &i.to_be_bytes(), None);
    }
    let l0 = label(0);
    let i0 = sk.evaluate(&l0).0.index();
    for k in 0..extra {
        m.publish(i0, &l0, format!("value {k}").as_bytes(), None);
        if forget_every > 0 && k % forget_every == 0 {
            m.forget(&i0, u64::from(k) + 1);
        }
    }
    m
}

/// Every page of `label`'s history, newest first, `size` versions a page.
fn pages(m: &ReferenceMap, l: &[u8], size: usize) -> Vec<HistoryPage> {
    let sk = vrf();
    let mut out = vec![m.history_page(&sk, l, None, size)];
    loop {
        let p = out.last().unwrap();
        let first = match &p.body {
            candor_core::proof::history::PageBody::Versions { first, .. } => *first,
            _ => break,
        };
        if first == 1 {
            break;
        }
        out.push(m.history_page(&sk, l, Some(first - 1), size));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// A paged history verifies to exactly the full history; every page's
    /// every altered byte fails against its anchor.
    #[test]
    fn history_pages_verify_and_resist_tampering(
        n in 1u32..20, extra in 0u32..25, forget in 0u32..4, size in 1usize..6, probe in 0u32..3,
    ) {
        let sk = vrf();
        let pk = sk.public_key();
        let m = build(n, extra, forget);
        let root = m.root();
        // probe 2 is (usually) absent.
        let l = if probe == 2 { label(1000) } else { label(probe.min(n - 1)) };
        let ps = pages(&m, &l, size);
        let full = HistoryProof::decode(&m.history_proof(&sk, &l).encode())
            .unwrap()
            .verify(&pk, &l, &root)
            .unwrap();
        let paged = verify_pages(&pk, &l, &root, &ps).expect("valid pages verify");
        prop_assert_eq!(&paged, &full);
        // Missing the oldest page, or a page twice: rejected.
        if ps.len() > 1 {
            prop_assert!(verify_pages(&pk, &l, &root, &ps[..ps.len() - 1]).is_err());
            let mut twice = ps.clone();
            twice.push(ps[ps.len() - 1].clone());
            prop_assert!(verify_pages(&pk, &l, &root, &twice).is_err());
        }
        let mut anchor = PageAnchor::MapRoot(root);
        for p in &ps {
            let bytes = p.encode();
            prop_assert!(bytes.len() <= 80 + 8 + 8 + 4 + size * 80 + 32 + 2 + 32 * 256 + 200);
            prop_assert_eq!(&HistoryPage::decode(&bytes).unwrap(), p);
            let v = p.verify(&pk, &l, &anchor).unwrap();
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 1 << (i % 8);
                let res = HistoryPage::decode(&b).and_then(|q| q.verify(&pk, &l, &anchor));
                prop_assert!(res.is_err(), "flipping byte {} of {} still verified", i, bytes.len());
            }
            // Truncated or extended: a decode error.
            prop_assert!(HistoryPage::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(HistoryPage::decode(&longer).is_err());
            // Another label.
            prop_assert!(p.verify(&pk, &label(2000), &anchor).is_err());
            match v.next {
                Some(a) => anchor = a,
                None => break,
            }
        }
    }
}

#[test]
fn an_older_page_cannot_stand_in_for_the_first() {
    let sk = vrf();
    let pk = sk.public_key();
    let m = build(5, 9, 0);
    let l = label(0);
    let root = m.root();
    let older = m.history_page(&sk, &l, Some(4), 2);
    // Against the map root: it does not end at the latest version.
    assert!(matches!(
        older.verify(&pk, &l, &PageAnchor::MapRoot(root)),
        Err(CoreError::Context(_))
    ));
    // Against a wrong anchor: version or hash mismatch.
    let first = m.history_page(&sk, &l, None, 2);
    let a = first.verify(&pk, &l, &PageAnchor::MapRoot(root)).unwrap();
    let Some(PageAnchor::Leaf {
        latest, leaf_hash, ..
    }) = a.next
    else {
        panic!("expected a next anchor")
    };
    assert!(
        older
            .verify(
                &pk,
                &l,
                &PageAnchor::Leaf {
                    latest,
                    version: 8,
                    leaf_hash
                }
            )
            .is_err()
    );
    let mut wrong = leaf_hash;
    wrong[0] ^= 1;
    let p8 = m.history_page(&sk, &l, Some(8), 2);
    assert!(matches!(
        p8.verify(
            &pk,
            &l,
            &PageAnchor::Leaf {
                latest,
                version: 8,
                leaf_hash: wrong
            }
        ),
        Err(CoreError::RootMismatch { .. })
    ));
    assert!(
        p8.verify(
            &pk,
            &l,
            &PageAnchor::Leaf {
                latest,
                version: 8,
                leaf_hash
            }
        )
        .is_ok()
    );
}

#[test]
fn page_decoder_limits() {
    let sk = vrf();
    let m = build(3, 3, 0);
    let l = label(0);
    let bytes = m.history_page(&sk, &l, None, 10).encode();
    // Layout: vrf 80 || latest 8 || first 8 || count 4 || ...
    let with_count = |c: u32| {
        let mut b = bytes.clone();
        b[96..100].copy_from_slice(&c.to_be_bytes());
        HistoryPage::decode(&b)
    };
    assert!(with_count(0).is_err());
    assert!(with_count(MAX_PAGE_VERSIONS as u32 + 1).is_err());
    assert!(with_count(u32::MAX).is_err());
    // first = 0, and a page ending beyond `latest`.
    let mut b = bytes.clone();
    b[88..96].copy_from_slice(&0u64.to_be_bytes());
    assert!(HistoryPage::decode(&b).is_err());
    let mut b = bytes.clone();
    b[88..96].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(HistoryPage::decode(&b).is_err());
}

#[test]
fn history_and_audit_count_limits() {
    // History: a count beyond the limit, or beyond what the bytes can hold,
    // fails before anything is allocated.
    for n in [u32::MAX, (1 << 20) + 1, 1000] {
        let mut w = Writer::new();
        w.raw(&[0u8; 80]).u32(n).raw(&[0u8; 100]);
        let e = HistoryProof::decode(w.as_slice()).unwrap_err();
        assert!(matches!(e, CoreError::Decode { .. }), "{e}");
    }
    // Audit: too many changes; a change with 0 or too many versions.
    let mut w = Writer::new();
    w.u8(0).u32((1 << 24) + 1);
    assert!(matches!(
        AuditProof::decode(w.as_slice()),
        Err(CoreError::Decode { .. })
    ));
    let mut w = Writer::new();
    w.u8(0).u32(10).raw(&[0u8; 100]);
    assert!(AuditProof::decode(w.as_slice()).is_err());
    for m in [0u32, (1 << 20) + 1, 5] {
        let mut w = Writer::new();
        w.u8(0).u32(1).raw(&[1u8; 32]).u32(m).raw(&[2u8; 64]);
        assert!(AuditProof::decode(w.as_slice()).is_err(), "m = {m}");
    }
    // Tag-3 nesting: 256 interior nodes on a path decode, 257 do not.
    let nested = |k: usize| {
        let mut w = Writer::new();
        for _ in 0..k {
            w.u8(3);
        }
        w.u8(0);
        for _ in 0..k {
            w.u8(0);
        }
        w.u32(0);
        AuditProof::decode(w.as_slice())
    };
    assert!(nested(256).is_ok());
    assert!(nested(257).is_err());
}

#[test]
fn log_path_limits() {
    let enc = |n: u8| {
        let mut w = Writer::new();
        w.u64(1).u64(u64::MAX).u8(n);
        for _ in 0..n {
            w.raw(&[7u8; 32]);
        }
        w.into_vec()
    };
    assert!(InclusionProof::decode(&enc(64)).is_ok());
    assert!(InclusionProof::decode(&enc(65)).is_err());
    assert!(ConsistencyProof::decode(&enc(65)).is_ok());
    assert!(ConsistencyProof::decode(&enc(66)).is_err());
    assert!(ConsistencyProof::decode(&enc(255)).is_err());
}

fn cfg_with(head: [u8; 32]) -> PublicConfig {
    PublicConfig {
        namespace: "keys.example".into(),
        vrf_key: vrf().public_key(),
        head_key: PublicKey(head),
        smt_key: SigningKeyPair::from_seed(&[3; 32]).public_key(),
        shard_bits: 0,
        epoch_interval_ms: 1000,
        max_merge_delay_ms: 10_000,
    }
}

#[test]
fn ed25519_key_and_signature_rules() {
    let good = SigningKeyPair::from_seed(&[2; 32]).public_key();
    assert!(good.validate("k").is_ok());
    assert!(PublicConfig::decode(&cfg_with(good.0).encode()).is_ok());
    // Small order: the identity (y = 1) and a point of order 4 (y = 0).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // Non-canonical: y = p + 1 encodes the identity again (y ≥ p).
    let mut y_p1 = [0xffu8; 32];
    y_p1[0] = 0xee;
    y_p1[31] = 0x7f;
    // Non-canonical: x = 0 with the sign bit set ("negative zero").
    let mut neg_zero = identity;
    neg_zero[31] |= 0x80;
    for bad in [identity, [0u8; 32], y_p1, neg_zero] {
        assert!(
            matches!(PublicKey(bad).validate("k"), Err(CoreError::PublicKey(_))),
            "{}",
            hex::encode(bad)
        );
        assert!(matches!(
            PublicConfig::decode(&cfg_with(bad).encode()),
            Err(CoreError::Decode { .. })
        ));
    }

    // Signatures: S + L (non-canonical S) and a small-order R are rejected.
    let key = SigningKeyPair::from_seed(&[2; 32]);
    let cfg = cfg_with(key.public_key().0);
    let head = EpochHead {
        namespace: cfg.namespace.clone(),
        epoch: 1,
        timestamp_ms: 5,
        map_root: [0; 32],
        log_size: 1,
        log_root: EpochEntry {
            epoch: 1,
            timestamp_ms: 5,
            map_root: [0; 32],
        }
        .leaf_hash(),
        config_digest: cfg.digest(),
    };
    let signed = head.sign(&key);
    signed.verify(&cfg).unwrap();
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut s_plus_l = signed.clone();
    let mut carry = 0u16;
    for (i, lb) in L.iter().enumerate() {
        let v = u16::from(s_plus_l.signature[32 + i]) + u16::from(*lb) + carry;
        s_plus_l.signature[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert!(matches!(
        s_plus_l.verify(&cfg),
        Err(CoreError::Signature(_))
    ));
    let mut small_r = signed.clone();
    small_r.signature[..32].copy_from_slice(&identity);
    assert!(matches!(small_r.verify(&cfg), Err(CoreError::Signature(_))));
}

#[test]
fn equal_epoch_extension_is_checked_like_any_other() {
    let key = SigningKeyPair::from_seed(&[2; 32]);
    let cfg = cfg_with(key.public_key().0);
    let mut log = MemoryLog::new();
    let mut heads: Vec<SignedHead> = Vec::new();
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
                log_root: log.root_at(e),
                config_digest: cfg.digest(),
            }
            .sign(&key),
        );
    }
    for e in 1..=5u64 {
        let h = &heads[e as usize - 1];
        let p = HeadExtensionProof::generate(&log, e, e).unwrap();
        verify_head_extension(h, h, &p).unwrap();
        // The proof bytes are never empty, and any altered byte fails.
        let bytes = p.encode();
        assert!(HeadExtensionProof::decode(&[]).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1 << (i % 8);
            let res = HeadExtensionProof::decode(&b).and_then(|q| verify_head_extension(h, h, &q));
            assert!(res.is_err(), "epoch {e}: flipping byte {i} still verified");
        }
        // A head whose log root does not end in its own entry fails.
        let mut other = h.head.clone();
        other.map_root[0] ^= 1;
        let forged = other.sign(&key);
        assert!(verify_head_extension(&forged, &forged, &p).is_err());
    }
}
