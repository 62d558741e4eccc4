//! C2SP interoperability: the checkpoint tree, `tlog-checkpoint` signed notes and
//! `tlog-cosignature` (`cosignature/v1`) lines (docs/protocol.md §11).
//!
//! Candor's epoch log (§7) hashes with BLAKE3; transparency-log witnesses verify
//! RFC 6962 trees with SHA-256. So next to the epoch log Candor keeps a second
//! Merkle tree over the same epochs, in the exact form witnesses check: **leaf
//! `e - 1` is the canonical encoding of the signed head of epoch `e`** (§9.1, the
//! signature included), hashed `SHA-256(0x00 || head)`; interior nodes are
//! `SHA-256(0x01 || left || right)`. The checkpoint of epoch `e` is the C2SP
//! checkpoint body
//!
//! ```text
//! <namespace>\n<e>\n<base64 of the tree's root over epochs 1..=e>\n
//! ```
//!
//! signed as a C2SP signed note with the deployment's head key (key name: the
//! namespace; Ed25519 note signature, key ID `SHA-256(name || "\n" || 0x01 ||
//! key)[:4]`). A witness that cosigns checkpoint `e` thereby attests to every
//! signed head up to `e`; a client holding head `e` checks that it is the last
//! leaf of the cosigned tree with an inclusion proof.
//!
//! Domain separation from Candor's own signatures: every Candor signed message
//! starts with the byte `0x09` (`str8("candor-v1")`), a control character no note
//! text may contain, and a note text starts with its (printable) origin.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};

use crate::error::{CoreError, Result, decode_err};
use crate::hash::Digest;
use crate::signed::{PublicKey, SIGNATURE_LEN, SignedHead, SigningKeyPair};

/// Signature type of an Ed25519 note signature (c2sp.org/signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// Signature type of an Ed25519 `cosignature/v1` (c2sp.org/tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The most signature lines a note may carry here (c2sp.org/signed-note allows
/// verifiers a limit).
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// The largest note accepted, bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// `SHA-256(0x00 || data)`: an RFC 6962 leaf hash.
pub fn rfc6962_leaf(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: an RFC 6962 interior node.
pub fn rfc6962_node(left: &Digest, right: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The checkpoint-tree leaf of a signed head.
pub fn head_leaf(head: &SignedHead) -> Digest {
    rfc6962_leaf(&head.encode())
}

/// A C2SP checkpoint body (c2sp.org/tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (Candor: the namespace).
    pub origin: String,
    /// The tree size (Candor: the epoch).
    pub size: u64,
    /// The RFC 6962 root hash.
    pub root: Digest,
    /// Extension lines (Candor writes none; other logs may).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The body: origin, size, base64 root, extension lines, each ending in `\n`.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a body (strict: canonical decimal size, canonical base64 of 32 bytes,
    /// no empty line).
    pub fn parse_body(text: &str) -> Result<Self> {
        let what = "checkpoint";
        let lines = text
            .strip_suffix('\n')
            .ok_or_else(|| decode_err(what, "does not end with a newline"))?;
        let mut it = lines.split('\n');
        let origin = it.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(decode_err(what, "empty origin line"));
        }
        let size_line = it.next().ok_or_else(|| decode_err(what, "no size line"))?;
        let size: u64 = size_line
            .parse()
            .ok()
            .filter(|s: &u64| s.to_string() == size_line)
            .ok_or_else(|| decode_err(what, "size is not a canonical decimal"))?;
        let root_line = it
            .next()
            .ok_or_else(|| decode_err(what, "no root hash line"))?;
        let root: Digest = B64
            .decode(root_line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .filter(|r: &Digest| B64.encode(r) == root_line)
            .ok_or_else(|| decode_err(what, "root hash is not the base64 of 32 bytes"))?;
        let extensions: Vec<String> = it.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(decode_err(what, "empty line in the body"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

/// Whether `name` may be a note key name: non-empty, no white space, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// `SHA-256(name || "\n" || alg || key)[:4]`, the key ID of c2sp.org/signed-note.
pub fn key_id(name: &str, alg: u8, key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key of c2sp.org/signed-note: `name+hex(key ID)+base64(alg || key)`.
pub fn verifier_key(name: &str, alg: u8, key: &PublicKey) -> String {
    let mut material = vec![alg];
    material.extend_from_slice(&key.0);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, alg, &key.0)),
        B64.encode(material)
    )
}

/// Parses a verifier key `name+hex(key ID)+base64(alg || key)` of an Ed25519
/// type (`ALG_ED25519` or `ALG_COSIGNATURE_V1`), checking the key ID.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, u8, PublicKey)> {
    let what = "verifier key";
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(decode_err(what, "not name+id+key"));
    };
    if !valid_key_name(name) {
        return Err(decode_err(what, "invalid key name"));
    }
    let material = B64
        .decode(material)
        .map_err(|_| decode_err(what, "the key is not base64"))?;
    if material.len() != 33 || !matches!(material[0], ALG_ED25519 | ALG_COSIGNATURE_V1) {
        return Err(decode_err(what, "not an Ed25519 key of type 0x01 or 0x04"));
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&material[1..]);
    let key = PublicKey(k);
    key.validate("verifier key")?;
    if id.len() != 8 || hex::encode(key_id(name, material[0], &k)) != id.to_ascii_lowercase() {
        return Err(decode_err(
            what,
            "the key ID does not match the name and key",
        ));
    }
    Ok((name.to_string(), material[0], key))
}

/// One signature line of a note: `— <name> base64(key ID || signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    /// What follows the key ID (a signature, or a timestamped one).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its final newline.
    pub fn line(&self) -> String {
        let mut b = self.key_id.to_vec();
        b.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(b))
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<Self> {
        let what = "note signature";
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| decode_err(what, "does not start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| decode_err(what, "no space after the key name"))?;
        if !valid_key_name(name) {
            return Err(decode_err(what, "invalid key name"));
        }
        let bytes = B64
            .decode(b64)
            .map_err(|_| decode_err(what, "signature is not base64"))?;
        if bytes.len() < 5 {
            return Err(decode_err(what, "signature too short"));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            key_id: [bytes[0], bytes[1], bytes[2], bytes[3]],
            signature: bytes[4..].to_vec(),
        })
    }
}

/// A C2SP signed note: a text and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in `\n`.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// The note: text, an empty line, the signature lines.
    pub fn encode(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    /// Parses a note (c2sp.org/signed-note): the text is everything up to the last
    /// empty line; it may hold no control character but newlines.
    pub fn parse(note: &str) -> Result<Self> {
        let what = "signed note";
        if note.len() > MAX_NOTE_BYTES {
            return Err(decode_err(what, "too large"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| decode_err(what, "no empty line before the signatures"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(decode_err(what, "control character in the text"));
        }
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or_else(|| decode_err(what, "no signature line"))?;
        let signatures = sigs
            .split('\n')
            .map(NoteSignature::parse)
            .collect::<Result<Vec<_>>>()?;
        if signatures.len() > MAX_NOTE_SIGNATURES {
            return Err(decode_err(what, "too many signatures"));
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }
}

/// Signs `checkpoint` as a note with `key` under the key name `checkpoint.origin`.
pub fn sign_checkpoint(checkpoint: &Checkpoint, key: &SigningKeyPair) -> Result<String> {
    if !valid_key_name(&checkpoint.origin) {
        return Err(CoreError::InvalidArgument(format!(
            "origin {:?} cannot be a note key name (white space or '+')",
            checkpoint.origin
        )));
    }
    let text = checkpoint.body();
    let sig = key.sign(text.as_bytes());
    Ok(Note {
        text,
        signatures: vec![NoteSignature {
            name: checkpoint.origin.clone(),
            key_id: key_id(&checkpoint.origin, ALG_ED25519, &key.public_key().0),
            signature: sig.to_vec(),
        }],
    }
    .encode())
}

/// Verifies a signed checkpoint note: the signature of key name `origin` with
/// `key` (other signature lines, e.g. cosignatures, are ignored here) over a body
/// whose origin is `origin`. Returns the checkpoint and the parsed note.
pub fn open_checkpoint(note: &str, origin: &str, key: &PublicKey) -> Result<(Checkpoint, Note)> {
    let n = Note::parse(note)?;
    let cp = Checkpoint::parse_body(&n.text)?;
    if cp.origin != origin {
        return Err(CoreError::Context(format!(
            "checkpoint origin {:?}, expected {origin:?}",
            cp.origin
        )));
    }
    let id = key_id(origin, ALG_ED25519, &key.0);
    let sig = n
        .signatures
        .iter()
        .find(|s| s.name == origin && s.key_id == id)
        .ok_or(CoreError::Signature(
            "checkpoint (no signature by the log key)",
        ))?;
    let sig: &[u8; SIGNATURE_LEN] = sig
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| CoreError::Signature("checkpoint (signature of the wrong size)"))?;
    key.verify("checkpoint", n.text.as_bytes(), sig)?;
    Ok((cp, n))
}

/// Strict Ed25519 verification (docs/protocol.md §9) of a note signature over
/// `text`.
pub fn verify_note_signature(
    key: &PublicKey,
    text: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<()> {
    key.verify("signed note", text, sig)
}

fn cosignature_v1_message(checkpoint_body: &str, timestamp_s: u64) -> String {
    format!("cosignature/v1\ntime {timestamp_s}\n{checkpoint_body}")
}

/// A `cosignature/v1` signature line by `name` with `key` over `checkpoint`, at
/// `timestamp_s` (seconds since the Unix epoch).
pub fn cosign_v1(
    checkpoint: &Checkpoint,
    name: &str,
    key: &SigningKeyPair,
    timestamp_s: u64,
) -> Result<NoteSignature> {
    if !valid_key_name(name) {
        return Err(CoreError::InvalidArgument(format!(
            "cosigner name {name:?} cannot be a note key name"
        )));
    }
    if timestamp_s > i64::MAX as u64 {
        return Err(CoreError::InvalidArgument(
            "timestamp beyond 2^63 - 1".into(),
        ));
    }
    let msg = cosignature_v1_message(&checkpoint.body(), timestamp_s);
    let mut signature = timestamp_s.to_be_bytes().to_vec();
    signature.extend_from_slice(&key.sign(msg.as_bytes()));
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: key_id(name, ALG_COSIGNATURE_V1, &key.public_key().0),
        signature,
    })
}

/// Verifies a `cosignature/v1` line of cosigner `name` with `key` over
/// `checkpoint`; returns its timestamp (seconds).
pub fn verify_cosignature_v1(
    checkpoint: &Checkpoint,
    sig: &NoteSignature,
    name: &str,
    key: &PublicKey,
) -> Result<u64> {
    if sig.name != name || sig.key_id != key_id(name, ALG_COSIGNATURE_V1, &key.0) {
        return Err(CoreError::Signature("cosignature/v1 (another cosigner)"));
    }
    if sig.signature.len() != 8 + SIGNATURE_LEN {
        return Err(CoreError::Signature("cosignature/v1 (wrong size)"));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&sig.signature[..8]);
    let timestamp_s = u64::from_be_bytes(ts);
    if timestamp_s > i64::MAX as u64 {
        return Err(CoreError::Signature(
            "cosignature/v1 (timestamp beyond 2^63 - 1)",
        ));
    }
    let mut s = [0u8; SIGNATURE_LEN];
    s.copy_from_slice(&sig.signature[8..]);
    let msg = cosignature_v1_message(&checkpoint.body(), timestamp_s);
    key.verify("cosignature/v1", msg.as_bytes(), &s)?;
    Ok(timestamp_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{ConsistencyProof, InclusionProof, MemoryLog, range_root};

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "kt.example.com".into(),
            size,
            root: [size as u8; 32],
            extensions: Vec::new(),
        }
    }

    #[test]
    fn rfc6962_tree_matches_the_rfc_shape() {
        // Three leaves: root = node(node(l0, l1), l2).
        let l: Vec<Digest> = (0..3u8).map(|i| rfc6962_leaf(&[i])).collect();
        let mut log = MemoryLog::with_node_hash(rfc6962_node);
        for x in &l {
            log.append(*x);
        }
        let want = rfc6962_node(&rfc6962_node(&l[0], &l[1]), &l[2]);
        assert_eq!(range_root(&log, 0, 3).unwrap(), want);
        let p = ConsistencyProof::generate(&log, 2, 3).unwrap();
        p.verify_with(&log.root_at(2), &log.root_at(3), rfc6962_node)
            .unwrap();
        assert!(p.verify(&log.root_at(2), &log.root_at(3)).is_err());
        let i = InclusionProof::generate(&log, 2, 3).unwrap();
        i.verify_with(&l[2], &want, rfc6962_node).unwrap();
    }

    #[test]
    fn checkpoint_notes_round_trip_and_any_altered_byte_fails() {
        let key = SigningKeyPair::from_seed(&[3; 32]);
        let note = sign_checkpoint(&cp(7), &key).unwrap();
        let (got, _) = open_checkpoint(&note, "kt.example.com", &key.public_key()).unwrap();
        assert_eq!(got, cp(7));
        let bytes = note.as_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] ^= 1;
            if let Ok(s) = std::str::from_utf8(&bad) {
                assert!(
                    open_checkpoint(s, "kt.example.com", &key.public_key()).is_err(),
                    "byte {i}"
                );
            }
        }
        let other = SigningKeyPair::from_seed(&[4; 32]);
        assert!(open_checkpoint(&note, "kt.example.com", &other.public_key()).is_err());
        assert!(open_checkpoint(&note, "other", &key.public_key()).is_err());
        let mut bad = cp(1);
        bad.origin = "a+b".into();
        assert!(sign_checkpoint(&bad, &key).is_err());
    }

    #[test]
    fn cosignatures_v1_verify_and_bind_everything() {
        let w = SigningKeyPair::from_seed(&[5; 32]);
        let sig = cosign_v1(&cp(9), "witness.example/w1", &w, 1_700_000_000).unwrap();
        let line = sig.line();
        let parsed = NoteSignature::parse(line.trim_end_matches('\n')).unwrap();
        assert_eq!(
            verify_cosignature_v1(&cp(9), &parsed, "witness.example/w1", &w.public_key()).unwrap(),
            1_700_000_000
        );
        assert!(
            verify_cosignature_v1(&cp(10), &parsed, "witness.example/w1", &w.public_key()).is_err()
        );
        assert!(
            verify_cosignature_v1(&cp(9), &parsed, "witness.example/w2", &w.public_key()).is_err()
        );
        for i in 0..parsed.signature.len() {
            let mut bad = parsed.clone();
            bad.signature[i] ^= 1;
            assert!(
                verify_cosignature_v1(&cp(9), &bad, "witness.example/w1", &w.public_key()).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn bodies_are_strict() {
        for bad in [
            "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "o\n1\nAAAA\n",
            "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
        let ok =
            Checkpoint::parse_body("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n")
                .unwrap();
        assert_eq!(ok.extensions, vec!["ext".to_string()]);
        assert_eq!(
            ok.body(),
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n"
        );
    }
}
