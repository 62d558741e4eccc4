//! `candor`: the Candor key transparency binary.
//!
//! * `candor dev`: every role in one process on the embedded store.
//! * `candor publish | lookup | history | audit | verify`: client commands
//!   that verify everything they receive against a pinned configuration
//!   (`--config-digest`, `--pin FILE`, `DATA_DIR/config.bin`, or the opt-in
//!   `--tofu`).
//! * `candor serve --role all`: one member of a cluster (every member holds a
//!   replica of every group); `candor keygen` makes the shared keys.
//! * `candor cluster status | add-member | remove-member | move-replica`:
//!   online membership changes through a member's admin service.
//!
//! Exit codes: 0 success; 1 usage or configuration error; 2 transport
//! failure or an error status from the server; 3 verification failure (the
//! server sent something an honest server would not).

mod auditor_cmd;
mod cli;
mod cluster_cmd;
mod cmds;
mod config;
mod dev;
mod export_cmd;
mod monitor_cmd;
mod serve;
mod shared;
mod statefulset;
mod store_cmd;
mod telemetry;
mod tls;
mod witness;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::cmds::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not failures.
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    // `--json` is a global flag of the client and cluster commands.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if json => {
            println!("{}", f.to_json());
            ExitCode::from(f.code())
        }
        Err(f) => {
            eprintln!("{}", f.message());
            ExitCode::from(f.code())
        }
    }
}

/// With the `mimalloc` feature the binary allocates with mimalloc (per-thread
/// free lists, no arena locks; see docs/performance.md for what it changes).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// glibc's allocator opens up to 8 arenas per core, one per thread that meets
/// contention, and keeps what each has freed, so resident memory grows with the
/// core count (issue 15: with 16 worker threads, about 80 MiB of a loaded
/// `candor dev`). A small fixed number bounds it; the per-thread caches in
/// front of the arenas keep most allocations off their locks. An operator's own
/// `MALLOC_ARENA_MAX` wins (glibc has already read it).
///
/// glibc also raises its mmap threshold (up to 32 MiB) each time a large block
/// is freed, after which large buffers come from the arenas and leave holes in
/// them when freed. A fixed threshold of 128 KiB keeps them in their own
/// mappings, returned at once: at 10M labels the peak resident memory under a
/// write load fell from 714-733 to 616 MiB at the same rate (issue 15).
/// `MALLOC_MMAP_THRESHOLD_` wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    const MALLOC_ARENAS: i32 = 4;
    const MMAP_THRESHOLD: i32 = 128 * 1024;
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a tuning parameter of glibc's
        // allocator; it is called before the runtime starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}

/// glibc hands memory back to the system only from the top of an arena, so a
/// long write load leaves its arenas full of free holes that stay resident (issue
/// 15: at 10M labels, 735 MB held from the system for 322 MB in use; one
/// `malloc_trim` brought the process from 713 to 425 MiB). A thread trims every
/// `memory.trim_interval_ms` (0: never); the trim releases the free pages inside
/// the arenas too, one arena lock at a time.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
fn start_malloc_trimmer(interval_ms: u64) {
    if interval_ms == 0 {
        return;
    }
    let every = std::time::Duration::from_millis(interval_ms);
    let resident = || candor_telemetry::process::resident_bytes().unwrap_or(0);
    let spawned = std::thread::Builder::new()
        .name("candor-trim".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let (before, start) = (resident(), std::time::Instant::now());
                // SAFETY: malloc_trim is thread-safe (it locks each arena in turn)
                // and only returns free pages to the system.
                unsafe {
                    libc::malloc_trim(0);
                }
                tracing::debug!(
                    target: "candor::trim",
                    released_bytes = before.saturating_sub(resident()),
                    elapsed_us = start.elapsed().as_micros() as u64,
                    "malloc_trim"
                );
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the malloc trimmer thread: freed memory stays resident");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))))]
fn start_malloc_trimmer(_interval_ms: u64) {}

fn run(cli: Cli) -> Result<(), Failure> {
    bound_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    match cli.command {
        Command::Dev(args) => {
            let config =
                config::load(args.config.as_deref(), &args.overrides()).map_err(Failure::usage)?;
            {
                let _rt = runtime.enter();
                telemetry::start(&config, "dev", "dev".into()).map_err(Failure::usage)?;
            }
            start_malloc_trimmer(config.memory.trim_interval_ms);
            let out = runtime
                .block_on(dev::run(config, dev::Mode::Dev))
                .map_err(Failure::usage);
            telemetry::shutdown();
            out
        }
        Command::Serve(args) => {
            let mut config = config::load(args.common.config.as_deref(), &args.overrides())
                .map_err(Failure::usage)?;
            statefulset::apply(&args.statefulset, args.role, &mut config)
                .map_err(Failure::usage)?;
            config
                .check_role(args.role.member_role())
                .map_err(|e| Failure::usage(e.into()))?;
            config
                .check_plaintext_api()
                .map_err(|e| Failure::usage(e.into()))?;
            {
                let _rt = runtime.enter();
                let instance = match args.role {
                    cli::Role::Api => format!("api@{}", config.listen),
                    _ => config.cluster.node_id.to_string(),
                };
                telemetry::start(&config, &args.role.to_string(), instance)
                    .map_err(Failure::usage)?;
            }
            start_malloc_trimmer(config.memory.trim_interval_ms);
            runtime
                .block_on(statefulset::prepare(&args.statefulset, &mut config))
                .map_err(Failure::usage)?;
            statefulset::spawn_join(&runtime, &args.statefulset, &config)
                .map_err(Failure::usage)?;
            let shared = config.store.backend == config::StoreBackend::Fdb;
            let out = match args.role {
                cli::Role::Api if shared => runtime
                    .block_on(shared::run_api_reader(config))
                    .map_err(Failure::usage),
                cli::Role::Api => runtime
                    .block_on(serve::run_api_proxy(config))
                    .map_err(Failure::usage),
                _ => runtime
                    .block_on(dev::run(config, dev::Mode::Cluster))
                    .map_err(Failure::usage),
            };
            telemetry::shutdown();
            out
        }
        Command::Keygen(args) => {
            let keys =
                candor_node::keys::generate_in(&args.dir).map_err(|e| Failure::usage(e.into()))?;
            let (_, _) =
                candor_node::keys::load_or_generate_token(&args.dir, candor_api::generate_token)
                    .map_err(|e| Failure::usage(e.into()))?;
            println!(
                "wrote vrf.key, head.key, smt.key and dev-token to {} (mode 0600); \
                 copy the directory to every member and pass --keys-dir",
                args.dir.display()
            );
            println!(
                "vrf public key:  {}",
                hex::encode(keys.vrf.public_key().to_bytes())
            );
            println!("head public key: {}", hex::encode(keys.head.public_key().0));
            println!("smt public key:  {}", hex::encode(keys.smt.public_key().0));
            Ok(())
        }
        Command::Keys(cli::KeysArgs {
            command: cli::KeysCommand::Rotate(args),
        }) => {
            let dir = match (args.dir, args.data_dir) {
                (Some(d), _) => d,
                (None, Some(d)) => candor_node::keys::keys_dir(&d),
                (None, None) => {
                    return Err(Failure::usage(anyhow::anyhow!("give --dir or --data-dir")));
                }
            };
            let v =
                candor_node::keys::generate_version(&dir).map_err(|e| Failure::usage(e.into()))?;
            println!(
                "wrote head-{0}.key and smt-{0}.key to {1} (mode 0600)",
                v.version,
                dir.display()
            );
            println!("head public key: {}", hex::encode(v.head.public_key().0));
            println!("smt public key:  {}", hex::encode(v.smt.public_key().0));
            println!(
                "copy them to every member's key directory; the service signs with version {} \
                 after its next start (unless signing_key_version pins another)",
                v.version
            );
            Ok(())
        }
        #[cfg(feature = "bench")]
        Command::Bench(args) => {
            // Telemetry as a server has it by default (the same log filter, so the
            // same spans exist; no Prometheus listener). With
            // OTEL_EXPORTER_OTLP_ENDPOINT set, an `--embedded` node also exports OTLP
            // traces and metrics: export on vs off is then the only difference
            // (tests/telemetry/overhead.py measures it).
            let _telemetry = {
                let _rt = runtime.enter();
                let filter = std::env::var("RUST_LOG")
                    .unwrap_or_else(|_| "info,openraft=warn,lsm_tree=warn".into());
                candor_telemetry::init(&candor_telemetry::TelemetryConfig {
                    log_filter: filter,
                    instance_id: Some("bench".into()),
                    role: Some("bench".into()),
                    ..Default::default()
                })
                .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?
            };
            let max_ratio = args.options.max_error_ratio;
            let report = runtime
                .block_on(candor_bench::run(args.options))
                .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
            println!("{report}");
            // A proof that failed to verify is a security event, not a sample.
            match report.security_events() {
                0 if report.error_ratio() > max_ratio => Err(Failure::transport(format!(
                    "{} operation(s) failed ({:.1} %), above --max-error-ratio {max_ratio}",
                    report.error_total(),
                    report.error_ratio() * 100.0
                ))),
                0 => Ok(()),
                n => Err(Failure::verification(format!(
                    "{n} operation(s) failed verification during the benchmark (see errors above)"
                ))),
            }
        }
        Command::Cluster(args) => {
            init_tracing("warn");
            runtime.block_on(cluster_cmd::run(args))
        }
        Command::Tls(args) => tls::run(args).map_err(Failure::usage),
        Command::Store(args) => {
            init_tracing("warn");
            store_cmd::run(args).map_err(Failure::usage)
        }
        Command::Statefulset(args) => {
            init_tracing("warn");
            runtime.block_on(statefulset::run(args))
        }
        Command::Auditor(args) => {
            init_tracing("info");
            runtime.block_on(auditor_cmd::run(args))
        }
        Command::Export(args) => {
            init_tracing("warn");
            runtime.block_on(export_cmd::run(args))
        }
        Command::Monitor(args) => {
            init_tracing("warn");
            runtime.block_on(monitor_cmd::run(args))
        }
        Command::Witness(args) => {
            init_tracing("info");
            runtime.block_on(witness::run(args)).map_err(Failure::usage)
        }
        Command::HashToken(args) => {
            println!("{}", hex::encode(candor_api::hash_token(args.token.trim())));
            Ok(())
        }
        other => {
            init_tracing("warn");
            runtime.block_on(cmds::run(other))
        }
    }
}

fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        // openraft's vote-change WARNs and the LSM engine's INFO lines are routine.
        .unwrap_or_else(|_| EnvFilter::new(format!("openraft=error,lsm_tree=warn,{default}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
