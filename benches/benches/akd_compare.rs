//! Candor against akd on the same workload, in the same run.
//!
//! `cargo bench -p candor-benches --bench akd_compare`
//!
//! Environment: `AKD_COMPARE_N` (labels, default 100000), `AKD_COMPARE_BATCHES` (5),
//! `AKD_COMPARE_UPDATES` (N/5), `AKD_COMPARE_LOOKUPS` (2000), `AKD_COMPARE_HISTORY` (100),
//! `AKD_COMPARE_JSON=path` to also write the results as JSON. See the crate docs of
//! `candor-benches` for what is timed and how sizes are counted.

use candor_benches::akd_system::AkdSystem;
use candor_benches::report::{self, Report};
use candor_benches::runner::{Measurements, run_workload};
use candor_benches::workload::Workload;
use candor_benches::{BenchError, System};

const AKD_SETUP: &str = "akd 0.13 (crates.io, default features + whatsapp_v1): \
    WhatsAppV1Configuration, AsyncInMemoryDatabase behind StorageManager with the default cache, \
    HardCodedAkdVRF, AzksParallelismConfig::default(), tokio multi-thread runtime (1 worker/core)";

fn measure<S: System>(
    sys: Result<S, BenchError>,
    w: &Workload,
) -> Result<Measurements, BenchError> {
    run_workload(&mut sys?, w)
}

fn main() -> Result<(), BenchError> {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs this
    // target without it, and then a tiny workload only checks that everything works, the
    // way criterion's test mode does.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let w = if bench_mode {
        Workload::from_env()?
    } else {
        Workload::smoke()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    eprintln!(
        "akd_compare: {} labels in {} batches, {} updates, {} lookups, {} history proofs, {cores} cores",
        w.n, w.batches, w.updates, w.lookups, w.history
    );

    // Each system gets its own fresh process state: akd's directory is dropped (and its
    // memory freed) before the next system runs.
    let akd = measure(AkdSystem::new(), &w)?;
    // Candor's System implementation (over candor-tree) is measured here once it exists;
    // until then its column reads n/a.
    let candor: Option<Measurements> = None;

    let load_after = load_average();

    let rows = report::rows(&akd, candor.as_ref());
    println!();
    println!("{AKD_SETUP}");
    println!(
        "workload: {} new labels in {} batches, {} updates in 1 batch, {} lookups, {} two-version histories; {cores} cores",
        w.n, w.batches, w.updates, w.lookups, w.history
    );
    // Other work on the machine skews the figures; say so next to them.
    println!(
        "1-minute load average: {} before, {} after",
        load_before.map_or("n/a".into(), |l| format!("{l:.2}")),
        load_after.map_or("n/a".into(), |l| format!("{l:.2}"))
    );
    println!();
    print!("{}", report::table(&rows));

    if let Some(path) = std::env::var_os("AKD_COMPARE_JSON") {
        let path = std::path::PathBuf::from(path);
        report::write_json(
            &path,
            &Report {
                akd_setup: AKD_SETUP,
                cores,
                load_average_before: load_before,
                load_average_after: load_after,
                workload: &w,
                akd: &akd,
                candor: candor.as_ref(),
                rows: &rows,
            },
        )?;
        eprintln!("akd_compare: results written to {}", path.display());
    }
    Ok(())
}

/// The 1-minute load average (Linux), to flag runs disturbed by other work.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
