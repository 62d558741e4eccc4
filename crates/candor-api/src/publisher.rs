//! The write seam between the API and the shard layer (see
//! `notes/SERVICE_SEAM.md`): the API validates, authenticates and computes
//! the VRF index; a [`Publisher`] orders the mutation in its shard and signs
//! the SMT. The types are the shard crate's.

pub use candor_shard::{PublishReceipt, PublishRequest, Publisher, ShardError};
