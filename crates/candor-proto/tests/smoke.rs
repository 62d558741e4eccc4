//! Codegen smoke test: a dummy `KeyTransparency` server (GetConfig and
//! WatchEpochs only) plus tonic-health and tonic-reflection on 127.0.0.1:0,
//! called through the generated client.

use std::net::SocketAddr;

use candor_proto::candor::v1::{
    self as pb,
    key_transparency_client::KeyTransparencyClient,
    key_transparency_server::{KeyTransparency, KeyTransparencyServer},
};
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const NAMESPACE: &str = "smoke-test";

struct Dummy;

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl KeyTransparency for Dummy {
    async fn publish(&self, _: Request<pb::PublishRequest>) -> Res<pb::PublishResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn publish_batch(
        &self,
        _: Request<pb::PublishBatchRequest>,
    ) -> Res<pb::PublishBatchResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn lookup(&self, _: Request<pb::LookupRequest>) -> Res<pb::LookupResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn history(&self, _: Request<pb::HistoryRequest>) -> Res<pb::HistoryResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Res<pb::GetConfigResponse> {
        Ok(Response::new(pb::GetConfigResponse {
            namespace: NAMESPACE.into(),
            suite: "candor-v1".into(),
            epoch_interval_ms: 1_000,
            max_merge_delay_ms: 10_000,
            shard_bits: 4,
            config_digest: vec![7; 32],
            limits: Some(pb::ServiceLimits {
                max_batch_items: 1_000,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
    async fn get_epoch(&self, _: Request<pb::GetEpochRequest>) -> Res<pb::SignedHeadResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn get_latest_epoch(
        &self,
        _: Request<pb::GetLatestEpochRequest>,
    ) -> Res<pb::SignedHeadResponse> {
        Err(Status::unimplemented("dummy"))
    }

    type WatchEpochsStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::SignedHeadResponse, Status>> + Send>>;

    /// Three fake heads from `from_epoch` (default 1), then the stream ends.
    async fn watch_epochs(
        &self,
        req: Request<pb::WatchEpochsRequest>,
    ) -> Res<Self::WatchEpochsStream> {
        let from = req.into_inner().from_epoch.unwrap_or(1);
        let heads = (from..from + 3).map(|epoch| {
            Ok(pb::SignedHeadResponse {
                epoch,
                signed_head: epoch.to_be_bytes().to_vec(),
                timestamp_ms: 0,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(heads))))
    }
    async fn consistency(
        &self,
        _: Request<pb::ConsistencyRequest>,
    ) -> Res<pb::ConsistencyResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn audit(&self, _: Request<pb::AuditRequest>) -> Res<pb::AuditResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn submit_cosignature(&self, _: Request<pb::CosignRequest>) -> Res<pb::CosignResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn get_cosignatures(
        &self,
        _: Request<pb::GetCosignaturesRequest>,
    ) -> Res<pb::GetCosignaturesResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn erase(&self, _: Request<pb::EraseRequest>) -> Res<pb::EraseResponse> {
        Err(Status::unimplemented("dummy"))
    }
    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Res<pb::GetCheckpointResponse> {
        Err(Status::unimplemented("dummy"))
    }
}

/// Serves the dummy plus health and reflection; returns the address and a
/// sender that shuts the server down.
async fn start_server() -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<KeyTransparencyServer<Dummy>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(candor_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(KeyTransparencyServer::new(Dummy))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
            .unwrap();
    });
    (addr, stop_tx, server)
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn generated_client_talks_to_generated_server() {
    let (addr, stop, server) = start_server().await;
    let ch = channel(addr).await;
    let mut client = KeyTransparencyClient::new(ch.clone());

    // Unary RPC with a nested message.
    let cfg = client
        .get_config(pb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.namespace, NAMESPACE);
    assert_eq!(cfg.suite, "candor-v1");
    assert_eq!(cfg.shard_bits, 4);
    assert_eq!(cfg.config_digest, vec![7; 32]);
    assert_eq!(cfg.limits.unwrap().max_batch_items, 1_000);

    // Server streaming, and proto3 `optional` arriving as `Some`.
    let epochs: Vec<u64> = client
        .watch_epochs(pb::WatchEpochsRequest {
            from_epoch: Some(5),
        })
        .await
        .unwrap()
        .into_inner()
        .map(|h| h.unwrap().epoch)
        .collect()
        .await;
    assert_eq!(epochs, [5, 6, 7]);

    // A status crosses the wire with its code.
    let err = client
        .lookup(pb::LookupRequest {
            label: b"alice".to_vec(),
            epoch: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // Health: the service reports SERVING under its full name.
    let mut health = HealthClient::new(ch.clone());
    let status = health
        .check(HealthCheckRequest {
            service: candor_proto::KEY_TRANSPARENCY_SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    // Reflection lists the service (what grpcurl relies on).
    let mut reflection = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response: {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names
            .iter()
            .any(|n| n == candor_proto::KEY_TRANSPARENCY_SERVICE),
        "reflection lists {names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n == candor_proto::RAFT_TRANSPORT_SERVICE)
    );

    stop.send(()).unwrap();
    server.await.unwrap();
}
