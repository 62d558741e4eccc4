//! Whether a member may present its newest head as *the latest*.
//!
//! A member cut off from its quorum keeps its last head and would go on serving
//! it as the latest for the whole partition: clients would see an old epoch as
//! current, and load balancers would keep routing to the member. The verdict
//! here is what the member's latest reads (`GetLatestEpoch`, `Lookup` and
//! `History` without an epoch: `UNAVAILABLE` otherwise), its gRPC health and
//! its `/readyz` follow. Reads at an explicit epoch are unaffected: their
//! answer does not claim to be the latest.
//!
//! A member is **not current** when either
//!
//! 1. it *knows* it is behind: its replica of the epoch log holds a signed
//!    epoch more than [`MAX_LAG_EPOCHS`] beyond the newest head it can serve
//!    (its shard replicas have not applied the revisions yet), or its replica
//!    of the sequencer group is more than [`MAX_SEQUENCER_BACKLOG`] entries
//!    behind the commit index its leader last sent it (a member catching up
//!    after a restart, or behind a slow link), or no leader has reached that
//!    follower replica since the member started (it cannot tell yet how far
//!    behind it is), or its leader has not reached it for an election
//!    timeout, or has been reaching it again for less than an election
//!    timeout after a silence longer than one (the first messages of a link
//!    that comes back may have been queued during the cut, with the commit
//!    index of its start), or it names itself the leader
//!    but no quorum has acknowledged it since it started (a restart with its
//!    old leadership as its stored vote); or
//! 2. it *cannot know* it is current: no new head has reached it for
//!    [`STALE_INTERVALS`] epoch intervals **and** one of the groups its heads
//!    depend on is cut off here: no leader known; or led here without a quorum
//!    acknowledgement for an election timeout; or followed here without an
//!    AppendEntries from the leader for an election timeout (with pre-vote a
//!    cut-off follower keeps naming its old leader, so "no leader" alone would
//!    miss it), or reached again for less than an election timeout after
//!    such a silence.
//!
//! Rule 2 needs both halves on purpose. A short election (a group briefly
//! without a leader) does not stop a member whose heads are still arriving;
//! and when the whole cluster stops signing (every member equally stale, all
//! with healthy groups) no member is singled out, so the deployment keeps
//! serving its newest head rather than none. A cut-off member stops
//! presenting its head once both `STALE_INTERVALS` epoch intervals and one
//! election timeout have passed since the last head reached it.
//!
//! Members of a shared-state deployment read heads from the shared store, not
//! from their own groups: only rule 1 applies to them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use candor_raft::GroupMetrics;
use candor_sim::watch;
use tokio::time::Instant;

/// Rule 1: how many signed epochs a member may hold but not yet serve.
pub const MAX_LAG_EPOCHS: u64 = 2;

/// Rule 1: how many committed entries of the sequencer group a member may not
/// have applied yet (the group commits about one entry per epoch, plus one
/// per cosignature and key change, so this is at most as many epochs: the same
/// bound as [`MAX_LAG_EPOCHS`]). A healthy follower is at most one behind, the
/// entry it is applying. (It was 8: the multi-host test then saw a member's
/// first answers after a restart 8–12 epochs behind the newest.)
pub const MAX_SEQUENCER_BACKLOG: u64 = 2;

/// Rule 2: how many epoch intervals without a new head (with a group cut off)
/// make a member stale.
pub const STALE_INTERVALS: u32 = 2;

/// What the verdict is made from: one reading of the member's state.
#[derive(Debug, Clone)]
pub struct CurrencyInputs<'a> {
    /// Epoch of the newest head the member serves (0: none yet).
    pub served_epoch: u64,
    /// Newest epoch in the member's replica of the epoch log.
    pub signed_epoch: u64,
    /// The local sequencer replica, when it follows (see [`sequencer_view`]).
    pub sequencer: SequencerView,
    /// Time since the served head last changed (or since the member started).
    pub since_last_head: Duration,
    /// The deployment's epoch interval.
    pub epoch_interval: Duration,
    /// The Raft election timeout (upper bound).
    pub election_timeout: Duration,
    /// The local groups the served heads depend on (empty: none, shared state).
    pub groups: &'a [GroupMetrics],
}

/// `Ok(())` when the member may present its newest head as the latest; else why
/// not, in words for an operator and a client.
pub fn verdict(i: &CurrencyInputs<'_>) -> Result<(), String> {
    if i.signed_epoch > i.served_epoch.saturating_add(MAX_LAG_EPOCHS) {
        return Err(format!(
            "epoch {} is signed but this member has applied only up to epoch {}",
            i.signed_epoch, i.served_epoch
        ));
    }
    match i.sequencer {
        SequencerView::Reconnected(run) => {
            return Err(format!(
                "its replica of the sequencer group has been reached by its leader for only {} \
                 ms since a silence; what it first receives may be old (serving epoch {})",
                run.as_millis(),
                i.served_epoch
            ));
        }
        SequencerView::Silent(age) => {
            return Err(format!(
                "its replica of the sequencer group has not heard from its leader for {} ms \
                 (serving epoch {})",
                age.as_millis(),
                i.served_epoch
            ));
        }
        SequencerView::Unheard => {
            return Err(format!(
                "its replica of the sequencer group has not heard from a leader since this \
                 member started (serving epoch {})",
                i.served_epoch
            ));
        }
        SequencerView::Behind(n) if n > MAX_SEQUENCER_BACKLOG => {
            return Err(format!(
                "its replica of the sequencer group has {n} committed entries still to apply \
                 (serving epoch {})",
                i.served_epoch
            ));
        }
        _ => {}
    }
    if i.since_last_head <= i.epoch_interval * STALE_INTERVALS {
        return Ok(());
    }
    // One election timeout: a healthy follower hears from its leader, and a
    // healthy leader from a quorum, every heartbeat (10x more often). The head
    // age gate above already rules out a short election.
    let silent_after = i.election_timeout;
    let cut_off = i.groups.iter().find_map(|m| {
        let label = candor_telemetry::group_label(m.group.0);
        match m.leader {
            None => Some(format!("group {label} has no leader")),
            Some(l) if l == m.node => m
                .quorum_ack_age
                .filter(|age| *age > silent_after)
                .map(|age| {
                    format!(
                        "group {label} is led here without a quorum acknowledgement for {} ms",
                        age.as_millis()
                    )
                }),
            Some(l) => match (m.leader_contact_age, m.leader_contact_run) {
                (None, _) | (_, None) => Some(format!(
                    "group {label} has not heard from its leader, node {l}, since this member started"
                )),
                (Some(age), _) if age > silent_after => Some(format!(
                    "group {label} has not heard from its leader, node {l}, for {} ms",
                    age.as_millis()
                )),
                (_, Some(run)) if run < silent_after => Some(format!(
                    "group {label} has been reached by its leader, node {l}, for only {} ms \
                     since a silence",
                    run.as_millis()
                )),
                _ => None,
            },
        }
    });
    match cut_off {
        None => Ok(()),
        Some(why) => Err(format!(
            "cut off from its quorum ({why}); its newest head, epoch {}, arrived {} ms ago",
            i.served_epoch,
            i.since_last_head.as_millis()
        )),
    }
}

/// What the local sequencer replica says about this member's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequencerView {
    /// Not hosted here, or led here: nothing to compare with.
    Unknown,
    /// A follower no leader has reached since this member started (a member
    /// just restarted cannot tell yet how far behind it is).
    Unheard,
    /// A follower its leader has reached for only this long since a silence
    /// longer than an election timeout; until the run of contact is an
    /// election timeout old, its leader's word may be one queued during the
    /// cut. (A member just started is in the same case.)
    Reconnected(Duration),
    /// A follower whose leader has not reached it for this long, more than an
    /// election timeout: its leader's last word is old. (A member resuming
    /// from a pause applies what was queued, so its head is fresh while its
    /// view of the leader is not: the multi-host test saw one answer 7 epochs
    /// behind that way.)
    Silent(Duration),
    /// A follower this many committed entries behind its leader's last word.
    Behind(u64),
}

/// The view of a sequencer replica from its metrics; `settle`: how long a run
/// of contact must last before the leader's word counts (an election timeout).
pub fn sequencer_view(m: &GroupMetrics, settle: Duration) -> SequencerView {
    if m.leader == Some(m.node) {
        // A member restarted with its own leadership as the last vote it stored
        // names itself leader until the real leader's term reaches it (the
        // multi-host test saw one such answer 22 epochs behind). A genuine leader
        // of several voters has a quorum acknowledgement within a heartbeat.
        if m.voters.len() > 1 && m.quorum_ack_age.is_none() {
            return SequencerView::Unheard;
        }
        return SequencerView::Unknown;
    }
    let (Some(age), Some(run)) = (m.leader_contact_age, m.leader_contact_run) else {
        return SequencerView::Unheard;
    };
    if age > settle {
        return SequencerView::Silent(age);
    }
    if run < settle {
        return SequencerView::Reconnected(run);
    }
    let applied = m.last_applied.as_ref().map_or(0, |l| l.index());
    m.leader_committed.map_or(SequencerView::Unknown, |c| {
        SequencerView::Behind(c.saturating_sub(applied))
    })
}

/// When the served head last changed: a task follows the heads watch.
#[derive(Clone)]
pub(crate) struct HeadClock(Arc<Mutex<Instant>>);

impl HeadClock {
    /// Starts following `heads` until `cancel`; the clock starts now (a member
    /// that restarts cut off is judged from its start).
    pub(crate) fn follow(
        mut heads: watch::Receiver<Option<candor_core::signed::SignedHead>>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let clock = HeadClock(Arc::new(Mutex::new(Instant::now())));
        let c = clock.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    changed = heads.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        *c.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    }
                }
            }
        });
        (clock, task)
    }

    /// Time since the served head last changed.
    pub(crate) fn since(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use candor_raft::{GroupId, ServerState};

    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    /// The election timeout these tests use.
    const SETTLE: Duration = Duration::from_millis(600);

    /// `age`: the quorum acknowledgement's age on a leader, the leader contact's
    /// on a follower.
    fn group(node: u64, leader: Option<u64>, age: Option<Duration>) -> GroupMetrics {
        let leads = leader == Some(node);
        GroupMetrics {
            group: GroupId(0),
            node,
            current_term: 3,
            leader,
            state: if leads {
                ServerState::Leader
            } else {
                ServerState::Follower
            },
            last_log_index: Some(10),
            last_applied: None,
            committed: None,
            snapshot: None,
            purged: None,
            voters: BTreeSet::from([1, 2, 3]),
            stopped: None,
            replication: BTreeMap::new(),
            quorum_ack_age: age.filter(|_| leads),
            leader_contact_age: age.filter(|_| !leads),
            // A steady run of contact unless a test says otherwise.
            leader_contact_run: age.filter(|_| !leads).map(|_| 60 * SEC),
            leader_committed: None,
        }
    }

    fn inputs(since: Duration, groups: &[GroupMetrics]) -> CurrencyInputs<'_> {
        CurrencyInputs {
            served_epoch: 40,
            signed_epoch: 40,
            sequencer: SequencerView::Behind(1),
            since_last_head: since,
            epoch_interval: SEC,
            election_timeout: SETTLE,
            groups,
        }
    }

    #[test]
    fn a_member_with_fresh_heads_is_current_even_during_an_election() {
        let g = [group(1, None, None)];
        assert_eq!(verdict(&inputs(SEC, &g)), Ok(()));
    }

    #[test]
    fn a_stale_member_cut_off_from_its_quorum_is_not_current() {
        let fresh = Some(Duration::from_millis(100));
        // A follower whose group lost its leader (it campaigns alone).
        let g = [group(1, Some(2), fresh), group(1, None, None)];
        let why = verdict(&inputs(3 * SEC, &g)).unwrap_err();
        assert!(
            why.contains("no leader") && why.contains("epoch 40"),
            "{why}"
        );
        // A leader no quorum acknowledges.
        let g = [group(1, Some(1), Some(5 * SEC))];
        let why = verdict(&inputs(3 * SEC, &g)).unwrap_err();
        assert!(why.contains("without a quorum acknowledgement"), "{why}");
        // A follower that still names its leader (pre-vote) but hears nothing.
        let g = [group(1, Some(2), Some(4 * SEC))];
        let why = verdict(&inputs(3 * SEC, &g)).unwrap_err();
        assert!(
            why.contains("has not heard from its leader, node 2"),
            "{why}"
        );
        let g = [group(1, Some(2), None)];
        assert!(verdict(&inputs(3 * SEC, &g)).is_err());
    }

    #[test]
    fn a_whole_cluster_that_stops_signing_singles_out_no_member() {
        // Stale heads, but every group healthy here: every member is as stale.
        let g = [
            group(1, Some(1), Some(Duration::from_millis(50))),
            group(1, Some(2), Some(Duration::from_millis(80))),
        ];
        assert_eq!(verdict(&inputs(60 * SEC, &g)), Ok(()));
    }

    #[test]
    fn a_member_that_knows_it_is_behind_is_not_current() {
        let g = [group(1, Some(2), Some(Duration::from_millis(80)))];
        let mut i = inputs(Duration::ZERO, &g);
        i.signed_epoch = 43;
        let why = verdict(&i).unwrap_err();
        assert!(why.contains("epoch 43 is signed"), "{why}");
        i.signed_epoch = 42;
        assert_eq!(verdict(&i), Ok(()));
        // Catching up: the leader has committed far beyond what is applied here.
        i.sequencer = SequencerView::Behind(30);
        let why = verdict(&i).unwrap_err();
        assert!(why.contains("30 committed entries"), "{why}");
        i.sequencer = SequencerView::Behind(MAX_SEQUENCER_BACKLOG);
        assert_eq!(verdict(&i), Ok(()));
        // Just restarted: no leader has said where the log is.
        i.sequencer = SequencerView::Unheard;
        let why = verdict(&i).unwrap_err();
        assert!(why.contains("not heard from a leader since"), "{why}");
    }

    /// The backlog a follower's metrics give: the leader's commit index less
    /// the applied index.
    #[test]
    fn the_backlog_is_counted_from_the_leader_s_commit_index() {
        use candor_raft::openraft::impls::leader_id_adv::LeaderId;
        let mut m = group(2, Some(1), None);
        assert_eq!(sequencer_view(&m, SETTLE), SequencerView::Unheard);
        m.leader_contact_age = Some(Duration::from_millis(10));
        m.leader_contact_run = Some(SETTLE);
        assert_eq!(sequencer_view(&m, SETTLE), SequencerView::Unknown);
        m.leader_committed = Some(120);
        assert_eq!(sequencer_view(&m, SETTLE), SequencerView::Behind(120));
        m.last_applied = Some(candor_raft::LogId {
            leader_id: LeaderId {
                term: 3,
                node_id: 1,
            },
            index: 100,
        });
        assert_eq!(sequencer_view(&m, SETTLE), SequencerView::Behind(20));
        // Led here and acknowledged by a quorum: nothing to compare with.
        assert_eq!(
            sequencer_view(&group(1, Some(1), Some(Duration::from_millis(5))), SETTLE),
            SequencerView::Unknown
        );
        // Led here by its own account but never acknowledged since the start
        // (a restart with its old leadership as the stored vote): unheard.
        assert_eq!(
            sequencer_view(&group(1, Some(1), None), SETTLE),
            SequencerView::Unheard
        );
        // A sole voter is its own quorum.
        let mut sole = group(1, Some(1), None);
        sole.voters = BTreeSet::from([1]);
        assert_eq!(sequencer_view(&sole, SETTLE), SequencerView::Unknown);
    }

    /// What the multi-host test saw (seed 1796609272619256739): a member cut
    /// off for 7 s, whose links came back first with requests queued during
    /// the cut, answered once with a head 27 epochs old. Its leader's word was
    /// the commit index of the cut's start, so nothing looked behind.
    #[test]
    fn a_member_just_reached_again_after_a_cut_is_not_current() {
        // The sequencer replica: caught up with what the stale message says.
        let mut m = group(2, Some(1), Some(Duration::ZERO));
        m.leader_committed = Some(0);
        m.leader_contact_run = Some(Duration::from_millis(3));
        assert_eq!(
            sequencer_view(&m, SETTLE),
            SequencerView::Reconnected(Duration::from_millis(3))
        );
        let g = [m.clone()];
        let mut i = inputs(Duration::ZERO, &g);
        i.sequencer = sequencer_view(&m, SETTLE);
        let why = verdict(&i).unwrap_err();
        assert!(why.contains("for only 3 ms since a silence"), "{why}");
        // An election timeout of steady contact later, its word counts.
        m.leader_contact_run = Some(SETTLE);
        assert_eq!(sequencer_view(&m, SETTLE), SequencerView::Behind(0));
        // Resumed from a pause, before any new contact: the queued entries it
        // applies give it a fresh head (rule 2 does not look), but its
        // leader's word is as old as the pause (seed 1796612753789552068).
        m.leader_contact_age = Some(3 * SEC);
        m.leader_contact_run = Some(10 * SEC);
        assert_eq!(sequencer_view(&m, SETTLE), SequencerView::Silent(3 * SEC));
        let g = [m.clone()];
        let mut i = inputs(Duration::ZERO, &g);
        i.sequencer = sequencer_view(&m, SETTLE);
        let why = verdict(&i).unwrap_err();
        assert!(
            why.contains("not heard from its leader for 3000 ms"),
            "{why}"
        );
        // Rule 2 (the stale head) asks the same of every group.
        let mut shard = group(2, Some(3), Some(Duration::ZERO));
        shard.leader_contact_run = Some(Duration::from_millis(3));
        let g = [shard];
        let why = verdict(&inputs(14 * SEC, &g)).unwrap_err();
        assert!(
            why.contains("reached by its leader, node 3, for only 3 ms"),
            "{why}"
        );
    }
}
