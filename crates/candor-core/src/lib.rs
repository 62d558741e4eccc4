//! # candor-core: the Candor key transparency protocol (suite `candor-v1`)
//!
//! This crate is pure: no async runtime, no network, no storage. Servers,
//! SDKs and auditors all depend on it, and `docs/protocol.md` specifies every
//! byte it produces.
//!
//! ## The protocol in one page
//!
//! * A **label** (an account identifier) is mapped to a 256-bit **index** by
//!   a VRF ([`vrf`], RFC 9381 ECVRF-EDWARDS25519-SHA512-ELL2): only the
//!   service can compute it, anyone can verify it, and the index reveals
//!   nothing about the label.
//! * Each version of a label is a [`map::Leaf`]: index, version, a
//!   [commitment](map::commit) to the value, and the hash of the previous
//!   version's leaf, so a label's history is one hash chain.
//! * All current leaves form one compressed sparse Merkle tree ([`map`]).
//!   It is split into `2^b` shards; the sequencer joins the shard roots
//!   ([`map::combine_shard_roots`]).
//! * Every epoch the sequencer appends `(epoch, timestamp, map root)` to the
//!   epoch [`log`] and signs an [`signed::EpochHead`].
//! * When a mutation is durable, its shard signs a
//!   [`signed::MutationTimestamp`] (SMT): a promise that it will be in a
//!   signed epoch by the merge deadline.
//! * Proofs ([`proof`]): lookup (membership or not), history, epoch
//!   transition (audit), log inclusion and consistency. Each has one
//!   canonical encoding and a verifier.
//!
//! [`reference::ReferenceMap`] builds every proof from first principles; it
//! is the oracle for the storage-backed engine.

pub mod checkpoint;
pub mod codec;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod hash;
pub mod log;
pub mod map;
pub mod proof;
pub mod reference;
pub mod rotation;
pub mod signed;
pub mod vrf;
pub mod vrf_memo;

pub use error::{CoreError, Result};
pub use hash::{Digest, ZERO};
pub use map::{Index, Leaf};
