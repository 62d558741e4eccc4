//! MonitorState (pure): confirmations, unexpected versions, rewritten and
//! shortened histories, persistence.

mod common;

use candor_client::verify::{self, VerifiedHistory};
use candor_client::{MonitorEvent, MonitorState};
use common::World;

fn history(w: &World, label: &[u8]) -> VerifiedHistory {
    verify::history(&w.config, label, None, &w.history_response(label, None)).unwrap()
}

fn publish(w: &mut World, label: &[u8], value: &[u8]) -> candor_client::VerifiedPublish {
    let r = w.publish(label, value);
    verify::publish(&w.config, label, value, "", &r).unwrap()
}

#[test]
fn confirmations_and_alarms() {
    let mut w = World::new(1);
    let mut m = MonitorState::new();
    let p1 = publish(&mut w, b"alice", b"k1");
    m.expect_publish(&p1);
    m.watch(b"unused", []);
    w.seal();
    assert_eq!(
        m.check(b"alice", &history(&w, b"alice")),
        [MonitorEvent::Confirmed {
            label: b"alice".to_vec(),
            version: 1,
            epoch: 1
        }]
    );
    assert!(m.check(b"unused", &history(&w, b"unused")).is_empty());
    assert!(m.check(b"not-watched", &history(&w, b"alice")).is_empty());

    // Someone else uses the unused label.
    let evil = publish(&mut w, b"unused", b"x");
    w.seal();
    let ev = m.check(b"unused", &history(&w, b"unused"));
    assert_eq!(
        ev,
        [MonitorEvent::UnexpectedChange {
            label: b"unused".to_vec(),
            version: 1,
            leaf_hash: evil.leaf_hash,
            epoch: 2
        }]
    );
    assert!(ev[0].is_alarm());
    assert!(
        m.check(b"unused", &history(&w, b"unused")).is_empty(),
        "raised once"
    );
}

#[test]
fn rewritten_and_shortened_histories() {
    // Two worlds with the same keys: the service shows the owner one history,
    // then another.
    let mut a = World::new(0);
    let mut b = World::new(0);
    let mut m = MonitorState::new();
    let p1 = publish(&mut a, b"alice", b"k1");
    let p2 = publish(&mut a, b"alice", b"k2");
    m.expect_publish(&p1);
    m.expect_publish(&p2);
    a.seal();
    assert_eq!(m.check(b"alice", &history(&a, b"alice")).len(), 2);

    // Shorter: version 2 vanished.
    b.publish(b"alice", b"k1");
    b.seal();
    let ev = m.check(b"alice", &history(&b, b"alice"));
    assert!(
        matches!(
            ev.as_slice(),
            [MonitorEvent::Rollback {
                previously: 2,
                now: 1,
                ..
            }]
        ),
        "{ev:?}"
    );

    // Rewritten: version 2 replaced by another value.
    b.publish(b"alice", b"other");
    b.seal();
    let ev = m.check(b"alice", &history(&b, b"alice"));
    assert!(
        ev.iter()
            .any(|e| matches!(e, MonitorEvent::HistoryRewritten { version: 2, .. })),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, MonitorEvent::UnexpectedChange { version: 2, .. })),
        "{ev:?}"
    );
    assert!(ev.iter().all(MonitorEvent::is_alarm));
}

#[test]
fn state_round_trips() {
    let mut w = World::new(1);
    let mut m = MonitorState::new();
    for (label, value) in [
        (&b"alice"[..], &b"k1"[..]),
        (b"alice", b"k2"),
        (b"bob", b"k"),
    ] {
        let p = publish(&mut w, label, value);
        m.expect_publish(&p);
    }
    publish(&mut w, b"bob", b"evil");
    w.seal();
    m.check(b"alice", &history(&w, b"alice"));
    m.check(b"bob", &history(&w, b"bob"));
    let bytes = m.to_bytes();
    let mut back = MonitorState::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    // Alarms already raised stay raised.
    assert!(back.check(b"bob", &history(&w, b"bob")).is_empty());
    assert!(MonitorState::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert_eq!(
        MonitorState::from_bytes(&MonitorState::new().to_bytes()).unwrap(),
        MonitorState::new()
    );
}
