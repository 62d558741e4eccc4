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
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = seal_pending(node, shard, &group, &pending) => {}
            }
        }
    })
}

/// Seal `group`'s pending labels now, if this node leads it and any are pending:
/// one tick of the sealer. Returns the sealed revision when a seal committed. The
/// epoch ticker also calls it for every local shard when its node becomes the
/// sequencer leader (a restart included), so the first epoch it signs merges every
/// mutation acknowledged before (issue #16: recovery after a single-node restart).
pub async fn seal_pending(
    node: NodeId,
    shard: u32,
    group: &RaftGroup<ShardLogic>,
    pending: &AtomicUsize,
) -> Option<u64> {
    if pending.load(Ordering::Relaxed) == 0 || group.leader() != Some(node) {
        return None;
    }
    let span = info_span!("seal", shard);
    match group
        .client_write(ShardCommand::Seal.encode())
        .instrument(span)
        .await
        .map(|r| ShardResponse::decode(&r))
    {
        Ok(Ok(ShardResponse::Sealed { revision, changed })) => {
            debug!(shard, revision, changed, "seal committed");
            Some(revision)
        }
        Ok(other) => {
            warn!(shard, ?other, "unexpected seal response");
            None
        }
        Err(e) => {
            warn!(shard, error = %e, "seal failed");
            None
        }
    }
}
