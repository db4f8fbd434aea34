//! The `cohost` command line: `serve`, `gen`, `bench`.

use crate::{ModelControlMode, ServeOptions};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cohost_runtime::Device;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// cohost: many models, one accelerator slice, KServe v2 over HTTP and gRPC.
#[derive(Debug, Parser)]
#[command(name = "cohost", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a model repository over KServe v2 HTTP and gRPC.
    Serve(Box<ServeArgs>),
    /// Generate a synthetic model repository with seeded random weights.
    Gen(GenArgs),
    /// Benchmark a server (or the in-process runtime) under load.
    Bench(Box<cohost_bench::BenchArgs>),
}

/// The backend, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// CUDA when usable, else the CPU.
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend (fails without a usable GPU).
    Cuda,
}

impl From<DeviceArg> for Device {
    fn from(d: DeviceArg) -> Device {
        match d {
            DeviceArg::Auto => Device::Auto,
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda,
        }
    }
}

/// `cohost serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model repository folder; without it a small demo repository is generated (once,
    /// into the user cache folder) and served.
    #[arg(long, env = "COHOST_MODEL_REPOSITORY")]
    pub model_repository: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// HTTP (KServe v2 REST) port.
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// gRPC (KServe v2) port.
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// Also serve `/metrics` on this port (it is always on the HTTP port).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// none: load everything at start; explicit: allow the load/unload API; poll: reload
    /// models whose folders change.
    #[arg(long, value_enum, default_value_t = ModelControlMode::None)]
    pub model_control_mode: ModelControlMode,
    /// Seconds between repository scans in poll mode.
    #[arg(long, default_value_t = 5.0)]
    pub poll_interval_secs: f64,
    /// Execution lanes (CPU worker threads or CUDA streams); 0 = derive from the device.
    #[arg(long, default_value_t = 0)]
    pub lanes: usize,
    /// Device memory budget for weights and tables, e.g. 512MiB, 2GB, 1073741824.
    #[arg(long, value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Largest HTTP request body and gRPC message, e.g. 64MiB.
    #[arg(long, value_parser = parse_size, default_value = "64MiB")]
    pub max_body_bytes: u64,
}

impl ServeArgs {
    /// The server options these arguments describe (`repository` resolved by the caller).
    pub fn to_options(&self, repository: Option<PathBuf>) -> anyhow::Result<ServeOptions> {
        if !(self.poll_interval_secs > 0.0 && self.poll_interval_secs.is_finite()) {
            bail!("--poll-interval-secs must be a positive number of seconds");
        }
        Ok(ServeOptions {
            repository,
            host: self.host,
            http_port: self.http_port,
            grpc_port: self.grpc_port,
            metrics_port: self.metrics_port,
            model_control: self.model_control_mode,
            poll_interval: Duration::from_secs_f64(self.poll_interval_secs),
            lanes: self.lanes,
            memory_budget: self.memory_budget,
            device: self.device.into(),
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
        })
    }
}

/// `cohost gen` options.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output repository folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Preset: mlp-tiny, mlp-small, dlrm-tiny, dlrm-small, dlrm-large-tables.
    #[arg(long)]
    pub preset: String,
    /// Number of models to generate.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Random seed for the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the embedding-table row count (DLRM presets).
    #[arg(long)]
    pub rows: Option<usize>,
}

/// Parses a byte size for `--memory-budget` and `--max-body-bytes`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    cohost_runtime::parse_byte_size(s)
}

/// Resolves once on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let repository = match &args.model_repository {
                Some(dir) => {
                    if !dir.is_dir() {
                        bail!("model repository '{}' is not a folder", dir.display());
                    }
                    dir.clone()
                }
                None => tokio::task::spawn_blocking(crate::demo::demo_repository)
                    .await?
                    .context("cannot prepare the demo repository")?,
            };
            tracing::info!("model repository: {}", repository.display());
            let handle =
                crate::serve(args.to_options(Some(repository))?, shutdown_signal()).await?;
            handle.wait().await?;
            tracing::info!("bye");
            Ok(())
        }
        Command::Gen(args) => {
            tokio::task::spawn_blocking(move || crate::demo::generate_with_bar(&args)).await?
        }
        Command::Bench(args) => cohost_bench::run(*args).await,
    }
}
