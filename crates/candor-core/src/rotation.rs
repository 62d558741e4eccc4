//! Signing-key rotation (docs/protocol.md §8.1, §9.5).
//!
//! A deployment's head and SMT keys can be replaced without changing its
//! identity: the new configuration differs from the old one only in those two
//! keys (same namespace, VRF key, shard bits and intervals), and a **rotation
//! statement** links them. The statement names both configuration digests, the
//! first epoch signed under the new one and the time of the switch, and carries
//! two signatures over the same message: the old head key's (the holder of the
//! old keys authorised the change) and the new head key's (the new key is held
//! by the same service). Because of the two signatures a chain of
//! configurations is authenticated from *any* member of it: a client pinned to
//! an old configuration follows it forward, one pinned to a new one checks the
//! older heads backwards. Heads keep verifying under the configuration they
//! were signed with.
//!
//! This is a *planned* rotation. A key known to be compromised is replaced out
//! of band (a new pin shipped to clients, §8.1), since its holder could sign a
//! rotation too.

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::Digest;
use crate::signed::{
    PublicConfig, SIGNATURE_LEN, SignedHead, SignedMutationTimestamp, SigningKeyPair, read_context,
    write_context,
};

const PURPOSE_ROTATION: &[u8] = b"config-rotation";

/// Most configurations a chain may hold (decoder limit, §6.6).
pub const MAX_CONFIG_VERSIONS: usize = 1024;

/// What a rotation statement says: from epoch `first_epoch` on, heads are
/// signed under `new_digest`; from `timestamp_ms` on, SMTs are signed with the
/// new configuration's SMT key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRotation {
    pub namespace: String,
    pub old_digest: Digest,
    pub new_digest: Digest,
    /// The first epoch whose head carries `new_digest` (≥ 1).
    pub first_epoch: u64,
    /// When the service switched, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

impl ConfigRotation {
    /// The signed message: `str8("candor-v1") || str8("config-rotation") ||
    /// str8(namespace) || old_digest[32] || new_digest[32] || u64 first_epoch
    /// || u64 timestamp_ms`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        write_context(&mut w, PURPOSE_ROTATION, &self.namespace);
        w.raw(&self.old_digest)
            .raw(&self.new_digest)
            .u64(self.first_epoch)
            .u64(self.timestamp_ms);
        w.into_vec()
    }

    /// Signs with the old head key and the new one.
    pub fn sign(self, old_head: &SigningKeyPair, new_head: &SigningKeyPair) -> SignedRotation {
        let msg = self.encode();
        SignedRotation {
            old_signature: old_head.sign(&msg),
            new_signature: new_head.sign(&msg),
            rotation: self,
        }
    }
}

/// `message || old_signature[64] || new_signature[64]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRotation {
    pub rotation: ConfigRotation,
    pub old_signature: [u8; SIGNATURE_LEN],
    pub new_signature: [u8; SIGNATURE_LEN],
}

impl SignedRotation {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.rotation.encode();
        v.extend_from_slice(&self.old_signature);
        v.extend_from_slice(&self.new_signature);
        v
    }

    /// Decodes without verifying.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "configuration rotation");
        let namespace = read_context(&mut r, PURPOSE_ROTATION)?;
        let rotation = ConfigRotation {
            namespace,
            old_digest: r.array()?,
            new_digest: r.array()?,
            first_epoch: r.u64()?,
            timestamp_ms: r.u64()?,
        };
        let old_signature = r.array()?;
        let new_signature = r.array()?;
        r.finish()?;
        if rotation.first_epoch == 0 {
            return Err(decode_err("configuration rotation", "first epoch 0"));
        }
        Ok(SignedRotation {
            rotation,
            old_signature,
            new_signature,
        })
    }

    /// Checks that this statement links `old` to `new` (§9.5): same namespace;
    /// the digests are theirs and differ; only the head and SMT keys changed;
    /// both signatures verify (old head key, new head key).
    pub fn verify(&self, old: &PublicConfig, new: &PublicConfig) -> Result<()> {
        let r = &self.rotation;
        if r.namespace != old.namespace || r.namespace != new.namespace {
            return Err(CoreError::Context(format!(
                "rotation namespace {:?} does not match its configurations",
                r.namespace
            )));
        }
        if r.old_digest != old.digest() || r.new_digest != new.digest() {
            return Err(CoreError::Context(
                "rotation names other configurations".into(),
            ));
        }
        if r.old_digest == r.new_digest {
            return Err(CoreError::Context(
                "rotation to the same configuration".into(),
            ));
        }
        if new.vrf_key != old.vrf_key
            || new.shard_bits != old.shard_bits
            || new.epoch_interval_ms != old.epoch_interval_ms
            || new.max_merge_delay_ms != old.max_merge_delay_ms
        {
            return Err(CoreError::Context(
                "a rotation may change only the head and SMT keys".into(),
            ));
        }
        let msg = r.encode();
        old.head_key
            .verify("rotation (old head key)", &msg, &self.old_signature)?;
        new.head_key
            .verify("rotation (new head key)", &msg, &self.new_signature)
    }
}

/// One configuration of a chain as served: its canonical encoding and the
/// encoded [`SignedRotation`] that introduced it (empty for the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersion {
    pub config: Vec<u8>,
    pub rotation: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    config: PublicConfig,
    digest: Digest,
    /// First epoch signed under it (1 for the first configuration).
    first_epoch: u64,
    /// When it took over SMT signing (0 for the first configuration).
    since_ms: u64,
}

/// A verified chain of configurations, oldest first (§8.1). Heads verify
/// under the configuration of their epoch; SMTs under the one in force at
/// their timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChain {
    links: Vec<Link>,
}

impl ConfigChain {
    /// A deployment that never rotated.
    pub fn single(config: PublicConfig) -> Self {
        ConfigChain {
            links: vec![Link {
                digest: config.digest(),
                config,
                first_epoch: 1,
                since_ms: 0,
            }],
        }
    }

    /// Verifies a served chain and that `pinned` is one of its configurations.
    /// Every link is checked ([`SignedRotation::verify`]); first epochs strictly
    /// increase and switch times never go back.
    pub fn verify(versions: &[ConfigVersion], pinned: &Digest) -> Result<Self> {
        if versions.is_empty() || versions.len() > MAX_CONFIG_VERSIONS {
            return Err(decode_err(
                "configuration chain",
                format!("1..={MAX_CONFIG_VERSIONS} configurations"),
            ));
        }
        if !versions[0].rotation.is_empty() {
            return Err(decode_err(
                "configuration chain",
                "the first configuration has a rotation",
            ));
        }
        let mut chain = Self::single(PublicConfig::decode(&versions[0].config)?);
        for v in &versions[1..] {
            let config = PublicConfig::decode(&v.config)?;
            let rotation = SignedRotation::decode(&v.rotation)?;
            chain.push(config, &rotation)?;
        }
        if !chain.contains(pinned) {
            return Err(CoreError::Context(
                "the pinned configuration is not in the served chain".into(),
            ));
        }
        Ok(chain)
    }

    /// Appends `config`, introduced by `rotation` from the current one.
    pub fn push(&mut self, config: PublicConfig, rotation: &SignedRotation) -> Result<()> {
        let last = self.links.last().expect("a chain is never empty");
        rotation.verify(&last.config, &config)?;
        let r = &rotation.rotation;
        let min_epoch = if self.links.len() == 1 {
            1
        } else {
            last.first_epoch + 1
        };
        if r.first_epoch < min_epoch || r.timestamp_ms < last.since_ms {
            return Err(CoreError::Inconsistent(
                "rotation goes back in epochs or time".into(),
            ));
        }
        if self.contains(&r.new_digest) {
            return Err(CoreError::Inconsistent(
                "rotation back to an earlier configuration".into(),
            ));
        }
        if self.links.len() >= MAX_CONFIG_VERSIONS {
            return Err(decode_err("configuration chain", "too many configurations"));
        }
        self.links.push(Link {
            digest: r.new_digest,
            config,
            first_epoch: r.first_epoch,
            since_ms: r.timestamp_ms,
        });
        Ok(())
    }

    /// The newest configuration (what the service signs with now).
    pub fn current(&self) -> &PublicConfig {
        &self.links.last().expect("a chain is never empty").config
    }

    /// The first configuration.
    pub fn first(&self) -> &PublicConfig {
        &self.links[0].config
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Never true: a chain holds at least one configuration.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The configuration with `digest`, if it is in the chain.
    pub fn get(&self, digest: &Digest) -> Option<&PublicConfig> {
        self.links
            .iter()
            .find(|l| &l.digest == digest)
            .map(|l| &l.config)
    }

    /// Whether `digest` is one of the chain's configurations.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.links.iter().any(|l| &l.digest == digest)
    }

    /// Whether `self` begins with every configuration of `older` (a refreshed
    /// chain must extend the one a client holds).
    pub fn extends(&self, older: &ConfigChain) -> bool {
        self.links.len() >= older.links.len() && self.links[..older.links.len()] == older.links[..]
    }

    /// The configuration epoch `epoch` is signed under.
    pub fn for_epoch(&self, epoch: u64) -> &PublicConfig {
        let i = self.links.partition_point(|l| l.first_epoch <= epoch);
        &self.links[i.saturating_sub(1)].config
    }

    /// Whether a head of `epoch` may be under a configuration this chain does
    /// not know yet (it is at or after the last rotation): a client refreshes
    /// its chain before rejecting it.
    pub fn may_be_newer(&self, head: &SignedHead) -> bool {
        !self.contains(&head.head.config_digest)
            && head.head.epoch >= self.links.last().map_or(1, |l| l.first_epoch)
    }

    /// Checks a head against the configuration of its epoch.
    pub fn verify_head(&self, head: &SignedHead) -> Result<()> {
        head.verify(self.for_epoch(head.head.epoch))
    }

    /// Checks an SMT (§9.5): under the newest configuration whose SMT key was
    /// in force at its timestamp. A configuration's key stays acceptable for
    /// one maximum merge delay after the next rotation, for the shard leaders
    /// that learn of it late.
    pub fn verify_smt(&self, smt: &SignedMutationTimestamp) -> Result<()> {
        let ts = smt.smt.timestamp_ms;
        let mut first_err = None;
        for (i, link) in self.links.iter().enumerate().rev() {
            if let Some(next) = self.links.get(i + 1)
                && ts >= next.since_ms.saturating_add(link.config.max_merge_delay_ms)
            {
                continue;
            }
            match smt.verify(&link.config) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(CoreError::Signature("mutation timestamp")))
    }

    /// The chain as served (`GetConfigResponse.history`).
    pub fn versions(&self, rotations: &[SignedRotation]) -> Vec<ConfigVersion> {
        self.links
            .iter()
            .enumerate()
            .map(|(i, l)| ConfigVersion {
                config: l.config.encode(),
                rotation: if i == 0 {
                    Vec::new()
                } else {
                    rotations
                        .get(i - 1)
                        .map(SignedRotation::encode)
                        .unwrap_or_default()
                },
            })
            .collect()
    }
}

impl From<PublicConfig> for ConfigChain {
    fn from(c: PublicConfig) -> Self {
        ConfigChain::single(c)
    }
}

/// What verifiers check heads and SMTs against: one configuration (a
/// deployment that never rotated, or a caller that pins exactly one) or a
/// verified [`ConfigChain`]. Everything but the two signing keys is the same
/// across a chain, so [`Configs::base`] answers for the VRF key, shard bits,
/// namespace and intervals.
pub trait Configs {
    /// The configuration whose namespace, VRF key, shard bits and intervals apply.
    fn base(&self) -> &PublicConfig;
    /// Checks a head under the configuration of its epoch.
    fn verify_head(&self, head: &SignedHead) -> Result<()>;
    /// Checks an SMT under the key in force at its timestamp.
    fn verify_smt(&self, smt: &SignedMutationTimestamp) -> Result<()>;
    /// Decodes and verifies a head.
    fn decode_head(&self, bytes: &[u8]) -> Result<SignedHead> {
        let h = SignedHead::decode(bytes)?;
        self.verify_head(&h)?;
        Ok(h)
    }
}

impl Configs for PublicConfig {
    fn base(&self) -> &PublicConfig {
        self
    }
    fn verify_head(&self, head: &SignedHead) -> Result<()> {
        head.verify(self)
    }
    fn verify_smt(&self, smt: &SignedMutationTimestamp) -> Result<()> {
        smt.verify(self)
    }
}

impl Configs for ConfigChain {
    fn base(&self) -> &PublicConfig {
        self.current()
    }
    fn verify_head(&self, head: &SignedHead) -> Result<()> {
        ConfigChain::verify_head(self, head)
    }
    fn verify_smt(&self, smt: &SignedMutationTimestamp) -> Result<()> {
        ConfigChain::verify_smt(self, smt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::{EpochHead, MutationTimestamp};
    use crate::vrf::VrfSecretKey;
    use proptest::prelude::*;

    fn config(head: &SigningKeyPair, smt: &SigningKeyPair) -> PublicConfig {
        PublicConfig {
            namespace: "rot.example".into(),
            vrf_key: VrfSecretKey::from_bytes(&[7; 32]).public_key(),
            head_key: head.public_key(),
            smt_key: smt.public_key(),
            shard_bits: 0,
            epoch_interval_ms: 1000,
            max_merge_delay_ms: 10_000,
        }
    }

    struct Fixture {
        keys: Vec<(SigningKeyPair, SigningKeyPair)>,
        configs: Vec<PublicConfig>,
        rotations: Vec<SignedRotation>,
    }

    /// Three configurations: epochs 1..=9, 10..=19, 20.. ; switches at 100 s, 200 s.
    fn fixture() -> Fixture {
        let keys: Vec<_> = (0..3u8)
            .map(|i| {
                (
                    SigningKeyPair::from_seed(&[10 + i; 32]),
                    SigningKeyPair::from_seed(&[20 + i; 32]),
                )
            })
            .collect();
        let configs: Vec<_> = keys.iter().map(|(h, s)| config(h, s)).collect();
        let rotations = (1..3)
            .map(|i| {
                ConfigRotation {
                    namespace: "rot.example".into(),
                    old_digest: configs[i - 1].digest(),
                    new_digest: configs[i].digest(),
                    first_epoch: 10 * i as u64,
                    timestamp_ms: 100_000 * i as u64,
                }
                .sign(&keys[i - 1].0, &keys[i].0)
            })
            .collect();
        Fixture {
            keys,
            configs,
            rotations,
        }
    }

    fn versions(f: &Fixture) -> Vec<ConfigVersion> {
        ConfigChain::single(f.configs[0].clone())
            .versions(&[])
            .into_iter()
            .chain((0..2).map(|i| ConfigVersion {
                config: f.configs[i + 1].encode(),
                rotation: f.rotations[i].encode(),
            }))
            .collect()
    }

    fn head(f: &Fixture, v: usize, epoch: u64) -> SignedHead {
        EpochHead {
            namespace: "rot.example".into(),
            epoch,
            timestamp_ms: 1,
            map_root: [1; 32],
            log_size: epoch,
            log_root: [2; 32],
            config_digest: f.configs[v].digest(),
        }
        .sign(&f.keys[v].0)
    }

    fn smt(f: &Fixture, v: usize, ts: u64) -> SignedMutationTimestamp {
        MutationTimestamp {
            namespace: "rot.example".into(),
            index: [3; 32],
            version: 1,
            leaf_hash: [4; 32],
            shard: 0,
            timestamp_ms: ts,
            merge_deadline_ms: ts + 10_000,
        }
        .sign(&f.keys[v].1)
    }

    #[test]
    fn a_chain_verifies_from_any_pin() {
        let f = fixture();
        let v = versions(&f);
        for c in &f.configs {
            let chain = ConfigChain::verify(&v, &c.digest()).unwrap();
            assert_eq!(chain.len(), 3);
            assert_eq!(chain.current(), &f.configs[2]);
        }
        assert!(ConfigChain::verify(&v, &[9; 32]).is_err());
    }

    #[test]
    fn heads_verify_under_the_configuration_of_their_epoch() {
        let f = fixture();
        let chain = ConfigChain::verify(&versions(&f), &f.configs[0].digest()).unwrap();
        for (v, epoch) in [(0, 1), (0, 9), (1, 10), (1, 19), (2, 20), (2, 1000)] {
            chain.verify_head(&head(&f, v, epoch)).unwrap();
        }
        // An old key after its rotation, a new key before it.
        assert!(chain.verify_head(&head(&f, 0, 10)).is_err());
        assert!(chain.verify_head(&head(&f, 1, 9)).is_err());
        assert!(chain.verify_head(&head(&f, 2, 19)).is_err());
    }

    #[test]
    fn smts_verify_under_the_key_in_force_with_one_merge_delay_of_grace() {
        let f = fixture();
        let chain = ConfigChain::verify(&versions(&f), &f.configs[2].digest()).unwrap();
        chain.verify_smt(&smt(&f, 0, 50_000)).unwrap();
        chain.verify_smt(&smt(&f, 0, 109_999)).unwrap();
        assert!(chain.verify_smt(&smt(&f, 0, 110_000)).is_err());
        chain.verify_smt(&smt(&f, 1, 150_000)).unwrap();
        chain.verify_smt(&smt(&f, 2, 150_000)).unwrap();
        assert!(chain.verify_smt(&smt(&f, 1, 210_000)).is_err());
        chain.verify_smt(&smt(&f, 2, 10_000_000)).unwrap();
    }

    #[test]
    fn malformed_chains_are_refused() {
        let f = fixture();
        let good = versions(&f);
        let pin = f.configs[0].digest();
        // Out of order, a missing link, a rotation on the first, a first epoch going back.
        let mut v = good.clone();
        v.swap(1, 2);
        assert!(ConfigChain::verify(&v, &pin).is_err());
        let v = vec![good[0].clone(), good[2].clone()];
        assert!(ConfigChain::verify(&v, &pin).is_err());
        let mut v = good.clone();
        v[0].rotation = good[1].rotation.clone();
        assert!(ConfigChain::verify(&v, &pin).is_err());
        let back = ConfigRotation {
            namespace: "rot.example".into(),
            old_digest: f.configs[1].digest(),
            new_digest: f.configs[2].digest(),
            first_epoch: 10,
            timestamp_ms: 200_000,
        }
        .sign(&f.keys[1].0, &f.keys[2].0);
        let mut v = good.clone();
        v[2].rotation = back.encode();
        assert!(ConfigChain::verify(&v, &pin).is_err());
        // A rotation that also changes the VRF key.
        let mut other = f.configs[1].clone();
        other.vrf_key = VrfSecretKey::from_bytes(&[8; 32]).public_key();
        let r = ConfigRotation {
            namespace: "rot.example".into(),
            old_digest: f.configs[0].digest(),
            new_digest: other.digest(),
            first_epoch: 10,
            timestamp_ms: 100_000,
        }
        .sign(&f.keys[0].0, &f.keys[1].0);
        assert!(r.verify(&f.configs[0], &other).is_err());
        // Signed by only one of the two keys.
        let mut r = f.rotations[0].clone();
        r.new_signature = r.old_signature;
        assert!(r.verify(&f.configs[0], &f.configs[1]).is_err());
    }

    proptest! {
        #[test]
        fn any_altered_byte_of_a_rotation_fails(i in 0usize..400, x in 1u8..=255) {
            let f = fixture();
            let mut b = f.rotations[0].encode();
            let i = i % b.len();
            b[i] ^= x;
            let ok = SignedRotation::decode(&b)
                .and_then(|r| r.verify(&f.configs[0], &f.configs[1]));
            prop_assert!(ok.is_err());
        }

        #[test]
        fn rotations_round_trip(first in 1u64..u64::MAX, ts in any::<u64>()) {
            let f = fixture();
            let r = ConfigRotation {
                namespace: "rot.example".into(),
                old_digest: f.configs[0].digest(),
                new_digest: f.configs[1].digest(),
                first_epoch: first,
                timestamp_ms: ts,
            }
            .sign(&f.keys[0].0, &f.keys[1].0);
            prop_assert_eq!(SignedRotation::decode(&r.encode()).unwrap(), r.clone());
            prop_assert!(r.verify(&f.configs[0], &f.configs[1]).is_ok());
        }
    }
}
