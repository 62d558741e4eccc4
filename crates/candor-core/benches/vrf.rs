//! VRF costs (RFC 9381 ECVRF-EDWARDS25519-SHA512-ELL2) with Ed25519 alongside for scale.
//!
//! `cargo bench -p candor-core --bench vrf -- --warm-up-time 1 --measurement-time 3`

use candor_core::vrf::{VrfPublicKey, VrfSecretKey};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use std::hint::black_box;

/// A typical label: an account identifier of a few dozen bytes.
const ALPHA: &[u8] = b"+4915112345678@example-provider.invalid";

fn vrf(c: &mut Criterion) {
    let sk = VrfSecretKey::from_bytes(&[0x42; 32]);
    let pk: VrfPublicKey = sk.public_key();
    let proof = sk.prove(ALPHA);

    let mut g = c.benchmark_group("vrf");
    g.bench_function("prove", |b| b.iter(|| sk.prove(black_box(ALPHA))));
    g.bench_function("evaluate", |b| b.iter(|| sk.evaluate(black_box(ALPHA))));
    g.bench_function("verify", |b| {
        b.iter(|| pk.verify(black_box(ALPHA), black_box(&proof)).unwrap())
    });
    g.bench_function("proof_to_hash", |b| {
        b.iter(|| black_box(&proof).to_output().unwrap())
    });
    g.bench_function("keygen", |b| b.iter(VrfSecretKey::generate));
    g.bench_function("public_key_from_bytes", |b| {
        b.iter(|| VrfPublicKey::from_bytes(black_box(pk.as_bytes())).unwrap())
    });
    g.finish();
}

fn ed25519(c: &mut Criterion) {
    let sk = SigningKey::from_bytes(&[0x24; 32]);
    let vk = sk.verifying_key();
    let msg = [0xa5u8; 150];
    let sig = sk.sign(&msg);

    let mut g = c.benchmark_group("ed25519");
    g.bench_function("sign_150B", |b| b.iter(|| sk.sign(black_box(&msg))));
    g.bench_function("verify_strict_150B", |b| {
        b.iter(|| vk.verify_strict(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, vrf, ed25519);
criterion_main!(benches);
