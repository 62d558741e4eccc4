//! The auditor: a third party that checks every epoch transition, keeps its
//! own copy of the epoch log, and cosigns the heads it verified.
//!
//! # What an auditor guarantees
//!
//! For each epoch `e = 1, 2, ...` in order, [`Auditor::process`] takes the
//! service's `Audit(e)` answer and checks:
//!
//! * **The transition.** The head of `e` is signed under the pinned
//!   configuration; the previous head served is exactly the head the auditor
//!   verified for `e - 1` (a different signed one is
//!   [`AuditEvent::Equivocation`]); the transition proof recomputes the map
//!   root of `e - 1` (the empty map, root zero, for `e = 1`) and, with the
//!   changes applied by the auditor itself, the map root of `e`. So every
//!   leaf that changed is known, every changed label's chain of versions is
//!   complete (intermediate versions included), and nothing else changed.
//! * **The log.** The auditor appends `(epoch, timestamp, map root)` of
//!   every verified head to its own epoch log and requires the head's
//!   `log_size`/`log_root` to equal its recomputation
//!   ([`AuditEvent::LogMismatch`]). A service that rewrites an old epoch
//!   cannot produce a head this auditor accepts, and since clients check
//!   consistency of every head against the heads they saw, clients cannot be
//!   moved onto a rewritten log either.
//! * **Time.** Head timestamps never go back ([`AuditEvent::TimeRegression`]).
//! * **Promises.** Every SMT shown to it ([`Auditor::check_smt`]) is in the
//!   changes of an epoch whose timestamp is ≤ the SMT's merge deadline, with
//!   exactly the promised version and leaf hash
//!   ([`AuditEvent::BrokenPromise`] otherwise).
//!
//! After an epoch passes, the auditor cosigns its head
//! ([`Cosignature::create`]); [`Auditor::follow`] can submit the
//! cosignature to the service, where clients fetch it. A head cosigned by
//! independent auditors is one that every one of them saw, extending the
//! same log.
//!
//! An epoch that raises an alarm is not accepted: the auditor's state does
//! not advance past it and it is not cosigned. SMT alarms concern earlier
//! promises and do not stop the auditor.
//!
//! # State
//!
//! [`Auditor::state_bytes`] persists the last verified head, the leaf hashes
//! of its epoch log (32 bytes per epoch; the log is rebuilt from them on
//! [`Auditor::resume`] and checked against the stored head) and the pending
//! SMTs. The window of recent changes used to answer SMTs shown late is
//! kept in memory only.

use std::collections::VecDeque;

use candor_core::codec::{Reader, Writer};
use candor_core::log::{EpochEntry, MemoryLog};
use candor_core::map::Index;
use candor_core::rotation::{ConfigChain, Configs};
use candor_core::signed::{
    Cosignature, PublicConfig, SignedHead, SignedMutationTimestamp, SigningKeyPair,
};
use candor_core::{CoreError, Digest};
use candor_proto::candor::v1 as pb;

use crate::client::{Client, now_ms};
use crate::error::{ClientError, Result, vfail};
use crate::evidence::EquivocationEvidence;
use crate::verify;

const STATE_TAG: &[u8] = b"candor-v1 auditor state";

/// Tunables of the [`Auditor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditorOptions {
    /// How long (by head timestamps) the changes of past epochs are kept in
    /// memory to answer [`Auditor::check_smt`] for SMTs shown after their
    /// epoch was audited. Default: the maximum merge delay plus one minute.
    pub retain_changes_ms: Option<u64>,
    /// Hard cap on retained changed leaves (memory bound; oldest epochs are
    /// dropped first). Default 1,000,000 (about 80 MB).
    pub max_retained_leaves: usize,
    /// Allowed clock difference between the shards that sign SMTs and the
    /// sequencer that signs heads, when deciding whether a dropped epoch
    /// could have held an SMT's leaf. Default one minute.
    pub clock_skew_ms: u64,
}

impl Default for AuditorOptions {
    fn default() -> Self {
        Self {
            retain_changes_ms: None,
            max_retained_leaves: 1_000_000,
            clock_skew_ms: 60_000,
        }
    }
}

/// What [`Auditor::process`] found. Alarms are the variants that
/// [`AuditEvent::is_alarm`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum AuditEvent {
    /// The epoch verified and was appended to the auditor's log.
    Verified {
        epoch: u64,
        changed_labels: u64,
        new_leaves: u64,
    },
    /// An SMT was honoured in this epoch (timestamp ≤ its deadline).
    SmtHonoured {
        smt: Box<SignedMutationTimestamp>,
        epoch: u64,
    },
    /// **Alarm.** The response for this epoch does not verify (bad
    /// signature, wrong epoch, transition proof that does not recompute the
    /// roots, malformed bytes).
    InvalidResponse {
        epoch: u64,
        what: &'static str,
        error: CoreError,
    },
    /// **Alarm.** The previous head served differs from the head the auditor
    /// verified for that epoch; both are validly signed.
    Equivocation(Box<EquivocationEvidence>),
    /// **Alarm.** The head's timestamp is earlier than the previous head's.
    TimeRegression {
        epoch: u64,
        previous_ms: u64,
        timestamp_ms: u64,
    },
    /// **Alarm.** The head's log root is not the root of the auditor's own
    /// log with this epoch appended: history was rewritten.
    LogMismatch {
        epoch: u64,
        served_root: Digest,
        computed_root: Digest,
    },
    /// **Alarm.** An SMT's deadline passed (this head is after it) and no
    /// epoch up to the deadline held its leaf.
    BrokenPromise {
        smt: Box<SignedMutationTimestamp>,
        head_after_deadline: Box<SignedHead>,
    },
}

impl AuditEvent {
    pub fn is_alarm(&self) -> bool {
        !matches!(
            self,
            AuditEvent::Verified { .. } | AuditEvent::SmtHonoured { .. }
        )
    }
}

/// The outcome of auditing one epoch.
#[derive(Debug, PartialEq, Eq)]
pub struct EpochReport {
    pub epoch: u64,
    pub events: Vec<AuditEvent>,
    /// Whether the epoch was accepted (the auditor moved past it).
    pub accepted: bool,
    /// The auditor's cosignature of the head, when accepted.
    pub cosignature: Option<Cosignature>,
}

impl EpochReport {
    pub fn has_alarm(&self) -> bool {
        self.events.iter().any(AuditEvent::is_alarm)
    }
    pub fn alarms(&self) -> impl Iterator<Item = &AuditEvent> {
        self.events.iter().filter(|e| e.is_alarm())
    }
}

/// The answer of [`Auditor::check_smt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtStatus {
    /// Its leaf is in the changes of this epoch, whose timestamp is ≤ the
    /// deadline.
    Honoured { epoch: u64 },
    /// Not decided yet: the auditor has not reached a head past the
    /// deadline. Remembered; decided by a later [`Auditor::process`].
    Pending,
    /// The deadline passed without the leaf in any epoch up to it.
    Broken {
        head_after_deadline: Box<SignedHead>,
    },
    /// The epochs that could hold the leaf are older than the auditor's
    /// retained window (or precede a resume): check it with the label's
    /// history instead ([`Client::wait_merged`]).
    Unknown,
}

#[derive(Debug, Clone)]
struct RecentEpoch {
    head: SignedHead,
    /// (index, version, leaf hash) of every new leaf of the epoch.
    leaves: Vec<(Index, u64, Digest)>,
}

/// The auditor (see the module docs).
#[derive(Debug)]
pub struct Auditor {
    /// The configurations heads are verified under (key rotations, §8.1).
    config: ConfigChain,
    key: SigningKeyPair,
    options: AuditorOptions,
    last_head: Option<SignedHead>,
    leaves: Vec<Digest>,
    log: MemoryLog,
    pending: Vec<SignedMutationTimestamp>,
    recent: VecDeque<RecentEpoch>,
    recent_leaves: usize,
    /// Latest timestamp of an epoch whose changes are not in `recent`.
    forgotten_until_ms: Option<u64>,
}

impl Auditor {
    /// A new auditor starting at epoch 1, cosigning with `key`.
    pub fn new(config: impl Into<ConfigChain>, key: SigningKeyPair) -> Self {
        Self {
            config: config.into(),
            key,
            options: AuditorOptions::default(),
            last_head: None,
            leaves: Vec::new(),
            log: MemoryLog::new(),
            pending: Vec::new(),
            recent: VecDeque::new(),
            recent_leaves: 0,
            forgotten_until_ms: None,
        }
    }

    pub fn with_options(mut self, options: AuditorOptions) -> Self {
        self.options = options;
        self
    }

    /// Restores an auditor from [`state_bytes`](Self::state_bytes). The
    /// stored head is verified under `config` and the rebuilt log must match
    /// it ([`ClientError::State`] otherwise).
    pub fn resume(
        config: impl Into<ConfigChain>,
        key: SigningKeyPair,
        state: &[u8],
    ) -> Result<Self> {
        let mut a = Self::new(config, key);
        let decode = |a: &mut Self| -> candor_core::Result<()> {
            let mut r = Reader::new(state, "auditor state");
            r.expect_str8(STATE_TAG)?;
            let last_head = match r.u8()? {
                0 => None,
                1 => Some(a.config.decode_head(r.bytes32(1 << 16)?)?),
                t => return Err(state_err(format!("bad presence flag {t}"))),
            };
            let n = r.u64()?;
            if n.checked_mul(32).is_none_or(|b| b > r.remaining() as u64) {
                return Err(state_err("log leaf count does not fit"));
            }
            for _ in 0..n {
                let leaf: Digest = r.array()?;
                a.leaves.push(leaf);
                a.log.append(leaf);
            }
            let p = r.u32()?;
            for _ in 0..p {
                let smt = SignedMutationTimestamp::decode(r.bytes32(1 << 16)?)?;
                a.config.verify_smt(&smt)?;
                a.pending.push(smt);
            }
            r.finish()?;
            match &last_head {
                None if n == 0 => {}
                Some(h) if h.head.log_size == n && h.head.log_root == a.log.root() => {}
                _ => return Err(state_err("stored log does not match the stored head")),
            }
            a.forgotten_until_ms = last_head.as_ref().map(|h| h.head.timestamp_ms);
            a.last_head = last_head;
            Ok(())
        };
        decode(&mut a).map_err(ClientError::State)?;
        Ok(a)
    }

    /// The persistent state (see the module docs).
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + 32 * self.leaves.len());
        w.str8(STATE_TAG);
        match &self.last_head {
            Some(h) => {
                w.u8(1).bytes32(&h.encode());
            }
            None => {
                w.u8(0);
            }
        }
        w.u64(self.leaves.len() as u64);
        for l in &self.leaves {
            w.raw(l);
        }
        w.u32(self.pending.len() as u32);
        for s in &self.pending {
            w.bytes32(&s.encode());
        }
        w.into_vec()
    }

    pub fn config(&self) -> &PublicConfig {
        self.config.current()
    }

    /// Adopts `chain` when it extends the configurations known so far (the service
    /// rotated its keys); otherwise keeps them.
    pub fn learn_configs(&mut self, chain: &ConfigChain) {
        if chain.len() > self.config.len() && chain.extends(&self.config) {
            self.config = chain.clone();
        }
    }

    /// The auditor's cosigning public key.
    pub fn public_key(&self) -> candor_core::signed::PublicKey {
        self.key.public_key()
    }

    /// The last head accepted.
    pub fn last_head(&self) -> Option<&SignedHead> {
        self.last_head.as_ref()
    }

    /// The next epoch to process.
    pub fn next_epoch(&self) -> u64 {
        self.last_head.as_ref().map_or(1, |h| h.head.epoch + 1)
    }

    /// SMTs waiting for their deadline.
    pub fn pending_smts(&self) -> &[SignedMutationTimestamp] {
        &self.pending
    }

    /// The root of the auditor's own epoch log.
    pub fn log_root(&self) -> Digest {
        self.log.root()
    }

    fn retain_ms(&self) -> u64 {
        self.options
            .retain_changes_ms
            .unwrap_or(self.config.base().max_merge_delay_ms.saturating_add(60_000))
    }

    /// Shows the auditor an SMT. Fails if the SMT itself does not verify
    /// under the configuration (then it promises nothing). Otherwise decides
    /// from the epochs audited so far, or remembers it until a head past its
    /// deadline is processed.
    pub fn check_smt(&mut self, smt: &SignedMutationTimestamp) -> Result<SmtStatus> {
        self.config.verify_smt(smt).map_err(vfail("SMT"))?;
        let m = &smt.smt;
        for e in &self.recent {
            if e.leaves
                .iter()
                .any(|(i, v, h)| *i == m.index && *v == m.version && *h == m.leaf_hash)
            {
                return Ok(if e.head.head.timestamp_ms <= m.merge_deadline_ms {
                    SmtStatus::Honoured {
                        epoch: e.head.head.epoch,
                    }
                } else {
                    SmtStatus::Broken {
                        head_after_deadline: Box::new(e.head.clone()),
                    }
                });
            }
        }
        if let Some(t) = self.forgotten_until_ms
            && t.saturating_add(self.options.clock_skew_ms) >= m.timestamp_ms
        {
            return Ok(SmtStatus::Unknown);
        }
        if let Some(after) = self
            .recent
            .iter()
            .find(|e| e.head.head.timestamp_ms > m.merge_deadline_ms)
        {
            return Ok(SmtStatus::Broken {
                head_after_deadline: Box::new(after.head.clone()),
            });
        }
        if !self.pending.contains(smt) {
            self.pending.push(smt.clone());
        }
        Ok(SmtStatus::Pending)
    }

    /// Audits the next epoch ([`next_epoch`](Self::next_epoch)) from the
    /// service's `AuditResponse`. `now_ms` is the cosignature's timestamp.
    pub fn process(&mut self, resp: &pb::AuditResponse, now_ms: u64) -> EpochReport {
        let epoch = self.next_epoch();
        let mut report = EpochReport {
            epoch,
            events: Vec::new(),
            accepted: false,
            cosignature: None,
        };
        let alarm = |report: &mut EpochReport, ev: AuditEvent| {
            report.events.push(ev);
        };

        // The previous head must be the one we verified: checked before the
        // proof so a fork is reported as what it is.
        if let Some(ours) = &self.last_head
            && let Ok(served) = verify::head_at(&self.config, &resp.previous_head, Some(epoch - 1))
            && served != *ours
        {
            alarm(
                &mut report,
                AuditEvent::Equivocation(Box::new(EquivocationEvidence {
                    first: ours.clone(),
                    second: served,
                })),
            );
            return report;
        }
        let audit = match verify::audit(&self.config, epoch, resp) {
            Ok(a) => a,
            Err(e) => {
                let (what, error) = match e {
                    ClientError::Verification { what, source } => (what, source),
                    other => ("audit response", CoreError::Context(other.to_string())),
                };
                alarm(
                    &mut report,
                    AuditEvent::InvalidResponse { epoch, what, error },
                );
                return report;
            }
        };
        let head = audit.head;
        if let Some(prev) = &self.last_head
            && head.head.timestamp_ms < prev.head.timestamp_ms
        {
            alarm(
                &mut report,
                AuditEvent::TimeRegression {
                    epoch,
                    previous_ms: prev.head.timestamp_ms,
                    timestamp_ms: head.head.timestamp_ms,
                },
            );
            return report;
        }
        let leaf = EpochEntry::of_head(&head).leaf_hash();
        self.log.append(leaf);
        let computed_root = self.log.root();
        if head.head.log_size != self.log.len() || head.head.log_root != computed_root {
            // Undo the append: rebuild from the accepted leaves (rare path).
            self.log = MemoryLog::new();
            for l in &self.leaves {
                self.log.append(*l);
            }
            alarm(
                &mut report,
                AuditEvent::LogMismatch {
                    epoch,
                    served_root: head.head.log_root,
                    computed_root,
                },
            );
            return report;
        }

        // Accepted.
        self.leaves.push(leaf);
        let new_leaves: Vec<(Index, u64, Digest)> = audit
            .changes
            .iter()
            .flat_map(|c| c.new_leaves.iter().map(|l| (l.index, l.version, l.hash())))
            .collect();
        report.events.push(AuditEvent::Verified {
            epoch,
            changed_labels: audit.changes.len() as u64,
            new_leaves: new_leaves.len() as u64,
        });
        let ts = head.head.timestamp_ms;
        self.pending.retain(|smt| {
            let m = &smt.smt;
            let included = audit
                .changes
                .iter()
                .any(|c| c.index == m.index && c.contains(m.version, &m.leaf_hash));
            if included && ts <= m.merge_deadline_ms {
                report.events.push(AuditEvent::SmtHonoured {
                    smt: Box::new(smt.clone()),
                    epoch,
                });
                false
            } else if included || ts > m.merge_deadline_ms {
                report.events.push(AuditEvent::BrokenPromise {
                    smt: Box::new(smt.clone()),
                    head_after_deadline: Box::new(head.clone()),
                });
                false
            } else {
                true
            }
        });
        self.remember(head.clone(), new_leaves);
        report.cosignature = Some(Cosignature::create(&head.head, &self.key, now_ms));
        report.accepted = true;
        self.last_head = Some(head);
        report
    }

    fn remember(&mut self, head: SignedHead, leaves: Vec<(Index, u64, Digest)>) {
        let ts = head.head.timestamp_ms;
        self.recent_leaves += leaves.len();
        self.recent.push_back(RecentEpoch { head, leaves });
        let horizon = ts.saturating_sub(self.retain_ms());
        while let Some(front) = self.recent.front() {
            let too_old = front.head.head.timestamp_ms < horizon;
            let too_many =
                self.recent_leaves > self.options.max_retained_leaves && self.recent.len() > 1;
            if !(too_old || too_many) {
                break;
            }
            let front = self.recent.pop_front().expect("front exists");
            self.recent_leaves -= front.leaves.len();
            self.forgotten_until_ms = Some(front.head.head.timestamp_ms);
        }
    }

    /// Audits every epoch from [`next_epoch`](Self::next_epoch) up to the
    /// latest signed one (at most `max_epochs` of them), submitting each
    /// cosignature when `submit` is set. Stops early at the first epoch that
    /// is not accepted (its report holds the alarm). Call it again to
    /// continue; persist [`state_bytes`](Self::state_bytes) between calls.
    pub async fn follow(
        &mut self,
        client: &Client,
        submit: bool,
        max_epochs: Option<u64>,
    ) -> Result<Vec<EpochReport>> {
        let latest = client.latest_head().await?.head.epoch;
        // Verifying the latest head refreshed the client's configurations.
        self.learn_configs(&client.chain());
        let mut reports = Vec::new();
        let mut done = 0u64;
        while self.next_epoch() <= latest && max_epochs.is_none_or(|m| done < m) {
            let resp = client.audit_response(self.next_epoch()).await?;
            let report = self.process(&resp, now_ms());
            if submit && let Some(c) = &report.cosignature {
                client.submit_cosignature(c).await?;
            }
            let accepted = report.accepted;
            reports.push(report);
            done += 1;
            if !accepted {
                break;
            }
        }
        Ok(reports)
    }
}

/// How [`audit_range`] checked the epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// From epoch 1: every transition with the auditor, the epoch log recomputed.
    Full,
    /// From a later epoch: every transition verified and chained head to head, the
    /// log checked with consistency proofs against every head seen.
    Window,
}

/// What [`audit_range`] verified.
#[derive(Debug, Clone)]
pub struct AuditSummary {
    /// How the range was checked.
    pub mode: AuditMode,
    /// Label changes over the range.
    pub labels_changed: u64,
    /// New leaves over the range.
    pub leaves_added: u64,
    /// The head of the last epoch audited.
    pub last: SignedHead,
    /// The epoch log root the auditor recomputed ([`AuditMode::Full`] only).
    pub log_root: Option<Digest>,
}

fn audit_failure(why: String) -> ClientError {
    ClientError::Verification {
        what: "audit",
        source: CoreError::Inconsistent(why),
    }
}

/// Audits epochs `from..=to` (`1 ≤ from ≤ to`, all signed) through `client`, as
/// `candor audit` does: from epoch 1 with an [`Auditor`] (an ephemeral key; nothing is
/// cosigned), otherwise transition by transition. Any refused epoch is an error.
pub async fn audit_range(client: &Client, from: u64, to: u64) -> Result<AuditSummary> {
    let (mut labels, mut leaves) = (0u64, 0u64);
    let (mode, last, log_root) = if from == 1 {
        let mut auditor = Auditor::new((*client.chain()).clone(), SigningKeyPair::generate());
        while auditor.next_epoch() <= to {
            let max = to - auditor.next_epoch() + 1;
            let reports = auditor.follow(client, false, Some(max)).await?;
            if reports.is_empty() {
                break;
            }
            for r in &reports {
                if !r.accepted || r.has_alarm() {
                    let alarms: Vec<String> = r.alarms().map(|e| format!("{e:?}")).collect();
                    return Err(audit_failure(format!(
                        "epoch {}: {}",
                        r.epoch,
                        if alarms.is_empty() {
                            "not accepted".into()
                        } else {
                            alarms.join("; ")
                        }
                    )));
                }
                for e in &r.events {
                    if let AuditEvent::Verified {
                        changed_labels,
                        new_leaves,
                        ..
                    } = e
                    {
                        labels += changed_labels;
                        leaves += new_leaves;
                    }
                }
            }
        }
        let last = auditor
            .last_head()
            .cloned()
            .ok_or_else(|| audit_failure("the auditor accepted no epoch".into()))?;
        (AuditMode::Full, last, Some(auditor.log_root()))
    } else {
        let mut prev: Option<SignedHead> = None;
        for e in from..=to {
            let resp = client.audit_response(e).await?;
            let v = verify::audit(&*client.chain(), e, &resp)?;
            if let (Some(p), Some(served)) = (&prev, &v.previous)
                && p != served
            {
                return Err(audit_failure(format!(
                    "epoch {e}: the previous head served differs from the head verified for epoch {}",
                    e - 1
                )));
            }
            // Checks the head against every head seen so far (consistency proof of
            // the epoch log, time never going back).
            client.observe_head(&v.head).await?;
            labels += v.changes.len() as u64;
            leaves += v
                .changes
                .iter()
                .map(|c| c.new_leaves.len() as u64)
                .sum::<u64>();
            prev = Some(v.head);
        }
        let last = prev.ok_or_else(|| ClientError::InvalidArgument("empty epoch range".into()))?;
        (AuditMode::Window, last, None)
    };
    if last.head.epoch != to {
        return Err(audit_failure(format!(
            "audit stopped at epoch {}, not {to}",
            last.head.epoch
        )));
    }
    Ok(AuditSummary {
        mode,
        labels_changed: labels,
        leaves_added: leaves,
        last,
        log_root,
    })
}

fn state_err(why: impl Into<String>) -> CoreError {
    CoreError::Decode {
        what: "auditor state",
        why: why.into(),
    }
}
