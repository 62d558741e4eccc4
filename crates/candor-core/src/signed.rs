//! Signed objects: the public configuration, epoch heads, Signed Mutation
//! Timestamps (SMTs) and auditor cosignatures.
//!
//! Every signed message begins with the suite string, a purpose string and the
//! namespace, so a signature made for one use, deployment or suite can never
//! be replayed as another. Three separate Ed25519 keys sign heads, SMTs and
//! cosignatures. Verification is `verify_strict`.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result, decode_err};
use crate::hash::{Digest, Domain};
use crate::map::Index;
use crate::vrf::VrfPublicKey;

/// The suite identifier carried in every signed message.
pub const SUITE: &[u8] = b"candor-v1";
/// Maximum namespace length in bytes.
pub const MAX_NAMESPACE_LEN: usize = 255;
pub const SIGNATURE_LEN: usize = 64;

const PURPOSE_CONFIG: &[u8] = b"public-config";
const PURPOSE_HEAD: &[u8] = b"epoch-head";
const PURPOSE_SMT: &[u8] = b"mutation-timestamp";
const PURPOSE_COSIGN: &[u8] = b"auditor-cosignature";

pub(crate) fn write_context(w: &mut Writer, purpose: &[u8], namespace: &str) {
    w.str8(SUITE).str8(purpose).str8(namespace.as_bytes());
}

pub(crate) fn read_context(r: &mut Reader<'_>, purpose: &[u8]) -> Result<String> {
    r.expect_str8(SUITE)?;
    r.expect_str8(purpose)?;
    let ns = r.str8()?;
    String::from_utf8(ns.to_vec()).map_err(|_| decode_err("namespace", "not UTF-8"))
}

/// Checks a namespace: 1..=255 bytes, each in `0x21..=0x7E` (printable
/// ASCII without the space).
pub fn validate_namespace(ns: &str) -> Result<()> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN || !ns.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CoreError::InvalidArgument(format!(
            "namespace must be 1..={MAX_NAMESPACE_LEN} printable ASCII bytes, got {ns:?}"
        )));
    }
    Ok(())
}

/// An Ed25519 signing key, zeroized on drop.
pub struct SigningKeyPair {
    key: SigningKey,
}

impl SigningKeyPair {
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("operating system RNG unavailable");
        Self::from_seed(&seed)
    }
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }
    /// The 32-byte seed, for persisting the key.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKeyPair(public={})",
            hex::encode(self.public_key().0)
        )
    }
}

/// An Ed25519 public key (32 bytes, as RFC 8032 encodes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

const VALID_KEYS_KEPT: usize = 8;

#[derive(Default)]
struct ValidKeys {
    keys: Vec<([u8; 32], VerifyingKey)>,
    next: usize,
}

thread_local! {
    static VALID_KEYS: std::cell::RefCell<ValidKeys> = std::cell::RefCell::default();
}

impl PublicKey {
    /// The key rules of docs/protocol.md §9: the 32 bytes must be the
    /// canonical encoding of a curve point (decompress, re-compress, compare:
    /// this rejects `y ≥ p` and a set sign bit with `x = 0`) that is not of
    /// small order. `ed25519-dalek` alone accepts non-canonical encodings,
    /// which would give one key two encodings (and two digests).
    pub fn validate(&self, what: &'static str) -> Result<VerifyingKey> {
        // A few keys sign everything a client checks (the head and SMT keys,
        // auditors'): validating one costs two decompressions and a
        // compression, a third of a verification. The outcome is a function
        // of the 32 bytes, so each thread remembers the last few valid keys.
        VALID_KEYS.with(|c| {
            let mut c = c.borrow_mut();
            if let Some((_, vk)) = c.keys.iter().find(|(k, _)| *k == self.0) {
                return Ok(*vk);
            }
            let vk = self.validate_uncached(what)?;
            let slot = c.next % VALID_KEYS_KEPT;
            if c.keys.len() < VALID_KEYS_KEPT {
                c.keys.push((self.0, vk));
            } else {
                c.keys[slot] = (self.0, vk);
            }
            c.next = c.next.wrapping_add(1);
            Ok(vk)
        })
    }

    fn validate_uncached(&self, what: &'static str) -> Result<VerifyingKey> {
        let point = CompressedEdwardsY(self.0)
            .decompress()
            .ok_or(CoreError::PublicKey(what))?;
        if point.compress().0 != self.0 || point.is_small_order() {
            return Err(CoreError::PublicKey(what));
        }
        VerifyingKey::from_bytes(&self.0).map_err(|_| CoreError::PublicKey(what))
    }

    /// Strict Ed25519 verification (§9): the key passes [`Self::validate`];
    /// `S < L`; `R` is a canonical encoding of a point not of small order;
    /// and `[S]B = R + [k]A` (cofactorless) with `k = SHA-512(R || A || M)`.
    pub(crate) fn verify(
        &self,
        what: &'static str,
        msg: &[u8],
        sig: &[u8; SIGNATURE_LEN],
    ) -> Result<()> {
        let vk = self.validate(what)?;
        vk.verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| CoreError::Signature(what))
    }
}

/// The public configuration of a deployment. Clients pin its digest; every
/// epoch head carries it, so a change of keys or parameters is visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicConfig {
    pub namespace: String,
    pub vrf_key: VrfPublicKey,
    pub head_key: PublicKey,
    pub smt_key: PublicKey,
    /// The map is split into `2^shard_bits` shards (0..=16).
    pub shard_bits: u8,
    pub epoch_interval_ms: u64,
    /// Maximum merge delay: an SMT's deadline is its timestamp plus this.
    pub max_merge_delay_ms: u64,
}

impl PublicConfig {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        write_context(&mut w, PURPOSE_CONFIG, &self.namespace);
        w.raw(self.vrf_key.as_bytes())
            .raw(&self.head_key.0)
            .raw(&self.smt_key.0)
            .u8(self.shard_bits)
            .u64(self.epoch_interval_ms)
            .u64(self.max_merge_delay_ms);
        w.into_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "public config");
        let namespace = read_context(&mut r, PURPOSE_CONFIG)?;
        let vrf_key = VrfPublicKey::from_bytes(&r.array()?)?;
        let head_key = PublicKey(r.array()?);
        let smt_key = PublicKey(r.array()?);
        let shard_bits = r.u8()?;
        let epoch_interval_ms = r.u64()?;
        let max_merge_delay_ms = r.u64()?;
        r.finish()?;
        let c = PublicConfig {
            namespace,
            vrf_key,
            head_key,
            smt_key,
            shard_bits,
            epoch_interval_ms,
            max_merge_delay_ms,
        };
        c.validate()
            .map_err(|e| decode_err("public config", e.to_string()))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        validate_namespace(&self.namespace)?;
        // The VRF key was checked when it was built (`VrfPublicKey` cannot
        // hold a bad key); the two Ed25519 keys are checked here so that a
        // configuration with an unusable key is refused when it is decoded,
        // not at the first signature.
        self.head_key.validate("head key")?;
        self.smt_key.validate("SMT key")?;
        if self.shard_bits > 16 {
            return Err(CoreError::InvalidArgument(format!(
                "shard_bits {} > 16",
                self.shard_bits
            )));
        }
        if self.epoch_interval_ms == 0 || self.max_merge_delay_ms < self.epoch_interval_ms {
            return Err(CoreError::InvalidArgument(
                "epoch interval must be > 0 and ≤ the maximum merge delay".into(),
            ));
        }
        Ok(())
    }

    /// `keyed_hash(K_config, encode())`.
    pub fn digest(&self) -> Digest {
        Domain::Config.hash(&self.encode())
    }

    /// The oldest a head served as the latest may be (docs/protocol.md
    /// §9.4): [`HEAD_AGE_EPOCHS`] epoch intervals plus `allowance_ms` for
    /// clock skew and sequencer failover.
    pub fn max_head_age_ms(&self, allowance_ms: u64) -> u64 {
        self.epoch_interval_ms
            .saturating_mul(HEAD_AGE_EPOCHS)
            .saturating_add(allowance_ms)
    }
}

/// Freshness (docs/protocol.md §9.4): a head served as the latest may be at
/// most this many epoch intervals old, plus an allowance.
pub const HEAD_AGE_EPOCHS: u64 = 10;
/// The default allowance for clock skew and failover added to the maximum
/// head age, and the most a head may be ahead of the local clock.
pub const HEAD_AGE_ALLOWANCE_MS: u64 = 60_000;

/// The head of one epoch: the map root and the epoch log after appending it.
/// Epochs are numbered from 1; the head of epoch `e` has `log_size == e`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochHead {
    pub namespace: String,
    pub epoch: u64,
    pub timestamp_ms: u64,
    pub map_root: Digest,
    pub log_size: u64,
    pub log_root: Digest,
    pub config_digest: Digest,
}

impl EpochHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(200);
        write_context(&mut w, PURPOSE_HEAD, &self.namespace);
        w.u64(self.epoch)
            .u64(self.timestamp_ms)
            .raw(&self.map_root)
            .u64(self.log_size)
            .raw(&self.log_root)
            .raw(&self.config_digest);
        w.into_vec()
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let namespace = read_context(r, PURPOSE_HEAD)?;
        let h = EpochHead {
            namespace,
            epoch: r.u64()?,
            timestamp_ms: r.u64()?,
            map_root: r.array()?,
            log_size: r.u64()?,
            log_root: r.array()?,
            config_digest: r.array()?,
        };
        if h.epoch == 0 || h.log_size != h.epoch {
            return Err(decode_err(
                "epoch head",
                "epoch must be ≥ 1 and equal to the log size",
            ));
        }
        Ok(h)
    }

    /// `keyed_hash(K_head, encode())`: what auditors cosign.
    pub fn digest(&self) -> Digest {
        Domain::Head.hash(&self.encode())
    }

    pub fn sign(self, key: &SigningKeyPair) -> SignedHead {
        let signature = key.sign(&self.encode());
        SignedHead {
            head: self,
            signature,
        }
    }
}

/// An epoch head with the sequencer's signature: `encode(head) || sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub head: EpochHead,
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.head.encode();
        v.extend_from_slice(&self.signature);
        v
    }

    /// Decodes without verifying the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "signed epoch head");
        let head = EpochHead::decode_from(&mut r)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(SignedHead { head, signature })
    }

    /// Checks the signature and that the head belongs to `config`.
    pub fn verify(&self, config: &PublicConfig) -> Result<()> {
        if self.head.namespace != config.namespace {
            return Err(CoreError::Context(format!(
                "head namespace {:?} is not {:?}",
                self.head.namespace, config.namespace
            )));
        }
        if self.head.config_digest != config.digest() {
            return Err(CoreError::Context(
                "head was signed under another configuration".into(),
            ));
        }
        config
            .head_key
            .verify("epoch head", &self.head.encode(), &self.signature)
    }

    /// Decode and verify in one step.
    pub fn decode_verified(bytes: &[u8], config: &PublicConfig) -> Result<Self> {
        let h = Self::decode(bytes)?;
        h.verify(config)?;
        Ok(h)
    }
}

/// A Signed Mutation Timestamp: the promise, made when a mutation is durable
/// in its shard's Raft quorum, that it will be in a signed epoch by
/// `merge_deadline_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationTimestamp {
    pub namespace: String,
    pub index: Index,
    pub version: u64,
    pub leaf_hash: Digest,
    pub shard: u32,
    pub timestamp_ms: u64,
    pub merge_deadline_ms: u64,
}

impl MutationTimestamp {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        write_context(&mut w, PURPOSE_SMT, &self.namespace);
        w.raw(&self.index)
            .u64(self.version)
            .raw(&self.leaf_hash)
            .u32(self.shard)
            .u64(self.timestamp_ms)
            .u64(self.merge_deadline_ms);
        w.into_vec()
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let namespace = read_context(r, PURPOSE_SMT)?;
        let m = MutationTimestamp {
            namespace,
            index: r.array()?,
            version: r.u64()?,
            leaf_hash: r.array()?,
            shard: r.u32()?,
            timestamp_ms: r.u64()?,
            merge_deadline_ms: r.u64()?,
        };
        if m.version == 0 || m.merge_deadline_ms < m.timestamp_ms {
            return Err(decode_err(
                "mutation timestamp",
                "version 0 or deadline before timestamp",
            ));
        }
        Ok(m)
    }

    pub fn sign(self, key: &SigningKeyPair) -> SignedMutationTimestamp {
        let signature = key.sign(&self.encode());
        SignedMutationTimestamp {
            smt: self,
            signature,
        }
    }
}

/// `encode(smt) || sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMutationTimestamp {
    pub smt: MutationTimestamp,
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedMutationTimestamp {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.smt.encode();
        v.extend_from_slice(&self.signature);
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "signed mutation timestamp");
        let smt = MutationTimestamp::decode_from(&mut r)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self { smt, signature })
    }

    /// Checks the signature, the namespace, the shard of the index and that
    /// the deadline is exactly the configured maximum merge delay away.
    pub fn verify(&self, config: &PublicConfig) -> Result<()> {
        let m = &self.smt;
        if m.namespace != config.namespace {
            return Err(CoreError::Context(format!(
                "SMT namespace {:?} is not {:?}",
                m.namespace, config.namespace
            )));
        }
        if m.shard != crate::map::shard_of(&m.index, config.shard_bits) {
            return Err(CoreError::Context(
                "SMT shard does not own its index".into(),
            ));
        }
        if m.merge_deadline_ms != m.timestamp_ms.saturating_add(config.max_merge_delay_ms) {
            return Err(CoreError::Context(
                "SMT deadline is not timestamp + maximum merge delay".into(),
            ));
        }
        config
            .smt_key
            .verify("mutation timestamp", &m.encode(), &self.signature)
    }
}

/// An auditor's cosignature over one epoch head, after it verified the
/// transition into that epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    pub namespace: String,
    pub auditor_key: PublicKey,
    pub epoch: u64,
    pub head_digest: Digest,
    pub timestamp_ms: u64,
    pub signature: [u8; SIGNATURE_LEN],
}

impl Cosignature {
    fn message(
        namespace: &str,
        auditor_key: &PublicKey,
        epoch: u64,
        head_digest: &Digest,
        timestamp_ms: u64,
    ) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        write_context(&mut w, PURPOSE_COSIGN, namespace);
        w.raw(&auditor_key.0)
            .u64(epoch)
            .raw(head_digest)
            .u64(timestamp_ms);
        w.into_vec()
    }

    pub fn create(head: &EpochHead, key: &SigningKeyPair, timestamp_ms: u64) -> Self {
        let auditor_key = key.public_key();
        let digest = head.digest();
        let msg = Self::message(
            &head.namespace,
            &auditor_key,
            head.epoch,
            &digest,
            timestamp_ms,
        );
        Cosignature {
            namespace: head.namespace.clone(),
            auditor_key,
            epoch: head.epoch,
            head_digest: digest,
            timestamp_ms,
            signature: key.sign(&msg),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Self::message(
            &self.namespace,
            &self.auditor_key,
            self.epoch,
            &self.head_digest,
            self.timestamp_ms,
        );
        v.extend_from_slice(&self.signature);
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "cosignature");
        let namespace = read_context(&mut r, PURPOSE_COSIGN)?;
        let c = Cosignature {
            namespace,
            auditor_key: PublicKey(r.array()?),
            epoch: r.u64()?,
            head_digest: r.array()?,
            timestamp_ms: r.u64()?,
            signature: r.array()?,
        };
        r.finish()?;
        Ok(c)
    }

    /// Checks the signature and that it covers exactly `head`.
    pub fn verify(&self, head: &EpochHead) -> Result<()> {
        if self.namespace != head.namespace || self.epoch != head.epoch {
            return Err(CoreError::Context("cosignature is for another head".into()));
        }
        if self.head_digest != head.digest() {
            return Err(CoreError::Inconsistent(
                "cosignature covers a different head for this epoch".into(),
            ));
        }
        let msg = Self::message(
            &self.namespace,
            &self.auditor_key,
            self.epoch,
            &self.head_digest,
            self.timestamp_ms,
        );
        self.auditor_key
            .verify("cosignature", &msg, &self.signature)
    }
}
