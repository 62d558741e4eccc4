//! The sealing ticker: every `seal_interval`, the leader of each shard with pending
//! labels proposes [`ShardCommand::Seal`]. One task per shard, one seal in flight each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use candor_raft::{NodeId, RaftGroup};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::command::{ShardCommand, ShardResponse};
use crate::logic::ShardLogic;

/// Start the ticker of one shard group. It stops when `cancel` fires.
pub fn spawn_sealer(
    node: NodeId,
    shard: u32,
    group: RaftGroup<ShardLogic>,
    pending: Arc<AtomicUsize>,
    interval: Duration,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if pending.load(Ordering::Relaxed) == 0 || group.leader() != Some(node) {
                continue;
            }
            let span = info_span!("seal", shard);
            let res = tokio::select! {
                _ = cancel.cancelled() => return,
                r = group.client_write(ShardCommand::Seal.encode()).instrument(span) => r,
            };
            match res.map(|r| ShardResponse::decode(&r)) {
                Ok(Ok(ShardResponse::Sealed { revision, changed })) => {
                    debug!(shard, revision, changed, "seal committed");
                }
                Ok(other) => warn!(shard, ?other, "unexpected seal response"),
                Err(e) => warn!(shard, error = %e, "seal failed"),
            }
        }
    })
}
