//! `candor bench` without the `candor` binary: the same options, the human summary on
//! stdout, exit status 1 on a failed run and 3 when an answer failed verification.
//!
//! `cargo run --release -p candor-bench --example bench -- --embedded --duration 30s`

use clap::Parser;

#[derive(Parser)]
#[command(name = "candor-bench")]
struct Cli {
    #[command(flatten)]
    bench: candor_bench::BenchOptions,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(candor_bench::run(cli.bench)) {
        Ok(report) => {
            print!("{report}");
            if report.security_events() > 0 {
                std::process::ExitCode::from(3)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
