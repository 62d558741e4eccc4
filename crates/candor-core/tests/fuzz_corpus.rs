//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the
//! same checks the cargo-fuzz targets run (`candor_core::fuzz::check`), on
//! stable Rust: every input that once found new coverage stays a regression
//! test. Run the fuzzers themselves with `fuzz/run.sh` (nightly, cargo-fuzz).

use std::path::Path;

#[test]
fn fuzz_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0usize;
    for target in candor_core::fuzz::TARGETS {
        let dir = root.join(target);
        let mut n = 0usize;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries {
                let path = e.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let r = std::panic::catch_unwind(|| candor_core::fuzz::check(target, &data));
                assert!(r.is_ok(), "{target}: {} fails its checks", path.display());
                n += 1;
            }
        }
        println!("{target}: {n} corpus inputs");
        total += n;
    }
    assert!(total > 0, "no corpus under {}", root.display());
}
