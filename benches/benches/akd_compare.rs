//! Candor against akd on the same workload, in the same run.
//!
//! `cargo bench -p candor-benches --bench akd_compare`
//!
//! Environment: `AKD_COMPARE_N` (labels, default 100000), `AKD_COMPARE_BATCHES` (5),
//! `AKD_COMPARE_UPDATES` (N/5), `AKD_COMPARE_LOOKUPS` (2000), `AKD_COMPARE_HISTORY` (100),
//! `AKD_COMPARE_JSON=path` to also write the results as JSON, `AKD_COMPARE_MEM=0` to skip
//! Candor's in-memory-store column, `CANDOR_BENCH_DIR` for the embedded store's parent
//! directory (default: the system temp dir). See the crate docs of `candor-benches` for
//! what is timed and how sizes are counted.

use candor_benches::akd_system::AkdSystem;
use candor_benches::candor_system::{Backend, CandorSystem, Explain, PublishPhases, SHARD_BITS};
use candor_benches::report::{self, Report};
use candor_benches::runner::{Measurements, run_workload};
use candor_benches::workload::{Workload, label};
use candor_benches::{BenchError, System};

const AKD_SETUP: &str = "akd 0.13 (crates.io, default features + whatsapp_v1): \
    WhatsAppV1Configuration, AsyncInMemoryDatabase behind StorageManager with the default cache, \
    HardCodedAkdVRF, AzksParallelismConfig::default(), tokio multi-thread runtime (1 worker/core)";

fn candor_setup(backend: Backend) -> String {
    format!(
        "candor (this workspace): candor-tree, {} shards, store {}, default TreeConfig (64 MiB node cache{}), \
         ECVRF-EDWARDS25519-SHA512-ELL2 (output and proof) evaluated once per label and kept in the \
         store's label-vrf records, read back by updates, lookups and histories as the api does \
         (candor_api::label_vrf), rayon pool of {} threads",
        1u32 << SHARD_BITS,
        backend.label(),
        match backend {
            Backend::Embedded => ", synced seals, FjallConfig::default()",
            Backend::Memory => "",
        },
        rayon::current_num_threads()
    )
}

fn measure<S: System>(
    sys: Result<S, BenchError>,
    w: &Workload,
) -> Result<Measurements, BenchError> {
    run_workload(&mut sys?, w)
}

fn measure_candor(
    backend: Backend,
    w: &Workload,
) -> Result<(Measurements, Vec<PublishPhases>, Explain), BenchError> {
    let mut sys = CandorSystem::new(backend)?;
    let m = run_workload(&mut sys, w)?;
    let labels: Vec<Vec<u8>> = (0..w.lookups).map(|k| label(w.lookup_index(k))).collect();
    let explain = sys.explain(&labels)?;
    Ok((m, sys.phases().to_vec(), explain))
}

fn print_explain(backend: Backend, x: &Explain) {
    println!("candor, {}, what the rows are made of:", backend.label());
    println!(
        "  VRF evaluate (output + proof) {:.1} µs, VRF verify {:.1} µs (one thread)",
        x.vrf_evaluate_us, x.vrf_verify_us
    );
    println!(
        "  lookup proof generation with the VRF precomputed (api VRF cache): {:.0}/s one at a time, {:.0}/s on all cores",
        x.lookup_gen_cached_vrf_per_s, x.lookup_gen_cached_vrf_all_cores_per_s
    );
    println!(
        "  audit proof: {} old leaves {} B, {} opaque hashes {} B, tags {} B, change list {} B",
        x.audit_old_leaves,
        x.audit_old_leaf_bytes,
        x.audit_opaques,
        x.audit_opaque_bytes,
        x.audit_tag_bytes,
        x.audit_change_bytes
    );
}

fn print_phases(backend: Backend, phases: &[PublishPhases], w: &Workload) {
    println!("candor publish phases, {}:", backend.label());
    for (i, p) in phases.iter().enumerate() {
        let total = p.prepare_secs + p.seal_secs + p.epoch_secs;
        let what = if i < w.batches {
            format!("new batch {}", i + 1)
        } else {
            "update batch".to_string()
        };
        println!(
            "  {what}: {} labels, {:.3} s = VRF+leaf {:.3} s + seal {:.3} s + epoch {:.4} s",
            p.labels, total, p.prepare_secs, p.seal_secs, p.epoch_secs
        );
    }
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
    let (candor, phases, explain) = measure_candor(Backend::Embedded, &w)?;
    let mut candor_phases = vec![(Backend::Embedded.label(), phases)];
    let mut candor_explain = vec![(Backend::Embedded.label(), explain)];
    let with_mem = std::env::var("AKD_COMPARE_MEM").map_or(true, |v| v.trim() != "0");
    let candor_mem = if with_mem {
        let (m, phases, explain) = measure_candor(Backend::Memory, &w)?;
        candor_phases.push((Backend::Memory.label(), phases));
        candor_explain.push((Backend::Memory.label(), explain));
        Some(m)
    } else {
        None
    };

    let load_after = load_average();

    let rows = report::rows(&akd, Some(&candor), candor_mem.as_ref());
    println!();
    println!("{AKD_SETUP}");
    println!("{}", candor_setup(Backend::Embedded));
    if with_mem {
        println!("candor mem: the same on the in-memory store (MemStore)");
    }
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
    println!();
    print_phases(Backend::Embedded, &candor_phases[0].1, &w);
    if let Some((_, p)) = candor_phases.get(1) {
        print_phases(Backend::Memory, p, &w);
    }
    println!();
    print_explain(Backend::Embedded, &candor_explain[0].1);
    if let Some((_, x)) = candor_explain.get(1) {
        print_explain(Backend::Memory, x);
    }

    if let Some(path) = std::env::var_os("AKD_COMPARE_JSON") {
        let path = std::path::PathBuf::from(path);
        report::write_json(
            &path,
            &Report {
                akd_setup: AKD_SETUP,
                candor_setup: candor_setup(Backend::Embedded),
                cores,
                load_average_before: load_before,
                load_average_after: load_after,
                workload: &w,
                akd: &akd,
                candor: Some(&candor),
                candor_mem: candor_mem.as_ref(),
                candor_phases: &candor_phases,
                candor_explain: &candor_explain,
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
