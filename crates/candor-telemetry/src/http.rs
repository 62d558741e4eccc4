//! The metrics listener (`--metrics-listen ADDR`): `/metrics` in the
//! Prometheus text format (the same instruments OTLP exports), `/healthz`
//! (the process answers) and `/readyz` (the readiness check passes: it holds a
//! signed head and every local Raft group has a leader) for Kubernetes probes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Error;

/// Readiness: `Ok(())` when ready, else why not (the body of the 503).
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    registry: Option<prometheus::Registry>,
    ready: ReadyCheck,
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    match &s.registry {
        Some(reg) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::export::render(reg),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics are not exported by this process\n".to_string(),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match (s.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// The router (exposed for tests that drive it without a socket).
pub fn router(registry: Option<prometheus::Registry>, ready: ReadyCheck) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, ready })
}

/// Binds `addr` and serves until the task is aborted. Returns the bound address
/// (port 0 picks one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    registry: Option<prometheus::Registry>,
    ready: ReadyCheck,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let app = router(registry, ready);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics listener stopped: {e}");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (code, body)
    }

    #[tokio::test]
    async fn endpoints() {
        use opentelemetry::metrics::MeterProvider as _;
        let reg = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(reg.clone())
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(exporter)
            .build();
        let m = crate::Metrics::new(&provider.meter(crate::METER_NAME));
        m.record_epoch_signed(1);
        m.record_epoch_signed(2);

        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        let check: ReadyCheck = Arc::new(move || {
            if r.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("no signed head yet".into())
            }
        });
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), Some(reg), check)
            .await
            .unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.contains("no signed head yet"));
        ready.store(true, Ordering::SeqCst);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("candor_epoch_signed_total"), "{body}");
        assert!(body.contains(" 2\n") || body.contains(" 2\r\n"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        task.abort();

        // Without a registry /metrics says so; the probes still answer.
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), None, Arc::new(|| Ok(())))
            .await
            .unwrap();
        assert_eq!(get(addr, "/metrics").await.0, 404);
        assert_eq!(get(addr, "/healthz").await.0, 200);
        task.abort();
    }

    #[tokio::test]
    async fn bind_error_is_precise() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let e = serve(addr, None, Arc::new(|| Ok(()))).await.unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
