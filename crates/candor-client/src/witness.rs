//! A C2SP transparency-log witness (c2sp.org/tlog-witness), protocol logic only.
//!
//! A witness is configured with a name, its Ed25519 key and the logs it witnesses
//! (each an origin and the log's note verifier key). For each log it remembers the
//! latest checkpoint it cosigned (size and root). `add-checkpoint` gives it a new
//! checkpoint with a consistency proof from that size; if the checkpoint is signed
//! by the log and extends what it saw, it records it and returns a
//! `cosignature/v1` line (c2sp.org/tlog-cosignature). This works for Candor's
//! checkpoints (docs/protocol.md §11) and for any other C2SP log.
//!
//! No I/O here: [`Witness::add_checkpoint`] returns the new state to persist, and
//! the caller (`candor witness`) persists it *before* answering, under one lock
//! so that the check of the old size and the update are atomic (the spec's race).
//! [`WitnessState::encode`] / [`WitnessState::decode`] are its on-disk form.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use candor_core::checkpoint::{
    ALG_ED25519, Checkpoint, Note, cosign_v1, key_id, rfc6962_node, valid_key_name,
};
use candor_core::log::ConsistencyProof;
use candor_core::signed::{PublicKey, SIGNATURE_LEN, SigningKeyPair};
use candor_core::{CoreError, Digest};

/// Most consistency proof lines a request may carry (the spec's bound).
pub const MAX_PROOF_LINES: usize = 63;

/// A log the witness accepts: its origin and the note key it signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedLog {
    /// The checkpoint origin (and, by convention, the key name).
    pub origin: String,
    /// The key name of the log's signature line.
    pub key_name: String,
    /// The log's Ed25519 note key.
    pub key: PublicKey,
}

impl WitnessedLog {
    /// Parses a signed-note verifier key `name+hex8+base64(0x01 || key)`; the
    /// origin is the key name.
    pub fn from_vkey(vkey: &str) -> Result<Self, String> {
        let (name, alg, key) = candor_core::checkpoint::parse_verifier_key(vkey)
            .map_err(|e| format!("{vkey:?}: {e}"))?;
        if alg != ALG_ED25519 {
            return Err(format!("{vkey:?}: not a log key (type 0x01)"));
        }
        Ok(WitnessedLog {
            origin: name.clone(),
            key_name: name,
            key,
        })
    }
}

/// What the witness remembers per origin: the latest cosigned size and root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessState {
    pub logs: BTreeMap<String, (u64, Digest)>,
}

impl WitnessState {
    /// One line per origin: `origin size base64(root)`.
    pub fn encode(&self) -> String {
        self.logs
            .iter()
            .map(|(o, (s, r))| format!("{o} {s} {}\n", B64.encode(r)))
            .collect()
    }

    /// The inverse of [`Self::encode`]; a malformed line is an error (the state
    /// file is the witness's memory: never silently reset).
    pub fn decode(text: &str) -> Result<Self, String> {
        let mut logs = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let mut f = line.split(' ');
            let (Some(o), Some(s), Some(r), None) = (f.next(), f.next(), f.next(), f.next()) else {
                return Err(format!("line {}: not `origin size root`", n + 1));
            };
            let size: u64 = s.parse().map_err(|_| format!("line {}: bad size", n + 1))?;
            let root: Digest = B64
                .decode(r)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("line {}: bad root", n + 1))?;
            logs.insert(o.to_string(), (size, root));
        }
        Ok(WitnessState { logs })
    }
}

/// Why an add-checkpoint was refused, with its HTTP status (c2sp.org/tlog-witness).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddCheckpointError {
    /// 400: the request is malformed, or the old size is beyond the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the origin is not one this witness witnesses.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: no signature by the log's key verifies.
    #[error("the checkpoint is not signed by the log's key")]
    Forbidden,
    /// 409: the old size is not the latest cosigned size; the body is that size.
    #[error("the old size is not the latest cosigned size {latest}")]
    OldSizeMismatch { latest: u64 },
    /// 409: same size as the latest cosigned checkpoint, another root (a fork).
    #[error("same size {size} as the cosigned checkpoint, different root hash")]
    RootMismatch { size: u64 },
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify: {0}")]
    BadProof(String),
}

impl AddCheckpointError {
    /// The HTTP status code the spec gives.
    pub fn status(&self) -> u16 {
        match self {
            AddCheckpointError::BadRequest(_) => 400,
            AddCheckpointError::UnknownOrigin(_) => 404,
            AddCheckpointError::Forbidden => 403,
            AddCheckpointError::OldSizeMismatch { .. }
            | AddCheckpointError::RootMismatch { .. } => 409,
            AddCheckpointError::BadProof(_) => 422,
        }
    }
}

/// A parsed add-checkpoint request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Digest>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body: `old N`, proof lines, an empty line, the note.
    pub fn encode(&self) -> String {
        let mut s = format!("old {}\n", self.old_size);
        for p in &self.proof {
            s.push_str(&B64.encode(p));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parses a request body (strict).
    pub fn parse(body: &str) -> Result<Self, AddCheckpointError> {
        let bad = |m: &str| AddCheckpointError::BadRequest(m.to_string());
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line is not `old <size>`"))?;
        let old_size: u64 = old
            .parse()
            .ok()
            .filter(|n: &u64| n.to_string() == old)
            .ok_or_else(|| bad("the old size is not a canonical decimal"))?;
        let proof = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|b| <Digest>::try_from(b).ok())
                    .ok_or_else(|| bad("a proof line is not the base64 of 32 bytes"))
            })
            .collect::<Result<Vec<Digest>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            note: note.to_string(),
        })
    }
}

/// The witness: its identity and the logs it witnesses.
#[derive(Debug)]
pub struct Witness {
    name: String,
    key: SigningKeyPair,
    logs: BTreeMap<String, WitnessedLog>,
}

impl Witness {
    /// A witness named `name` (a note key name) with `key`, for `logs`.
    pub fn new(
        name: impl Into<String>,
        key: SigningKeyPair,
        logs: Vec<WitnessedLog>,
    ) -> Result<Self, String> {
        let name = name.into();
        if !valid_key_name(&name) {
            return Err(format!("witness name {name:?} cannot be a note key name"));
        }
        Ok(Witness {
            name,
            key,
            logs: logs.into_iter().map(|l| (l.origin.clone(), l)).collect(),
        })
    }

    /// The witness's verifier key (`cosignature/v1`, type 0x04), for the logs and
    /// clients that check its cosignatures.
    pub fn vkey(&self) -> String {
        candor_core::checkpoint::verifier_key(
            &self.name,
            candor_core::checkpoint::ALG_COSIGNATURE_V1,
            &self.key.public_key(),
        )
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `req` against `state` (c2sp.org/tlog-witness, in the spec's order) and
    /// cosigns it at `now_s`. Returns the response body (one `cosignature/v1` line)
    /// and the new state, which the caller persists before answering.
    pub fn add_checkpoint(
        &self,
        state: &WitnessState,
        req: &AddCheckpoint,
        now_s: u64,
    ) -> Result<(String, WitnessState), AddCheckpointError> {
        let note = Note::parse(&req.note)
            .map_err(|e| AddCheckpointError::BadRequest(format!("checkpoint note: {e}")))?;
        let cp = Checkpoint::parse_body(&note.text)
            .map_err(|e| AddCheckpointError::BadRequest(e.to_string()))?;
        let log = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| AddCheckpointError::UnknownOrigin(cp.origin.clone()))?;
        let id = key_id(&log.key_name, ALG_ED25519, &log.key.0);
        let signed = note
            .signatures
            .iter()
            .filter(|s| s.name == log.key_name && s.key_id == id)
            .any(|s| {
                <&[u8; SIGNATURE_LEN]>::try_from(s.signature.as_slice())
                    .is_ok_and(|sig| verify_note(&log.key, note.text.as_bytes(), sig).is_ok())
            });
        if !signed {
            return Err(AddCheckpointError::Forbidden);
        }
        if req.old_size > cp.size {
            return Err(AddCheckpointError::BadRequest(format!(
                "old size {} is beyond the checkpoint size {}",
                req.old_size, cp.size
            )));
        }
        let latest = state.logs.get(&cp.origin).copied();
        let (latest_size, latest_root) = latest.unwrap_or((0, [0; 32]));
        if req.old_size != latest_size {
            return Err(AddCheckpointError::OldSizeMismatch {
                latest: latest_size,
            });
        }
        if req.old_size == 0 {
            if !req.proof.is_empty() {
                return Err(AddCheckpointError::BadProof(
                    "the proof must be empty from size 0".into(),
                ));
            }
        } else if req.old_size == cp.size {
            if cp.root != latest_root {
                return Err(AddCheckpointError::RootMismatch { size: cp.size });
            }
            if !req.proof.is_empty() {
                return Err(AddCheckpointError::BadProof(
                    "the proof must be empty between equal sizes".into(),
                ));
            }
        } else {
            ConsistencyProof {
                first: req.old_size,
                second: cp.size,
                path: req.proof.clone(),
            }
            .verify_with(&latest_root, &cp.root, rfc6962_node)
            .map_err(|e| AddCheckpointError::BadProof(e.to_string()))?;
        }
        let line = cosign_v1(&cp, &self.name, &self.key, now_s)
            .map_err(|e| AddCheckpointError::BadRequest(e.to_string()))?
            .line();
        let mut next = state.clone();
        next.logs.insert(cp.origin.clone(), (cp.size, cp.root));
        Ok((line, next))
    }
}

/// Strict Ed25519 verification of a note signature (the same rules as every
/// Candor signature, docs/protocol.md §9).
fn verify_note(key: &PublicKey, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> Result<(), CoreError> {
    candor_core::checkpoint::verify_note_signature(key, msg, sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::checkpoint::{
        NoteSignature, rfc6962_leaf, sign_checkpoint, verify_cosignature_v1,
    };
    use candor_core::log::{MemoryLog, range_root};

    struct Log {
        key: SigningKeyPair,
        tree: MemoryLog,
    }

    impl Log {
        fn new() -> Self {
            Log {
                key: SigningKeyPair::from_seed(&[1; 32]),
                tree: MemoryLog::with_node_hash(rfc6962_node),
            }
        }
        fn grow(&mut self, n: u64) {
            for _ in 0..n {
                let i = self.tree.len();
                self.tree.append(rfc6962_leaf(&i.to_be_bytes()));
            }
        }
        fn note(&self) -> String {
            let cp = Checkpoint {
                origin: "log.example/a".into(),
                size: self.tree.len(),
                root: range_root(&self.tree, 0, self.tree.len()).unwrap(),
                extensions: Vec::new(),
            };
            sign_checkpoint(&cp, &self.key).unwrap()
        }
        fn request(&self, old: u64) -> AddCheckpoint {
            let path = if old == 0 {
                Vec::new()
            } else {
                ConsistencyProof::generate(&self.tree, old, self.tree.len())
                    .unwrap()
                    .path
            };
            AddCheckpoint {
                old_size: old,
                proof: path,
                note: self.note(),
            }
        }
        fn logged(&self) -> WitnessedLog {
            WitnessedLog {
                origin: "log.example/a".into(),
                key_name: "log.example/a".into(),
                key: self.key.public_key(),
            }
        }
    }

    #[test]
    fn witness_cosigns_consistent_checkpoints_and_refuses_the_rest() {
        let mut log = Log::new();
        let wkey = SigningKeyPair::from_seed(&[2; 32]);
        let wpub = wkey.public_key();
        let w = Witness::new("witness.example/w", wkey, vec![log.logged()]).unwrap();
        let mut st = WitnessState::default();
        log.grow(5);
        let (line, next) = w.add_checkpoint(&st, &log.request(0), 100).unwrap();
        let sig = NoteSignature::parse(line.trim_end()).unwrap();
        let cp = Checkpoint::parse_body(&Note::parse(&log.note()).unwrap().text).unwrap();
        assert_eq!(
            verify_cosignature_v1(&cp, &sig, "witness.example/w", &wpub).unwrap(),
            100
        );
        st = next;
        // The request body round-trips.
        let r = log.request(5);
        assert_eq!(AddCheckpoint::parse(&r.encode()).unwrap(), r);
        log.grow(6);
        // Wrong old size: 409 with the latest size.
        assert_eq!(
            w.add_checkpoint(&st, &log.request(0), 1).unwrap_err(),
            AddCheckpointError::OldSizeMismatch { latest: 5 }
        );
        // A tampered proof: 422.
        let mut bad = log.request(5);
        bad.proof[0][0] ^= 1;
        assert_eq!(w.add_checkpoint(&st, &bad, 1).unwrap_err().status(), 422);
        let (_, next) = w.add_checkpoint(&st, &log.request(5), 101).unwrap();
        st = next;
        assert_eq!(st.logs["log.example/a"].0, 11);
        assert_eq!(WitnessState::decode(&st.encode()).unwrap(), st);
        // Same size, another root (a fork): 409.
        let mut fork = Log::new();
        for i in 0..11u64 {
            fork.tree.append(rfc6962_leaf(&(i + 1000).to_be_bytes()));
        }
        let mut req = fork.request(0);
        req.old_size = 11;
        assert_eq!(
            w.add_checkpoint(&st, &req, 1).unwrap_err(),
            AddCheckpointError::RootMismatch { size: 11 }
        );
        // Unknown origin: 404; not signed by the log: 403; old size beyond: 400.
        let other = Witness::new(
            "witness.example/w",
            SigningKeyPair::from_seed(&[2; 32]),
            vec![],
        )
        .unwrap();
        assert_eq!(
            other
                .add_checkpoint(&st, &log.request(11), 1)
                .unwrap_err()
                .status(),
            404
        );
        let mut forged = Log::new();
        forged.key = SigningKeyPair::from_seed(&[9; 32]);
        forged.grow(12);
        assert_eq!(
            w.add_checkpoint(&st, &forged.request(11), 1).unwrap_err(),
            AddCheckpointError::Forbidden
        );
        let mut beyond = log.request(11);
        beyond.old_size = 12;
        assert_eq!(w.add_checkpoint(&st, &beyond, 1).unwrap_err().status(), 400);
    }

    #[test]
    fn verifier_keys_parse_and_are_checked() {
        let log = Log::new();
        let vkey = candor_core::checkpoint::verifier_key(
            "log.example/a",
            ALG_ED25519,
            &log.key.public_key(),
        );
        assert_eq!(WitnessedLog::from_vkey(&vkey).unwrap(), log.logged());
        let mut bad = vkey.clone();
        let at = bad.find('+').unwrap() + 1;
        bad.replace_range(at..at + 1, if &vkey[at..at + 1] == "0" { "1" } else { "0" });
        assert!(WitnessedLog::from_vkey(&bad).is_err());
        assert!(WitnessedLog::from_vkey("nope").is_err());
    }
}
