//! Telemetry for `candor dev` and `candor serve`: providers and logs
//! ([`start`]), the metrics/probe listener ([`serve_metrics`]) and the
//! collection-time sources of a running node ([`register_node`]).

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use candor_node::DevNode;
use candor_telemetry::{RaftGroupSample, TelemetryConfig, http::ReadyCheck};

use crate::config::{Config, LogFormat, OtlpProtocol};

static TELEMETRY: Mutex<Option<candor_telemetry::Telemetry>> = Mutex::new(None);

/// Installs the providers and the log subscriber. Call inside the runtime
/// (the OTLP/gRPC client needs it), before the node starts. `RUST_LOG` wins
/// over `log`.
pub fn start(config: &Config, role: &str, instance: String) -> anyhow::Result<()> {
    let log_filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| config.log.clone());
    let t = &config.telemetry;
    let cfg = TelemetryConfig {
        log_filter,
        log_format: match t.log_format {
            LogFormat::Text => candor_telemetry::LogFormat::Text,
            LogFormat::Json => candor_telemetry::LogFormat::Json,
        },
        otlp_endpoint: t.otlp_endpoint.clone(),
        otlp_protocol: t.otlp_protocol.map(|p| match p {
            OtlpProtocol::Grpc => candor_telemetry::OtlpProtocol::Grpc,
            OtlpProtocol::HttpProtobuf => candor_telemetry::OtlpProtocol::HttpProtobuf,
        }),
        prometheus: t.metrics_listen.is_some(),
        service_name: None,
        instance_id: Some(instance),
        namespace: Some(config.namespace.clone()),
        role: Some(role.to_string()),
    };
    let telemetry = candor_telemetry::init(&cfg).context("telemetry")?;
    *TELEMETRY.lock().unwrap_or_else(|p| p.into_inner()) = Some(telemetry);
    Ok(())
}

/// Flushes queued spans and metrics (bounded by the exporters' timeouts).
pub fn shutdown() {
    let t = TELEMETRY.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = t {
        t.shutdown();
    }
}

/// Starts the `/metrics`, `/healthz`, `/readyz` listener when
/// `telemetry.metrics_listen` is set.
pub async fn serve_metrics(config: &Config, ready: ReadyCheck) -> anyhow::Result<()> {
    let Some(addr) = config.telemetry.metrics_listen else {
        return Ok(());
    };
    let registry = TELEMETRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|t| t.registry());
    let (bound, _task) = candor_telemetry::http::serve(addr, registry, ready)
        .await
        .context("telemetry.metrics_listen")?;
    tracing::info!(listen = %bound, "metrics, /healthz and /readyz served");
    Ok(())
}

/// The label of a Raft group: `sequencer`, `shard-N`, or `gN`.
fn group_label(g: candor_raft::GroupId) -> String {
    candor_telemetry::group_label(g.0)
}

fn sample(m: &candor_raft::GroupMetrics) -> RaftGroupSample {
    let last = m.last_log_index.unwrap_or(0);
    RaftGroupSample {
        is_leader: m.leader == Some(m.node),
        term: m.current_term,
        last_log_index: last,
        committed_index: m.committed.as_ref().map_or(0, |l| l.index()),
        applied_index: m.last_applied.as_ref().map_or(0, |l| l.index()),
        follower_lag: m
            .replication
            .iter()
            .filter(|(id, _)| **id != m.node)
            .map(|(id, matched)| (id.to_string(), last.saturating_sub(*matched)))
            .collect(),
    }
}

/// Readiness of a member: a signed head, and a leader in every local group.
pub fn node_ready(node: &DevNode) -> ReadyCheck {
    let heads = node.heads();
    let raft = node.raft().downgrade();
    Arc::new(move || {
        if heads.borrow().is_none() {
            return Err("no signed head yet".into());
        }
        let Some(raft) = raft.upgrade() else {
            return Err("shutting down".into());
        };
        let leaderless: Vec<String> = raft
            .group_metrics()
            .iter()
            .filter(|m| m.leader.is_none())
            .map(|m| group_label(m.group))
            .collect();
        if leaderless.is_empty() {
            Ok(())
        } else {
            Err(format!("no leader in {}", leaderless.join(", ")))
        }
    })
}

/// Registers the node's Raft groups, store size and tree cache with the instruments.
pub fn register_node(node: &DevNode, data_dir: &std::path::Path) {
    let metrics = candor_telemetry::metrics();
    let raft = node.raft().downgrade();
    metrics.register_raft("node", move || {
        raft.upgrade()
            .map(|r| {
                r.group_metrics()
                    .iter()
                    .map(|m| (group_label(m.group), sample(m)))
                    .collect()
            })
            .unwrap_or_default()
    });
    // The data directory's files: the store's tables and journals (and the
    // small key and config files), whatever the engine.
    let dir = data_dir.to_path_buf();
    metrics.register_disk_usage("embedded", Some(dir.clone()), move || dir_bytes(&dir));
    let forest = node.forest();
    metrics.register_cache("tree", move || {
        let (bytes, hits, misses) = forest.cache_stats();
        candor_telemetry::CacheSample {
            bytes,
            hits,
            misses,
        }
    });
}

/// Bytes of the regular files under `dir` (not following links).
fn dir_bytes(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Some(total)
}
