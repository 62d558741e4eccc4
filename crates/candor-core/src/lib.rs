//! Candor core protocol (suite `candor-v1`). See `docs/protocol.md`.

pub mod vrf;
