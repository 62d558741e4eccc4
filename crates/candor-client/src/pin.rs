//! Pinning the service's public configuration.

use candor_core::Digest;
use candor_core::signed::PublicConfig;

use crate::error::{ClientError, Result};

/// What the client trusts before talking to the service: the service's
/// public configuration (namespace, VRF key, head key, SMT key, shard bits,
/// intervals) or its 32-byte digest.
///
/// Everything the client verifies hangs off this pin: signatures are checked
/// with the pinned keys, and every epoch head carries the configuration
/// digest, so a head signed under other keys or parameters is rejected.
/// Obtain it out of band (shipped with the app, from the provider's
/// documentation), or once with [`crate::Client::connect_tofu`] and store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedConfig {
    /// The full configuration. The service's `GetConfig` answer must still
    /// match it (a mismatch means the keys changed).
    Config(Box<PublicConfig>),
    /// Only the digest (`PublicConfig::digest`); the configuration itself is
    /// fetched with `GetConfig` and must hash to it.
    Digest(Digest),
}

impl PinnedConfig {
    /// Pins a configuration given in its canonical encoding (the `config`
    /// bytes of `GetConfigResponse`).
    pub fn from_config_bytes(bytes: &[u8]) -> Result<Self> {
        PublicConfig::decode(bytes)
            .map(|c| PinnedConfig::Config(Box::new(c)))
            .map_err(|e| ClientError::InvalidArgument(format!("pinned configuration: {e}")))
    }

    /// Pins a digest given as 64 hex characters.
    pub fn from_hex_digest(s: &str) -> Result<Self> {
        let mut d = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut d).map_err(|e| {
            ClientError::InvalidArgument(format!("pinned digest must be 64 hex characters: {e}"))
        })?;
        Ok(PinnedConfig::Digest(d))
    }

    /// The pinned digest.
    pub fn digest(&self) -> Digest {
        match self {
            PinnedConfig::Config(c) => c.digest(),
            PinnedConfig::Digest(d) => *d,
        }
    }
}

impl From<PublicConfig> for PinnedConfig {
    fn from(c: PublicConfig) -> Self {
        PinnedConfig::Config(Box::new(c))
    }
}
