//! HeadTracker: consistency forward and backward, equivocation, rollback,
//! time going back, persistence.

mod common;

use candor_client::candor_core::log::HeadExtensionProof;
use candor_client::{ClientError, HeadCheck, HeadTracker};
use common::World;

fn world(epochs: u64) -> World {
    let mut w = World::new(1);
    for i in 0..epochs {
        w.publish(format!("l{i}").as_bytes(), b"v");
        w.seal();
    }
    w
}

fn ext(w: &World, a: u64, b: u64) -> HeadExtensionProof {
    HeadExtensionProof::generate(&w.log, a, b).unwrap()
}

#[test]
fn forward_and_backward() {
    let w = world(8);
    let mut t = HeadTracker::new();
    assert_eq!(t.check(w.head(3)).unwrap(), HeadCheck::Accept);
    assert!(t.accept(w.head(3), None).unwrap());
    assert_eq!(t.check(w.head(3)).unwrap(), HeadCheck::Accept);
    assert!(!t.accept(w.head(3), None).unwrap());

    assert_eq!(
        t.check(w.head(7)).unwrap(),
        HeadCheck::NeedConsistency { from: 3, to: 7 }
    );
    // Without the proof nothing is accepted.
    assert!(matches!(
        t.accept(w.head(7), None),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(t.accept(w.head(7), Some(&ext(&w, 3, 7))).unwrap());
    assert_eq!(t.latest(), Some(w.head(7)));

    // An older head is fine if it is a prefix; the tracker stays at 7.
    assert_eq!(
        t.check(w.head(2)).unwrap(),
        HeadCheck::NeedConsistency { from: 2, to: 7 }
    );
    assert!(!t.accept(w.head(2), Some(&ext(&w, 2, 7))).unwrap());
    assert_eq!(t.latest(), Some(w.head(7)));
}

#[test]
fn same_epoch_different_head_is_equivocation() {
    let w = world(3);
    let mut fork = World::new(1);
    fork.publish(b"mallory", b"x");
    for _ in 0..3 {
        fork.seal();
    }
    let mut t = HeadTracker::with_head(w.head(3).clone());
    for r in [
        t.check(fork.head(3)).map(|_| ()),
        t.accept(fork.head(3), None).map(|_| ()),
    ] {
        match r {
            Err(ClientError::Equivocation(ev)) => {
                assert_eq!(ev.first, *w.head(3));
                assert_eq!(ev.second, *fork.head(3));
                ev.verify(&w.config).unwrap();
            }
            r => panic!("expected equivocation, got {r:?}"),
        }
    }
}

#[test]
fn forked_newer_head_is_rejected() {
    // The fork shares epochs 1..=2 and diverges from 3.
    let mut w = world(2);
    let mut fork = World::new(1);
    fork.publish(b"l0", b"v");
    fork.seal();
    fork.publish(b"l1", b"v");
    fork.seal();
    assert_eq!(fork.head(2), w.head(2), "same prefix");
    w.publish(b"honest", b"v");
    w.seal();
    fork.publish(b"evil", b"v");
    fork.seal();
    fork.seal();

    let mut t = HeadTracker::with_head(w.head(3).clone());
    // Newer fork head with the fork's (internally valid) proof from its own 3.
    let r = t.accept(fork.head(4), Some(&ext(&fork, 3, 4)));
    assert!(matches!(r, Err(ClientError::Verification { .. })), "{r:?}");
    // A rollback to a forked older head.
    let mut t = HeadTracker::with_head(fork.head(4).clone());
    let r = t.accept(w.head(3), Some(&ext(&w, 3, 3)));
    assert!(r.is_err());
    assert_eq!(t.latest(), Some(fork.head(4)));
}

#[test]
fn time_going_back_is_rejected() {
    let mut w = World::new(0);
    w.seal();
    let t1 = w.clock_ms;
    w.seal_at(t1 - 5); // the service signs an epoch earlier than the last
    let mut t = HeadTracker::with_head(w.head(1).clone());
    let r = t.accept(w.head(2), Some(&ext(&w, 1, 2)));
    assert!(matches!(r, Err(ClientError::Verification { .. })), "{r:?}");
}

#[test]
fn persistence_round_trip_and_config_binding() {
    let w = world(4);
    let empty = HeadTracker::new();
    assert_eq!(
        HeadTracker::from_bytes(&empty.to_bytes(), &w.config).unwrap(),
        empty
    );
    let t = HeadTracker::with_head(w.head(4).clone());
    let bytes = t.to_bytes();
    assert_eq!(HeadTracker::from_bytes(&bytes, &w.config).unwrap(), t);
    // Under another configuration the stored head does not verify.
    let other = World::with_seed(1, 5);
    assert!(matches!(
        HeadTracker::from_bytes(&bytes, &other.config),
        Err(ClientError::State(_))
    ));
    // Corruption anywhere is detected.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 1;
        assert!(HeadTracker::from_bytes(&b, &w.config).is_err(), "byte {i}");
    }
    assert!(HeadTracker::from_bytes(&bytes[..bytes.len() - 1], &w.config).is_err());
}
