//! Verifiable random function: ECVRF-EDWARDS25519-SHA512-ELL2 (RFC 9381, suite_string `0x04`).
//!
//! Candor maps every label to a 256-bit tree index with a VRF so that the index reveals
//! nothing about the label to anyone without the VRF secret, yet every client can check that
//! the server computed it honestly. The index is the first 32 bytes of the 64-byte VRF output
//! ([`VrfOutput::index`]).
//!
//! # The suite
//!
//! This module implements exactly one suite of RFC 9381, section 5.5:
//!
//! * curve edwards25519, cofactor 8, generator `B` and public key `Y = x·B` as in RFC 8032
//!   (the secret scalar `x` and the nonce prefix both come from `SHA-512(SK)`, section 5.1.5);
//! * hash SHA-512; `cLen = 16`, `ptLen = 32`, `qLen = 32`, so a proof
//!   `pi = point_to_string(Gamma) || c (16 bytes LE) || s (32 bytes LE)` is 80 bytes and the
//!   output `beta` is 64 bytes;
//! * `ECVRF_encode_to_curve` is RFC 9380 `encode_to_curve` (Elligator 2, nonuniform,
//!   `edwards25519_XMD:SHA-512_ELL2_NU_`) with DST
//!   `"ECVRF_edwards25519_XMD:SHA-512_ELL2_NU_" || 0x04` over the message `PK_string || alpha`
//!   (section 5.4.1.2);
//! * nonce generation per RFC 8032 (section 5.4.2.2):
//!   `k = SHA-512(SHA-512(SK)[32..64] || h_string) mod q`;
//! * challenge `c = SHA-512(0x04 || 0x02 || Y || H || Gamma || U || V || 0x00)[0..16]`
//!   (section 5.4.3), and `beta = SHA-512(0x04 || 0x03 || point_to_string(8·Gamma) || 0x00)`
//!   (section 5.2).
//!
//! Decoding is strict: point encodings must be canonical (a decompressed point must
//! re-compress to the same 32 bytes, which also rejects `y >= p` and `x = 0` with the sign bit
//! set) and `s` must be below the group order `q`. Public keys of small order are rejected
//! ([`VrfPublicKey::from_bytes`], i.e. `ECVRF_validate_key` of section 5.4.5 always runs), which
//! gives full uniqueness and full collision resistance.
//!
//! # Security
//!
//! The VRF input is a user identifier, so the time taken to hash it must not depend on its
//! value. RFC 9381 offers two encodings to the curve: try-and-increment (TAI, suites 0x01/0x03)
//! loops a data-dependent number of times until a hash decodes to a point, which leaks the
//! input through timing; Elligator 2 (ELL2, this suite) is a straight-line computation whose
//! running time depends only on the input's length. **This module offers only ELL2**; TAI
//! is deliberately not provided.
//!
//! Proving uses only constant-time operations on the secret scalar, the nonce and the label
//! (fixed-base and variable-base constant-time scalar multiplication, batched constant-time
//! inversion, no branches on secret data). Verification uses variable-time multi-scalar
//! multiplication: its timing depends only on the scalars `c` and `s`, which are public parts
//! of the proof, not on the points derived from the label. Running time still depends on the
//! length of the label, as with any hash.
//!
//! [`VrfSecretKey`] zeroizes its key material on drop and its `Debug` prints only the public
//! key.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use curve25519_dalek::traits::VartimeMultiscalarMul;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a proof `pi` in bytes (ptLen + cLen + qLen = 32 + 16 + 32).
pub const VRF_PROOF_LEN: usize = 80;
/// Length of a VRF output `beta` in bytes (SHA-512).
pub const VRF_OUTPUT_LEN: usize = 64;

/// RFC 9381 suite_string for ECVRF-EDWARDS25519-SHA512-ELL2.
const SUITE_STRING: u8 = 0x04;
/// Domain separation tag for RFC 9380 encode_to_curve (section 5.4.1.2).
const ENCODE_TO_CURVE_DST: &[u8] = b"ECVRF_edwards25519_XMD:SHA-512_ELL2_NU_\x04";
const CHALLENGE_FRONT: u8 = 0x02;
const PROOF_TO_HASH_FRONT: u8 = 0x03;
const DOMAIN_BACK: u8 = 0x00;
const PT_LEN: usize = 32;
const C_LEN: usize = 16;

/// Errors of VRF key decoding and proof verification.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum VrfError {
    /// The public key is not a canonical encoding of a curve point, or the point has small order.
    #[error("invalid VRF public key")]
    InvalidPublicKey,
    /// The proof does not decode: non-canonical or invalid Gamma, or `s >= q`.
    #[error("malformed VRF proof")]
    InvalidProof,
    /// The proof decodes but does not verify for this key and input.
    #[error("VRF proof verification failed")]
    VerificationFailed,
}

/// A VRF secret key: the 32-byte RFC 8032 seed plus the values derived from it.
///
/// Zeroized on drop. Not `Clone` on purpose: there should be one copy of the secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct VrfSecretKey {
    seed: [u8; 32],
    /// Secret scalar `x` (clamped `SHA-512(seed)[0..32]`, reduced mod q; same point `x·B`).
    scalar: Scalar,
    /// `SHA-512(seed)[32..64]`, the nonce-generation prefix.
    nonce_prefix: [u8; 32],
    #[zeroize(skip)]
    public: VrfPublicKey,
}

impl core::fmt::Debug for VrfSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VrfSecretKey")
            .field("public_key", &self.public)
            .finish_non_exhaustive()
    }
}

impl VrfSecretKey {
    /// Builds the key from a 32-byte RFC 8032 secret key (seed), as in the RFC 9381 examples.
    pub fn from_bytes(sk: &[u8; 32]) -> Self {
        let mut h: [u8; 64] = Sha512::digest(sk).into();
        let mut lower = [0u8; 32];
        lower.copy_from_slice(&h[..32]);
        let mut clamped = clamp_integer(lower);
        let scalar = Scalar::from_bytes_mod_order(clamped);
        let mut nonce_prefix = [0u8; 32];
        nonce_prefix.copy_from_slice(&h[32..]);
        h.zeroize();
        lower.zeroize();
        clamped.zeroize();

        let point = EdwardsPoint::mul_base(&scalar);
        let public = VrfPublicKey {
            bytes: point.compress().to_bytes(),
            point,
        };
        Self {
            seed: *sk,
            scalar,
            nonce_prefix,
            public,
        }
    }

    /// Generates a fresh key from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide randomness: a key must never be made
    /// from anything weaker, and there is nothing sensible a caller could do instead.
    pub fn generate() -> Self {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("operating system RNG failed");
        Self::from_bytes(&seed)
    }

    /// The 32-byte seed, for persisting the key. Handle the result as secret.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.seed
    }

    /// The public key `Y = x·B`.
    pub fn public_key(&self) -> VrfPublicKey {
        self.public
    }

    /// `ECVRF_prove` (RFC 9381 section 5.1).
    pub fn prove(&self, alpha: &[u8]) -> VrfProof {
        self.prove_inner(alpha).0
    }

    /// Proves and returns the output in one pass (cheaper than [`Self::prove`] followed by
    /// [`VrfProof::to_output`], which must decompress Gamma again).
    pub fn evaluate(&self, alpha: &[u8]) -> (VrfOutput, VrfProof) {
        let (proof, gamma_cleared) = self.prove_inner(alpha);
        (output_from_cleared(&gamma_cleared), proof)
    }

    /// Returns the proof and the compressed `8·Gamma`.
    fn prove_inner(&self, alpha: &[u8]) -> (VrfProof, CompressedEdwardsY) {
        let y_bytes = &self.public.bytes;
        let h = encode_to_curve(y_bytes, alpha);
        let h_bytes = h.compress().to_bytes();
        let gamma = self.scalar * h;
        let mut k = self.nonce(&h_bytes);
        let u = EdwardsPoint::mul_base(&k);
        let v = k * h;
        // One batched inversion for all remaining compressions.
        let [gamma_c, u_c, v_c, cleared_c] =
            EdwardsPoint::compress_batch(&[gamma, u, v, gamma.mul_by_cofactor()]);
        let c = challenge(
            y_bytes,
            &h_bytes,
            gamma_c.as_bytes(),
            u_c.as_bytes(),
            v_c.as_bytes(),
        );
        let s = k + challenge_scalar(&c) * self.scalar;
        k.zeroize();

        let mut pi = [0u8; VRF_PROOF_LEN];
        pi[..PT_LEN].copy_from_slice(gamma_c.as_bytes());
        pi[PT_LEN..PT_LEN + C_LEN].copy_from_slice(&c);
        pi[PT_LEN + C_LEN..].copy_from_slice(s.as_bytes());
        (VrfProof(pi), cleared_c)
    }

    /// `ECVRF_nonce_generation` per RFC 8032 (RFC 9381 section 5.4.2.2).
    fn nonce(&self, h_bytes: &[u8; 32]) -> Scalar {
        let mut hasher = Sha512::new();
        hasher.update(self.nonce_prefix);
        hasher.update(h_bytes);
        let mut k_string: [u8; 64] = hasher.finalize().into();
        let k = Scalar::from_bytes_mod_order_wide(&k_string);
        k_string.zeroize();
        k
    }
}

/// A validated VRF public key: a canonical encoding of a point that is not of small order.
///
/// Holds the decompressed point too so that verification does not decompress it again;
/// equality, hashing and `Debug` use the 32-byte encoding only.
#[derive(Clone, Copy)]
pub struct VrfPublicKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl PartialEq for VrfPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for VrfPublicKey {}

impl core::hash::Hash for VrfPublicKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl core::fmt::Debug for VrfPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VrfPublicKey({})", hex::encode(self.bytes))
    }
}

impl VrfPublicKey {
    /// Decodes and validates a public key (`string_to_point` plus `ECVRF_validate_key`):
    /// rejects non-canonical encodings and points of small order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, VrfError> {
        let point = decode_point(bytes).ok_or(VrfError::InvalidPublicKey)?;
        if point.is_small_order() {
            return Err(VrfError::InvalidPublicKey);
        }
        Ok(Self {
            bytes: *bytes,
            point,
        })
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The 32-byte encoding, by value.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The encoded point `H = ECVRF_encode_to_curve(PK_string, alpha)` (RFC 9381 section
    /// 5.4.1.2), as the `H` of the RFC's test vectors. Only needed for interoperability tests.
    pub fn encode_to_curve(&self, alpha: &[u8]) -> [u8; 32] {
        encode_to_curve(&self.bytes, alpha).compress().to_bytes()
    }

    /// `ECVRF_verify` (RFC 9381 section 5.3, with `validate_key` = TRUE, done at decoding).
    /// Returns the VRF output `beta` if the proof is valid for this key and `alpha`.
    pub fn verify(&self, alpha: &[u8], proof: &VrfProof) -> Result<VrfOutput, VrfError> {
        let (gamma, c, s) = proof.decode()?;
        let h = encode_to_curve(&self.bytes, alpha);
        let c_scalar = challenge_scalar(&c);
        let neg_c = -c_scalar;
        // U = s·B − c·Y ; V = s·H − c·Gamma. Variable time in (s, c) only, which are public.
        let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&neg_c, &self.point, &s);
        let v = EdwardsPoint::vartime_multiscalar_mul([s, neg_c], [h, gamma]);
        let [h_c, u_c, v_c, cleared_c] =
            EdwardsPoint::compress_batch(&[h, u, v, gamma.mul_by_cofactor()]);
        let gamma_bytes = proof.gamma_bytes();
        let expected = challenge(
            &self.bytes,
            h_c.as_bytes(),
            &gamma_bytes,
            u_c.as_bytes(),
            v_c.as_bytes(),
        );
        // c and c' are public; no need for a constant-time comparison.
        if expected != c {
            return Err(VrfError::VerificationFailed);
        }
        Ok(output_from_cleared(&cleared_c))
    }
}

/// An 80-byte ECVRF proof `pi = Gamma || c || s`. Not validated until used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VrfProof([u8; VRF_PROOF_LEN]);

impl VrfProof {
    /// Wraps 80 bytes; decoding is checked by [`VrfPublicKey::verify`] and [`Self::to_output`].
    pub fn from_bytes(bytes: &[u8; VRF_PROOF_LEN]) -> Self {
        Self(*bytes)
    }

    /// Wraps a slice that must be exactly 80 bytes long (for network input).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, VrfError> {
        let arr: [u8; VRF_PROOF_LEN] = bytes.try_into().map_err(|_| VrfError::InvalidProof)?;
        Ok(Self(arr))
    }

    /// The 80 bytes, by value.
    pub fn to_bytes(&self) -> [u8; VRF_PROOF_LEN] {
        self.0
    }

    /// The 80 bytes.
    pub fn as_bytes(&self) -> &[u8; VRF_PROOF_LEN] {
        &self.0
    }

    /// `ECVRF_proof_to_hash` (RFC 9381 section 5.2): the output `beta` of this proof.
    ///
    /// This does **not** verify the proof; use it only on proofs one made oneself or has
    /// already verified ([`VrfPublicKey::verify`] returns the output too).
    pub fn to_output(&self) -> Result<VrfOutput, VrfError> {
        let (gamma, _, _) = self.decode()?;
        Ok(output_from_cleared(&gamma.mul_by_cofactor().compress()))
    }

    fn gamma_bytes(&self) -> [u8; PT_LEN] {
        let mut g = [0u8; PT_LEN];
        g.copy_from_slice(&self.0[..PT_LEN]);
        g
    }

    /// `ECVRF_decode_proof` (RFC 9381 section 5.4.4), strict.
    fn decode(&self) -> Result<(EdwardsPoint, [u8; C_LEN], Scalar), VrfError> {
        let gamma = decode_point(&self.gamma_bytes()).ok_or(VrfError::InvalidProof)?;
        let mut c = [0u8; C_LEN];
        c.copy_from_slice(&self.0[PT_LEN..PT_LEN + C_LEN]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&self.0[PT_LEN + C_LEN..]);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(VrfError::InvalidProof)?;
        Ok((gamma, c, s))
    }
}

/// A 64-byte VRF output `beta`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VrfOutput(pub [u8; VRF_OUTPUT_LEN]);

impl VrfOutput {
    /// The tree index of a label: the first 32 bytes of the output.
    pub fn index(&self) -> [u8; 32] {
        let mut idx = [0u8; 32];
        idx.copy_from_slice(&self.0[..32]);
        idx
    }

    /// The 64 bytes.
    pub fn as_bytes(&self) -> &[u8; VRF_OUTPUT_LEN] {
        &self.0
    }
}

/// `string_to_point` with canonicity enforced: dalek's decompression accepts `y >= p` and
/// `x = 0` with the sign bit set, so round-trip through compression and compare.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (point.compress().as_bytes() == bytes).then_some(point)
}

/// `ECVRF_encode_to_curve` for the ELL2 suite (RFC 9381 section 5.4.1.2): RFC 9380
/// `encode_to_curve` of `salt || alpha` with salt = PK_string. Constant time in `alpha`.
fn encode_to_curve(pk_bytes: &[u8; 32], alpha: &[u8]) -> EdwardsPoint {
    EdwardsPoint::encode_to_curve::<Sha512>(&[pk_bytes, alpha], &[ENCODE_TO_CURVE_DST])
}

/// `ECVRF_challenge_generation` (RFC 9381 section 5.4.3), returning the cLen-byte string.
fn challenge(
    y: &[u8; 32],
    h: &[u8; 32],
    gamma: &[u8; 32],
    u: &[u8; 32],
    v: &[u8; 32],
) -> [u8; C_LEN] {
    let mut hasher = Sha512::new();
    hasher.update([SUITE_STRING, CHALLENGE_FRONT]);
    for p in [y, h, gamma, u, v] {
        hasher.update(p);
    }
    hasher.update([DOMAIN_BACK]);
    let digest = hasher.finalize();
    let mut c = [0u8; C_LEN];
    c.copy_from_slice(&digest[..C_LEN]);
    c
}

/// `c` as a scalar: a 128-bit little-endian integer is always below q.
fn challenge_scalar(c: &[u8; C_LEN]) -> Scalar {
    let mut wide = [0u8; 32];
    wide[..C_LEN].copy_from_slice(c);
    Scalar::from_bytes_mod_order(wide)
}

/// `ECVRF_proof_to_hash` from the already-compressed `cofactor·Gamma`.
fn output_from_cleared(cleared: &CompressedEdwardsY) -> VrfOutput {
    let mut hasher = Sha512::new();
    hasher.update([SUITE_STRING, PROOF_TO_HASH_FRONT]);
    hasher.update(cleared.as_bytes());
    hasher.update([DOMAIN_BACK]);
    VrfOutput(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9381_encode_to_curve_example_19() {
        // RFC 9381 Appendix B.4, Example 19: H for the empty alpha.
        let pk = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap();
        let h = encode_to_curve(&pk.try_into().unwrap(), b"");
        assert_eq!(
            hex::encode(h.compress().as_bytes()),
            "b8066ebbb706c72b64390324e4a3276f129569eab100c26b9f05011200c1bad9"
        );
    }

    #[test]
    fn rfc9381_debug_hides_secret() {
        let sk = VrfSecretKey::from_bytes(&[7u8; 32]);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
        assert!(dbg.contains("VrfPublicKey"));
    }
}
