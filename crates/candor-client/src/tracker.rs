//! Head tracking: the client's memory of the epoch log.
//!
//! A single signed head only says "the service signed this". What stops a
//! service from showing different clients different maps (a split view) is
//! that every client checks every head it sees against the last head it
//! verified: a newer head must extend the log of the remembered one
//! (consistency proof), an older head must be a prefix of it, and a second,
//! different head for the same epoch is equivocation, with both signed heads
//! as evidence. Combined with auditors that check every epoch transition and
//! gossip (cosignatures), a client that keeps its [`HeadTracker`] across
//! sessions can never be moved to a forked history without detection.
//!
//! [`HeadTracker`] is pure: the [`Client`](crate::Client) asks it what proof
//! it needs ([`HeadTracker::check`]), fetches it, and hands it back
//! ([`HeadTracker::accept`]). Persist it with [`HeadTracker::to_bytes`].

use candor_core::codec::{Reader, Writer};
use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::signed::SignedHead;

use crate::error::{ClientError, Result, vfail};
use crate::evidence::EquivocationEvidence;

const STATE_TAG: &[u8] = b"candor-v1 head tracker";

/// What the tracker needs before it can accept a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadCheck {
    /// Nothing: the tracker is empty (first head) or already holds this head.
    Accept,
    /// A consistency proof between these epochs (`from < to`; one of them is
    /// the remembered head's epoch, the other the new head's).
    NeedConsistency { from: u64, to: u64 },
}

/// The last verified epoch head (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadTracker {
    latest: Option<SignedHead>,
}

impl HeadTracker {
    /// An empty tracker: the first head it sees is accepted as is (after its
    /// signature was verified against the pinned configuration).
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker that starts from a head the caller already trusts.
    pub fn with_head(head: SignedHead) -> Self {
        Self { latest: Some(head) }
    }

    /// The newest head verified so far.
    pub fn latest(&self) -> Option<&SignedHead> {
        self.latest.as_ref()
    }

    /// What is needed to accept `head` (signature already verified). Fails
    /// with [`ClientError::Equivocation`] when `head` is a different head for
    /// the remembered epoch.
    pub fn check(&self, head: &SignedHead) -> Result<HeadCheck> {
        let Some(latest) = &self.latest else {
            return Ok(HeadCheck::Accept);
        };
        let (l, n) = (latest.head.epoch, head.head.epoch);
        if l == n {
            if latest != head {
                return Err(equivocation(latest, head));
            }
            return Ok(HeadCheck::Accept);
        }
        Ok(HeadCheck::NeedConsistency {
            from: l.min(n),
            to: l.max(n),
        })
    }

    /// Accepts `head` (signature already verified) given the consistency
    /// proof [`check`](Self::check) asked for. A newer head becomes the
    /// remembered one; an older head is only checked. Returns whether the
    /// remembered head advanced.
    pub fn accept(
        &mut self,
        head: &SignedHead,
        proof: Option<&HeadExtensionProof>,
    ) -> Result<bool> {
        let Some(latest) = &self.latest else {
            self.latest = Some(head.clone());
            return Ok(true);
        };
        let (l, n) = (latest.head.epoch, head.head.epoch);
        if l == n {
            if latest != head {
                return Err(equivocation(latest, head));
            }
            return Ok(false);
        }
        let proof = proof.ok_or_else(|| {
            ClientError::InvalidArgument(format!(
                "a consistency proof between epochs {} and {} is needed",
                l.min(n),
                l.max(n)
            ))
        })?;
        if n > l {
            verify_head_extension(latest, head, proof).map_err(vfail("head consistency"))?;
            self.latest = Some(head.clone());
            Ok(true)
        } else {
            verify_head_extension(head, latest, proof).map_err(vfail("head consistency"))?;
            Ok(false)
        }
    }

    /// Canonical encoding, for persisting the tracker between sessions.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str8(STATE_TAG);
        match &self.latest {
            Some(h) => {
                w.u8(1).bytes32(&h.encode());
            }
            None => {
                w.u8(0);
            }
        }
        w.into_vec()
    }

    /// Restores a tracker saved with [`to_bytes`](Self::to_bytes). The head
    /// is verified again under `config`, so state from another deployment
    /// or configuration is rejected ([`ClientError::State`]).
    pub fn from_bytes(
        bytes: &[u8],
        config: &(impl candor_core::rotation::Configs + ?Sized),
    ) -> Result<Self> {
        let decode = || -> candor_core::Result<Self> {
            let mut r = Reader::new(bytes, "head tracker state");
            r.expect_str8(STATE_TAG)?;
            let latest = match r.u8()? {
                0 => None,
                1 => Some(config.decode_head(r.bytes32(1 << 16)?)?),
                t => {
                    return Err(candor_core::CoreError::Decode {
                        what: "head tracker state",
                        why: format!("bad presence flag {t}"),
                    });
                }
            };
            r.finish()?;
            Ok(Self { latest })
        };
        decode().map_err(ClientError::State)
    }
}

fn equivocation(a: &SignedHead, b: &SignedHead) -> ClientError {
    ClientError::Equivocation(Box::new(EquivocationEvidence {
        first: a.clone(),
        second: b.clone(),
    }))
}

/// Where a client keeps the last head it verified of one deployment between runs
/// (the freshness rule of docs/protocol.md §9.4): one file per pinned configuration
/// digest, `heads-<digest hex>.bin`, in a state directory.
#[derive(Debug, Clone)]
pub struct HeadStateFile {
    path: std::path::PathBuf,
}

impl HeadStateFile {
    /// `$XDG_STATE_HOME/candor`, else `~/.local/state/candor`; `None` without either.
    pub fn default_dir() -> Option<std::path::PathBuf> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        var("XDG_STATE_HOME")
            .map(|v| std::path::Path::new(&v).join("candor"))
            .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".local/state/candor")))
    }

    /// The file for the deployment pinned to `pinned` in `dir`.
    pub fn new(dir: &std::path::Path, pinned: &candor_core::Digest) -> Self {
        HeadStateFile {
            path: dir.join(format!("heads-{}.bin", hex::encode(pinned))),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The stored tracker, its head verified under `configs` (an empty tracker when
    /// the file does not exist yet).
    pub fn load(
        &self,
        configs: &(impl candor_core::rotation::Configs + ?Sized),
    ) -> std::io::Result<Result<HeadTracker>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(HeadTracker::from_bytes(&bytes, configs)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ok(HeadTracker::new())),
            Err(e) => Err(e),
        }
    }

    /// Stores `tracker`'s newest head, atomically, unless the file holds a newer one
    /// (another run may have advanced it meanwhile).
    pub fn save(
        &self,
        tracker: &HeadTracker,
        configs: &(impl candor_core::rotation::Configs + ?Sized),
    ) -> std::io::Result<()> {
        let Some(latest) = tracker.latest() else {
            return Ok(());
        };
        if let Ok(Ok(stored)) = self.load(configs)
            && stored
                .latest()
                .is_some_and(|h| h.head.epoch > latest.head.epoch)
        {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, tracker.to_bytes())?;
        std::fs::rename(&tmp, &self.path)
    }
}
