//! End to end: `--embedded` starts a `candor dev` in process and a small run against it
//! verifies everything (SMTs, lookups, merges) without a single error.

use std::time::Duration;

use candor_bench::{BenchOptions, Stop, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_verifies_everything() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let opts = BenchOptions {
        embedded: true,
        epoch_interval: Duration::from_millis(100),
        shards: 4,
        mix: "new=30,update=30,lookup=40".parse().unwrap(),
        concurrency: 4,
        connections: Some(2),
        ops: Some(300),
        batch: 5,
        preload: Some(20),
        merge_sample: 1,
        json: Some(json.clone()),
        quiet: true,
        ..BenchOptions::default()
    };
    let report = run(opts).await.unwrap();
    assert!(
        report.errors.is_empty(),
        "errors: {:?} {:?}",
        report.errors,
        report.error_samples
    );
    let c = &report.counts;
    // Every operation issued was acknowledged: batches of 5 may be cut short only at
    // the very end, so the total is exact.
    assert_eq!(c.mutations + c.lookups, 300, "{c:?}");
    assert_eq!(c.mutations, c.new_labels + c.updates);
    assert!(c.mutations > 0 && c.lookups > 0, "{c:?}");
    // Every SMT was sampled and each one was seen merged in a signed epoch.
    assert_eq!(c.merge_samples, c.mutations);
    assert_eq!(c.merge_confirmed, c.merge_samples, "{c:?}");
    assert_eq!(c.merge_unconfirmed, 0);
    assert_eq!(report.detail.merge_delay_ms.count, c.merge_confirmed);
    assert_eq!(report.detail.smt_latency_ms.count, c.mutations);
    assert_eq!(report.detail.lookup_latency_ms.count, c.lookups);
    assert!(
        report.proof_bytes_median > 80,
        "a lookup proof holds at least a VRF proof"
    );
    assert_eq!(report.run.shards, 4);
    assert_eq!(report.run.stop, Stop::Ops(300));

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["counts"]["mutations"], c.mutations);
    for k in [
        "mutations_per_s",
        "lookups_per_s",
        "proof_bytes_median",
        "verify_us_median",
    ] {
        assert!(v[k].is_number(), "{k}");
    }
    for k in ["smt_latency_ms", "merge_delay_ms", "lookup_latency_ms"] {
        assert!(v[k]["p50"].is_number() && v[k]["p99"].is_number(), "{k}");
    }
    assert!(v["errors"].as_object().unwrap().is_empty());
}

#[tokio::test]
async fn bad_options_fail_before_connecting() {
    // Remote target without a pin.
    let err = run(BenchOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("pin"), "{err}");
    // Publishes without a token.
    let err = run(BenchOptions {
        tofu: true,
        target: Some("http://127.0.0.1:1".into()),
        ..BenchOptions::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
}
