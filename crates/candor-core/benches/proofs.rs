//! Criterion benches: node and leaf hashing, and lookup-proof verification at
//! the depths of a map of 1M (≈22 levels) and 1B (≈32 levels) labels.
//!
//! `cargo bench -p candor-core --bench proofs -- --warm-up-time 1 --measurement-time 3`

use candor_core::hash::map_node;
use candor_core::map::{Leaf, bit, commit};
use candor_core::proof::Opening;
use candor_core::proof::lookup::{LookupProof, Terminal};
use candor_core::vrf::VrfSecretKey;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// A member proof of `depth` siblings and the root it folds to.
fn proof_at_depth(depth: usize) -> (VrfSecretKey, Vec<u8>, LookupProof, [u8; 32]) {
    let sk = VrfSecretKey::from_bytes(&[9; 32]);
    let label = b"alice@example.com".to_vec();
    let (out, vrf_proof) = sk.evaluate(&label);
    let index = out.index();
    let nonce = [3u8; 32];
    let value = vec![0xAB; 32];
    let leaf = Leaf::first(index, commit(&nonce, &label, 1, &value));
    let siblings: Vec<[u8; 32]> = (0..depth).map(|i| [i as u8 + 1; 32]).collect();
    let mut cur = leaf.hash();
    for i in (0..depth).rev() {
        cur = if bit(&index, i) {
            map_node(&siblings[i], &cur)
        } else {
            map_node(&cur, &siblings[i])
        };
    }
    let proof = LookupProof {
        vrf_proof,
        terminal: Terminal::Member {
            version: 1,
            prev: [0; 32],
            opening: Opening::Open { nonce, value },
        },
        siblings,
    };
    (sk, label, proof, cur)
}

fn benches(c: &mut Criterion) {
    let (l, r) = ([1u8; 32], [2u8; 32]);
    c.bench_function("map_node (64-byte BLAKE3, one compression)", |b| {
        b.iter(|| map_node(black_box(&l), black_box(&r)))
    });
    let leaf = Leaf::first([5; 32], [6; 32]);
    c.bench_function("leaf hash (104 bytes)", |b| {
        b.iter(|| black_box(&leaf).hash())
    });
    c.bench_function("commitment (32-byte value)", |b| {
        b.iter(|| commit(black_box(&[1; 32]), b"alice@example.com", 1, &[7; 32]))
    });
    for (name, depth) in [("1M labels (22 levels)", 22), ("1B labels (32 levels)", 32)] {
        let (sk, label, proof, root) = proof_at_depth(depth);
        let pk = sk.public_key();
        proof
            .verify(&pk, &label, &root)
            .expect("bench proof verifies");
        let bytes = proof.encode();
        println!("lookup proof at {name}: {} bytes", bytes.len());
        c.bench_function(&format!("lookup verify, {name}"), |b| {
            b.iter(|| proof.verify(&pk, black_box(&label), &root).unwrap())
        });
        c.bench_function(&format!("lookup decode+verify, {name}"), |b| {
            b.iter(|| {
                LookupProof::decode(black_box(&bytes))
                    .unwrap()
                    .verify(&pk, &label, &root)
                    .unwrap()
            })
        });
    }
}

criterion_group!(core_proofs, benches);
criterion_main!(core_proofs);
