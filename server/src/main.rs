//! The `cohost` binary: parses the command line and runs it.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = cohost_server::cli::Cli::parse();
    // `bench` becomes the `cohost-bench` process: it needs no async runtime here.
    if let cohost_server::cli::Command::Bench(bench) = &cli.command {
        return match cohost_server::bench::run(&bench.args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // `serve` gets a runtime sized for the front ends (see `--io-threads`); every other
    // command gets what `#[tokio::main]` would build.
    let runtime = match cohost_server::cli::async_runtime(&cli) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cohost_server::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
