//! BLAKE3 with one key per use (domain separation).
//!
//! Every key is `blake3::derive_key(context, b"")` for a fixed context string
//! (see [`Domain`]), and every hash is `blake3::keyed_hash(key, input)`.
//! Interior nodes of the map and of the epoch log hash exactly 64 bytes
//! (two children), which BLAKE3 processes in a single compression.

use std::sync::LazyLock;

/// A 32-byte hash value.
pub type Digest = [u8; 32];

/// The all-zero value: the hash of an empty subtree and the `prev` link of a
/// label's first version.
pub const ZERO: Digest = [0u8; 32];

/// The uses of the hash, each with its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    MapNode,
    MapLeaf,
    Commitment,
    LogLeaf,
    LogNode,
    Config,
    Head,
}

impl Domain {
    /// The BLAKE3 `derive_key` context string of this domain.
    pub const fn context(self) -> &'static str {
        match self {
            Domain::MapNode => "candor-v1 map node",
            Domain::MapLeaf => "candor-v1 map leaf",
            Domain::Commitment => "candor-v1 value commitment",
            Domain::LogLeaf => "candor-v1 epoch log leaf",
            Domain::LogNode => "candor-v1 epoch log node",
            Domain::Config => "candor-v1 public configuration",
            Domain::Head => "candor-v1 epoch head",
        }
    }

    /// The 32-byte key of this domain.
    pub fn key(self) -> &'static [u8; 32] {
        static KEYS: LazyLock<[[u8; 32]; 7]> = LazyLock::new(|| {
            [
                Domain::MapNode,
                Domain::MapLeaf,
                Domain::Commitment,
                Domain::LogLeaf,
                Domain::LogNode,
                Domain::Config,
                Domain::Head,
            ]
            .map(|d| blake3::derive_key(d.context(), b""))
        });
        &KEYS[self as usize]
    }

    pub fn hash(self, input: &[u8]) -> Digest {
        *blake3::keyed_hash(self.key(), input).as_bytes()
    }

    /// A streaming hasher, for inputs assembled from parts.
    pub fn hasher(self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.key())
    }
}

/// Interior map node: `keyed_hash(K_node, left || right)`.
#[inline]
pub fn map_node(left: &Digest, right: &Digest) -> Digest {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    Domain::MapNode.hash(&buf)
}

/// Interior epoch-log node: `keyed_hash(K_lognode, left || right)`.
#[inline]
pub fn log_node(left: &Digest, right: &Digest) -> Digest {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(left);
    buf[32..].copy_from_slice(right);
    Domain::LogNode.hash(&buf)
}
