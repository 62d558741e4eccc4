//! Serving the API with health and reflection, over plaintext HTTP/2 or TLS.

use std::future::Future;

use std::sync::Arc;
use std::time::Duration;

use candor_proto::candor::v1::key_transparency_server::KeyTransparencyServer;
use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::guard::{GuardLayer, GuardStats, WriteAuth, guarded_incoming};

use crate::limits::Limits;
use crate::service::KtService;

type GuardedRouter = Router<tower_layer::Stack<GuardLayer, tower_layer::Identity>>;

/// The public port's server: the admission guards of [`crate::guard`], HTTP/2
/// keepalive (a dead or silent peer is found), a per-connection stream cap, TLS if
/// given, health and reflection (v1 and v1alpha, listing only what this port serves).
pub(crate) fn public_router(
    limits: &Limits,
    auth: WriteAuth,
    stats: Arc<GuardStats>,
    tls: Option<ServerTlsConfig>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> Result<GuardedRouter, tonic::transport::Error> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(candor_proto::PUBLIC_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(candor_proto::KEY_TRANSPARENCY_SERVICE)
            .with_service_name("grpc.health.v1.Health")
    };
    let v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    Ok(builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(GuardLayer::new(limits, auth, stats))
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha))
}

/// Serves `service` on `listener` with `grpc.health.v1` and reflection
/// until `shutdown` completes, then drains: open `WatchEpochs` streams end
/// with UNAVAILABLE, in-flight calls finish.
///
/// Health: both the empty service name and `candor.v1.KeyTransparency`
/// report NOT_SERVING until the first epoch is signed, then SERVING while the
/// backend's [`crate::Currency`] check passes (NOT_SERVING while it fails),
/// and NOT_SERVING again once shutdown begins.
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
    let svc = service.clone();
    let health_task = tokio::spawn(async move {
        if heads.wait_for(|h| h.is_some()).await.is_err() {
            return;
        }
        tracing::info!("first epoch signed");
        // Then follow the member's currency: a member cut off from its quorum
        // stops advertising itself, so balancers route around it.
        let every = (svc.epoch_interval() / 4).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(1),
        );
        let mut serving = None;
        loop {
            let now = svc.current();
            if serving != Some(now.is_ok()) {
                let status = match &now {
                    Ok(()) => {
                        tracing::info!("health SERVING");
                        ServingStatus::Serving
                    }
                    Err(why) => {
                        tracing::warn!(%why, "health NOT_SERVING: not current");
                        ServingStatus::NotServing
                    }
                };
                r.set_service_status("", status).await;
                r.set_service_status(kt, status).await;
                serving = Some(now.is_ok());
            }
            tokio::time::sleep(every).await;
        }
    });

    let limits = service.limits().clone();
    let auth = service.write_auth();
    let stats = service.guard_stats();
    let router = public_router(&limits, auth, stats.clone(), tls, health)?;

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
    // TCP_NODELAY (small responses would wait for the peer's delayed ACK) and TCP
    // keepalive are set per accepted connection by the guard.
    let incoming = guarded_incoming(listener, &limits, stats);
    router
        .add_service(candor_telemetry::traced(server))
        .serve_with_incoming_shutdown(incoming, drain)
        .await
}
