//! Fuzzing entry point for every Raft message and record this crate decodes from the
//! network or the disk (the `raft_wire` target under `fuzz/`, replayed on stable by
//! `crates/candor/tests/fuzz_corpus.rs`).
//!
//! Input: one selector byte, then the bytes given to the decoder it selects. Each
//! decoder must fail with an error on malformed bytes, never panic; what decodes must
//! re-encode to a fixed point (decode ∘ encode is the identity on its encoding), so a
//! value read from a peer is forwarded or stored exactly as read.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::network::{
    ClientWriteReply, ClientWriteRpc, SnapshotChunk, SnapshotChunkReply, SnapshotRpc,
};
use crate::state_machine::SnapshotHeader;
use crate::types::{decode, encode};
use crate::{AppliedState, Entry, TypeConfig};

/// How many decoders the selector byte chooses among.
pub const DECODERS: u8 = 13;

/// Decode `data[1..]` with decoder `data[0] % DECODERS`. Panics only on a bug (a decoder
/// panicking, or a decoded value whose encoding does not decode to itself).
pub fn wire(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % DECODERS {
        0 => fixed_point::<AppendEntriesRequest<TypeConfig>>(bytes),
        1 => fixed_point::<AppendEntriesResponse<TypeConfig>>(bytes),
        2 => fixed_point::<VoteRequest<TypeConfig>>(bytes),
        3 => fixed_point::<VoteResponse<TypeConfig>>(bytes),
        4 => fixed_point::<TransferLeaderRequest<TypeConfig>>(bytes),
        5 => fixed_point::<SnapshotResponse<TypeConfig>>(bytes),
        6 => fixed_point::<SnapshotChunkReply>(bytes),
        7 => fixed_point::<ClientWriteReply>(bytes),
        // The log store's records and the state machine's marker and snapshot header.
        8 => fixed_point::<Entry>(bytes),
        9 => {
            if let Ok(m) = AppliedState::decode(bytes) {
                let again = encode(&m).expect("re-encode a decoded marker");
                assert_eq!(AppliedState::decode(&again).ok(), Some(m));
            }
        }
        10 => fixed_point::<SnapshotHeader>(bytes),
        // Receive-only request types (the sender encodes a borrowed twin).
        11 => {
            let _ = decode::<SnapshotChunk>(bytes);
            let _ = decode::<SnapshotRpc>(bytes);
        }
        _ => {
            let _ = decode::<ClientWriteRpc>(bytes);
        }
    }
}

fn fixed_point<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(v) = decode::<T>(bytes) else {
        return;
    };
    let once = encode(&v).expect("re-encode a decoded value");
    let w: T = decode(&once).expect("decode a re-encoding");
    let twice = encode(&w).expect("re-encode again");
    assert_eq!(
        once, twice,
        "the encoding of a decoded value is not a fixed point"
    );
}
