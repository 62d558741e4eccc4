//! The map: a compressed sparse Merkle tree over 256-bit indices.
//!
//! * An empty subtree hashes to [`ZERO`].
//! * A subtree holding exactly one leaf hashes to that leaf's hash, whatever
//!   its depth (the leaf is "lifted" to the highest node that holds only it).
//! * Any other subtree hashes to `map_node(left, right)`.
//!
//! Bit `i` of an index (0 = most significant bit of byte 0) chooses the child
//! at depth `i + 1`: 0 is left, 1 is right. Shard `s` of `2^b` shards owns the
//! indices whose top `b` bits equal `s`, i.e. the subtree at depth `b`.

use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::hash::{Digest, Domain, ZERO, map_node};

/// A 256-bit map index: the first 32 bytes of the label's VRF output.
pub type Index = [u8; 32];

/// Maximum depth of the map (number of index bits).
pub const MAX_DEPTH: usize = 256;

/// Bit `i` of `index`, most significant first.
#[inline]
pub fn bit(index: &Index, i: usize) -> bool {
    (index[i / 8] >> (7 - (i % 8))) & 1 == 1
}

/// Number of leading bits that `a` and `b` share (256 when equal).
pub fn common_prefix_len(a: &Index, b: &Index) -> usize {
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let d = x ^ y;
        if d != 0 {
            return i * 8 + d.leading_zeros() as usize;
        }
    }
    MAX_DEPTH
}

/// The shard owning `index` when there are `2^shard_bits` shards.
#[inline]
pub fn shard_of(index: &Index, shard_bits: u8) -> u32 {
    if shard_bits == 0 {
        return 0;
    }
    let top = u32::from_be_bytes([index[0], index[1], index[2], index[3]]);
    top >> (32 - u32::from(shard_bits))
}

/// One version of one label as it stands in the map.
///
/// Its hash is `keyed_hash(K_leaf, index || version_be64 || commitment || prev)`
/// (104 bytes). `prev` is the hash of the label's previous version's leaf, or
/// [`ZERO`] for version 1, so a label's versions form one hash chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leaf {
    pub index: Index,
    pub version: u64,
    pub commitment: Digest,
    pub prev: Digest,
}

/// Encoded size of a [`Leaf`].
pub const LEAF_LEN: usize = 32 + 8 + 32 + 32;

impl Leaf {
    pub fn hash(&self) -> Digest {
        Domain::MapLeaf.hash(&self.to_bytes())
    }

    pub fn to_bytes(&self) -> [u8; LEAF_LEN] {
        let mut b = [0u8; LEAF_LEN];
        b[..32].copy_from_slice(&self.index);
        b[32..40].copy_from_slice(&self.version.to_be_bytes());
        b[40..72].copy_from_slice(&self.commitment);
        b[72..].copy_from_slice(&self.prev);
        b
    }

    pub fn encode(&self, w: &mut Writer) {
        w.raw(&self.to_bytes());
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Leaf {
            index: r.array()?,
            version: r.u64()?,
            commitment: r.array()?,
            prev: r.array()?,
        })
    }

    /// The leaf that follows `self` for a new value with `commitment`.
    pub fn next(&self, commitment: Digest) -> Leaf {
        Leaf {
            index: self.index,
            version: self.version + 1,
            commitment,
            prev: self.hash(),
        }
    }

    /// Version 1 of a label.
    pub fn first(index: Index, commitment: Digest) -> Leaf {
        Leaf {
            index,
            version: 1,
            commitment,
            prev: ZERO,
        }
    }
}

/// Commitment to a value: `keyed_hash(K_commit, nonce || u32 len(label) ||
/// label || version_be64 || u32 len(value) || value)`. The nonce is the opening.
pub fn commit(nonce: &[u8; 32], label: &[u8], version: u64, value: &[u8]) -> Digest {
    let mut h = Domain::Commitment.hasher();
    h.update(nonce);
    h.update(&(label.len() as u32).to_be_bytes());
    h.update(label);
    h.update(&version.to_be_bytes());
    h.update(&(value.len() as u32).to_be_bytes());
    h.update(value);
    *h.finalize().as_bytes()
}

/// A fresh random commitment nonce.
pub fn random_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("operating system RNG unavailable");
    n
}

/// A subtree's hash together with how many leaves it holds: the number is
/// needed to apply the lift rule when two subtrees are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtree {
    pub hash: Digest,
    pub leaves: u64,
}

impl Subtree {
    pub const EMPTY: Subtree = Subtree {
        hash: ZERO,
        leaves: 0,
    };

    pub fn leaf(hash: Digest) -> Subtree {
        Subtree { hash, leaves: 1 }
    }

    /// Joins two sibling subtrees into their parent, applying the lift rule.
    pub fn join(left: Subtree, right: Subtree) -> Subtree {
        match (left.leaves, right.leaves) {
            (0, 0) => Subtree::EMPTY,
            (0, 1) => right,
            (1, 0) => left,
            (l, r) => Subtree {
                hash: map_node(&left.hash, &right.hash),
                leaves: l + r,
            },
        }
    }
}

/// Root of the whole map from the roots of its `2^shard_bits` shard subtrees,
/// given in shard order. This is what the sequencer computes each epoch.
pub fn combine_shard_roots(shards: &[Subtree]) -> Result<Subtree> {
    if !shards.len().is_power_of_two() {
        return Err(crate::CoreError::InvalidArgument(format!(
            "{} shard roots is not a power of two",
            shards.len()
        )));
    }
    let mut level: Vec<Subtree> = shards.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| Subtree::join(p[0], p[1]))
            .collect();
    }
    Ok(level[0])
}
