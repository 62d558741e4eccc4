//! When a leader hands its leadership to a follower (the "step-aside" rule).
//!
//! Raft replaces a leader only when its followers stop hearing it. Two faults
//! leave the followers hearing a leader that cannot lead well, and with
//! pre-vote nothing would ever replace it:
//!
//! * **inbound drops**: the followers receive its heartbeats, but their answers
//!   never reach it. It commits nothing while the fault lasts;
//! * **a slow link**: every round trip through its link is slow (a full queue,
//!   lost packets resent), so every commit, and every epoch of the sequencer
//!   group, waits for it.
//!
//! They show in two figures the leader already has:
//!
//! * how long ago a quorum last acknowledged it
//!   ([`crate::GroupMetrics::quorum_ack_age`]; openraft stamps an
//!   acknowledgement with the time its request was *sent*, so the age is never
//!   below the round trip);
//! * how long its entries take to commit: from when an index is first seen as
//!   its last log index to when its commit index reaches it (replication and
//!   the quorum's fsync, not the state machine's apply, which moving the
//!   leadership would not speed up).
//!
//! The rule: a leader that has led for at least [`StepAsideTuning::min_tenure`]
//! and, over the whole last [`StepAsideTuning::window`], either
//!
//! * had its quorum acknowledgement older than [`StepAsideTuning::slow_ack`] at
//!   **every** sample, or
//! * committed at least [`StepAsideTuning::min_commits`] entries with a median
//!   time above [`StepAsideTuning::slow_commit`],
//!
//! transfers its leadership to the follower known to hold the most of its log
//! (openraft's `TransferLeader`, sent to every member: outbound messages still
//! get through in both faults), once per term.
//!
//! Why every sample, and a median: a healthy leader's acknowledgement age
//! falls back to about one round trip at each heartbeat, and most of its
//! commits are quick, so a busy moment (a long fsync, a starved thread) never
//! keeps either figure high for a whole window; only a link that is slow all
//! the time does. (A link that is slow only when full, or loses a few packets,
//! leaves the heartbeats quick but not the entries: hence the second figure.)
//!
//! Why a minimum tenure: in a cluster that is slow everywhere, each new leader
//! would hand over again at once. With the tenure a cluster-wide slowness costs
//! at most one hand-over (one election, well under a second) per tenure.
//!
//! A transfer that fails (the target is down too) costs an election timeout:
//! a transferring leader stops sending heartbeats, so the followers elect
//! someone. This module holds the rule only, with no clock or I/O of its own, so
//! it is unit-tested without a runtime; the group runs it every heartbeat.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::types::NodeId;

/// The step-aside rule's settings (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepAsideTuning {
    /// A quorum acknowledgement older than this is slow.
    pub slow_ack: Duration,
    /// How long every sample must be slow before the leader hands over.
    pub window: Duration,
    /// Least time as leader (in one term) before it may hand over for slowness.
    pub min_tenure: Duration,
    /// A median commit time above this, over a window, is slow.
    pub slow_commit: Duration,
    /// Fewest commits in a window for their median to count.
    pub min_commits: usize,
}

impl Default for StepAsideTuning {
    fn default() -> Self {
        Self {
            // A heartbeat on a LAN is acknowledged in a few ms (tens when busy);
            // 150 ms is well above that and half the lower election timeout
            // (300 ms). Raise it (with the election timeouts) for a cluster whose
            // normal round trip is longer.
            slow_ack: Duration::from_millis(150),
            window: Duration::from_secs(2),
            min_tenure: Duration::from_secs(3),
            // A LAN commit is a round trip and an fsync: a few ms, tens when busy.
            slow_commit: Duration::from_millis(200),
            // The sequencer group commits an epoch every 500 ms by default: 4 a window.
            min_commits: 3,
        }
    }
}

/// What the group reports to the rule at each sample.
#[derive(Clone, Debug)]
pub struct LeaderSample<'a> {
    /// This replica.
    pub me: NodeId,
    /// Current term.
    pub term: u64,
    /// Whether this replica leads in `term`.
    pub leading: bool,
    /// How long ago a quorum acknowledged this leader (`None`: not yet in this term).
    pub quorum_ack_age: Option<Duration>,
    /// Voters of the current membership.
    pub voters: &'a BTreeSet<NodeId>,
    /// Highest log index known replicated to each node.
    pub replication: &'a BTreeMap<NodeId, u64>,
    /// This replica's last log index.
    pub last_log_index: u64,
    /// Its commit index.
    pub committed: u64,
}

/// The rule's memory for one group on one replica. `now` is any monotonic time
/// expressed as a duration since a fixed origin (the group passes its runtime's
/// clock), which keeps this type free of a clock.
#[derive(Debug)]
pub struct StepAside {
    tuning: StepAsideTuning,
    /// The term led, and since when.
    leading: Option<(u64, Duration)>,
    /// (when, quorum acknowledgement age) within the last window.
    samples: VecDeque<(Duration, Duration)>,
    /// (log index, when first seen as the last) not yet committed, ascending.
    uncommitted: VecDeque<(u64, Duration)>,
    /// (when committed, how long it took) within the last window.
    commits: VecDeque<(Duration, Duration)>,
    /// The term in which this replica already handed over.
    handed_over: Option<u64>,
}

impl StepAside {
    /// A rule with `tuning`, for a replica that does not lead yet.
    pub fn new(tuning: StepAsideTuning) -> Self {
        Self {
            tuning,
            leading: None,
            samples: VecDeque::new(),
            uncommitted: VecDeque::new(),
            commits: VecDeque::new(),
            handed_over: None,
        }
    }

    /// Whether the window's commits are slow: enough of them, with a lower
    /// median above the bound (half the commits slow is not enough).
    fn slow_commits(&self) -> bool {
        if self.commits.len() < self.tuning.min_commits.max(1) {
            return false;
        }
        let mut times: Vec<Duration> = self.commits.iter().map(|(_, d)| *d).collect();
        times.sort_unstable();
        times[(times.len() - 1) / 2] > self.tuning.slow_commit
    }

    /// Forget the current term's figures.
    fn reset(&mut self) {
        self.samples.clear();
        self.uncommitted.clear();
        self.commits.clear();
    }

    /// Record one sample taken at `now`. Returns the follower to hand leadership
    /// to when the rule says so (at most once per term).
    pub fn observe(&mut self, now: Duration, s: &LeaderSample<'_>) -> Option<NodeId> {
        if !s.leading {
            self.leading = None;
            self.reset();
            return None;
        }
        let since = match self.leading {
            Some((term, since)) if term == s.term => since,
            _ => {
                self.leading = Some((s.term, now));
                self.reset();
                now
            }
        };
        // Commit times, to the sampling period's precision.
        if self.uncommitted.back().map_or(s.committed, |(i, _)| *i) < s.last_log_index {
            self.uncommitted.push_back((s.last_log_index, now));
        }
        while let Some(&(index, seen)) = self.uncommitted.front()
            && index <= s.committed
        {
            self.uncommitted.pop_front();
            self.commits.push_back((now, now - seen));
        }
        while self
            .commits
            .front()
            .is_some_and(|(t, _)| *t + self.tuning.window < now)
        {
            self.commits.pop_front();
        }
        // No acknowledgement yet in this term counts as old as the term.
        let age = s.quorum_ack_age.unwrap_or(now.saturating_sub(since));
        self.samples.push_back((now, age));
        // Keep the newest sample at or before the window's start: it proves the
        // window is covered from its beginning.
        while self.samples.len() > 1 && self.samples[1].0 + self.tuning.window <= now {
            self.samples.pop_front();
        }
        let covered = self
            .samples
            .front()
            .is_some_and(|(t, _)| *t + self.tuning.window <= now);
        // The cheap gates first: this runs every heartbeat on every leader.
        if !covered
            || now.saturating_sub(since) < self.tuning.min_tenure
            || self.handed_over == Some(s.term)
        {
            return None;
        }
        let slow_acks = self.samples.iter().all(|(_, a)| *a > self.tuning.slow_ack);
        if !slow_acks && !self.slow_commits() {
            return None;
        }
        let to = s
            .voters
            .iter()
            .filter(|&&v| v != s.me)
            // Most replicated first; the lower id on a tie (deterministic).
            .max_by_key(|&&v| {
                (
                    s.replication.get(&v).copied().unwrap_or(0),
                    std::cmp::Reverse(v),
                )
            })
            .copied()?;
        self.handed_over = Some(s.term);
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    struct Fixture {
        voters: BTreeSet<NodeId>,
        replication: BTreeMap<NodeId, u64>,
        /// (last log index, commit index) reported.
        log: std::cell::Cell<(u64, u64)>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                voters: [1, 2, 3].into_iter().collect(),
                replication: [(1, 100), (2, 90), (3, 99)].into_iter().collect(),
                log: std::cell::Cell::new((0, 0)),
            }
        }
        fn sample(&self, term: u64, leading: bool, age: Option<u64>) -> LeaderSample<'_> {
            LeaderSample {
                me: 1,
                term,
                leading,
                quorum_ack_age: age.map(ms),
                voters: &self.voters,
                replication: &self.replication,
                last_log_index: self.log.get().0,
                committed: self.log.get().1,
            }
        }
    }

    /// Feed a sample every 50 ms from `from` to `to` (ms) with `age(t)`;
    /// returns when (ms) and to whom the rule handed over, if it did.
    fn run(
        rule: &mut StepAside,
        f: &Fixture,
        term: u64,
        from: u64,
        to: u64,
        age: impl Fn(u64) -> Option<u64>,
    ) -> Option<(u64, NodeId)> {
        (from..to).step_by(50).find_map(|t| {
            rule.observe(ms(t), &f.sample(term, true, age(t)))
                .map(|n| (t, n))
        })
    }

    #[test]
    fn a_healthy_leader_never_hands_over() {
        let f = Fixture::new();
        let mut rule = StepAside::new(StepAsideTuning::default());
        // Acknowledged within a round trip, with a 1 s stall every 5 s.
        let r = run(&mut rule, &f, 1, 0, 60_000, |t| {
            Some(if t % 5000 < 1000 { t % 5000 } else { 5 })
        });
        assert_eq!(r, None);
    }

    #[test]
    fn a_leader_nobody_answers_hands_over_to_the_most_replicated_follower() {
        let f = Fixture::new();
        let mut rule = StepAside::new(StepAsideTuning::default());
        // Healthy for 10 s, then no acknowledgement at all (inbound drops).
        let r = run(&mut rule, &f, 1, 0, 20_000, |t| {
            Some(if t < 10_000 { 5 } else { t - 10_000 + 5 })
        });
        // Slow from 10.15 s on; the whole 2 s window slow at 12.15 s.
        assert_eq!(r, Some((12_150, 3)));
        // Once per term.
        assert_eq!(run(&mut rule, &f, 1, 20_000, 30_000, Some), None);
    }

    #[test]
    fn a_slow_link_hands_over_but_not_before_the_tenure() {
        let f = Fixture::new();
        let mut rule = StepAside::new(StepAsideTuning::default());
        // Every acknowledgement 400-450 ms old from the start of the term.
        let r = run(&mut rule, &f, 7, 0, 10_000, |t| Some(400 + t % 100 / 2));
        assert_eq!(r, Some((3000, 3)), "held until the 3 s tenure");
    }

    #[test]
    fn one_quick_acknowledgement_in_the_window_holds_it() {
        let f = Fixture::new();
        let mut rule = StepAside::new(StepAsideTuning::default());
        let r = run(&mut rule, &f, 1, 0, 20_000, |t| {
            Some(if t % 1500 == 0 { 20 } else { 500 })
        });
        assert_eq!(r, None);
    }

    #[test]
    fn a_new_term_starts_over_and_followers_never_hand_over() {
        let f = Fixture::new();
        let mut rule = StepAside::new(StepAsideTuning::default());
        assert!(run(&mut rule, &f, 1, 0, 10_000, |_| None).is_some());
        // Not leading: nothing, whatever the age.
        for t in (10_000..20_000).step_by(50) {
            assert_eq!(rule.observe(ms(t), &f.sample(1, false, Some(9_999))), None);
        }
        // Leading again in term 2: the tenure and window count from its start.
        let r = run(&mut rule, &f, 2, 20_000, 40_000, |_| Some(1_000));
        assert_eq!(r, Some((23_000, 3)));
    }

    /// An entry every 500 ms (the sequencer's epochs), each committed `took(t)`
    /// ms after it was appended; acknowledgements always quick. Returns when
    /// and to whom the rule handed over.
    fn epochs(
        rule: &mut StepAside,
        f: &Fixture,
        took: impl Fn(u64) -> u64,
    ) -> Option<(u64, NodeId)> {
        let mut appended: Vec<(u64, u64)> = Vec::new(); // (index, at)
        for t in (0..30_000).step_by(50) {
            if t % 500 == 0 {
                appended.push((appended.len() as u64 + 1, t));
            }
            let last = appended.last().map_or(0, |a| a.0);
            let committed = appended
                .iter()
                .filter(|(_, at)| at + took(*at) <= t)
                .map(|a| a.0)
                .max()
                .unwrap_or(0);
            f.log.set((last, committed));
            if let Some(to) = rule.observe(ms(t), &f.sample(1, true, Some(5))) {
                return Some((t, to));
            }
        }
        None
    }

    #[test]
    fn slow_commits_hand_over_quick_ones_do_not() {
        let f = Fixture::new();
        // 20 ms commits, with one 2 s stall every 10 s: never.
        let mut rule = StepAside::new(StepAsideTuning::default());
        assert_eq!(
            epochs(&mut rule, &f, |at| if at % 10_000 == 5_000 {
                2_000
            } else {
                20
            }),
            None
        );
        // Every commit 300 ms from 10 s on: once more than half of a window's
        // commits are slow (the first is seen at 10.3 s).
        let mut rule = StepAside::new(StepAsideTuning::default());
        let r = epochs(&mut rule, &f, |at| if at < 10_000 { 20 } else { 300 });
        let (t, to) = r.expect("handed over");
        assert_eq!(to, 3);
        assert!((11_000..=12_300).contains(&t), "handed over at {t} ms");
        // One commit in three slow: not enough.
        let mut rule = StepAside::new(StepAsideTuning::default());
        assert_eq!(
            epochs(&mut rule, &f, |at| if at % 1_500 == 0 { 400 } else { 20 }),
            None
        );
        // Three in four slow (a lossy link): over.
        let mut rule = StepAside::new(StepAsideTuning::default());
        assert!(epochs(&mut rule, &f, |at| if at % 2_000 == 0 { 20 } else { 400 }).is_some());
    }

    #[test]
    fn a_sole_voter_has_nobody_to_hand_over_to() {
        let mut f = Fixture::new();
        f.voters = [1].into_iter().collect();
        let mut rule = StepAside::new(StepAsideTuning::default());
        assert_eq!(run(&mut rule, &f, 1, 0, 10_000, Some), None);
    }
}
