//! Owner monitoring: the check that makes key transparency useful to the
//! account owner.
//!
//! Lookups prove everyone sees the same keys for a label, but only the
//! owner knows which versions it actually published. The owner (its app,
//! on each device) therefore watches its own label: at every new epoch it
//! fetches the label's verified history and compares it with the versions
//! it published (their leaf hashes, from [`VerifiedPublish`]). Any other
//! version is an alarm: someone (the provider, an attacker with the
//! provider's credentials, a compromised server) published keys under the
//! owner's label, and every contact would now encrypt to them.
//!
//! [`MonitorState`] is pure (feed it verified histories); [`Monitor`] drives
//! it over a [`Client`].

use std::collections::{BTreeMap, BTreeSet};

use candor_core::Digest;

use candor_core::codec::{Reader, Writer};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::verify::{VerifiedHistory, VerifiedPublish};

const STATE_TAG: &[u8] = b"candor-v1 monitor state";

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorEvent {
    /// A version the owner published is now in a signed epoch.
    Confirmed {
        label: Vec<u8>,
        version: u64,
        epoch: u64,
    },
    /// **Alarm.** A version the owner did not publish (or a known version
    /// number with another leaf) is in the label's history.
    UnexpectedChange {
        label: Vec<u8>,
        version: u64,
        leaf_hash: Digest,
        epoch: u64,
    },
    /// **Alarm.** A version seen in an earlier check now has a different
    /// leaf: the label's history was rewritten.
    HistoryRewritten {
        label: Vec<u8>,
        version: u64,
        before: Digest,
        now: Digest,
        epoch: u64,
    },
    /// **Alarm.** The history is shorter than in an earlier check.
    Rollback {
        label: Vec<u8>,
        previously: u64,
        now: u64,
        epoch: u64,
    },
}

impl MonitorEvent {
    pub fn is_alarm(&self) -> bool {
        !matches!(self, MonitorEvent::Confirmed { .. })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Watched {
    /// Versions the owner published: version → leaf hash.
    known: BTreeMap<u64, Digest>,
    /// Leaf hashes of versions 1..=n as of the last check.
    seen: Vec<Digest>,
    /// (version, leaf hash) alarms already raised, so each is raised once.
    reported: BTreeSet<(u64, Digest)>,
    /// (version, leaf hash) rewrites already reported.
    rewrites: BTreeSet<(u64, Digest)>,
    /// History lengths already reported as rollbacks.
    rollbacks: BTreeSet<u64>,
    confirmed: BTreeSet<u64>,
}

/// The owner's expectations and what it saw, per label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorState {
    labels: BTreeMap<Vec<u8>, Watched>,
}

impl MonitorState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts watching `label`, which the owner published as `known`
    /// (version, leaf hash) pairs (may be empty: then any version is an
    /// alarm, e.g. for a label that must stay unused).
    pub fn watch(&mut self, label: &[u8], known: impl IntoIterator<Item = (u64, Digest)>) {
        let w = self.labels.entry(label.to_vec()).or_default();
        w.known.extend(known);
    }

    /// Records a version the owner just published.
    pub fn expect(&mut self, label: &[u8], version: u64, leaf_hash: Digest) {
        self.watch(label, [(version, leaf_hash)]);
    }

    /// Records a verified publish (call it right after publishing).
    pub fn expect_publish(&mut self, p: &VerifiedPublish) {
        self.expect(&p.label, p.version, p.leaf_hash);
    }

    /// The watched labels.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        self.labels.keys().map(Vec::as_slice)
    }

    /// Canonical encoding, to persist the monitor between sessions (the
    /// expectations, the versions seen and the alarms already raised).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str8(STATE_TAG).u32(self.labels.len() as u32);
        for (label, s) in &self.labels {
            w.bytes32(label).u32(s.known.len() as u32);
            for (v, h) in &s.known {
                w.u64(*v).raw(h);
            }
            w.u32(s.seen.len() as u32);
            for h in &s.seen {
                w.raw(h);
            }
            w.u32(s.reported.len() as u32);
            for (v, h) in &s.reported {
                w.u64(*v).raw(h);
            }
            w.u32(s.rewrites.len() as u32);
            for (v, h) in &s.rewrites {
                w.u64(*v).raw(h);
            }
            w.u32(s.rollbacks.len() as u32);
            for v in &s.rollbacks {
                w.u64(*v);
            }
            w.u32(s.confirmed.len() as u32);
            for v in &s.confirmed {
                w.u64(*v);
            }
        }
        w.into_vec()
    }

    /// Restores a state saved with [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let decode = || -> candor_core::Result<Self> {
            let mut r = Reader::new(bytes, "monitor state");
            r.expect_str8(STATE_TAG)?;
            // Every count is bounded by the bytes left, so a corrupt count
            // cannot make us allocate or loop much.
            let count = |r: &mut Reader<'_>, item: usize| -> candor_core::Result<u32> {
                let n = r.u32()?;
                if (n as usize).saturating_mul(item) > r.remaining() {
                    return Err(candor_core::CoreError::Decode {
                        what: "monitor state",
                        why: format!("{n} items do not fit"),
                    });
                }
                Ok(n)
            };
            let mut labels = BTreeMap::new();
            for _ in 0..count(&mut r, 4)? {
                let label = r.bytes32(1 << 20)?.to_vec();
                let mut s = Watched::default();
                for _ in 0..count(&mut r, 40)? {
                    s.known.insert(r.u64()?, r.array()?);
                }
                for _ in 0..count(&mut r, 32)? {
                    s.seen.push(r.array()?);
                }
                for _ in 0..count(&mut r, 40)? {
                    s.reported.insert((r.u64()?, r.array()?));
                }
                for _ in 0..count(&mut r, 40)? {
                    s.rewrites.insert((r.u64()?, r.array()?));
                }
                for _ in 0..count(&mut r, 8)? {
                    s.rollbacks.insert(r.u64()?);
                }
                for _ in 0..count(&mut r, 8)? {
                    s.confirmed.insert(r.u64()?);
                }
                labels.insert(label, s);
            }
            r.finish()?;
            Ok(MonitorState { labels })
        };
        decode().map_err(ClientError::State)
    }

    /// Compares a verified history of `label` with the expectations.
    /// Each alarm is raised once; unwatched labels give no events.
    pub fn check(&mut self, label: &[u8], history: &VerifiedHistory) -> Vec<MonitorEvent> {
        let Some(w) = self.labels.get_mut(label) else {
            return Vec::new();
        };
        let epoch = history.epoch();
        let mut events = Vec::new();
        let now: Vec<Digest> = history.versions().iter().map(|v| v.leaf_hash).collect();
        if now.len() < w.seen.len() && w.rollbacks.insert(now.len() as u64) {
            events.push(MonitorEvent::Rollback {
                label: label.to_vec(),
                previously: w.seen.len() as u64,
                now: now.len() as u64,
                epoch,
            });
        }
        for (i, (before, after)) in w.seen.iter().zip(&now).enumerate() {
            if before != after && w.rewrites.insert((i as u64 + 1, *after)) {
                events.push(MonitorEvent::HistoryRewritten {
                    label: label.to_vec(),
                    version: i as u64 + 1,
                    before: *before,
                    now: *after,
                    epoch,
                });
            }
        }
        for v in history.versions() {
            match w.known.get(&v.version) {
                Some(h) if *h == v.leaf_hash => {
                    if w.confirmed.insert(v.version) {
                        events.push(MonitorEvent::Confirmed {
                            label: label.to_vec(),
                            version: v.version,
                            epoch,
                        });
                    }
                }
                _ => {
                    if w.reported.insert((v.version, v.leaf_hash)) {
                        events.push(MonitorEvent::UnexpectedChange {
                            label: label.to_vec(),
                            version: v.version,
                            leaf_hash: v.leaf_hash,
                            epoch,
                        });
                    }
                }
            }
        }
        if now.len() >= w.seen.len() {
            w.seen = now;
        }
        events
    }
}

/// Watches the owner's labels over a [`Client`] (which also checks every
/// head for consistency).
#[derive(Debug)]
pub struct Monitor {
    client: Client,
    state: MonitorState,
    last_epoch: u64,
}

impl Monitor {
    pub fn new(client: Client, state: MonitorState) -> Self {
        Self {
            client,
            state,
            last_epoch: 0,
        }
    }

    pub fn state(&self) -> &MonitorState {
        &self.state
    }

    /// Add labels or expected versions (after publishing).
    pub fn state_mut(&mut self) -> &mut MonitorState {
        &mut self.state
    }

    /// The epoch of the last check (0 before the first).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// Checks every watched label at the latest signed epoch, if it is newer
    /// than the last one checked. A history covers every version up to its
    /// epoch, so skipped epochs lose nothing. Call it periodically (every
    /// epoch interval or slower); alarms are the events with
    /// [`MonitorEvent::is_alarm`].
    pub async fn poll(&mut self) -> Result<Vec<MonitorEvent>> {
        let head = self.client.latest_head().await?;
        let epoch = head.head.epoch;
        if epoch <= self.last_epoch {
            return Ok(Vec::new());
        }
        let labels: Vec<Vec<u8>> = self.state.labels().map(<[u8]>::to_vec).collect();
        let mut events = Vec::new();
        for label in labels {
            let h = self.client.history_at(&label, Some(epoch)).await?;
            events.extend(self.state.check(&label, &h));
        }
        self.last_epoch = epoch;
        Ok(events)
    }
}
