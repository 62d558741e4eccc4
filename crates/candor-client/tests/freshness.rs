//! The freshness rule (docs/protocol.md §9.4) and paged history (§6.4.2)
//! through the async Client against the fake gRPC server.

mod common;

use std::sync::atomic::Ordering;

use candor_client::{Client, ClientError, ClientOptions, Freshness, PinnedConfig, StaleHead};
use common::World;
use common::server::{Fake, serve};

async fn client_for(fake: &std::sync::Arc<Fake>, pin: PinnedConfig) -> Client {
    let uri = serve(fake.clone()).await;
    Client::connect(uri, pin).await.expect("connect")
}

#[tokio::test]
async fn an_older_head_served_as_latest_is_refused() {
    let mut w = World::new(2);
    let pin = PinnedConfig::Digest(w.config.digest());
    w.publish(b"alice", b"k1");
    w.seal();
    w.publish(b"alice", b"k2");
    w.seal();
    w.seal();
    let fake = Fake::new(w);
    let client = client_for(&fake, pin).await;
    let v = client.lookup(b"alice", None).await.unwrap();
    assert_eq!((v.epoch(), v.version()), (3, Some(2)));

    // The service (or a proxy) now answers "latest" with epoch 1.
    *fake.replay_latest.lock().unwrap() = Some(1);
    for r in [
        client.lookup(b"alice", None).await.map(drop),
        client.latest_head().await.map(drop),
        client.history(b"alice").await.map(drop),
    ] {
        match r {
            Err(
                e @ ClientError::StaleHead(StaleHead::OlderThanSeen {
                    served_epoch: 1,
                    seen_epoch: 3,
                }),
            ) => assert!(e.is_security_event()),
            other => panic!("expected a stale head, got {other:?}"),
        }
    }
    // An explicit epoch is not "the latest": still answered.
    assert_eq!(client.lookup(b"alice", Some(1)).await.unwrap().epoch(), 1);
    // Back to honest.
    *fake.replay_latest.lock().unwrap() = None;
    assert_eq!(client.lookup(b"alice", None).await.unwrap().epoch(), 3);
}

#[tokio::test]
async fn a_head_older_than_the_maximum_age_is_refused() {
    let mut w = World::new(2);
    let pin = PinnedConfig::Digest(w.config.digest());
    // The service's clock is an hour behind: its newest head is an hour old
    // (a frozen or replayed deployment), far beyond 10 intervals + 60 s.
    w.clock_ms -= 3_600_000;
    w.publish(b"alice", b"k1");
    w.seal();
    let fake = Fake::new(w);
    let client = client_for(&fake, pin.clone()).await;
    match client.lookup(b"alice", None).await {
        Err(ClientError::StaleHead(StaleHead::TooOld { max_age_ms, .. })) => {
            assert_eq!(max_age_ms, 10 * common::EPOCH_MS + 60_000)
        }
        other => panic!("expected a stale head, got {other:?}"),
    }
    // A caller may widen the age explicitly.
    let relaxed = client_for(&fake, pin).await.with_options(ClientOptions {
        freshness: Freshness {
            max_head_age_ms: Some(7_200_000),
            ..Freshness::default()
        },
        ..ClientOptions::default()
    });
    assert!(relaxed.lookup(b"alice", None).await.is_ok());
}

#[tokio::test]
async fn a_post_dated_head_is_refused() {
    let mut w = World::new(2);
    let pin = PinnedConfig::Digest(w.config.digest());
    w.clock_ms += 3_600_000;
    w.seal();
    let fake = Fake::new(w);
    let client = client_for(&fake, pin).await;
    assert!(matches!(
        client.latest_head().await,
        Err(ClientError::StaleHead(StaleHead::FromTheFuture { .. }))
    ));
}

#[tokio::test]
async fn history_is_fetched_page_by_page() {
    let mut w = World::new(2);
    let pin = PinnedConfig::Digest(w.config.digest());
    for k in 0..7 {
        w.publish(b"alice", format!("key {k}").as_bytes());
    }
    w.publish(b"bob", b"b1");
    w.seal();
    let full = w.history_response(b"alice", None);
    let fake = Fake::new(w);
    fake.page_versions.store(3, Ordering::SeqCst);
    let client = client_for(&fake, pin.clone()).await;
    let h = client.history(b"alice").await.unwrap();
    assert_eq!(h.latest_version(), 7);
    let values: Vec<_> = h
        .versions()
        .iter()
        .map(|v| String::from_utf8(v.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        values,
        (0..7).map(|k| format!("key {k}")).collect::<Vec<_>>()
    );
    // The same result as the one-proof history.
    let one = candor_client::verify::history(client.config(), b"alice", None, &full).unwrap();
    assert_eq!(one.history, h.history);
    // One version a page, and an absent label.
    let h1 = client.history_paged(b"alice", None, 1).await.unwrap();
    assert_eq!(h1.history, h.history);
    assert_eq!(client.history(b"carol").await.unwrap().latest_version(), 0);
}
