//! Pure verification: valid responses built with candor-core's reference
//! implementations pass; every tampering is detected.

mod common;

use candor_client::candor_core::log::HeadExtensionProof;
use candor_client::candor_core::proof::audit::AuditProof;
use candor_client::candor_core::signed::{MutationTimestamp, SignedHead, SignedMutationTimestamp};
use candor_client::verify;
use candor_client::{
    BrokenPromiseEvidence, ClientError, EquivocationEvidence, HeadWithHistory, PinnedConfig,
};
use candor_proto::candor::v1 as pb;
use common::World;

fn assert_security(r: Result<impl std::fmt::Debug, ClientError>, what: &str) {
    match r {
        Err(e) if e.is_security_event() => {}
        other => panic!("{what}: expected a verification failure, got {other:?}"),
    }
}

/// Flips every bit position (one byte at a time, xor 1) of `bytes` and
/// requires `check` to fail on each.
fn every_flip_fails(bytes: &[u8], what: &str, mut check: impl FnMut(&[u8]) -> bool) {
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut t = bytes.to_vec();
            t[i] ^= mask;
            assert!(
                !check(&t),
                "{what}: flipping byte {i} (mask {mask:#x}) went undetected"
            );
        }
    }
}

fn world_with_data() -> World {
    let mut w = World::new(2);
    w.publish(b"alice", b"alice-key-1");
    w.publish(b"bob", b"bob-key-1");
    w.seal();
    w.publish(b"alice", b"alice-key-2");
    w.publish(b"carol", b"carol-key-1");
    w.seal();
    w
}

// ------------------------------------------------------------------ config

#[test]
fn config_matches_pin_by_digest_or_full() {
    let w = World::new(2);
    let resp = w.config_response();
    let by_digest = PinnedConfig::Digest(w.config.digest());
    assert_eq!(verify::config(&by_digest, &resp.config).unwrap(), w.config);
    let full = PinnedConfig::from_config_bytes(&w.config.encode()).unwrap();
    assert_eq!(verify::config(&full, &resp.config).unwrap(), w.config);
    let hex = PinnedConfig::from_hex_digest(&hex::encode(w.config.digest())).unwrap();
    assert_eq!(hex, by_digest);
}

#[test]
fn config_mismatch_is_detected() {
    let w = World::new(2);
    let other = World::with_seed(2, 9);
    let pin = PinnedConfig::Digest(w.config.digest());
    match verify::config(&pin, &other.config_response().config) {
        Err(ClientError::PinMismatch { pinned, served }) => {
            assert_eq!(pinned, w.config.digest());
            assert_eq!(served, other.config.digest());
        }
        r => panic!("expected PinMismatch, got {r:?}"),
    }
    // Convenience fields are ignored: a lying `config_digest` does not help.
    let mut resp = other.config_response();
    resp.config_digest = w.config.digest().to_vec();
    assert!(verify::config(&pin, &resp.config).is_err());
    every_flip_fails(&w.config.encode(), "config", |b| {
        verify::config(&pin, b).is_ok()
    });
}

// ----------------------------------------------------------------- publish

#[test]
fn publish_verifies_and_binds_label_value() {
    let mut w = World::new(3);
    let r1 = w.publish(b"alice", b"k1");
    let p1 = verify::publish(&w.config, b"alice", b"k1", "key-1", &r1).unwrap();
    assert_eq!(p1.version, 1);
    assert_eq!(p1.index, w.index(b"alice"));
    assert_eq!(p1.leaf.prev, [0; 32]);
    assert_eq!(p1.leaf_hash, p1.smt.smt.leaf_hash);
    assert_eq!(p1.idempotency_key, "key-1");
    let r2 = w.publish(b"alice", b"k2");
    let p2 = verify::publish(&w.config, b"alice", b"k2", "", &r2).unwrap();
    assert_eq!(p2.version, 2);
    assert_eq!(p2.leaf.prev, p1.leaf_hash);

    // Wrong label or value: the commitment (or the VRF) does not match.
    assert_security(
        verify::publish(&w.config, b"alice", b"k3", "", &r2),
        "other value",
    );
    assert_security(
        verify::publish(&w.config, b"bob", b"k2", "", &r2),
        "other label",
    );
    // Another deployment's keys.
    let other = World::with_seed(3, 7);
    assert_security(
        verify::publish(&other.config, b"alice", b"k2", "", &r2),
        "other config",
    );
}

#[test]
fn publish_every_tampering_is_detected() {
    let mut w = World::new(3);
    w.publish(b"alice", b"k1");
    let r = w.publish(b"alice", b"k2");
    // Once without a memory of VRF proofs, once with this label's proof
    // remembered (as a client holds it after the label's first publish).
    let warm = verify::VrfMemo::default();
    verify::publish_memo(&warm, &w.config, b"alice", b"k2", "", &r).unwrap();
    for memo in [verify::VrfMemo::new(0), warm] {
        publish_tampering_is_detected(&w, &r, &memo);
    }
}

fn publish_tampering_is_detected(w: &World, r: &pb::PublishResponse, memo: &verify::VrfMemo) {
    let ok = |r: &pb::PublishResponse| {
        verify::publish_memo(memo, &w.config, b"alice", b"k2", "", r).is_ok()
    };
    assert!(ok(r));
    type Field = fn(&mut pb::PublishResponse) -> &mut Vec<u8>;
    let fields: [(&str, Field); 6] = [
        ("smt", |r| &mut r.smt),
        ("vrf_proof", |r| &mut r.vrf_proof),
        ("nonce", |r| &mut r.nonce),
        ("commitment", |r| &mut r.commitment),
        ("prev_leaf_hash", |r| &mut r.prev_leaf_hash),
        // Convenience copy: not checked, so no flip test (see below).
        ("leaf_hash", |r| &mut r.leaf_hash),
    ];
    for (name, field) in fields.iter().take(5) {
        let bytes = field(&mut r.clone()).clone();
        every_flip_fails(&bytes, name, |b| {
            let mut t = r.clone();
            *field(&mut t) = b.to_vec();
            ok(&t)
        });
        let mut t = r.clone();
        field(&mut t).truncate(bytes.len() - 1);
        assert!(!ok(&t), "{name}: truncation undetected");
    }
    // Convenience fields do not influence the result.
    let mut t = r.clone();
    t.version = 99;
    t.leaf_hash = vec![0; 32];
    t.index = vec![1; 32];
    t.shard = 3;
    t.timestamp_ms = 0;
    assert!(ok(&t));
}

/// SMTs signed with the right key but wrong content.
#[test]
fn publish_smt_content_is_checked() {
    let mut w = World::new(3);
    let r = w.publish(b"alice", b"k1");
    let smt = SignedMutationTimestamp::decode(&r.smt).unwrap();
    let resign = |f: &dyn Fn(&mut MutationTimestamp)| {
        let mut m = smt.smt.clone();
        f(&mut m);
        let mut t = r.clone();
        t.smt = m.sign(&w.smt_key).encode();
        verify::publish(&w.config, b"alice", b"k1", "", &t)
    };
    assert!(resign(&|_| {}).is_ok());
    assert_security(resign(&|m| m.namespace = "other".into()), "namespace");
    assert_security(resign(&|m| m.shard ^= 1), "shard");
    assert_security(resign(&|m| m.merge_deadline_ms += 1), "deadline");
    assert_security(resign(&|m| m.version = 2), "version");
    assert_security(resign(&|m| m.leaf_hash[0] ^= 1), "leaf hash");
    assert_security(resign(&|m| m.index[31] ^= 1), "index");
    // Signed by the head key instead of the SMT key.
    let mut t = r.clone();
    t.smt = smt.smt.clone().sign(&w.head_key).encode();
    assert_security(
        verify::publish(&w.config, b"alice", b"k1", "", &t),
        "wrong key",
    );
}

#[test]
fn smt_timestamp_skew() {
    let mut w = World::new(0);
    let r = w.publish(b"a", b"v");
    let smt = SignedMutationTimestamp::decode(&r.smt).unwrap();
    let ts = smt.smt.timestamp_ms;
    assert!(verify::smt_timestamp(&smt, ts, 0).is_ok());
    assert!(verify::smt_timestamp(&smt, ts - 1000, 1000).is_ok());
    assert_security(
        verify::smt_timestamp(&smt, ts - 1001, 1000),
        "post-dated SMT",
    );
}

// ------------------------------------------------------------------ lookup

#[test]
fn lookup_member_absent_and_at_epoch() {
    let w = world_with_data();
    let l = verify::lookup(
        &w.config,
        b"alice",
        None,
        &w.lookup_response(b"alice", None),
    )
    .unwrap();
    assert_eq!(l.epoch(), 2);
    assert_eq!(l.version(), Some(2));
    assert_eq!(l.value(), Some(&b"alice-key-2"[..]));
    let l1 = verify::lookup(
        &w.config,
        b"alice",
        Some(1),
        &w.lookup_response(b"alice", Some(1)),
    )
    .unwrap();
    assert_eq!((l1.epoch(), l1.version()), (1, Some(1)));
    let c1 = verify::lookup(
        &w.config,
        b"carol",
        Some(1),
        &w.lookup_response(b"carol", Some(1)),
    )
    .unwrap();
    assert!(!c1.is_found());
    let d = verify::lookup(&w.config, b"dave", None, &w.lookup_response(b"dave", None)).unwrap();
    assert!(!d.is_found());
}

#[test]
fn lookup_every_tampering_is_detected() {
    let w = world_with_data();
    for label in [&b"alice"[..], b"dave"] {
        let r = w.lookup_response(label, None);
        let ok = |r: &pb::LookupResponse| verify::lookup(&w.config, label, None, r).is_ok();
        assert!(ok(&r));
        every_flip_fails(&r.proof, "lookup proof", |b| {
            ok(&pb::LookupResponse {
                proof: b.to_vec(),
                ..r.clone()
            })
        });
        every_flip_fails(&r.signed_head, "lookup head", |b| {
            ok(&pb::LookupResponse {
                signed_head: b.to_vec(),
                ..r.clone()
            })
        });
        // The head of another epoch (validly signed) does not fit the proof.
        let t = pb::LookupResponse {
            signed_head: w.head(1).encode(),
            ..r.clone()
        };
        assert!(!ok(&t));
        // The proof for another label.
        assert!(verify::lookup(&w.config, b"bob", None, &r).is_err());
    }
    // Asking for epoch 1 and being answered epoch 2.
    let r = w.lookup_response(b"alice", Some(2));
    assert_security(
        verify::lookup(&w.config, b"alice", Some(1), &r),
        "epoch swap",
    );
}

// ----------------------------------------------------------------- history

#[test]
fn history_verifies_and_contains() {
    let mut w = world_with_data();
    let p3 = w.publish(b"alice", b"alice-key-3");
    w.seal();
    let h = verify::history(
        &w.config,
        b"alice",
        None,
        &w.history_response(b"alice", None),
    )
    .unwrap();
    assert_eq!(h.latest_version(), 3);
    assert_eq!(h.versions()[0].value.as_deref(), Some(&b"alice-key-1"[..]));
    let smt = SignedMutationTimestamp::decode(&p3.smt).unwrap();
    assert!(h.contains(3, &smt.smt.leaf_hash));
    assert!(!h.contains(2, &smt.smt.leaf_hash));
    assert!(!h.contains(4, &smt.smt.leaf_hash));
    let old = verify::history(
        &w.config,
        b"alice",
        Some(2),
        &w.history_response(b"alice", Some(2)),
    )
    .unwrap();
    assert_eq!(old.latest_version(), 2);
    assert!(!old.contains(3, &smt.smt.leaf_hash));
    let none = verify::history(&w.config, b"zed", None, &w.history_response(b"zed", None)).unwrap();
    assert_eq!(none.latest_version(), 0);
}

#[test]
fn history_every_tampering_is_detected() {
    let w = world_with_data();
    for label in [&b"alice"[..], b"zed"] {
        let r = w.history_response(label, None);
        let ok = |r: &pb::HistoryResponse| verify::history(&w.config, label, None, r).is_ok();
        assert!(ok(&r));
        every_flip_fails(&r.proof, "history proof", |b| {
            ok(&pb::HistoryResponse {
                proof: b.to_vec(),
                ..r.clone()
            })
        });
        every_flip_fails(&r.signed_head, "history head", |b| {
            ok(&pb::HistoryResponse {
                signed_head: b.to_vec(),
                ..r.clone()
            })
        });
    }
    // An older, shorter history under the new head (hiding version 2).
    let t = pb::HistoryResponse {
        signed_head: w.head(2).encode(),
        ..w.history_response(b"alice", Some(1))
    };
    assert_security(
        verify::history(&w.config, b"alice", None, &t),
        "hidden version",
    );
}

// ------------------------------------------------------------- consistency

#[test]
fn consistency_verifies_and_detects_tampering() {
    let mut w = world_with_data();
    for _ in 0..5 {
        w.seal();
    }
    for (a, b) in [(1, 2), (1, 7), (2, 7), (3, 5), (4, 4)] {
        let r = w.consistency_response(a, b);
        let (ha, hb) = (w.head(a).clone(), w.head(b).clone());
        verify::consistency(&w.config, &r, &ha, &hb).unwrap();
        if a == b {
            continue;
        }
        every_flip_fails(&r.proof, "consistency proof", |p| {
            let t = pb::ConsistencyResponse {
                proof: p.to_vec(),
                ..r.clone()
            };
            verify::consistency(&w.config, &t, &ha, &hb).is_ok()
        });
        // The served heads: identical bytes pass without a signature check,
        // any other bytes are a bad signature or another head (equivocation).
        every_flip_fails(&r.from_head, "consistency from_head", |h| {
            let t = pb::ConsistencyResponse {
                from_head: h.to_vec(),
                ..r.clone()
            };
            verify::consistency(&w.config, &t, &ha, &hb).is_ok()
        });
        every_flip_fails(&r.to_head, "consistency to_head", |h| {
            let t = pb::ConsistencyResponse {
                to_head: h.to_vec(),
                ..r.clone()
            };
            verify::consistency(&w.config, &t, &ha, &hb).is_ok()
        });
        // A proof for other sizes.
        let t = pb::ConsistencyResponse {
            proof: HeadExtensionProof::generate(&w.log, a, b - 1)
                .unwrap()
                .encode(),
            ..r.clone()
        };
        assert_security(verify::consistency(&w.config, &t, &ha, &hb), "sizes");
    }
}

#[test]
fn consistency_with_a_different_head_is_equivocation() {
    let w = world_with_data();
    // A fork: same keys, different content at epoch 1.
    let mut fork = World::new(2);
    fork.publish(b"mallory", b"evil");
    fork.seal();
    fork.seal();
    let r = fork.consistency_response(1, 2);
    match verify::consistency(&w.config, &r, w.head(1), w.head(2)) {
        Err(ClientError::Equivocation(ev)) => {
            assert_eq!(ev.epoch(), 1);
            ev.verify(&w.config).unwrap();
            let round = EquivocationEvidence::from_bytes(&ev.to_bytes()).unwrap();
            assert_eq!(round, *ev);
        }
        r => panic!("expected equivocation, got {r:?}"),
    }
}

// ------------------------------------------------------------------- audit

fn audit_world() -> World {
    let mut w = World::new(2);
    for i in 0..20u32 {
        w.publish(format!("user{i}").as_bytes(), b"v1");
    }
    w.seal();
    // Several versions of one label within one epoch, plus new labels.
    w.publish(b"user3", b"v2");
    w.publish(b"user3", b"v3");
    w.publish(b"user7", b"v2");
    w.publish(b"newbie", b"v1");
    w.seal();
    w.seal(); // an empty epoch
    w
}

#[test]
fn audit_verifies_transitions() {
    let w = audit_world();
    let a1 = verify::audit(&w.config, 1, &w.audit_response(1)).unwrap();
    assert!(a1.previous.is_none());
    assert_eq!(a1.changes.len(), 20);
    let a2 = verify::audit(&w.config, 2, &w.audit_response(2)).unwrap();
    assert_eq!(a2.changes.len(), 3);
    let u3 = a2
        .changes
        .iter()
        .find(|c| c.index == w.index(b"user3"))
        .unwrap();
    assert_eq!(
        u3.new_leaves.iter().map(|l| l.version).collect::<Vec<_>>(),
        [2, 3]
    );
    let a3 = verify::audit(&w.config, 3, &w.audit_response(3)).unwrap();
    assert!(a3.changes.is_empty());
}

#[test]
fn audit_every_tampering_is_detected() {
    let w = audit_world();
    let r = w.audit_response(2);
    let ok = |r: &pb::AuditResponse| verify::audit(&w.config, 2, r).is_ok();
    assert!(ok(&r));
    every_flip_fails(&r.proof, "audit proof", |b| {
        ok(&pb::AuditResponse {
            proof: b.to_vec(),
            ..r.clone()
        })
    });
    for (name, field) in [
        (
            "head",
            (|r: &mut pb::AuditResponse| &mut r.head) as fn(&mut pb::AuditResponse) -> &mut Vec<u8>,
        ),
        ("previous_head", |r| &mut r.previous_head),
    ] {
        let bytes = field(&mut r.clone()).clone();
        every_flip_fails(&bytes, name, |b| {
            let mut t = r.clone();
            *field(&mut t) = b.to_vec();
            ok(&t)
        });
    }
    // A dropped change, a dropped intermediate version.
    let proof = AuditProof::decode(&r.proof).unwrap();
    for i in 0..proof.changes.len() {
        let mut p = proof.clone();
        p.changes.remove(i);
        assert!(
            !ok(&pb::AuditResponse {
                proof: p.encode(),
                ..r.clone()
            }),
            "dropped change {i}"
        );
    }
    let mut p = proof.clone();
    let multi = p
        .changes
        .iter_mut()
        .find(|c| c.commitments.len() > 1)
        .unwrap();
    multi.commitments.remove(0);
    assert!(
        !ok(&pb::AuditResponse {
            proof: p.encode(),
            ..r.clone()
        }),
        "dropped version"
    );
    // Wrong epoch: the response for epoch 3 asked as epoch 2.
    assert_security(verify::audit(&w.config, 2, &w.audit_response(3)), "epoch");
    // Epoch 1 with a previous head, epoch 2 without.
    let mut t = w.audit_response(1);
    t.previous_head = w.head(1).encode();
    assert_security(verify::audit(&w.config, 1, &t), "previous head on epoch 1");
    let mut t = r.clone();
    t.previous_head.clear();
    assert_security(verify::audit(&w.config, 2, &t), "no previous head");
}

// ---------------------------------------------------------------- evidence

#[test]
fn broken_promise_evidence_verifies_and_round_trips() {
    let mut w = World::new(1);
    w.publish(b"alice", b"k1");
    w.seal();
    let dropped = w.publish_dropped(b"alice", b"k2");
    let smt = SignedMutationTimestamp::decode(&dropped.smt).unwrap();
    // Epochs go by until one is past the deadline.
    while w.clock_ms <= smt.smt.merge_deadline_ms {
        w.seal();
    }
    let after = w.latest_epoch();
    let before = after - 1;
    let ev = BrokenPromiseEvidence {
        label: b"alice".to_vec(),
        smt: smt.clone(),
        last_before_deadline: Some(HeadWithHistory {
            head: w.head(before).clone(),
            history_proof: w.history_response(b"alice", Some(before)).proof,
        }),
        first_after_deadline: w.head(after).clone(),
        consistency: Some(HeadExtensionProof::generate(&w.log, before, after).unwrap()),
    };
    ev.verify(&w.config).unwrap();
    let round = BrokenPromiseEvidence::from_bytes(&ev.to_bytes()).unwrap();
    assert_eq!(round, ev);
    // Not evidence: a non-consecutive pair, the wrong label.
    let mut bad = ev.clone();
    bad.label = b"bob".to_vec();
    assert!(bad.verify(&w.config).is_err());
    let mut bad = ev.clone();
    bad.first_after_deadline = w.head(before).clone();
    assert!(bad.verify(&w.config).is_err());

    // An honoured SMT gives no evidence.
    let mut w = World::new(1);
    let ok = w.publish(b"alice", b"k1");
    let smt = SignedMutationTimestamp::decode(&ok.smt).unwrap();
    while w.clock_ms <= smt.smt.merge_deadline_ms {
        w.seal();
    }
    let after = w.latest_epoch();
    let ev = BrokenPromiseEvidence {
        label: b"alice".to_vec(),
        smt,
        last_before_deadline: Some(HeadWithHistory {
            head: w.head(after - 1).clone(),
            history_proof: w.history_response(b"alice", Some(after - 1)).proof,
        }),
        first_after_deadline: w.head(after).clone(),
        consistency: Some(HeadExtensionProof::generate(&w.log, after - 1, after).unwrap()),
    };
    assert!(ev.verify(&w.config).is_err());
}

#[test]
fn equivocation_evidence_needs_two_different_signed_heads() {
    let w = world_with_data();
    let h: SignedHead = w.head(1).clone();
    assert!(
        EquivocationEvidence {
            first: h.clone(),
            second: h.clone()
        }
        .verify(&w.config)
        .is_err()
    );
    assert!(
        EquivocationEvidence {
            first: h.clone(),
            second: w.head(2).clone()
        }
        .verify(&w.config)
        .is_err()
    );
    let mut forged = h.clone();
    forged.head.map_root[0] ^= 1;
    assert!(
        EquivocationEvidence {
            first: h,
            second: forged
        }
        .verify(&w.config)
        .is_err()
    );
}

// --------------------------------------------------------------- head cache

#[test]
fn head_cache_skips_only_identical_bytes() {
    let w = world_with_data();
    let cache = std::sync::Mutex::new(verify::HeadCache::default());
    let vrfs = verify::VrfMemo::default();
    let resp = w.lookup_response(b"alice", None);
    // First use verifies; the same bytes again come from the cache.
    let a = verify::lookup_cached(&cache, &vrfs, &w.config, b"alice", None, &resp).unwrap();
    let b = verify::lookup_cached(&cache, &vrfs, &w.config, b"alice", None, &resp).unwrap();
    assert_eq!(a.head, b.head);
    // A head differing in any byte is verified afresh, and fails.
    every_flip_fails(&resp.signed_head, "cached head", |t| {
        let mut r = resp.clone();
        r.signed_head = t.to_vec();
        verify::lookup_cached(&cache, &vrfs, &w.config, b"alice", None, &r).is_ok()
    });
    // The proof is still checked against the cached head.
    let mut r = resp.clone();
    r.proof[10] ^= 1;
    assert_security(
        verify::lookup_cached(&cache, &vrfs, &w.config, b"alice", None, &r),
        "proof under a cached head",
    );
    // An epoch mismatch is still refused.
    let e = a.head.head.epoch;
    assert_security(
        verify::lookup_cached(&cache, &vrfs, &w.config, b"alice", Some(e + 1), &resp),
        "epoch mismatch",
    );
    // The VRF proof was remembered: every altered byte of the whole proof
    // (the VRF proof is its first 80) is still refused.
    assert_eq!(vrfs.len(), 1);
    every_flip_fails(&resp.proof, "lookup proof, VRF proof remembered", |t| {
        let mut r = resp.clone();
        r.proof = t.to_vec();
        verify::lookup_cached(&cache, &vrfs, &w.config, b"alice", None, &r).is_ok()
    });
    // And it answers for this label only.
    assert!(verify::lookup_cached(&cache, &vrfs, &w.config, b"bob", None, &resp).is_err());
}
