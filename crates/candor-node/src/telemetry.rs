//! The node's instruments: its Raft groups, store size and tree cache registered
//! with `candor-telemetry`, and the readiness check `/readyz` and gRPC health use.

use std::sync::Arc;

use candor_telemetry::RaftGroupSample;

use crate::Node;

/// Readiness: `Ok(())` when ready, else why not (the type of
/// `candor_telemetry::http::ReadyCheck`).
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

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

impl Node {
    /// Readiness of a member: a signed head, a leader in every local group, and
    /// a current head ([`Node::currency`]: not cut off from its quorum with a
    /// stale head, not knowingly behind).
    pub fn readiness(&self) -> Readiness {
        let node = self;
        let heads = node.heads();
        let raft = node.raft().downgrade();
        let currency = node.currency();
        Arc::new(move || {
            if heads.borrow().is_none() {
                return Err("no signed head yet".into());
            }
            let Some(raft) = raft.upgrade() else {
                return Err("shutting down".into());
            };
            if let Some((g, why)) = raft
                .group_metrics()
                .iter()
                .find_map(|m| m.stopped.as_ref().map(|w| (m.group, w.clone())))
            {
                return Err(format!("group {} stopped: {why}", group_label(g)));
            }
            let leaderless: Vec<String> = raft
                .group_metrics()
                .iter()
                .filter(|m| m.leader.is_none())
                .map(|m| group_label(m.group))
                .collect();
            if !leaderless.is_empty() {
                return Err(format!("no leader in {}", leaderless.join(", ")));
            }
            currency().map_err(|why| format!("not current: {why}"))
        })
    }

    /// Completes when one of this node's Raft groups has stopped (a storage
    /// failure: a full disk, a corrupt record), with the group and the reason. A
    /// stopped replica applies nothing more, so the process should exit and be
    /// restarted (crash-only: a restart replays the Raft log).
    pub fn group_stopped(
        &self,
    ) -> impl std::future::Future<Output = (String, String)> + Send + 'static {
        let raft = self.raft().downgrade();
        async move {
            loop {
                let Some(r) = raft.upgrade() else {
                    return std::future::pending().await;
                };
                if let Some(found) = r.group_metrics().iter().find_map(|m| {
                    m.stopped
                        .as_ref()
                        .map(|w| (group_label(m.group), w.clone()))
                }) {
                    return found;
                }
                drop(r);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }

    /// Registers the node's Raft groups, store size and tree cache with the instruments.
    pub fn register_telemetry(&self, data_dir: &std::path::Path) {
        let node = self;
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
        let loads = node.forest();
        metrics.register_tree_loads(move || loads.load_counters());
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
