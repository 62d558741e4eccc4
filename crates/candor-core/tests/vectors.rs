//! Protocol test vectors: every encoding and hash of `docs/protocol.md`
//! computed from fixed inputs and compared with `docs/vectors/candor-v1.json`.
//! Any change of an encoding fails this test. To regenerate after a
//! deliberate protocol change: `CANDOR_REGENERATE_VECTORS=1 cargo test -p
//! candor-core --test vectors` (and say so in the change log).

use candor_core::hash::{Domain, ZERO, log_node, map_node};
use candor_core::log::{EpochEntry, HeadExtensionProof, InclusionProof, MemoryLog};
use candor_core::map::{Leaf, commit};
use candor_core::reference::ReferenceMap;
use candor_core::signed::{
    Cosignature, EpochHead, MutationTimestamp, PublicConfig, SigningKeyPair,
};
use candor_core::vrf::VrfSecretKey;
use serde_json::{Map, Value, json};

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn generate() -> Value {
    let mut v = Map::new();

    let mut domains = Map::new();
    for d in [
        Domain::MapNode,
        Domain::MapLeaf,
        Domain::Commitment,
        Domain::LogLeaf,
        Domain::LogNode,
        Domain::Config,
        Domain::Head,
    ] {
        domains.insert(d.context().to_string(), h(d.key()));
    }
    v.insert("domain_keys".into(), Value::Object(domains));

    let (l, r) = ([0x11u8; 32], [0x22u8; 32]);
    v.insert(
        "map_node".into(),
        json!({"left": h(&l), "right": h(&r), "hash": h(&map_node(&l, &r))}),
    );
    v.insert(
        "log_node".into(),
        json!({"left": h(&l), "right": h(&r), "hash": h(&log_node(&l, &r))}),
    );

    let nonce = [0x33u8; 32];
    let c = commit(&nonce, b"alice@example.com", 1, b"public key bytes");
    v.insert(
        "commitment".into(),
        json!({"nonce": h(&nonce), "label": "alice@example.com", "version": 1,
               "value": h(b"public key bytes"), "commitment": h(&c)}),
    );

    let leaf1 = Leaf::first([0x44; 32], c);
    let leaf2 = leaf1.next([0x55; 32]);
    v.insert(
        "leaves".into(),
        json!([
            {"encoding": h(&leaf1.to_bytes()), "hash": h(&leaf1.hash())},
            {"encoding": h(&leaf2.to_bytes()), "hash": h(&leaf2.hash())},
        ]),
    );

    let vrf = VrfSecretKey::from_bytes(&[0x01; 32]);
    let head_key = SigningKeyPair::from_seed(&[0x02; 32]);
    let smt_key = SigningKeyPair::from_seed(&[0x03; 32]);
    let auditor = SigningKeyPair::from_seed(&[0x04; 32]);
    let cfg = PublicConfig {
        namespace: "example.com/kt".into(),
        vrf_key: vrf.public_key(),
        head_key: head_key.public_key(),
        smt_key: smt_key.public_key(),
        shard_bits: 4,
        epoch_interval_ms: 1000,
        max_merge_delay_ms: 10_000,
    };
    v.insert(
        "keys".into(),
        json!({"vrf_secret_seed": h(&[0x01; 32]), "vrf_public": h(cfg.vrf_key.as_bytes()),
               "head_seed": h(&[0x02; 32]), "head_public": h(&cfg.head_key.0),
               "smt_seed": h(&[0x03; 32]), "smt_public": h(&cfg.smt_key.0),
               "auditor_seed": h(&[0x04; 32]), "auditor_public": h(&auditor.public_key().0)}),
    );
    v.insert(
        "public_config".into(),
        json!({"encoding": h(&cfg.encode()), "digest": h(&cfg.digest())}),
    );

    // A small map: three labels, one updated twice.
    let mut m = ReferenceMap::new();
    let labels: [&[u8]; 3] = [
        b"alice@example.com",
        b"bob@example.com",
        b"carol@example.com",
    ];
    let mut prev = ReferenceMap::new();
    for (i, lab) in labels.iter().enumerate() {
        let (out, _) = vrf.evaluate(lab);
        m.publish(
            out.index(),
            lab,
            format!("key-{i}").as_bytes(),
            Some([i as u8 + 0x60; 32]),
        );
        if i == 1 {
            prev = m.clone();
        }
    }
    let alice = vrf.evaluate(labels[0]).0.index();
    m.publish(alice, labels[0], b"key-0-rotated", Some([0x70; 32]));
    m.publish(alice, labels[0], b"key-0-rotated-again", Some([0x71; 32]));
    let mut idx = Vec::new();
    for lab in labels {
        let (out, proof) = vrf.evaluate(lab);
        idx.push(
            json!({"label": String::from_utf8_lossy(lab), "vrf_proof": h(proof.as_bytes()),
                        "vrf_output": h(&out.0), "index": h(&out.index())}),
        );
    }
    v.insert("vrf".into(), Value::Array(idx));
    v.insert("map_root".into(), h(&m.root()));
    v.insert(
        "lookup_member".into(),
        json!({"label": "alice@example.com", "proof": h(&m.lookup_proof(&vrf, labels[0]).encode())}),
    );
    v.insert(
        "lookup_absent".into(),
        json!({"label": "mallory@example.com", "proof": h(&m.lookup_proof(&vrf, b"mallory@example.com").encode())}),
    );
    v.insert(
        "history".into(),
        json!({"label": "alice@example.com", "proof": h(&m.history_proof(&vrf, labels[0]).encode())}),
    );
    v.insert(
        "audit".into(),
        json!({"old_root": h(&prev.root()), "new_root": h(&m.root()), "proof": h(&m.audit_proof(&prev).encode())}),
    );

    // Epoch log of three epochs and its heads.
    let mut log = MemoryLog::new();
    let mut heads = Vec::new();
    for e in 1..=3u64 {
        let entry = EpochEntry {
            epoch: e,
            timestamp_ms: 1_700_000_000_000 + 1000 * e,
            map_root: if e == 3 { m.root() } else { [e as u8; 32] },
        };
        log.append(entry.leaf_hash());
        let head = EpochHead {
            namespace: cfg.namespace.clone(),
            epoch: e,
            timestamp_ms: entry.timestamp_ms,
            map_root: entry.map_root,
            log_size: e,
            log_root: log.root(),
            config_digest: cfg.digest(),
        };
        heads.push(
            json!({"entry": h(&entry.to_bytes()), "entry_hash": h(&entry.leaf_hash()),
                          "log_root": h(&log.root()), "head_digest": h(&head.digest()),
                          "signed_head": h(&head.clone().sign(&head_key).encode())}),
        );
        if e == 3 {
            let cs = Cosignature::create(&head, &auditor, 1_700_000_005_000);
            v.insert("cosignature".into(), h(&cs.encode()));
        }
    }
    v.insert("epochs".into(), Value::Array(heads));
    v.insert(
        "inclusion_1_of_3".into(),
        h(&InclusionProof::generate(&log, 1, 3).unwrap().encode()),
    );
    v.insert(
        "extension_1_to_3".into(),
        h(&HeadExtensionProof::generate(&log, 1, 3).unwrap().encode()),
    );

    let smt = MutationTimestamp {
        namespace: cfg.namespace.clone(),
        index: alice,
        version: 3,
        leaf_hash: m.versions(&alice)[2].leaf.hash(),
        shard: candor_core::map::shard_of(&alice, 4),
        timestamp_ms: 1_700_000_002_500,
        merge_deadline_ms: 1_700_000_012_500,
    }
    .sign(&smt_key);
    v.insert("smt".into(), h(&smt.encode()));
    v.insert("zero".into(), h(&ZERO));
    Value::Object(v)
}

#[test]
fn protocol_vectors_match_docs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vectors/candor-v1.json"
    );
    let got = generate();
    if std::env::var_os("CANDOR_REGENERATE_VECTORS").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(path).expect("docs/vectors/candor-v1.json is missing");
    let want: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got, want, "an encoding changed: see docs/protocol.md");
}
