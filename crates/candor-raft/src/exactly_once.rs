//! Exactly-once application of committed entries, written once for every state
//! machine whose state lives in a [`candor_store::Store`] (the shard and sequencer
//! groups), with or without a store shared by the replicas.
//!
//! The contract a logic implements ([`ExactlyOnce`]):
//!
//! * every write of an entry's effects carries, in the same atomic batch, the logic's
//!   bookkeeping (applied index) and — for the batch's last entry — the adapter's
//!   marker, so a crash never separates them;
//! * an entry at or below the recorded applied index is answered again from what was
//!   stored, never re-applied;
//! * on a shared store, every write is a compare-and-set on the bookkeeping record the
//!   replica computed from; a replica that loses the race wrote nothing and reports
//!   [`ExactlyOnce::is_stale`] — it then takes the stored state over
//!   ([`ExactlyOnce::catch_up`]) and tries again;
//! * each replica keeps its own marker ([`replica_marker_key`]), so replicas sharing
//!   one store never overwrite each other's.
//!
//! [`apply_exactly_once`] drives a batch through that contract; both groups'
//! [`crate::StateMachineLogic::apply`] are this call.

use std::time::Duration;

use crate::ApplyBatch;

/// Lost races in a row before an entry's apply gives up (and stops the group).
pub const STALE_RETRIES: u32 = 64;

/// A state machine whose entries are applied exactly once (module docs).
pub trait ExactlyOnce {
    /// The logic's failure type.
    type Error;

    /// `Some(error)` while nothing may be applied (an unfinished snapshot install).
    fn refuse_apply(&self) -> Option<Self::Error>;

    /// Whether the replicas share one store (then writes are compare-and-sets).
    fn shared(&self) -> bool;

    /// Shared store: take over what other replicas applied since this one last looked.
    fn catch_up(&mut self) -> Result<(), Self::Error>;

    /// Whether `e` is a lost compare-and-set (nothing was written).
    fn is_stale(e: &Self::Error) -> bool;

    /// Applies (or answers again) one entry, with `marker` in the same atomic write
    /// when given; returns the encoded response.
    fn apply_entry(
        &mut self,
        log_index: u64,
        data: &[u8],
        marker: Option<&[u8]>,
    ) -> Result<Vec<u8>, Self::Error>;

    /// Persists `marker` alone (a batch of Raft-internal entries only), and remembers
    /// it as the applied marker.
    fn write_marker(&mut self, marker: &[u8]) -> Result<(), Self::Error>;

    /// Remembers `marker` as the applied marker (it was written with the last entry).
    fn set_marker(&mut self, marker: &[u8]);
}

/// Applies `batch` through `logic` exactly once (module docs).
pub fn apply_exactly_once<L: ExactlyOnce>(
    logic: &mut L,
    batch: ApplyBatch<'_>,
) -> Result<Vec<Vec<u8>>, L::Error> {
    if let Some(e) = logic.refuse_apply() {
        return Err(e);
    }
    let n = batch.entries.len();
    if n == 0 {
        logic.write_marker(batch.marker)?;
        return Ok(Vec::new());
    }
    // One read per batch, not per entry: the replicas' applies rarely overlap.
    if logic.shared() {
        logic.catch_up()?;
    }
    let mut out = Vec::with_capacity(n);
    for (i, e) in batch.entries.iter().enumerate() {
        let marker = (i + 1 == n).then_some(batch.marker);
        let mut attempts = 0u32;
        let resp = loop {
            match logic.apply_entry(e.log_id.index, e.data, marker) {
                // Another replica wrote first: take its state over; the entry is then
                // either already applied (answered again) or next.
                Err(err) if L::is_stale(&err) && attempts < STALE_RETRIES => {
                    attempts += 1;
                    // It may be in the middle of the same entry: give it a moment.
                    if attempts > 1 {
                        std::thread::sleep(Duration::from_millis(u64::from(attempts.min(20))));
                    }
                    tracing::debug!(
                        log_index = e.log_id.index,
                        attempts,
                        "re-applying after a concurrent apply"
                    );
                    logic.catch_up()?;
                }
                other => break other?,
            }
        };
        out.push(resp);
    }
    logic.set_marker(batch.marker);
    Ok(out)
}

/// The key of one replica's marker: `prefix` alone for a replica with its own store,
/// `prefix ‖ replica u64be` on a shared one.
pub fn replica_marker_key(prefix: &[u8], replica: Option<u64>) -> Vec<u8> {
    let mut k = prefix.to_vec();
    if let Some(r) = replica {
        k.extend_from_slice(&r.to_be_bytes());
    }
    k
}
