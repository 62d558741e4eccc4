//! Serving the API with health and reflection, over plaintext HTTP/2 or TLS.

use std::future::Future;

use candor_proto::candor::v1::key_transparency_server::KeyTransparencyServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::service::KtService;

/// Serves `service` on `listener` with `grpc.health.v1` and reflection
/// until `shutdown` completes, then drains: open `WatchEpochs` streams end
/// with UNAVAILABLE, in-flight calls finish.
///
/// Health: both the empty service name and `candor.v1.KeyTransparency`
/// report NOT_SERVING until the first epoch is signed, then SERVING, and
/// NOT_SERVING again once shutdown begins.
pub async fn serve(
    listener: TcpListener,
    service: KtService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_tls(listener, service, None, shutdown).await
}

/// As [`serve`], over TLS when `tls` is set (with a client CA root in it, clients
/// must present a certificate issued by that CA: the handshake fails otherwise).
/// Invalid TLS settings fail before anything is served.
pub async fn serve_tls(
    listener: TcpListener,
    service: KtService,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    let kt = candor_proto::KEY_TRANSPARENCY_SERVICE;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(kt, ServingStatus::NotServing)
        .await;

    let mut heads = service.heads();
    let r = reporter.clone();
    let health_task = tokio::spawn(async move {
        if heads.wait_for(|h| h.is_some()).await.is_ok() {
            r.set_service_status("", ServingStatus::Serving).await;
            r.set_service_status(kt, ServingStatus::Serving).await;
            tracing::info!("first epoch signed: health SERVING");
        }
    });

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(candor_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");

    let svc = service.clone();
    let drain = async move {
        shutdown.await;
        tracing::info!("shutting down: draining connections");
        health_task.abort();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status(kt, ServingStatus::NotServing)
            .await;
        svc.begin_shutdown();
    };

    let server: KeyTransparencyServer<KtService> = service.into_server();
    // Without TCP_NODELAY small responses wait for the peer's delayed ACK
    // (~40 ms per call); keepalive finds dead clients of long streams.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)));
    builder
        .add_service(health)
        .add_service(reflection)
        .add_service(candor_telemetry::traced(server))
        .serve_with_incoming_shutdown(incoming, drain)
        .await
}
