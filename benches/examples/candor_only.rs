//! The akd_compare workload against Candor alone, for profiling
//! (`valgrind --tool=callgrind`) and quick checks of the tree engine.
//!
//! `cargo run --profile bench -p candor-benches --example candor_only -- [mem]`
//!
//! Sizes come from the same `AKD_COMPARE_*` variables as the bench.

use candor_benches::BenchError;
use candor_benches::candor_system::{Backend, CandorSystem};
use candor_benches::runner::run_workload;
use candor_benches::workload::{Workload, label};

fn main() -> Result<(), BenchError> {
    let backend = if std::env::args().any(|a| a == "mem") {
        Backend::Memory
    } else {
        Backend::Embedded
    };
    let w = Workload::from_env()?;
    let mut sys = CandorSystem::new(backend)?;
    let m = run_workload(&mut sys, &w)?;
    println!("{}", serde_json::to_string_pretty(&m)?);
    for p in sys.phases() {
        println!(
            "{} labels: VRF+leaf {:.3} s, seal {:.3} s, epoch {:.4} s",
            p.labels, p.prepare_secs, p.seal_secs, p.epoch_secs
        );
    }
    let labels: Vec<Vec<u8>> = (0..w.lookups).map(|k| label(w.lookup_index(k))).collect();
    println!("{:#?}", sys.explain(&labels)?);
    Ok(())
}
