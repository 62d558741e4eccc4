//! RFC 9381 conformance for ECVRF-EDWARDS25519-SHA512-ELL2 plus property tests.
//!
//! The vectors are embedded so the test runs from any checkout; when the shared vector file
//! exists (sibling `shared/` of the clone) it must agree with the embedded copy.

use candor_core::vrf::{
    VRF_OUTPUT_LEN, VRF_PROOF_LEN, VrfError, VrfOutput, VrfProof, VrfPublicKey, VrfSecretKey,
};
use proptest::prelude::*;

const SHARED_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/rfc9381-ell2.json"
);

struct Vector {
    name: &'static str,
    sk: &'static str,
    pk: &'static str,
    alpha: &'static str,
    h: &'static str,
    pi: &'static str,
    beta: &'static str,
}

/// RFC 9381 Appendix B.4, Examples 19-21.
const VECTORS: [Vector; 3] = [
    Vector {
        name: "Example 19 (alpha empty)",
        sk: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        pk: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        alpha: "",
        h: "b8066ebbb706c72b64390324e4a3276f129569eab100c26b9f05011200c1bad9",
        pi: "7d9c633ffeee27349264cf5c667579fc583b4bda63ab71d001f89c10003ab46f14adf9a3cd8b8412d9038531e865c341cafa73589b023d14311c331a9ad15ff2fb37831e00f0acaa6d73bc9997b06501",
        beta: "9d574bf9b8302ec0fc1e21c3ec5368269527b87b462ce36dab2d14ccf80c53cccf6758f058c5b1c856b116388152bbe509ee3b9ecfe63d93c3b4346c1fbc6c54",
    },
    Vector {
        name: "Example 20 (alpha = 72)",
        sk: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        pk: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        alpha: "72",
        h: "76ac3ccb86158a9104dff819b1ca293426d305fd76b39b13c9356d9b58c08e57",
        pi: "47b327393ff2dd81336f8a2ef10339112401253b3c714eeda879f12c509072ef055b48372bb82efbdce8e10c8cb9a2f9d60e93908f93df1623ad78a86a028d6bc064dbfc75a6a57379ef855dc6733801",
        beta: "38561d6b77b71d30eb97a062168ae12b667ce5c28caccdf76bc88e093e4635987cd96814ce55b4689b3dd2947f80e59aac7b7675f8083865b46c89b2ce9cc735",
    },
    Vector {
        name: "Example 21 (alpha = af82)",
        sk: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        pk: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        alpha: "af82",
        h: "13d2a8b5ca32db7e98094a61f656a08c6c964344e058879a386a947a4e189ed1",
        pi: "926e895d308f5e328e7aa159c06eddbe56d06846abf5d98c2512235eaa57fdce35b46edfc655bc828d44ad09d1150f31374e7ef73027e14760d42e77341fe05467bb286cc2c9d7fde29120a0b2320d04",
        beta: "121b7f9b9aaaa29099fc04a94ba52784d44eac976dd1a3cca458733be5cd090a7b5fbd148444f17f8daf1fb55cb04b1ae85a626e30a54b4b0f8abf4a43314a58",
    },
];

fn arr<const N: usize>(hex_str: &str) -> [u8; N] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

#[test]
fn rfc9381_shared_vector_file_matches_embedded_copy() {
    let Ok(text) = std::fs::read_to_string(SHARED_VECTORS) else {
        // Fresh clone without the sibling shared/ directory: the embedded copy is authoritative.
        eprintln!("{SHARED_VECTORS} absent; using the embedded vectors only");
        return;
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let file = json["vectors"].as_array().unwrap();
    assert_eq!(file.len(), VECTORS.len());
    for (f, v) in file.iter().zip(VECTORS.iter()) {
        let field = |k: &str| f[k].as_str().unwrap().to_ascii_lowercase();
        assert_eq!(field("name"), v.name.to_ascii_lowercase());
        assert_eq!(field("SK"), v.sk, "{}", v.name);
        assert_eq!(field("PK"), v.pk, "{}", v.name);
        assert_eq!(field("alpha"), v.alpha, "{}", v.name);
        assert_eq!(field("H"), v.h, "{}", v.name);
        assert_eq!(field("pi"), v.pi, "{}", v.name);
        assert_eq!(field("beta"), v.beta, "{}", v.name);
    }
}

#[test]
fn rfc9381_examples_19_to_21() {
    for v in &VECTORS {
        let sk = VrfSecretKey::from_bytes(&arr(v.sk));
        let alpha = hex::decode(v.alpha).unwrap();
        let pk = sk.public_key();
        assert_eq!(hex::encode(pk.as_bytes()), v.pk, "{}: PK", v.name);
        assert_eq!(VrfPublicKey::from_bytes(&arr(v.pk)).unwrap(), pk);
        assert_eq!(
            hex::encode(pk.encode_to_curve(&alpha)),
            v.h,
            "{}: H",
            v.name
        );

        let proof = sk.prove(&alpha);
        assert_eq!(hex::encode(proof.as_bytes()), v.pi, "{}: pi", v.name);
        let (out, proof2) = sk.evaluate(&alpha);
        assert_eq!(proof2, proof);
        assert_eq!(hex::encode(out.0), v.beta, "{}: beta (evaluate)", v.name);

        let parsed = VrfProof::from_bytes(&arr(v.pi));
        assert_eq!(
            parsed.to_output().unwrap(),
            out,
            "{}: proof_to_hash",
            v.name
        );
        assert_eq!(pk.verify(&alpha, &parsed), Ok(out), "{}: verify", v.name);
        assert_eq!(out.index(), out.0[..32], "{}: index", v.name);
    }
}

#[test]
fn rfc9381_secret_key_roundtrip() {
    let sk = VrfSecretKey::generate();
    let again = VrfSecretKey::from_bytes(&sk.to_bytes());
    assert_eq!(sk.public_key(), again.public_key());
    assert_eq!(sk.prove(b"label"), again.prove(b"label"));
}

/// Canonical encodings of the eight points of small order (the 8-torsion subgroup).
fn small_order_encodings() -> Vec<[u8; 32]> {
    curve25519_dalek::constants::EIGHT_TORSION
        .iter()
        .map(|p| {
            assert!(p.is_small_order());
            p.compress().to_bytes()
        })
        .collect()
}

#[test]
fn rfc9381_rejects_small_order_and_noncanonical_keys() {
    for enc in small_order_encodings() {
        assert_eq!(
            VrfPublicKey::from_bytes(&enc),
            Err(VrfError::InvalidPublicKey),
            "{}",
            hex::encode(enc)
        );
    }
    // The identity with the sign bit set (x = 0 cannot be negative).
    let mut id_neg = [0u8; 32];
    id_neg[0] = 1;
    id_neg[31] = 0x80;
    assert_eq!(
        VrfPublicKey::from_bytes(&id_neg),
        Err(VrfError::InvalidPublicKey)
    );

    // Non-canonical y: for every y < 19, the encoding of y + p (p = 2^255 - 19) must be
    // rejected even where y itself is a valid large-order point.
    let mut valid_small_y = 0;
    for y in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            canonical[31] = sign;
            let mut non_canonical = [0xffu8; 32];
            non_canonical[0] = 0xed + y;
            non_canonical[31] = 0x7f | sign;
            if VrfPublicKey::from_bytes(&canonical).is_ok() {
                valid_small_y += 1;
            }
            assert_eq!(
                VrfPublicKey::from_bytes(&non_canonical),
                Err(VrfError::InvalidPublicKey),
                "y = p + {y}, sign {sign}"
            );
        }
    }
    // Make sure the loop exercised real points, not only off-curve ones.
    assert!(valid_small_y > 0);
}

#[test]
fn rfc9381_rejects_malformed_proofs() {
    let v = &VECTORS[0];
    let pk = VrfPublicKey::from_bytes(&arr(v.pk)).unwrap();
    let pi: [u8; VRF_PROOF_LEN] = arr(v.pi);

    // s >= q: replace s with q (the group order) itself.
    let q: [u8; 32] = arr("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    let mut bad = pi;
    bad[48..].copy_from_slice(&q);
    let bad = VrfProof::from_bytes(&bad);
    assert_eq!(pk.verify(b"", &bad), Err(VrfError::InvalidProof));
    assert_eq!(bad.to_output(), Err(VrfError::InvalidProof));

    // Gamma not on the curve / non-canonical: y = 2^255 - 1.
    let mut bad = pi;
    bad[..32].copy_from_slice(&[0xff; 32]);
    bad[31] = 0x7f;
    assert_eq!(
        pk.verify(b"", &VrfProof::from_bytes(&bad)),
        Err(VrfError::InvalidProof)
    );

    assert_eq!(VrfProof::from_slice(&pi[..79]), Err(VrfError::InvalidProof));
    assert_eq!(VrfProof::from_slice(&pi).unwrap().to_bytes(), pi);
}

#[test]
fn rfc9381_constants() {
    assert_eq!(VRF_PROOF_LEN, 80);
    assert_eq!(VRF_OUTPUT_LEN, 64);
    let _: VrfOutput = VrfOutput([0; VRF_OUTPUT_LEN]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rfc9381_prop_roundtrip(seed in any::<[u8; 32]>(), alpha in proptest::collection::vec(any::<u8>(), 0..200)) {
        let sk = VrfSecretKey::from_bytes(&seed);
        let pk = VrfPublicKey::from_bytes(sk.public_key().as_bytes()).unwrap();
        let (out, proof) = sk.evaluate(&alpha);
        prop_assert_eq!(pk.verify(&alpha, &proof), Ok(out));
        prop_assert_eq!(proof.to_output(), Ok(out));
        prop_assert_eq!(sk.prove(&alpha), proof);
    }

    #[test]
    fn rfc9381_prop_bit_flip_fails(seed in any::<[u8; 32]>(), alpha in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..(VRF_PROOF_LEN * 8)) {
        let sk = VrfSecretKey::from_bytes(&seed);
        let proof = sk.prove(&alpha);
        let mut bytes = proof.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let res = sk.public_key().verify(&alpha, &VrfProof::from_bytes(&bytes));
        prop_assert!(res.is_err(), "bit {} flipped still verifies", bit);
    }

    #[test]
    fn rfc9381_prop_wrong_alpha_or_key_fails(
        seed in any::<[u8; 32]>(),
        other_seed in any::<[u8; 32]>(),
        alpha in proptest::collection::vec(any::<u8>(), 0..64),
        other_alpha in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let sk = VrfSecretKey::from_bytes(&seed);
        let proof = sk.prove(&alpha);
        if other_alpha != alpha {
            prop_assert_eq!(sk.public_key().verify(&other_alpha, &proof), Err(VrfError::VerificationFailed));
        }
        if other_seed != seed {
            let other = VrfSecretKey::from_bytes(&other_seed).public_key();
            prop_assert_eq!(other.verify(&alpha, &proof), Err(VrfError::VerificationFailed));
        }
    }

    #[test]
    fn rfc9381_prop_arbitrary_bytes_never_panic(pk in any::<[u8; 32]>(), pi in proptest::collection::vec(any::<u8>(), VRF_PROOF_LEN), alpha in proptest::collection::vec(any::<u8>(), 0..16)) {
        let proof = VrfProof::from_slice(&pi).unwrap();
        let _ = proof.to_output();
        if let Ok(pk) = VrfPublicKey::from_bytes(&pk) {
            prop_assert!(pk.verify(&alpha, &proof).is_err());
        }
    }
}
