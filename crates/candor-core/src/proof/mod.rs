//! Proofs and their verifiers.
//!
//! Every proof has one canonical byte encoding (`encode`/`decode`), and its
//! verifier returns a typed [`CoreError`](crate::CoreError), never panics.

pub mod audit;
pub mod history;
pub mod lookup;

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, ZERO, map_node};
use crate::map::{Index, MAX_DEPTH, bit};

/// Largest value a proof may carry (the service's limit is lower).
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// Most versions one label may have in any proof: the count of a history
/// proof, and the new versions of one label in an audit proof (§5 of
/// docs/protocol.md, "Decoder limits").
pub const MAX_LABEL_VERSIONS: usize = 1 << 20;

/// Smallest encoding of an [`Opening`]: tag and commitment (33 bytes); an
/// open value takes at least 37. Decoders reject a count that cannot fit in
/// the bytes left before allocating anything.
pub(crate) const MIN_OPENING_LEN: usize = 33;

/// Siblings from the root down: `siblings[i]` is the sibling of the path node
/// at depth `i + 1`. Encoded as `u16 count || count × 32 bytes`.
pub(crate) fn encode_siblings(w: &mut Writer, siblings: &[Digest]) {
    w.u16(siblings.len() as u16);
    for s in siblings {
        w.raw(s);
    }
}

pub(crate) fn decode_siblings(r: &mut Reader<'_>) -> Result<Vec<Digest>> {
    let n = r.u16()? as usize;
    if n > MAX_DEPTH {
        return Err(decode_err("path", format!("{n} siblings exceed depth 256")));
    }
    (0..n).map(|_| r.array()).collect()
}

/// Recomputes the root from a terminal node at depth `siblings.len()` on the
/// path of `index`. Rejects the two shapes a canonical tree never has: a node
/// with two empty children, and a lone leaf below an empty sibling (it would
/// have been lifted).
pub(crate) fn fold_path(
    index: &Index,
    terminal: Digest,
    terminal_is_leaf: bool,
    siblings: &[Digest],
) -> Result<Digest> {
    if terminal_is_leaf && siblings.last() == Some(&ZERO) {
        return Err(CoreError::NonCanonical("lone leaf below an empty sibling"));
    }
    let mut cur = terminal;
    for (i, sib) in siblings.iter().enumerate().rev() {
        if cur == ZERO && *sib == ZERO {
            return Err(CoreError::NonCanonical("node with two empty children"));
        }
        cur = if bit(index, i) {
            map_node(sib, &cur)
        } else {
            map_node(&cur, sib)
        };
    }
    Ok(cur)
}

/// A value and its opening, or only the commitment when the opening was
/// deleted to forget the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    Open { nonce: [u8; 32], value: Vec<u8> },
    Redacted { commitment: Digest },
}

impl Opening {
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Opening::Open { nonce, value } => {
                w.u8(0).raw(nonce).bytes32(value);
            }
            Opening::Redacted { commitment } => {
                w.u8(1).raw(commitment);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8()? {
            0 => Ok(Opening::Open {
                nonce: r.array()?,
                value: r.bytes32(MAX_VALUE_LEN)?.to_vec(),
            }),
            1 => Ok(Opening::Redacted {
                commitment: r.array()?,
            }),
            t => Err(decode_err("opening", format!("unknown tag {t}"))),
        }
    }

    /// The commitment this opening stands for.
    pub fn commitment(&self, label: &[u8], version: u64) -> Digest {
        match self {
            Opening::Open { nonce, value } => crate::map::commit(nonce, label, version, value),
            Opening::Redacted { commitment } => *commitment,
        }
    }

    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Opening::Open { value, .. } => Some(value),
            Opening::Redacted { .. } => None,
        }
    }
}
