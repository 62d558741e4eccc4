//! Helpers shared by the sequencer's integration tests.

#![allow(dead_code)] // each test binary uses a subset

use std::sync::Arc;

use candor_core::signed::{PublicConfig, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_raft::LogId;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;

/// The seed of a seeded test: `CANDOR_TEST_SEED` or `default`, printed for replay.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("CANDOR_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed: {s} (replay with CANDOR_TEST_SEED={s})");
    s
}

/// A log id of term 1, leader 1.
pub fn log_id(index: u64) -> LogId {
    LogId {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    }
}

/// The head signing key of the test deployment.
pub fn key() -> Arc<SigningKeyPair> {
    Arc::new(SigningKeyPair::from_seed(&[5; 32]))
}

/// The test deployment's public configuration with `2^shard_bits` shards.
pub fn public(shard_bits: u8) -> PublicConfig {
    PublicConfig {
        namespace: "test.candor".into(),
        vrf_key: VrfSecretKey::from_bytes(&[9; 32]).public_key(),
        head_key: key().public_key(),
        smt_key: SigningKeyPair::from_seed(&[6; 32]).public_key(),
        shard_bits,
        epoch_interval_ms: 1000,
        max_merge_delay_ms: 10_000,
    }
}
