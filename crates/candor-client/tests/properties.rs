//! Property tests over random workloads: whatever an honest service does,
//! every check passes; the auditor accepts every epoch and its log equals the
//! service's; every SMT is honoured; the tracker accepts any pair of heads.

mod common;

use candor_client::candor_core::log::HeadExtensionProof;
use candor_client::candor_core::signed::SigningKeyPair;
use candor_client::verify;
use candor_client::{Auditor, HeadTracker, SmtStatus};
use common::World;
use proptest::prelude::*;

/// Epochs of mutations: each epoch is a list of (label number, value byte).
fn workload() -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
    prop::collection::vec(prop::collection::vec((0u8..12, any::<u8>()), 0..6), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn honest_service_passes_every_check(epochs in workload(), shard_bits in 0u8..4) {
        let mut w = World::new(shard_bits);
        let mut a = Auditor::new(w.config.clone(), SigningKeyPair::from_seed(&[1; 32]));
        let mut published = Vec::new();
        for ops in &epochs {
            for (l, v) in ops {
                let label = format!("label-{l}").into_bytes();
                let r = w.publish(&label, &[*v]);
                let p = verify::publish(&w.config, &label, &[*v], "", &r).unwrap();
                prop_assert_eq!(a.check_smt(&p.smt).unwrap(), SmtStatus::Pending);
                published.push(p);
            }
            w.seal();
            let report = a.process(&w.audit_response(a.next_epoch()), 0);
            prop_assert!(report.accepted && !report.has_alarm(), "{:?}", report.events);
        }
        prop_assert_eq!(a.log_root(), w.log.root());
        prop_assert!(a.pending_smts().is_empty());
        for p in &published {
            let honoured = matches!(a.check_smt(&p.smt).unwrap(), SmtStatus::Honoured { .. });
            prop_assert!(honoured);
            let h = verify::history(&w.config, &p.label, None, &w.history_response(&p.label, None)).unwrap();
            prop_assert!(h.contains(p.version, &p.leaf_hash));
        }
        for l in 0u8..12 {
            let label = format!("label-{l}").into_bytes();
            let last = published.iter().rfind(|p| p.label == label);
            let got = verify::lookup(&w.config, &label, None, &w.lookup_response(&label, None)).unwrap();
            prop_assert_eq!(got.version(), last.map(|p| p.version));
            prop_assert_eq!(got.entry.map(|e| e.leaf_hash), last.map(|p| p.leaf_hash));
        }
    }

    #[test]
    fn tracker_accepts_any_order_of_honest_heads(n in 2u64..12, order in prop::collection::vec(0u64..100, 1..12)) {
        let mut w = World::new(1);
        for i in 0..n {
            w.publish(format!("l{i}").as_bytes(), b"v");
            w.seal();
        }
        let mut t = HeadTracker::new();
        let mut max = 0;
        for o in order {
            let e = o % n + 1;
            let head = w.head(e).clone();
            let proof = t.latest().map(|l| {
                let (a, b) = (l.head.epoch.min(e), l.head.epoch.max(e));
                HeadExtensionProof::generate(&w.log, a, b).unwrap()
            });
            t.accept(&head, proof.as_ref()).unwrap();
            max = max.max(e);
            prop_assert_eq!(t.latest().unwrap().head.epoch, max);
        }
    }
}
