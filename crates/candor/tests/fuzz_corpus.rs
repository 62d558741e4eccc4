//! Replays the committed corpora of the service-level fuzz targets
//! (`fuzz/corpus/<target>/` for every target of `fuzz/harness/mod.rs`: gRPC requests
//! through the whole server, Raft messages and records, damaged store records,
//! shard snapshots, configuration files) on stable Rust, through the same checks the
//! cargo-fuzz binaries run. Every input that once found new coverage stays a
//! regression test. Fuzz with `fuzz/run.sh` (nightly, cargo-fuzz).

#[path = "../../../fuzz/harness/mod.rs"]
mod harness;

use std::path::Path;

#[test]
fn service_fuzz_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for target in harness::TARGETS {
        let dir = root.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        for path in &inputs {
            let data = std::fs::read(path).unwrap();
            let r = std::panic::catch_unwind(|| harness::check(target, &data));
            assert!(r.is_ok(), "{target}: {} fails its checks", path.display());
        }
        println!("{target}: {} corpus inputs", inputs.len());
        assert!(!inputs.is_empty(), "no corpus for {target}");
    }
}
