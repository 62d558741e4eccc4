//! Candor's openraft type configuration and the compact codec used on disk and on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies a Raft node (a process). Stable across restarts.
pub type NodeId = u64;

/// Identifies one Raft group (a shard range or the sequencer). Many groups share a node,
/// its log store and its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// Application data carried by a log entry: opaque bytes interpreted by the group's
/// [`StateMachineLogic`](crate::StateMachineLogic).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Request(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request({} bytes)", self.0.len())
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Response to an applied entry: opaque bytes produced by the state machine.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Candor's Raft types: `u64` node ids, nodes addressed by a string, opaque byte
    /// requests and responses, tokio runtime. Term/leader-id/vote/entry use openraft's
    /// defaults (advanced leader id: at most one leader per term).
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        AsyncRuntime = crate::sim::SimRuntime,
);

/// A log position: (leader term, leader node, index).
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// The openraft log entry of Candor's type config.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// The openraft vote of Candor's type config.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// Membership as recorded by the state machine.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: metadata plus a handle on the state machine's bytes (kept in the store).
pub type RaftSnapshot = openraft::alias::SnapshotOf<TypeConfig, crate::SnapshotData>;
/// A node's descriptor in the membership: its address.
pub type Node = openraft::BasicNode;

/// Codec failure (malformed bytes from disk or network).
#[derive(Debug, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(#[from] postcard::Error);

/// Serialize with postcard: compact, stable wire format (1.0), actively maintained.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_allocvec(value)?)
}

/// Deserialize postcard bytes. Never panics on malformed input.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;

    #[test]
    fn entry_roundtrip() {
        let leader_id = openraft::impls::leader_id_adv::LeaderId {
            term: 3,
            node_id: 7,
        };
        let log_id = LogId {
            leader_id,
            index: 42,
        };
        let e = Entry::new_normal(log_id, Request(vec![1, 2, 3]));
        let bytes = encode(&e).unwrap();
        let back: Entry = decode(&bytes).unwrap();
        assert_eq!(back, e);
        // Compact: term, node, index varints + tag + 3 payload bytes + length.
        assert!(bytes.len() < 16, "{} bytes", bytes.len());
    }

    #[test]
    fn garbage_does_not_panic() {
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(len))
                .collect();
            let _ = decode::<Entry>(&junk);
            let _ = decode::<Vote>(&junk);
        }
    }
}
