//! Protocol test vectors: every encoding and hash of `docs/protocol.md`
//! computed from fixed inputs and compared with `docs/vectors/candor-v1.json`.
//! Any change of an encoding fails this test. To regenerate after a
//! deliberate protocol change: `CANDOR_REGENERATE_VECTORS=1 cargo test -p
//! candor-core --test vectors` (and say so in the change log).

use candor_core::CoreError;
use candor_core::hash::{Domain, ZERO, log_node, map_node};
use candor_core::log::{
    ConsistencyProof, EpochEntry, HeadExtensionProof, InclusionProof, MemoryLog,
    verify_head_extension,
};
use candor_core::map::{Leaf, commit};
use candor_core::proof::audit::AuditProof;
use candor_core::proof::history::{HistoryPage, HistoryProof, verify_pages};
use candor_core::proof::lookup::LookupProof;
use candor_core::reference::ReferenceMap;
use candor_core::rotation::{ConfigChain, ConfigRotation, ConfigVersion, SignedRotation};
use candor_core::signed::{
    Cosignature, EpochHead, MutationTimestamp, PublicConfig, SignedHead, SignedMutationTimestamp,
    SigningKeyPair,
};
use candor_core::vrf::{VrfPublicKey, VrfSecretKey};
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
    // Log proofs are named by epoch: leaf index `e - 1` is epoch `e`, and a
    // log of size `e` is the log of epoch `e`'s head.
    v.insert(
        "log_inclusion_epoch2_in_log_of_epoch3".into(),
        h(&InclusionProof::generate(&log, 1, 3).unwrap().encode()),
    );
    v.insert(
        "extension_epoch1_to_epoch3".into(),
        h(&HeadExtensionProof::generate(&log, 1, 3).unwrap().encode()),
    );
    v.insert(
        "extension_epoch3_to_epoch3".into(),
        h(&HeadExtensionProof::generate(&log, 3, 3).unwrap().encode()),
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

    // Key rotation (§8.1, §9.5): version 2 keys take over from epoch 4.
    let head_key2 = SigningKeyPair::from_seed(&[0x12; 32]);
    let smt_key2 = SigningKeyPair::from_seed(&[0x13; 32]);
    let cfg2 = PublicConfig {
        head_key: head_key2.public_key(),
        smt_key: smt_key2.public_key(),
        ..cfg.clone()
    };
    let rotation = ConfigRotation {
        namespace: cfg.namespace.clone(),
        old_digest: cfg.digest(),
        new_digest: cfg2.digest(),
        first_epoch: 4,
        timestamp_ms: 1_700_000_003_500,
    }
    .sign(&head_key, &head_key2);
    let entry4 = EpochEntry {
        epoch: 4,
        timestamp_ms: 1_700_000_004_000,
        map_root: m.root(),
    };
    let mut log4 = log.clone();
    log4.append(entry4.leaf_hash());
    let head4 = EpochHead {
        namespace: cfg.namespace.clone(),
        epoch: 4,
        timestamp_ms: entry4.timestamp_ms,
        map_root: entry4.map_root,
        log_size: 4,
        log_root: log4.root(),
        config_digest: cfg2.digest(),
    };
    v.insert(
        "rotation".into(),
        json!({"head_seed_v2": h(&[0x12; 32]), "smt_seed_v2": h(&[0x13; 32]),
               "config_v2": h(&cfg2.encode()), "config_v2_digest": h(&cfg2.digest()),
               "statement": h(&rotation.encode()),
               "signed_head_epoch4": h(&head4.clone().sign(&head_key2).encode())}),
    );

    // C2SP checkpoints (§11): the checkpoint tree over the three signed heads, the
    // signed note of epoch 3, a witness's cosignature/v1 of it (the auditor key as
    // witness `witness.example/w1`, time 1700000005), and the proofs.
    {
        use candor_core::checkpoint::{
            ALG_COSIGNATURE_V1, ALG_ED25519, Checkpoint, cosign_v1, head_leaf, rfc6962_node,
            sign_checkpoint, verifier_key,
        };
        let mut cp_tree = MemoryLog::with_node_hash(rfc6962_node);
        let mut leaves = Vec::new();
        for e in 0..3 {
            let sh = SignedHead::decode(
                &hex::decode(v["epochs"][e]["signed_head"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
            leaves.push(h(&head_leaf(&sh)));
            cp_tree.append(head_leaf(&sh));
        }
        let cp = Checkpoint {
            origin: cfg.namespace.clone(),
            size: 3,
            root: cp_tree.root(),
            extensions: Vec::new(),
        };
        let note = sign_checkpoint(&cp, &head_key).unwrap();
        let line = cosign_v1(&cp, "witness.example/w1", &auditor, 1_700_000_005)
            .unwrap()
            .line();
        v.insert(
            "checkpoint".into(),
            json!({
                "leaf_hashes": leaves,
                "root_epoch3": h(&cp_tree.root()),
                "root_epoch1": h(&cp_tree.root_at(1)),
                "body_epoch3": cp.body(),
                "note_epoch3": note,
                "log_verifier_key": verifier_key(&cfg.namespace, ALG_ED25519, &cfg.head_key),
                "head_inclusion_epoch3": h(&InclusionProof::generate(&cp_tree, 2, 3).unwrap().encode()),
                "consistency_epoch1_to_epoch3": h(&ConsistencyProof::generate(&cp_tree, 1, 3).unwrap().encode()),
                "witness_name": "witness.example/w1",
                "witness_verifier_key": verifier_key("witness.example/w1", ALG_COSIGNATURE_V1, &auditor.public_key()),
                "witness_cosignature_line": line,
            }),
        );
    }

    let fx = Fixture {
        vrf,
        head_key,
        smt_key,
        auditor,
        cfg,
        map: m,
        prev,
        log,
        signed_heads: (1..=3)
            .map(|e| hex::decode(v["epochs"][e - 1]["signed_head"].as_str().unwrap()).unwrap())
            .collect(),
        smt: smt.encode(),
        cosignature: hex::decode(v["cosignature"].as_str().unwrap()).unwrap(),
        rotation: Rotation {
            head_key2,
            smt_key2,
            cfg2,
            statement: rotation,
            head4,
        },
    };
    v.insert("cases".into(), Value::Array(cases(&fx)));
    Value::Object(v)
}

/// Everything [`cases`] derives its inputs from.
struct Fixture {
    vrf: VrfSecretKey,
    head_key: SigningKeyPair,
    smt_key: SigningKeyPair,
    auditor: SigningKeyPair,
    cfg: PublicConfig,
    /// The final three-label map, and the map after bob's publish.
    map: ReferenceMap,
    prev: ReferenceMap,
    log: MemoryLog,
    /// Signed heads of epochs 1..=3.
    signed_heads: Vec<Vec<u8>>,
    smt: Vec<u8>,
    cosignature: Vec<u8>,
    rotation: Rotation,
}

/// The rotation to key version 2 at epoch 4.
struct Rotation {
    head_key2: SigningKeyPair,
    smt_key2: SigningKeyPair,
    cfg2: PublicConfig,
    statement: SignedRotation,
    /// The head of epoch 4 (unsigned), under `cfg2`.
    head4: EpochHead,
}

fn case(name: &str, kind: &str, expect: &str, fields: Value) -> Value {
    let mut c = json!({"name": name, "kind": kind, "expect": expect});
    for (k, v) in fields.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// `bytes` with byte `i` XORed with `mask`.
fn flip(bytes: &[u8], i: usize, mask: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[i] ^= mask;
    b
}

/// Checked cases (§10): each names the verification it exercises
/// (`kind`), its inputs, and the expected outcome: `ok`, or the class of
/// error the reference reports. A second implementation must accept every
/// `ok` case and reject every other one; the class is informative.
fn cases(f: &Fixture) -> Vec<Value> {
    let mut out = Vec::new();
    let root = f.map.root();
    let alice: &[u8] = b"alice@example.com";
    let carol: &[u8] = b"carol@example.com";

    // --- lookups: every terminal tag ---------------------------------
    let member = f.map.lookup_proof(&f.vrf, alice).encode();
    out.push(case(
        "lookup_tag0_member",
        "lookup",
        "ok",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&member)}),
    ));
    let mut forgotten = f.map.clone();
    let carol_index = f.vrf.evaluate(carol).0.index();
    forgotten.forget(&carol_index, 1);
    assert_eq!(
        forgotten.root(),
        root,
        "forgetting an opening keeps the root"
    );
    let tag1 = forgotten.lookup_proof(&f.vrf, carol).encode();
    assert_eq!(tag1[80], 1);
    out.push(case(
        "lookup_tag1_member_forgotten",
        "lookup",
        "ok",
        json!({"label": "carol@example.com", "map_root": h(&root), "proof": h(&tag1),
               "version": 1}),
    ));
    // Absent labels whose path ends in an empty subtree (tag 2) and in
    // another label's leaf (tag 3): the first of `absent-N@example.com`.
    for (tag, name) in [
        (2u8, "lookup_tag2_absent_empty"),
        (3u8, "lookup_tag3_absent_other_leaf"),
    ] {
        let (label, proof) = (0..)
            .map(|i| format!("absent-{i}@example.com"))
            .map(|l| {
                let p = f.map.lookup_proof(&f.vrf, l.as_bytes()).encode();
                (l, p)
            })
            .find(|(_, p)| p[80] == tag)
            .unwrap();
        out.push(case(
            name,
            "lookup",
            "ok",
            json!({"label": label, "map_root": h(&root), "proof": h(&proof)}),
        ));
        if tag == 3 {
            // The other leaf moved to the label's own index: not on its path.
            let own = f.vrf.evaluate(label.as_bytes()).0.index();
            let mut bad = proof.clone();
            bad[81..113].copy_from_slice(&own);
            out.push(case(
                "lookup_tag3_leaf_with_the_label_index",
                "lookup",
                "non_canonical",
                json!({"label": label, "map_root": h(&root), "proof": h(&bad)}),
            ));
        }
    }
    // Tampered lookups.
    let n = member.len();
    out.push(case(
        "lookup_value_byte_altered",
        "lookup",
        "root_mismatch",
        json!({"label": "alice@example.com", "map_root": h(&root),
               "proof": h(&flip(&member, 81 + 8 + 32 + 32 + 4, 1))}),
    ));
    out.push(case(
        "lookup_wrong_label",
        "lookup",
        "vrf",
        json!({"label": "bob@example.com", "map_root": h(&root), "proof": h(&member)}),
    ));
    out.push(case("lookup_vrf_proof_s_altered", "lookup", "vrf",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&flip(&member, 60, 4))})));
    out.push(case("lookup_unknown_tag_4", "lookup", "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&flip(&member, 80, 4))})));
    let mut trailing = member.clone();
    trailing.push(0);
    out.push(case(
        "lookup_trailing_byte",
        "lookup",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&trailing)}),
    ));
    out.push(case(
        "lookup_truncated",
        "lookup",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&member[..n - 1])}),
    ));
    let mut v0 = member.clone();
    v0[81..89].copy_from_slice(&0u64.to_be_bytes());
    out.push(case(
        "lookup_version_0",
        "lookup",
        "version_chain",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&v0)}),
    ));
    let mut siblings_over = member.clone();

    let k = count_siblings(&member, n);
    siblings_over[n - 2 - 32 * k..n - 32 * k].copy_from_slice(&257u16.to_be_bytes());
    out.push(case(
        "lookup_257_siblings",
        "lookup",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&siblings_over)}),
    ));

    // --- history -------------------------------------------------------
    let absent_hist = f.map.history_proof(&f.vrf, b"mallory@example.com").encode();
    out.push(case(
        "history_absent",
        "history",
        "ok",
        json!({"label": "mallory@example.com", "map_root": h(&root), "proof": h(&absent_hist)}),
    ));
    let hist = f.map.history_proof(&f.vrf, alice).encode();
    out.push(case(
        "history_alice_3_versions",
        "history",
        "ok",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&hist)}),
    ));
    let mut big = hist[..80].to_vec();
    big.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    big.extend_from_slice(&hist[84..]);
    out.push(case(
        "history_count_over_limit",
        "history",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&big)}),
    ));
    let mut fits = hist[..80].to_vec();
    fits.extend_from_slice(&1000u32.to_be_bytes());
    fits.extend_from_slice(&hist[84..]);
    out.push(case(
        "history_count_beyond_the_bytes",
        "history",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "proof": h(&fits)}),
    ));
    out.push(case(
        "history_value_byte_altered",
        "history",
        "root_mismatch",
        json!({"label": "alice@example.com", "map_root": h(&root),
               "proof": h(&flip(&hist, 84 + 1 + 32 + 4, 1))}),
    ));

    // --- paged history -------------------------------------------------
    let p1 = f.map.history_page(&f.vrf, alice, None, 2).encode();
    let p2 = f.map.history_page(&f.vrf, alice, Some(1), 2).encode();
    out.push(case(
        "history_pages_alice_2_per_page",
        "history_pages",
        "ok",
        json!({"label": "alice@example.com", "map_root": h(&root), "pages": [h(&p1), h(&p2)]}),
    ));
    let pa = f
        .map
        .history_page(&f.vrf, b"mallory@example.com", None, 2)
        .encode();
    out.push(case(
        "history_page_absent",
        "history_pages",
        "ok",
        json!({"label": "mallory@example.com", "map_root": h(&root), "pages": [h(&pa)]}),
    ));
    out.push(case(
        "history_pages_missing_the_oldest",
        "history_pages",
        "version_chain",
        json!({"label": "alice@example.com", "map_root": h(&root), "pages": [h(&p1)]}),
    ));
    out.push(case(
        "history_pages_older_page_first",
        "history_pages",
        "context",
        json!({"label": "alice@example.com", "map_root": h(&root), "pages": [h(&p2)]}),
    ));
    out.push(case(
        "history_pages_older_page_altered",
        "history_pages",
        "root_mismatch",
        json!({"label": "alice@example.com", "map_root": h(&root),
               "pages": [h(&p1), h(&flip(&p2, p2.len() - 33, 1))]}),
    ));
    let mut zero_count = p1.clone();
    zero_count[96..100].copy_from_slice(&0u32.to_be_bytes());
    out.push(case(
        "history_page_count_0",
        "history_pages",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "pages": [h(&zero_count)]}),
    ));
    let mut over = p1.clone();
    over[96..100].copy_from_slice(&1025u32.to_be_bytes());
    out.push(case(
        "history_page_count_over_limit",
        "history_pages",
        "decode",
        json!({"label": "alice@example.com", "map_root": h(&root), "pages": [h(&over)]}),
    ));

    // --- audit -----------------------------------------------------------
    let mut first = ReferenceMap::new();
    let ai = f.vrf.evaluate(alice).0.index();
    first.publish(ai, alice, b"key-0", Some([0x60; 32]));
    let first_audit = first.audit_proof(&ReferenceMap::new()).encode();
    out.push(case(
        "audit_first_epoch_from_the_empty_map",
        "audit",
        "ok",
        json!({"old_root": h(&ZERO), "new_root": h(&first.root()), "proof": h(&first_audit)}),
    ));
    out.push(case(
        "audit_first_epoch_with_a_nonzero_old_root",
        "audit",
        "root_mismatch",
        json!({"old_root": h(&[1u8; 32]), "new_root": h(&first.root()), "proof": h(&first_audit)}),
    ));
    let audit = f.map.audit_proof(&f.prev);
    let audit_bytes = audit.encode();
    out.push(case(
        "audit_bob_to_final",
        "audit",
        "ok",
        json!({"old_root": h(&f.prev.root()), "new_root": h(&root), "proof": h(&audit_bytes)}),
    ));
    out.push(case(
        "audit_commitment_altered",
        "audit",
        "root_mismatch",
        json!({"old_root": h(&f.prev.root()), "new_root": h(&root),
               "proof": h(&flip(&audit_bytes, audit_bytes.len() - 1, 1))}),
    ));
    let mut unsorted = audit.clone();
    let extra = candor_core::proof::audit::LabelChange {
        index: [0u8; 32],
        commitments: vec![[5u8; 32]],
    };
    unsorted.changes.push(extra);
    out.push(case("audit_changes_not_sorted", "audit", "non_canonical",
        json!({"old_root": h(&f.prev.root()), "new_root": h(&root), "proof": h(&unsorted.encode())})));
    let nested = |k: usize| {
        let mut w = candor_core::codec::Writer::new();
        for _ in 0..k {
            w.u8(3);
        }
        w.u8(0);
        for _ in 0..k {
            w.u8(0);
        }
        w.u32(0);
        w.into_vec()
    };
    out.push(case(
        "audit_257_nested_interior_nodes",
        "audit",
        "decode",
        json!({"old_root": h(&ZERO), "new_root": h(&ZERO), "proof": h(&nested(257))}),
    ));
    out.push(case(
        "audit_expanded_node_without_changes",
        "audit",
        "non_canonical",
        json!({"old_root": h(&ZERO), "new_root": h(&ZERO), "proof": h(&nested(1))}),
    ));

    // --- epoch log -------------------------------------------------------
    let heads: Vec<SignedHead> = f
        .signed_heads
        .iter()
        .map(|b| SignedHead::decode(b).unwrap())
        .collect();
    let incl = InclusionProof::generate(&f.log, 1, 3).unwrap().encode();
    let leaf2 = EpochEntry::of_head(&heads[1]).leaf_hash();
    out.push(case(
        "log_inclusion_epoch2_in_log_of_epoch3",
        "inclusion",
        "ok",
        json!({"leaf_hash": h(&leaf2), "log_root": h(&heads[2].head.log_root), "proof": h(&incl)}),
    ));
    out.push(case(
        "log_inclusion_wrong_leaf",
        "inclusion",
        "root_mismatch",
        json!({"leaf_hash": h(&EpochEntry::of_head(&heads[0]).leaf_hash()),
               "log_root": h(&heads[2].head.log_root), "proof": h(&incl)}),
    ));
    let mut long = incl[..16].to_vec();
    long.push(65);
    long.extend(std::iter::repeat_n(7u8, 65 * 32));
    out.push(case(
        "log_inclusion_path_of_65",
        "inclusion",
        "decode",
        json!({"leaf_hash": h(&leaf2), "log_root": h(&heads[2].head.log_root), "proof": h(&long)}),
    ));
    let ext13 = HeadExtensionProof::generate(&f.log, 1, 3).unwrap().encode();
    out.push(case("extension_epoch1_to_epoch3", "extension", "ok",
        json!({"old_head": h(&f.signed_heads[0]), "new_head": h(&f.signed_heads[2]), "proof": h(&ext13)})));
    let ext33 = HeadExtensionProof::generate(&f.log, 3, 3).unwrap().encode();
    out.push(case("extension_epoch3_to_epoch3", "extension", "ok",
        json!({"old_head": h(&f.signed_heads[2]), "new_head": h(&f.signed_heads[2]), "proof": h(&ext33)})));
    out.push(case(
        "extension_epoch3_to_epoch3_empty_proof",
        "extension",
        "decode",
        json!({"old_head": h(&f.signed_heads[2]), "new_head": h(&f.signed_heads[2]), "proof": ""}),
    ));
    let ext23 = HeadExtensionProof::generate(&f.log, 2, 3).unwrap().encode();
    out.push(case("extension_sizes_of_other_heads", "extension", "context",
        json!({"old_head": h(&f.signed_heads[0]), "new_head": h(&f.signed_heads[2]), "proof": h(&ext23)})));
    // Another head for epoch 3 (a different timestamp), validly signed.
    let mut other3 = heads[2].head.clone();
    other3.timestamp_ms += 1;
    let other3 = other3.sign(&f.head_key).encode();
    out.push(case(
        "extension_equivocation_two_heads_for_epoch3",
        "extension",
        "inconsistent",
        json!({"old_head": h(&f.signed_heads[2]), "new_head": h(&other3), "proof": h(&ext33)}),
    ));
    let mut back = heads[2].head.clone();
    back.timestamp_ms = heads[0].head.timestamp_ms - 1;
    out.push(case("extension_time_going_back", "extension", "inconsistent",
        json!({"old_head": h(&f.signed_heads[0]), "new_head": h(&back.sign(&f.head_key).encode()), "proof": h(&ext13)})));

    // --- signed objects ----------------------------------------------------
    let cfg_bytes = f.cfg.encode();
    let sh = &f.signed_heads[2];
    out.push(case(
        "signed_head_epoch3",
        "signed_head",
        "ok",
        json!({"config": h(&cfg_bytes), "signed_head": h(sh)}),
    ));
    out.push(case(
        "signed_head_signature_altered",
        "signed_head",
        "signature",
        json!({"config": h(&cfg_bytes), "signed_head": h(&flip(sh, sh.len() - 1, 1))}),
    ));
    // S + L: the same signature with a non-canonical S.
    let mut s_plus_l = sh.clone();
    let sl = s_plus_l.len() - 32;
    let mut carry = 0u16;
    for (i, lb) in ED25519_L.iter().enumerate() {
        let v = u16::from(s_plus_l[sl + i]) + u16::from(*lb) + carry;
        s_plus_l[sl + i] = v as u8;
        carry = v >> 8;
    }
    out.push(case(
        "signed_head_non_canonical_s",
        "signed_head",
        "signature",
        json!({"config": h(&cfg_bytes), "signed_head": h(&s_plus_l)}),
    ));
    let mut small_r = sh.clone();
    let rl = small_r.len() - 64;
    small_r[rl..rl + 32].copy_from_slice(&IDENTITY);
    out.push(case(
        "signed_head_small_order_r",
        "signed_head",
        "signature",
        json!({"config": h(&cfg_bytes), "signed_head": h(&small_r)}),
    ));
    let mut other_cfg = f.cfg.clone();
    other_cfg.epoch_interval_ms += 1;
    out.push(case(
        "signed_head_under_another_configuration",
        "signed_head",
        "context",
        json!({"config": h(&other_cfg.encode()), "signed_head": h(sh)}),
    ));
    let mut bad_size = heads[2].head.clone();
    bad_size.log_size = 2;
    out.push(case(
        "signed_head_log_size_not_epoch",
        "signed_head",
        "decode",
        json!({"config": h(&cfg_bytes), "signed_head": h(&bad_size.sign(&f.head_key).encode())}),
    ));
    out.push(case(
        "smt_alice_v3",
        "smt",
        "ok",
        json!({"config": h(&cfg_bytes), "smt": h(&f.smt)}),
    ));
    let mut late = SignedMutationTimestamp::decode(&f.smt).unwrap().smt;
    late.merge_deadline_ms += 1;
    out.push(case(
        "smt_deadline_not_timestamp_plus_mmd",
        "smt",
        "context",
        json!({"config": h(&cfg_bytes), "smt": h(&late.sign(&f.smt_key).encode())}),
    ));
    let mut wrong_shard = SignedMutationTimestamp::decode(&f.smt).unwrap().smt;
    wrong_shard.shard ^= 1;
    out.push(case(
        "smt_shard_does_not_own_the_index",
        "smt",
        "context",
        json!({"config": h(&cfg_bytes), "smt": h(&wrong_shard.sign(&f.smt_key).encode())}),
    ));
    out.push(case(
        "cosignature_epoch3",
        "cosignature",
        "ok",
        json!({"signed_head": h(sh), "cosignature": h(&f.cosignature)}),
    ));
    let other_cs = Cosignature::create(
        &SignedHead::decode(&other3).unwrap().head,
        &f.auditor,
        1_700_000_005_000,
    );
    out.push(case(
        "cosignature_of_another_head_for_epoch3",
        "cosignature",
        "inconsistent",
        json!({"signed_head": h(sh), "cosignature": h(&other_cs.encode())}),
    ));
    out.push(case("cosignature_signature_altered", "cosignature", "signature",
        json!({"signed_head": h(sh), "cosignature": h(&flip(&f.cosignature, f.cosignature.len() - 1, 1))})));
    checkpoint_cases(f, &mut out);
    out.push(case(
        "config",
        "config",
        "ok",
        json!({"config": h(&cfg_bytes)}),
    ));
    for (name, key) in [
        ("config_small_order_head_key", IDENTITY),
        ("config_non_canonical_head_key", NON_CANONICAL_IDENTITY),
    ] {
        let mut c = f.cfg.clone();
        c.head_key = candor_core::signed::PublicKey(key);
        out.push(case(
            name,
            "config",
            "decode",
            json!({"config": h(&c.encode())}),
        ));
    }
    let mut spaced = cfg_bytes.clone();
    let ns_at = 1 + 9 + 1 + 13 + 1; // str8 suite, str8 purpose, namespace length
    spaced[ns_at + 7] = b' ';
    out.push(case(
        "config_namespace_with_a_space",
        "config",
        "decode",
        json!({"config": h(&spaced)}),
    ));
    let mut shards = cfg_bytes.clone();
    let sb = shards.len() - 17;
    shards[sb] = 17;
    out.push(case(
        "config_shard_bits_17",
        "config",
        "decode",
        json!({"config": h(&shards)}),
    ));
    out.extend(rotation_cases(f));
    out
}

/// `rotation` cases: a chain (`history`: configurations with the statement
/// that introduced each), a `pin` digest, and a signed head or SMT checked
/// under the configuration in force for it.
fn rotation_cases(f: &Fixture) -> Vec<Value> {
    let r = &f.rotation;
    let cfg1 = f.cfg.encode();
    let cfg2 = r.cfg2.encode();
    let stmt = r.statement.encode();
    let history = |stmt: &[u8], cfg2: &[u8]| json!([{"config": h(&cfg1), "rotation": ""}, {"config": h(cfg2), "rotation": h(stmt)}]);
    let head4 = r.head4.clone().sign(&r.head_key2).encode();
    let head3 = &f.signed_heads[2];
    let smt_at = |key: &SigningKeyPair, ts: u64| {
        let mut m = SignedMutationTimestamp::decode(&f.smt).unwrap().smt;
        m.timestamp_ms = ts;
        m.merge_deadline_ms = ts + f.cfg.max_merge_delay_ms;
        m.sign(key).encode()
    };
    let mut out = Vec::new();
    let mut push =
        |name: &str, expect: &str, stmt: &[u8], cfg2: &[u8], pin: &[u8; 32], extra: Value| {
            let mut fields = json!({"history": history(stmt, cfg2), "pin": h(pin)});
            for (k, v) in extra.as_object().unwrap() {
                fields[k] = v.clone();
            }
            out.push(case(name, "rotation", expect, fields));
        };
    let (d1, d2) = (f.cfg.digest(), r.cfg2.digest());
    push(
        "rotation_pinned_first_head_after",
        "ok",
        &stmt,
        &cfg2,
        &d1,
        json!({"signed_head": h(&head4)}),
    );
    push(
        "rotation_pinned_second_head_before",
        "ok",
        &stmt,
        &cfg2,
        &d2,
        json!({"signed_head": h(head3)}),
    );
    push(
        "rotation_smt_new_key",
        "ok",
        &stmt,
        &cfg2,
        &d1,
        json!({"smt": h(&smt_at(&r.smt_key2, 1_700_000_004_000))}),
    );
    push(
        "rotation_smt_old_key_within_grace",
        "ok",
        &stmt,
        &cfg2,
        &d1,
        json!({"smt": h(&smt_at(&f.smt_key, 1_700_000_004_000))}),
    );
    push(
        "rotation_smt_old_key_after_grace",
        "signature",
        &stmt,
        &cfg2,
        &d1,
        json!({"smt": h(&smt_at(&f.smt_key, 1_700_000_003_500 + f.cfg.max_merge_delay_ms))}),
    );
    push(
        "rotation_old_key_head_after_rotation",
        "context",
        &stmt,
        &cfg2,
        &d1,
        json!({"signed_head": h(&EpochHead { config_digest: d1, ..r.head4.clone() }.sign(&f.head_key).encode())}),
    );
    push(
        "rotation_new_key_head_before_rotation",
        "context",
        &stmt,
        &cfg2,
        &d2,
        json!({"signed_head": h(&EpochHead { config_digest: d2, ..SignedHead::decode(head3).unwrap().head }.sign(&r.head_key2).encode())}),
    );
    push(
        "rotation_pin_not_in_chain",
        "context",
        &stmt,
        &cfg2,
        &[7; 32],
        json!({}),
    );
    let n = stmt.len();
    push(
        "rotation_old_signature_altered",
        "signature",
        &flip(&stmt, n - 65, 1),
        &cfg2,
        &d1,
        json!({}),
    );
    push(
        "rotation_new_signature_altered",
        "signature",
        &flip(&stmt, n - 1, 1),
        &cfg2,
        &d1,
        json!({}),
    );
    push(
        "rotation_first_epoch_altered",
        "signature",
        &flip(&stmt, n - 128 - 9, 1),
        &cfg2,
        &d1,
        json!({}),
    );
    let mut vrf_changed = r.cfg2.clone();
    vrf_changed.vrf_key = VrfSecretKey::from_bytes(&[0x44; 32]).public_key();
    let stmt_vrf = ConfigRotation {
        new_digest: vrf_changed.digest(),
        ..r.statement.rotation.clone()
    }
    .sign(&f.head_key, &r.head_key2)
    .encode();
    push(
        "rotation_changes_the_vrf_key",
        "context",
        &stmt_vrf,
        &vrf_changed.encode(),
        &d1,
        json!({}),
    );
    let stmt_one_key = ConfigRotation {
        ..r.statement.rotation.clone()
    }
    .sign(&r.head_key2, &r.head_key2)
    .encode();
    push(
        "rotation_signed_by_the_new_key_only",
        "signature",
        &stmt_one_key,
        &cfg2,
        &d1,
        json!({}),
    );
    out
}

/// Ed25519's group order `L`, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
/// The identity point (small order).
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};
/// `y = p + 1`: a non-canonical encoding of the identity.
const NON_CANONICAL_IDENTITY: [u8; 32] = {
    let mut b = [0xffu8; 32];
    b[0] = 0xee;
    b[31] = 0x7f;
    b
};

/// §11: checkpoints of epoch 3 (note, head, head inclusion) and a witness's
/// cosignature/v1 line.
fn checkpoint_cases(f: &Fixture, out: &mut Vec<Value>) {
    use candor_core::checkpoint::{
        Checkpoint, cosign_v1, head_leaf, rfc6962_node, sign_checkpoint,
    };
    let mut tree = MemoryLog::with_node_hash(rfc6962_node);
    let heads: Vec<SignedHead> = f
        .signed_heads
        .iter()
        .map(|b| SignedHead::decode(b).unwrap())
        .collect();
    for sh in &heads {
        tree.append(head_leaf(sh));
    }
    let cp = |size: u64, root| Checkpoint {
        origin: f.cfg.namespace.clone(),
        size,
        root,
        extensions: Vec::new(),
    };
    let good = cp(3, tree.root());
    let note = sign_checkpoint(&good, &f.head_key).unwrap();
    let incl = h(&InclusionProof::generate(&tree, 2, 3).unwrap().encode());
    let sh3 = h(&f.signed_heads[2]);
    out.push(case(
        "checkpoint_epoch3",
        "checkpoint",
        "ok",
        json!({"note": note, "signed_head": sh3, "head_inclusion": incl}),
    ));
    let altered = note.replacen("\n3\n", "\n4\n", 1);
    out.push(case(
        "checkpoint_size_altered",
        "checkpoint",
        "signature",
        json!({"note": altered, "signed_head": sh3, "head_inclusion": incl}),
    ));
    let other_key = sign_checkpoint(&good, &f.smt_key).unwrap();
    out.push(case(
        "checkpoint_signed_by_another_key",
        "checkpoint",
        "signature",
        json!({"note": other_key, "signed_head": sh3, "head_inclusion": incl}),
    ));
    let mut wrong_root = tree.root();
    wrong_root[0] ^= 1;
    out.push(case(
        "checkpoint_root_not_over_the_heads",
        "checkpoint",
        "root_mismatch",
        json!({"note": sign_checkpoint(&cp(3, wrong_root), &f.head_key).unwrap(),
               "signed_head": sh3, "head_inclusion": incl}),
    ));
    out.push(case(
        "checkpoint_with_the_head_of_another_epoch",
        "checkpoint",
        "context",
        json!({"note": note, "signed_head": h(&f.signed_heads[1]), "head_inclusion": incl}),
    ));
    let line = cosign_v1(&good, "witness.example/w1", &f.auditor, 1_700_000_005)
        .unwrap()
        .line();
    let key = h(&f.auditor.public_key().0);
    out.push(case(
        "witness_cosignature_epoch3",
        "witness_cosignature",
        "ok",
        json!({"note": note, "line": line, "witness": "witness.example/w1", "key": key}),
    ));
    let later = cosign_v1(&good, "witness.example/w1", &f.auditor, 1_700_000_006)
        .unwrap()
        .signature;
    let mut swapped = cosign_v1(&good, "witness.example/w1", &f.auditor, 1_700_000_005).unwrap();
    swapped.signature[8..].copy_from_slice(&later[8..]);
    out.push(case(
        "witness_cosignature_time_altered",
        "witness_cosignature",
        "signature",
        json!({"note": note, "line": swapped.line(), "witness": "witness.example/w1", "key": key}),
    ));
    out.push(case(
        "witness_cosignature_of_another_checkpoint",
        "witness_cosignature",
        "signature",
        json!({"note": sign_checkpoint(&cp(2, tree.root_at(2)), &f.head_key).unwrap(),
               "line": line, "witness": "witness.example/w1", "key": key}),
    ));
    out.push(case(
        "witness_cosignature_under_another_name",
        "witness_cosignature",
        "signature",
        json!({"note": note, "line": line, "witness": "witness.example/w2", "key": key}),
    ));
}

/// Number of siblings at the end of a lookup proof of `n` bytes (found by
/// trying every count whose `u16` prefix matches).
fn count_siblings(p: &[u8], n: usize) -> usize {
    (0..=256)
        .find(|k| {
            n >= 2 + 32 * k
                && usize::from(u16::from_be_bytes([p[n - 2 - 32 * k], p[n - 1 - 32 * k]])) == *k
        })
        .unwrap()
}

fn bytes_of(c: &Value, key: &str) -> Vec<u8> {
    hex::decode(c[key].as_str().unwrap_or_else(|| panic!("{key} missing"))).unwrap()
}

fn d32(c: &Value, key: &str) -> [u8; 32] {
    bytes_of(c, key).try_into().unwrap()
}

/// Runs one case from its JSON inputs alone, as a second implementation
/// would, with the VRF key of `keys.vrf_public` and `public_config`.
fn run(c: &Value, vectors: &Value) -> Result<(), CoreError> {
    let vrf = VrfPublicKey::from_bytes(&d32(&vectors["keys"], "vrf_public"))?;
    let label = c["label"].as_str().map(str::as_bytes);
    let config = || match c.get("config") {
        Some(_) => PublicConfig::decode(&bytes_of(c, "config")),
        None => PublicConfig::decode(&bytes_of(&vectors["public_config"], "encoding")),
    };
    match c["kind"].as_str().unwrap() {
        "lookup" => {
            let v = LookupProof::decode(&bytes_of(c, "proof"))?.verify(
                &vrf,
                label.unwrap(),
                &d32(c, "map_root"),
            )?;
            if let Some(want) = c.get("version") {
                let e = v.entry.expect("a member");
                assert_eq!(Some(e.version), want.as_u64());
                assert!(e.value.is_none(), "tag 1 proves no value");
            }
            Ok(())
        }
        "history" => HistoryProof::decode(&bytes_of(c, "proof"))?
            .verify(&vrf, label.unwrap(), &d32(c, "map_root"))
            .map(drop),
        "history_pages" => {
            let pages = c["pages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| HistoryPage::decode(&hex::decode(p.as_str().unwrap()).unwrap()))
                .collect::<Result<Vec<_>, _>>()?;
            verify_pages(&vrf, label.unwrap(), &d32(c, "map_root"), &pages).map(drop)
        }
        "audit" => AuditProof::decode(&bytes_of(c, "proof"))?
            .verify(&d32(c, "old_root"), &d32(c, "new_root"))
            .map(drop),
        "inclusion" => InclusionProof::decode(&bytes_of(c, "proof"))?
            .verify(&d32(c, "leaf_hash"), &d32(c, "log_root")),
        "extension" => {
            let cfg = config()?;
            let old = SignedHead::decode_verified(&bytes_of(c, "old_head"), &cfg)?;
            let new = SignedHead::decode_verified(&bytes_of(c, "new_head"), &cfg)?;
            let p = HeadExtensionProof::decode(&bytes_of(c, "proof"))?;
            verify_head_extension(&old, &new, &p)
        }
        "signed_head" => {
            SignedHead::decode_verified(&bytes_of(c, "signed_head"), &config()?).map(drop)
        }
        "smt" => SignedMutationTimestamp::decode(&bytes_of(c, "smt"))?.verify(&config()?),
        "cosignature" => {
            let head = SignedHead::decode_verified(&bytes_of(c, "signed_head"), &config()?)?;
            Cosignature::decode(&bytes_of(c, "cosignature"))?.verify(&head.head)
        }
        "config" => config().map(drop),
        "checkpoint" => {
            use candor_core::checkpoint::{head_leaf, open_checkpoint, rfc6962_node};
            let cfg = config()?;
            let head = SignedHead::decode_verified(&bytes_of(c, "signed_head"), &cfg)?;
            let (cp, _) =
                open_checkpoint(c["note"].as_str().unwrap(), &cfg.namespace, &cfg.head_key)?;
            if cp.size != head.head.epoch {
                return Err(CoreError::Context(
                    "checkpoint size is not the head's epoch".into(),
                ));
            }
            InclusionProof::decode(&bytes_of(c, "head_inclusion"))?.verify_with(
                &head_leaf(&head),
                &cp.root,
                rfc6962_node,
            )
        }
        "witness_cosignature" => {
            use candor_core::checkpoint::{Checkpoint, Note, NoteSignature, verify_cosignature_v1};
            let note = Note::parse(c["note"].as_str().unwrap())?;
            let cp = Checkpoint::parse_body(&note.text)?;
            let line = c["line"].as_str().unwrap().trim_end_matches('\n');
            let sig = NoteSignature::parse(line)?;
            let key = candor_core::signed::PublicKey(d32(c, "key"));
            verify_cosignature_v1(&cp, &sig, c["witness"].as_str().unwrap(), &key).map(drop)
        }
        "rotation" => {
            let history: Vec<ConfigVersion> = c["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| ConfigVersion {
                    config: bytes_of(v, "config"),
                    rotation: bytes_of(v, "rotation"),
                })
                .collect();
            let chain = ConfigChain::verify(&history, &d32(c, "pin"))?;
            if c.get("signed_head").is_some() {
                chain.verify_head(&SignedHead::decode(&bytes_of(c, "signed_head"))?)?;
            }
            if c.get("smt").is_some() {
                chain.verify_smt(&SignedMutationTimestamp::decode(&bytes_of(c, "smt"))?)?;
            }
            Ok(())
        }
        k => panic!("unknown kind {k}"),
    }
}

fn class(e: &CoreError) -> &'static str {
    match e {
        CoreError::Decode { .. } => "decode",
        CoreError::Vrf(_) => "vrf",
        CoreError::Signature(_) => "signature",
        CoreError::PublicKey(_) => "public_key",
        CoreError::RootMismatch { .. } => "root_mismatch",
        CoreError::NonCanonical(_) => "non_canonical",
        CoreError::VersionChain(_) => "version_chain",
        CoreError::Context(_) => "context",
        CoreError::Inconsistent(_) => "inconsistent",
        CoreError::InvalidArgument(_) => "invalid_argument",
    }
}

/// Every case in the vectors file (not the freshly generated one: this
/// checks the published file) has the outcome it names.
#[test]
fn every_case_has_its_expected_outcome() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vectors/candor-v1.json"
    );
    // While regenerating, the file is being rewritten by the other test.
    let vectors: Value = if std::env::var_os("CANDOR_REGENERATE_VECTORS").is_some() {
        generate()
    } else {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let cases = vectors["cases"].as_array().expect("cases");
    let mut names = std::collections::HashSet::new();
    let (mut ok, mut bad) = (0, 0);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        assert!(names.insert(name), "duplicate case name {name}");
        let want = c["expect"].as_str().unwrap();
        match (run(c, &vectors), want) {
            (Ok(()), "ok") => ok += 1,
            (Err(e), w) if class(&e) == w => bad += 1,
            (got, w) => panic!("case {name}: expected {w}, got {got:?}"),
        }
    }
    assert!(ok >= 15 && bad >= 30, "{ok} valid and {bad} invalid cases");
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
