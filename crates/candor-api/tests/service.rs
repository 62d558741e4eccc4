//! The service in-process over the LocalNode test backend: everything a
//! verifying client receives verifies, and every bad input gets the status
//! the proto documents and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use candor_api::testing::LocalNode;
use candor_api::{ApiOptions, KtService, Limits, Tenant, hash_token, serve};
use candor_client::{Auditor, Client, PinnedConfig, verify};
use candor_core::signed::{Cosignature, SigningKeyPair};
use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "test-token-0123456789";

struct Harness {
    node: Arc<LocalNode>,
    url: String,
    auditor: SigningKeyPair,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Harness {
        let (node, vrf) = LocalNode::in_memory(4);
        let auditor = SigningKeyPair::generate();
        let options = ApiOptions {
            limits: Limits {
                max_batch_items: 8,
                ..Limits::default()
            },
            tenants: vec![Tenant {
                name: "acme".into(),
                token_hash: hash_token(TOKEN),
            }],
            auditor_keys: vec![auditor.public_key()],
            ..ApiOptions::default()
        };
        let svc = KtService::new(node.backend(), vrf, options).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(listener, svc, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Harness {
            node,
            url,
            auditor,
            stop: Some(stop),
            server,
        }
    }

    async fn raw(&self) -> KeyTransparencyClient<Channel> {
        KeyTransparencyClient::connect(self.url.clone())
            .await
            .unwrap()
    }

    async fn client(&self) -> Client {
        Client::connect(
            self.url.clone(),
            PinnedConfig::from(self.node.config().clone()),
        )
        .await
        .unwrap()
        .with_token(TOKEN)
        .unwrap()
    }

    async fn health(&self, service: &str) -> ServingStatus {
        let ch = Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut h = HealthClient::new(ch);
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        r.into_inner().status()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap();
    }
}

fn authed<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn item(label: &[u8], value: &[u8]) -> pb::PublishRequest {
    pb::PublishRequest {
        label: label.to_vec(),
        value: value.to_vec(),
        idempotency_key: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_lookup_history_audit_consistency_verify() {
    let h = Harness::start().await;
    assert_eq!(h.health("").await, ServingStatus::NotServing);
    assert_eq!(
        h.health(candor_proto::KEY_TRANSPARENCY_SERVICE).await,
        ServingStatus::NotServing
    );

    let c = h.client().await;
    // No epoch yet: FAILED_PRECONDITION for latest reads.
    let e = c.lookup(b"alice", None).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));

    let p1 = c.publish(b"alice", b"key-1").await.unwrap();
    assert_eq!(p1.version, 1);
    let e1 = h.node.seal_epoch().unwrap();
    // Health flips once the first epoch is signed.
    let mut serving = false;
    for _ in 0..200 {
        if h.health("").await == ServingStatus::Serving {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(serving);

    let p2 = c.publish(b"alice", b"key-2").await.unwrap();
    let p3 = c.publish(b"alice", b"key-3").await.unwrap();
    let pb_ = c.publish(b"bob", b"bob-key").await.unwrap();
    assert_eq!((p2.version, p3.version, pb_.version), (2, 3, 1));
    let e2 = h.node.seal_epoch().unwrap();
    assert_eq!(e2.head.epoch, e1.head.epoch + 1);

    // Lookup: member and absent, at latest and at a given epoch.
    let l = c.lookup(b"alice", None).await.unwrap();
    assert_eq!(l.version(), Some(3));
    assert_eq!(l.value(), Some(&b"key-3"[..]));
    let l1 = c.lookup(b"alice", Some(1)).await.unwrap();
    assert_eq!(l1.value(), Some(&b"key-1"[..]));
    let absent = c.lookup(b"carol", None).await.unwrap();
    assert!(!absent.is_found());

    // History chains all three versions; SMTs are honoured.
    let hist = c.history(b"alice").await.unwrap();
    assert_eq!(hist.latest_version(), 3);
    for p in [&p1, &p2, &p3] {
        assert!(hist.contains(p.version, &p.leaf_hash));
    }
    let merged = c
        .wait_merged(b"alice", &p2.smt, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(merged.epoch(), 2);

    // Audit: the auditor verifies both transitions (epoch 2 has the
    // intermediate version of alice) and cosigns.
    let mut auditor = Auditor::new(h.node.config().clone(), SigningKeyPair::from_seed(&[0; 32]));
    let reports = auditor.follow(&c, false, None).await.unwrap();
    assert_eq!(reports.len(), 2);
    assert!(
        reports.iter().all(|r| r.accepted && !r.has_alarm()),
        "{reports:?}"
    );
    let a2 = c.audit_response(2).await.unwrap();
    let v2 = verify::audit(h.node.config(), 2, &a2).unwrap();
    assert_eq!(a2.changed_labels, 2);
    let alice_change = v2.changes.iter().find(|ch| ch.index == p1.index).unwrap();
    assert_eq!(alice_change.new_leaves.len(), 2);

    // Consistency (head extension) from 1 to 2 and 2 to 2.
    c.consistency_proof(1, 2, &e1, &e2).await.unwrap();
    c.consistency_proof(2, 2, &e2, &e2).await.unwrap();

    // Cosignatures: accepted key stored once; other keys refused.
    let cos = Cosignature::create(&e2.head, &h.auditor, 42);
    c.submit_cosignature(&cos).await.unwrap();
    c.submit_cosignature(&cos).await.unwrap();
    assert_eq!(c.cosignatures(2).await.unwrap(), vec![cos]);
    let stranger = Cosignature::create(&e2.head, &SigningKeyPair::generate(), 42);
    let e = c.submit_cosignature(&stranger).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied));
    let wrong_head = Cosignature::create(&e1.head, &h.auditor, 42);
    let mut bad = wrong_head.clone();
    bad.epoch = 2;
    let mut raw = h.raw().await;
    let s = raw
        .submit_cosignature(pb::CosignRequest {
            cosignature: bad.encode(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = raw
        .submit_cosignature(pb::CosignRequest {
            cosignature: vec![1, 2, 3],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let future = Cosignature::create(
        &candor_core::signed::EpochHead {
            epoch: 9,
            log_size: 9,
            ..e2.head.clone()
        },
        &h.auditor,
        1,
    );
    let s = raw
        .submit_cosignature(pb::CosignRequest {
            cosignature: future.encode(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    // Batch: all items verified, in order.
    let batch = c
        .publish_batch(&[
            candor_client::PublishItem::new(b"dave".to_vec(), b"d".to_vec()),
            candor_client::PublishItem::new(b"erin".to_vec(), b"e".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0].label, b"dave");

    // Idempotency: same key, same item → same SMT; different value → ALREADY_EXISTS.
    let k1 = c.publish_with_key(b"frank", b"v", "key-1").await.unwrap();
    let k2 = c.publish_with_key(b"frank", b"v", "key-1").await.unwrap();
    assert_eq!(k1.smt, k2.smt);
    let e = c
        .publish_with_key(b"frank", b"other", "key-1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::AlreadyExists));

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_documented_statuses_and_change_nothing() {
    let h = Harness::start().await;
    let mut raw = h.raw().await;
    let ok = |r: pb::PublishRequest| authed(r, Some(TOKEN));

    // Nothing signed yet.
    let s = raw
        .get_latest_epoch(pb::GetLatestEpochRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition);
    let s = raw
        .lookup(pb::LookupRequest {
            label: b"x".to_vec(),
            epoch: None,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition);

    raw.publish(ok(item(b"alice", b"v1"))).await.unwrap();
    let e1 = h.node.seal_epoch().unwrap();
    let before = h.node.epochs().latest().unwrap().unwrap();
    let leaves_before = h.node.seal_epoch().unwrap().head.map_root;
    assert_eq!(leaves_before, before.head.map_root);

    let cases: Vec<(&str, tonic::Request<pb::PublishRequest>, Code)> = vec![
        ("empty label", ok(item(b"", b"v")), Code::InvalidArgument),
        (
            "long label",
            ok(item(&vec![b'a'; 1025], b"v")),
            Code::InvalidArgument,
        ),
        (
            "long value",
            ok(item(b"bob", &vec![0; 64 * 1024 + 1])),
            Code::InvalidArgument,
        ),
        (
            "long key",
            ok(pb::PublishRequest {
                label: b"bob".to_vec(),
                value: vec![],
                idempotency_key: "k".repeat(129),
            }),
            Code::InvalidArgument,
        ),
        (
            "missing token",
            authed(item(b"bob", b"v"), None),
            Code::Unauthenticated,
        ),
        (
            "wrong token",
            authed(item(b"bob", b"v"), Some("nope")),
            Code::Unauthenticated,
        ),
        (
            "not bearer",
            {
                let mut r = tonic::Request::new(item(b"bob", b"v"));
                r.metadata_mut()
                    .insert("authorization", format!("Basic {TOKEN}").parse().unwrap());
                r
            },
            Code::Unauthenticated,
        ),
    ];
    for (what, req, code) in cases {
        let s = raw.publish(req).await.expect_err(what);
        assert_eq!(s.code(), code, "{what}: {}", s.message());
        assert!(s.metadata().get("x-request-id").is_some());
    }
    // The maximal sizes are accepted.
    raw.publish(ok(item(&vec![b'm'; 1024], &vec![7; 64 * 1024])))
        .await
        .unwrap();

    let batch =
        |items: Vec<pb::PublishRequest>| authed(pb::PublishBatchRequest { items }, Some(TOKEN));
    let many: Vec<_> = (0..9)
        .map(|i| item(format!("l{i}").as_bytes(), b"v"))
        .collect();
    let dup_key = vec![
        pb::PublishRequest {
            label: b"p".to_vec(),
            value: vec![],
            idempotency_key: "same".into(),
        },
        pb::PublishRequest {
            label: b"q".to_vec(),
            value: vec![],
            idempotency_key: "same".into(),
        },
    ];
    let bcases: Vec<(&str, tonic::Request<pb::PublishBatchRequest>, Code)> = vec![
        ("empty batch", batch(vec![]), Code::InvalidArgument),
        ("too large", batch(many), Code::InvalidArgument),
        (
            "dup label",
            batch(vec![item(b"p", b"1"), item(b"p", b"2")]),
            Code::InvalidArgument,
        ),
        ("dup key", batch(dup_key), Code::InvalidArgument),
        (
            "bad item",
            batch(vec![item(b"p", b"1"), item(b"", b"2")]),
            Code::InvalidArgument,
        ),
        (
            "no token",
            authed(
                pb::PublishBatchRequest {
                    items: vec![item(b"p", b"1")],
                },
                None,
            ),
            Code::Unauthenticated,
        ),
    ];
    for (what, req, code) in bcases {
        let s = raw.publish_batch(req).await.expect_err(what);
        assert_eq!(s.code(), code, "{what}: {}", s.message());
    }
    let s = raw
        .publish_batch(batch(vec![item(b"p", b"1"), item(b"", b"2")]))
        .await
        .unwrap_err();
    assert!(s.message().contains("item 1"), "{}", s.message());

    // Reads.
    let s = raw
        .lookup(pb::LookupRequest {
            label: vec![],
            epoch: None,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = raw
        .lookup(pb::LookupRequest {
            label: b"a".to_vec(),
            epoch: Some(99),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = raw
        .lookup(pb::LookupRequest {
            label: b"a".to_vec(),
            epoch: Some(0),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = raw
        .history(pb::HistoryRequest {
            label: vec![b'a'; 2000],
            epoch: None,
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = raw
        .get_epoch(pb::GetEpochRequest { epoch: 99 })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = raw.audit(pb::AuditRequest { epoch: 0 }).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = raw
        .consistency(pb::ConsistencyRequest {
            from_epoch: 2,
            to_epoch: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = raw
        .consistency(pb::ConsistencyRequest {
            from_epoch: 1,
            to_epoch: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = raw
        .consistency(pb::ConsistencyRequest {
            from_epoch: 0,
            to_epoch: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = raw
        .get_cosignatures(pb::GetCosignaturesRequest { epoch: 99 })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    // Nothing but the two accepted publishes changed: the next epoch holds
    // alice (v1) and the maximal label only.
    let e = h.node.seal_epoch().unwrap();
    let a = raw
        .audit(pb::AuditRequest {
            epoch: e.head.epoch,
        })
        .await
        .unwrap()
        .into_inner();
    let v = verify::audit(h.node.config(), e.head.epoch, &a).unwrap();
    assert_eq!(v.changes.len(), 1);
    let l = raw
        .lookup(pb::LookupRequest {
            label: b"alice".to_vec(),
            epoch: None,
        })
        .await
        .unwrap()
        .into_inner();
    let vl = verify::lookup(h.node.config(), b"alice", None, &l).unwrap();
    assert_eq!(vl.version(), Some(1));
    for label in [&b"bob"[..], b"p", b"q", b"l0"] {
        let l = raw
            .lookup(pb::LookupRequest {
                label: label.to_vec(),
                epoch: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            !verify::lookup(h.node.config(), label, None, &l)
                .unwrap()
                .is_found()
        );
    }
    let _ = e1;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_heads_in_order_and_closes_on_shutdown() {
    let h = Harness::start().await;
    let mut raw = h.raw().await;
    h.node.seal_epoch().unwrap();
    h.node.seal_epoch().unwrap();
    let mut s = raw
        .watch_epochs(pb::WatchEpochsRequest {
            from_epoch: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    let config = h.node.config().clone();
    for want in 1..=2u64 {
        let m = s.message().await.unwrap().unwrap();
        assert_eq!(
            verify::head_at(&config, &m.signed_head, Some(want))
                .unwrap()
                .head
                .epoch,
            want
        );
    }
    // A later epoch is delivered as it is signed.
    let node = h.node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        node.seal_epoch().unwrap();
    });
    let m = s.message().await.unwrap().unwrap();
    assert_eq!(m.epoch, 3);
    // Unset from_epoch starts at the latest.
    let mut latest = raw
        .watch_epochs(pb::WatchEpochsRequest { from_epoch: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.message().await.unwrap().unwrap().epoch, 3);
    // Shutdown ends the open stream with UNAVAILABLE, and the server stops.
    h.stop().await;
    let end = s.message().await;
    match end {
        Err(st) => assert!(
            matches!(
                st.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            ),
            "{st:?}"
        ),
        Ok(None) => {}
        Ok(Some(m)) => panic!("unexpected head {}", m.epoch),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let h = Harness::start().await;
    let ch = Channel::from_shared(h.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut r = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        candor_proto::KEY_TRANSPARENCY_SERVICE,
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    h.stop().await;
}
