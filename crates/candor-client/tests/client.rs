//! The async Client against a fake gRPC server on 127.0.0.1 that serves
//! responses built with candor-core's reference implementations.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use candor_client::candor_core::signed::{SignedMutationTimestamp, SigningKeyPair};
use candor_client::{
    Auditor, Client, ClientError, HeadTracker, Monitor, MonitorEvent, MonitorState, PinnedConfig,
    PublishItem,
};
use common::World;
use common::server::{Fake, serve};

const POLL: Duration = Duration::from_millis(5);

fn pin(w: &World) -> PinnedConfig {
    PinnedConfig::Digest(w.config.digest())
}

async fn setup(world: World) -> (Arc<Fake>, Client) {
    let p = pin(&world);
    let fake = Fake::new(world);
    let uri = serve(fake.clone()).await;
    let client = Client::connect(uri, p).await.expect("connect");
    (fake, client)
}

#[tokio::test]
async fn connect_checks_the_pin() {
    let w = World::new(2);
    let good = pin(&w);
    let fake = Fake::new(w);
    let uri = serve(fake.clone()).await;
    let c = Client::connect(uri.clone(), good.clone()).await.unwrap();
    assert_eq!(c.config().digest(), good.digest());
    assert_eq!(c.limits().unwrap().max_batch_items, 1000);

    let wrong = PinnedConfig::Digest(World::with_seed(2, 8).config.digest());
    match Client::connect(uri.clone(), wrong).await {
        Err(e @ ClientError::PinMismatch { .. }) => assert!(e.is_security_event()),
        r => panic!("expected PinMismatch, got {r:?}"),
    }
    let (_, config) = Client::connect_tofu(uri).await.unwrap();
    assert_eq!(config.digest(), good.digest());
}

#[tokio::test]
async fn publish_needs_the_token_and_verifies() {
    let w = World::new(2);
    let p = pin(&w);
    let fake = Fake::with_token(w, "s3cret");
    let uri = serve(fake.clone()).await;
    let anon = Client::connect(uri.clone(), p.clone()).await.unwrap();
    let err = anon.publish(b"alice", b"k1").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated));
    assert!(!err.is_security_event());
    let wrong = anon.clone().with_token("nope").unwrap();
    assert_eq!(
        wrong.publish(b"alice", b"k1").await.unwrap_err().code(),
        Some(tonic::Code::Unauthenticated)
    );

    let c = Client::connect(uri, p)
        .await
        .unwrap()
        .with_token("s3cret")
        .unwrap();
    let v1 = c.publish(b"alice", b"k1").await.unwrap();
    let v2 = c.publish(b"alice", b"k2").await.unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v2.leaf.prev, v1.leaf_hash);
    assert_eq!(v1.idempotency_key.len(), 32);
    assert_ne!(v1.idempotency_key, v2.idempotency_key);
    assert!(matches!(
        c.publish(b"", b"x").await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(c.clone().with_token("bad\ntoken").is_err());
}

#[tokio::test]
async fn lost_replies_are_retried_with_the_same_key() {
    let (fake, c) = setup(World::new(1)).await;
    fake.lose_replies.store(2, Ordering::SeqCst);
    let p = c.publish(b"alice", b"k1").await.unwrap();
    assert_eq!(fake.publish_calls.load(Ordering::SeqCst), 3);
    assert_eq!(p.version, 1);
    let index = fake.world().index(b"alice");
    assert_eq!(fake.world().map.versions(&index).len(), 1, "published once");

    // The same key again returns the original answer.
    let again = c
        .publish_with_key(b"alice", b"k1", &p.idempotency_key)
        .await
        .unwrap();
    assert_eq!(again.smt, p.smt);
    // A key reused for another value is refused.
    let err = c
        .publish_with_key(b"alice", b"other", &p.idempotency_key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::AlreadyExists));
}

#[tokio::test]
async fn batch_publish() {
    let (fake, c) = setup(World::new(2)).await;
    fake.lose_replies.store(1, Ordering::SeqCst);
    let items: Vec<PublishItem> = (0..5)
        .map(|i| PublishItem::new(format!("user{i}"), format!("key{i}")))
        .collect();
    let out = c.publish_batch(&items).await.unwrap();
    assert_eq!(out.len(), 5);
    for (i, p) in out.iter().enumerate() {
        assert_eq!(p.label, format!("user{i}").into_bytes());
        assert_eq!(p.version, 1, "retried batch must not publish twice");
    }
}

#[tokio::test]
async fn lookup_and_history() {
    let (fake, c) = setup(World::new(2)).await;
    let err = c.lookup(b"alice", None).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition));

    c.publish(b"alice", b"k1").await.unwrap();
    fake.world().seal();
    c.publish(b"alice", b"k2").await.unwrap();
    fake.world().seal();

    let l = c.lookup(b"alice", None).await.unwrap();
    assert_eq!(
        (l.epoch(), l.version(), l.value()),
        (2, Some(2), Some(&b"k2"[..]))
    );
    let l1 = c.lookup(b"alice", Some(1)).await.unwrap();
    assert_eq!((l1.epoch(), l1.value()), (1, Some(&b"k1"[..])));
    assert!(!c.lookup(b"bob", None).await.unwrap().is_found());
    assert_eq!(
        c.lookup(b"alice", Some(9)).await.unwrap_err().code(),
        Some(tonic::Code::NotFound)
    );

    let h = c.history(b"alice").await.unwrap();
    assert_eq!(h.latest_version(), 2);
    assert_eq!(c.tracker().await.latest().unwrap().head.epoch, 2);
    assert_eq!(c.latest_head().await.unwrap(), *fake.world().head(2));
}

#[tokio::test]
async fn a_forked_service_is_caught() {
    let mut honest = World::new(1);
    honest.publish(b"alice", b"real");
    honest.seal();
    honest.seal();
    let (fake, c) = setup(honest).await;
    c.lookup(b"alice", None).await.unwrap();

    // The service switches to a fork (same keys): another head for epoch 2.
    let mut fork = World::new(1);
    fork.publish(b"alice", b"evil");
    fork.seal();
    fork.seal();
    fork.seal();
    let honest = std::mem::replace(&mut *fake.world(), fork);
    match c.lookup(b"alice", Some(2)).await {
        Err(ClientError::Equivocation(ev)) => {
            assert_eq!(ev.first, *honest.head(2));
            ev.verify(c.config()).unwrap();
        }
        r => panic!("expected equivocation, got {r:?}"),
    }
    // A newer fork head: the consistency answer carries the fork's epoch 2.
    match c.lookup(b"alice", None).await {
        Err(ClientError::Equivocation(ev)) => assert_eq!(ev.epoch(), 2),
        r => panic!("expected equivocation, got {r:?}"),
    }
    // The tracker did not move.
    assert_eq!(c.tracker().await.latest(), Some(honest.head(2)));
}

#[tokio::test]
async fn tracker_persists_across_clients() {
    let mut w = World::new(1);
    w.publish(b"a", b"1");
    w.seal();
    let config = w.config.clone();
    let (fake, c) = setup(w).await;
    c.latest_head().await.unwrap();
    let saved = c.tracker().await.to_bytes();

    fake.world().seal();
    let uri = serve(fake.clone()).await;
    let c2 = Client::connect(uri, PinnedConfig::from(config.clone()))
        .await
        .unwrap()
        .with_tracker(HeadTracker::from_bytes(&saved, &config).unwrap());
    assert_eq!(c2.tracker().await.latest().unwrap().head.epoch, 1);
    c2.latest_head().await.unwrap();
    assert_eq!(c2.tracker().await.latest().unwrap().head.epoch, 2);
}

#[tokio::test]
async fn wait_merged_sees_inclusion() {
    let (fake, c) = setup(World::new(2)).await;
    fake.world().seal();
    let p = c.publish(b"alice", b"k1").await.unwrap();
    // Epochs are sealed in the background while the client polls.
    let sealer = {
        let fake = fake.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                fake.world().seal();
            }
        })
    };
    let ev = c.wait_merged(b"alice", &p.smt, POLL).await.unwrap();
    sealer.await.unwrap();
    assert!(ev.epoch() >= 2);
    assert!(ev.history.contains(1, &p.leaf_hash));
    assert!(ev.history.head.head.timestamp_ms <= p.merge_deadline_ms());
    // The SMT is for alice: asking about bob is a caller error.
    let err = c.wait_merged(b"bob", &p.smt, POLL).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn wait_merged_finds_inclusion_before_the_deadline_after_the_fact() {
    let (fake, c) = setup(World::new(0)).await;
    let p = c.publish(b"alice", b"k1").await.unwrap();
    {
        let mut w = fake.world();
        while w.clock_ms <= p.merge_deadline_ms() + 5_000 {
            w.seal();
        }
    }
    let ev = c.wait_merged(b"alice", &p.smt, POLL).await.unwrap();
    assert!(ev.history.head.head.timestamp_ms <= p.merge_deadline_ms());
}

#[tokio::test]
async fn wait_merged_proves_a_broken_promise() {
    for progressive in [false, true] {
        let (fake, c) = setup(World::new(1)).await;
        c.publish(b"alice", b"k1").await.unwrap();
        fake.world().seal();
        // The service signs an SMT and drops the mutation.
        let dropped = fake.world().publish_dropped(b"alice", b"k2");
        let smt = SignedMutationTimestamp::decode(&dropped.smt).unwrap();
        let deadline = smt.smt.merge_deadline_ms;
        let sealer = {
            let fake = fake.clone();
            tokio::spawn(async move {
                loop {
                    if progressive {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let mut w = fake.world();
                    if w.clock_ms > deadline + 3_000 {
                        break;
                    }
                    w.seal();
                }
            })
        };
        if !progressive {
            sealer.await.unwrap();
        }
        match c.wait_merged(b"alice", &smt, POLL).await {
            Err(ClientError::BrokenPromise(ev)) => {
                ev.verify(c.config()).unwrap();
                let before = ev.last_before_deadline.as_ref().unwrap();
                assert!(before.head.head.timestamp_ms <= deadline);
                assert!(ev.first_after_deadline.head.timestamp_ms > deadline);
            }
            r => panic!("expected a broken promise, got {r:?}"),
        }
    }
}

#[tokio::test]
async fn monitor_raises_unexpected_changes() {
    let (fake, c) = setup(World::new(1)).await;
    let p1 = c.publish(b"alice", b"k1").await.unwrap();
    let mut state = MonitorState::new();
    state.expect_publish(&p1);
    let mut m = Monitor::new(c.clone(), state);
    fake.world().seal();
    let ev = m.poll().await.unwrap();
    assert_eq!(
        ev,
        [MonitorEvent::Confirmed {
            label: b"alice".to_vec(),
            version: 1,
            epoch: 1
        }]
    );
    assert!(
        m.poll().await.unwrap().is_empty(),
        "no new epoch, no events"
    );

    // Someone else publishes under alice's label.
    let evil = fake.world().publish(b"alice", b"attacker-key");
    fake.world().seal();
    let ev = m.poll().await.unwrap();
    match ev.as_slice() {
        [
            MonitorEvent::UnexpectedChange {
                label,
                version: 2,
                leaf_hash,
                epoch: 2,
            },
        ] => {
            assert_eq!(label, b"alice");
            assert_eq!(leaf_hash.to_vec(), evil.leaf_hash);
        }
        other => panic!("expected an alarm, got {other:?}"),
    }
    assert!(ev[0].is_alarm());
    // Raised once.
    fake.world().seal();
    assert!(m.poll().await.unwrap().is_empty());
    // The owner's own next version is fine.
    let p3 = c.publish(b"alice", b"k3").await.unwrap();
    m.state_mut().expect_publish(&p3);
    fake.world().seal();
    assert_eq!(
        m.poll().await.unwrap(),
        [MonitorEvent::Confirmed {
            label: b"alice".to_vec(),
            version: 3,
            epoch: 4
        }]
    );
}

#[tokio::test]
async fn auditor_follows_and_submits_cosignatures() {
    let (fake, c) = setup(World::new(2)).await;
    for i in 0..4 {
        c.publish(format!("u{i}").as_bytes(), b"v").await.unwrap();
        fake.world().seal();
    }
    let mut a = Auditor::new(c.config().clone(), SigningKeyPair::from_seed(&[5; 32]));
    let reports = a.follow(&c, true, Some(3)).await.unwrap();
    assert_eq!(reports.len(), 3);
    let reports = a.follow(&c, true, None).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports.iter().all(|r| r.accepted && !r.has_alarm()));
    assert!(
        a.follow(&c, true, None).await.unwrap().is_empty(),
        "caught up"
    );
    for e in 1..=4 {
        let cos = c.cosignatures(e).await.unwrap();
        assert_eq!(cos.len(), 1);
        assert_eq!(cos[0].auditor_key, a.public_key());
    }
}
