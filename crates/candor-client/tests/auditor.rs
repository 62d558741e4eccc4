//! The auditor over sequences of epochs built with ReferenceMap + MemoryLog:
//! a valid run passes and is cosigned; a rewritten epoch, a dropped change,
//! time going back, a forked previous head and an unhonoured SMT are each
//! caught.

mod common;

use candor_client::candor_core::log::{EpochEntry, MemoryLog};
use candor_client::candor_core::proof::audit::AuditProof;
use candor_client::candor_core::signed::{SignedMutationTimestamp, SigningKeyPair};
use candor_client::{AuditEvent, Auditor, ClientError, SmtStatus};
use candor_proto::candor::v1 as pb;
use common::World;

const NOW: u64 = 1_800_000_000_000;

fn auditor(w: &World) -> Auditor {
    Auditor::new(w.config.clone(), SigningKeyPair::from_seed(&[42; 32]))
}

fn smt(r: &pb::PublishResponse) -> SignedMutationTimestamp {
    SignedMutationTimestamp::decode(&r.smt).unwrap()
}

/// Five epochs: new labels, several versions of one label in one epoch, an
/// empty epoch.
fn busy_world() -> World {
    let mut w = World::new(2);
    for i in 0..10u32 {
        w.publish(format!("user{i}").as_bytes(), b"v1");
    }
    w.seal();
    w.publish(b"user1", b"v2");
    w.publish(b"user1", b"v3");
    w.publish(b"user1", b"v4");
    w.publish(b"late", b"v1");
    w.seal();
    w.seal();
    w.publish(b"user2", b"v2");
    w.seal();
    w.publish(b"user9", b"v2");
    w.seal();
    w
}

fn run(a: &mut Auditor, w: &World, upto: u64) {
    while a.next_epoch() <= upto {
        let e = a.next_epoch();
        let report = a.process(&w.audit_response(e), NOW);
        assert!(
            report.accepted && !report.has_alarm(),
            "epoch {e}: {:?}",
            report.events
        );
    }
}

#[test]
fn valid_run_is_accepted_and_cosigned() {
    let w = busy_world();
    let mut a = auditor(&w);
    for e in 1..=w.latest_epoch() {
        let report = a.process(&w.audit_response(e), NOW);
        assert_eq!(report.epoch, e);
        assert!(report.accepted, "{:?}", report.events);
        assert!(!report.has_alarm());
        let c = report.cosignature.expect("cosigned");
        c.verify(&w.head(e).head).unwrap();
        assert_eq!(c.auditor_key, a.public_key());
        assert_eq!(c.timestamp_ms, NOW);
        let expected_leaves = match e {
            1 => 10,
            2 => 4,
            3 => 0,
            _ => 1,
        };
        assert!(report.events.contains(&AuditEvent::Verified {
            epoch: e,
            changed_labels: if e == 2 { 2 } else { expected_leaves },
            new_leaves: expected_leaves,
        }));
    }
    assert_eq!(a.next_epoch(), 6);
    assert_eq!(a.log_root(), w.log.root());
    assert_eq!(a.last_head(), Some(w.head(5)));
}

#[test]
fn resume_from_state_continues() {
    let w = busy_world();
    let mut a = auditor(&w);
    run(&mut a, &w, 3);
    let state = a.state_bytes();
    let mut b = Auditor::resume(
        w.config.clone(),
        SigningKeyPair::from_seed(&[42; 32]),
        &state,
    )
    .unwrap();
    assert_eq!(b.next_epoch(), 4);
    assert_eq!(b.log_root(), a.log_root());
    run(&mut b, &w, 5);
    assert_eq!(b.log_root(), w.log.root());

    // The empty state resumes too.
    let fresh = auditor(&w).state_bytes();
    assert_eq!(
        Auditor::resume(w.config.clone(), SigningKeyPair::generate(), &fresh)
            .unwrap()
            .next_epoch(),
        1
    );
    // Corrupt state, or state of another deployment, is refused.
    for i in 0..state.len() {
        let mut s = state.clone();
        s[i] ^= 1;
        assert!(
            Auditor::resume(w.config.clone(), SigningKeyPair::generate(), &s).is_err(),
            "byte {i}"
        );
    }
    let other = World::with_seed(2, 77);
    assert!(matches!(
        Auditor::resume(other.config.clone(), SigningKeyPair::generate(), &state),
        Err(ClientError::State(_))
    ));
}

#[test]
fn rewritten_epoch_is_caught_by_the_log() {
    // The service rewrites epoch 2 (another map root) and recomputes its log,
    // then signs epoch 4 on the rewritten log while serving the honest
    // previous head.
    let mut w = busy_world();
    let mut a = auditor(&w);
    run(&mut a, &w, 3);
    let mut rewritten = MemoryLog::new();
    for e in 1..=w.latest_epoch() {
        let mut entry = EpochEntry::of_head(w.head(e));
        if e == 2 {
            entry.map_root[0] ^= 1;
        }
        rewritten.append(entry.leaf_hash());
    }
    let mut h4 = w.head(4).head.clone();
    h4.log_root = rewritten.root_at(4);
    w.heads[3] = h4.sign(&w.head_key);
    let report = a.process(&w.audit_response(4), NOW);
    assert!(!report.accepted && report.cosignature.is_none());
    assert!(
        matches!(
            report.events.as_slice(),
            [AuditEvent::LogMismatch { epoch: 4, .. }]
        ),
        "{:?}",
        report.events
    );
    // Nothing moved: the honest epoch 4 is still accepted afterwards.
    assert_eq!(a.next_epoch(), 4);
}

#[test]
fn forked_previous_head_is_equivocation() {
    let w = busy_world();
    let mut a = auditor(&w);
    run(&mut a, &w, 2);
    // A fork with the same keys that differs from epoch 2 on.
    let mut fork = World::new(2);
    for i in 0..10u32 {
        fork.publish(format!("user{i}").as_bytes(), b"v1");
    }
    fork.seal();
    fork.publish(b"user1", b"evil");
    fork.seal();
    fork.seal();
    let report = a.process(&fork.audit_response(3), NOW);
    assert!(!report.accepted);
    match report.events.as_slice() {
        [AuditEvent::Equivocation(ev)] => {
            assert_eq!(ev.first, *w.head(2));
            assert_eq!(ev.second, *fork.head(2));
            ev.verify(&w.config).unwrap();
        }
        other => panic!("expected equivocation, got {other:?}"),
    }
}

#[test]
fn dropped_change_is_caught() {
    let w = busy_world();
    let mut a = auditor(&w);
    run(&mut a, &w, 1);
    let mut r = w.audit_response(2);
    let mut proof = AuditProof::decode(&r.proof).unwrap();
    proof.changes.pop();
    r.proof = proof.encode();
    let report = a.process(&r, NOW);
    assert!(!report.accepted);
    assert!(
        matches!(
            report.events.as_slice(),
            [AuditEvent::InvalidResponse { epoch: 2, .. }]
        ),
        "{:?}",
        report.events
    );
    // A response for another epoch is refused too.
    let report = a.process(&w.audit_response(3), NOW);
    assert!(matches!(
        report.events.as_slice(),
        [AuditEvent::InvalidResponse { epoch: 2, .. }]
    ));
    assert_eq!(a.next_epoch(), 2);
}

#[test]
fn time_regression_is_caught() {
    let mut w = World::new(0);
    w.publish(b"a", b"1");
    w.seal();
    w.publish(b"a", b"2");
    let t = w.clock_ms;
    w.seal_at(t - 1);
    let mut a = auditor(&w);
    run(&mut a, &w, 1);
    let report = a.process(&w.audit_response(2), NOW);
    assert!(!report.accepted);
    assert!(
        matches!(
            report.events.as_slice(),
            [AuditEvent::TimeRegression { epoch: 2, previous_ms, timestamp_ms }] if *previous_ms == t && *timestamp_ms == t - 1
        ),
        "{:?}",
        report.events
    );
}

#[test]
fn smt_honoured_and_broken() {
    let mut w = World::new(1);
    let mut a = auditor(&w);
    let good = smt(&w.publish(b"alice", b"k1"));
    let bad = smt(&w.publish_dropped(b"bob", b"k1"));
    assert_eq!(a.check_smt(&good).unwrap(), SmtStatus::Pending);
    assert_eq!(a.check_smt(&bad).unwrap(), SmtStatus::Pending);
    assert_eq!(a.pending_smts().len(), 2);

    w.seal();
    let r1 = a.process(&w.audit_response(1), NOW);
    assert!(r1.accepted && !r1.has_alarm(), "{:?}", r1.events);
    assert!(
        r1.events
            .iter()
            .any(|e| matches!(e, AuditEvent::SmtHonoured { smt, epoch: 1 } if **smt == good))
    );
    assert_eq!(a.pending_smts(), std::slice::from_ref(&bad));

    // Pending state survives a restart.
    let b = Auditor::resume(
        w.config.clone(),
        SigningKeyPair::from_seed(&[42; 32]),
        &a.state_bytes(),
    )
    .unwrap();
    assert_eq!(b.pending_smts(), std::slice::from_ref(&bad));

    // Epochs until one is past the deadline: the broken promise is reported
    // at that epoch, which is still accepted (the log itself is fine).
    let mut alarms = Vec::new();
    while w.clock_ms <= bad.smt.merge_deadline_ms {
        w.seal();
        let r = a.process(&w.audit_response(a.next_epoch()), NOW);
        assert!(r.accepted);
        alarms.extend(r.events.into_iter().filter(AuditEvent::is_alarm));
    }
    match alarms.as_slice() {
        [
            AuditEvent::BrokenPromise {
                smt,
                head_after_deadline,
            },
        ] => {
            assert_eq!(**smt, bad);
            assert!(head_after_deadline.head.timestamp_ms > bad.smt.merge_deadline_ms);
            assert_eq!(**head_after_deadline, *w.head(w.latest_epoch()));
        }
        other => panic!("expected one broken promise, got {other:?}"),
    }
    assert!(a.pending_smts().is_empty());

    // Shown after the fact: decided from the retained window.
    assert_eq!(
        a.check_smt(&good).unwrap(),
        SmtStatus::Honoured { epoch: 1 }
    );
    assert!(matches!(
        a.check_smt(&bad).unwrap(),
        SmtStatus::Broken { .. }
    ));
}

#[test]
fn smt_checks_need_a_valid_smt_and_know_their_limits() {
    let mut w = World::new(1);
    let mut a = auditor(&w);
    let r = w.publish(b"alice", b"k1");
    let mut forged = smt(&r);
    forged.smt.version = 2;
    assert!(matches!(
        a.check_smt(&forged),
        Err(ClientError::Verification { .. })
    ));
    let other = World::with_seed(1, 3);
    assert!(
        Auditor::new(other.config.clone(), SigningKeyPair::generate())
            .check_smt(&smt(&r))
            .is_err()
    );

    // After a resume the changes of earlier epochs are not known.
    w.seal();
    run(&mut a, &w, 1);
    let mut b = Auditor::resume(
        w.config.clone(),
        SigningKeyPair::generate(),
        &a.state_bytes(),
    )
    .unwrap();
    assert_eq!(b.check_smt(&smt(&r)).unwrap(), SmtStatus::Unknown);
}
