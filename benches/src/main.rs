//! The `cohost-bench` binary: the load generator on its own (`cohost bench ARGS` runs it
//! with the same arguments).

use clap::Parser;
use std::process::ExitCode;

/// cohost-bench: load against a KServe v2 server (or the in-process runtime), the maximum
/// throughput under a P99 target, the capacity oracle.
#[derive(Debug, Parser)]
#[command(name = "cohost-bench", version)]
struct Cli {
    #[command(flatten)]
    args: Box<cohost_bench::BenchArgs>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cohost_bench::run(*cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
