//! The write seam between the API and the shard layer: the API validates,
//! authenticates and computes the VRF index; a [`Publisher`] orders the mutation in
//! its shard and signs the SMT. The types are `candor-publish`'s, so that the API
//! depends on neither the shard crate nor Raft.

pub use candor_publish::{CosignatureLog, PublishError, PublishReceipt, PublishRequest, Publisher};
