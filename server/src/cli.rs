//! The `cohost` command line: `serve`, `gen`, `import`, `bench`.

use crate::{ModelControlMode, ServeOptions};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cohost_runtime::Device;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// Import a PyTorch or safetensors DLRM checkpoint (reference DLRM, TorchRec, cohost
    /// names) into a model folder `serve` loads.
    Import(ImportArgs),
    /// Benchmark a server (or the in-process runtime) under load: runs the separate
    /// `cohost-bench` binary with these arguments (`cohost bench --help` lists them).
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
}

/// `cohost bench` arguments: handed to `cohost-bench` unread.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// `cohost-bench`'s arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
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
    /// into the user cache folder) and served, unless --modelmesh-port is given (then
    /// models arrive through ModelMesh's loadModel only).
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
    /// Microseconds an idle lane spins for new work before it sleeps (0 = sleeps at once).
    /// Spinning takes the wake-up of a sleeping lane (tens of µs on some VMs) off each
    /// request at low load, and costs the CPU it spins on: for latency-bound deployments.
    #[arg(long, env = "COHOST_LANE_SPIN_US", default_value_t = 0)]
    pub lane_spin_us: u64,
    /// On the CPU, a request whose batch is ready at once and predicted to take at most
    /// this many µs runs on the thread that received it instead of a lane thread (two
    /// thread wake-ups fewer per request); 0: every batch runs on a lane thread.
    #[arg(long, env = "COHOST_CALLER_RUNS_US", default_value_t = cohost_runtime::DEFAULT_CALLER_RUNS.as_micros() as u64)]
    pub caller_runs_us: u64,
    /// With caller runs, a quick batch waiting out its batching delay keeps its timer on
    /// the receiving thread (no lane thread woken for it), on or off.
    #[arg(long, env = "COHOST_CALLER_TIMERS", default_value = "on", value_name = "on|off",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub caller_timers: bool,
    /// Lane priority classes, on or off: on, one lane in four (at least one of two or more)
    /// takes urgent work first (a higher model `priority`, or a deadline at risk) and on
    /// CUDA is a stream at the device's most urgent priority; off, every lane is equal.
    #[arg(long, env = "COHOST_LANE_PRIORITIES", default_value = "on", value_name = "on|off",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub lane_priorities: bool,
    /// Cross-model scheduling: edf-fair (deadline first within weighted fair shares; a model
    /// over its share does not borrow idle lanes while others are active),
    /// edf-fair-work-conserving (it may), or fifo (oldest request first).
    #[arg(long, default_value = "edf-fair")]
    pub schedule: cohost_runtime::ScheduleKind,
    /// Device memory budget for weights and tables, e.g. 512MiB, 2GB, 1073741824.
    #[arg(long, value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Largest HTTP request body and gRPC message, e.g. 64MiB.
    #[arg(long, value_parser = parse_size, default_value = "64MiB")]
    pub max_body_bytes: u64,
    /// Requests admitted at once over HTTP and gRPC (health and metrics exempt); more are
    /// refused with 429 / RESOURCE_EXHAUSTED before their bodies are read.
    #[arg(long, default_value_t = crate::serve::DEFAULT_MAX_INFLIGHT)]
    pub max_inflight: usize,
    /// Seconds an HTTP request body may take to arrive whole (then 408).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout_secs: f64,
    /// Bearer token that repository load/unload/index calls must present (HTTP
    /// `Authorization: Bearer TOKEN`, gRPC `authorization` metadata).
    #[arg(long, env = "COHOST_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,
    /// Seconds a graceful shutdown (SIGTERM, SIGINT) waits for accepted requests: then
    /// requests still running get 503 / UNAVAILABLE, open streams end UNAVAILABLE, and the
    /// process exits. A second signal exits at once.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// A batch running this many times its predicted time (and at least 1 s) is reported
    /// as overrunning (`cohost_batch_overruns_total` and a log line).
    #[arg(long, value_name = "FACTOR", default_value_t = cohost_runtime::DEFAULT_OVERRUN_FACTOR)]
    pub batch_overrun_factor: f64,
    /// Threads running the HTTP and gRPC front ends (socket I/O, parsing, encoding); models
    /// run on the lanes, not here. 0 = one per 4 cores, at least 1. Each answer a lane
    /// hands back wakes one idle front-end thread, which then wakes another to look for
    /// more work: with small requests and few cores, extra threads cost more than they give.
    #[arg(long, env = "COHOST_IO_THREADS", default_value_t = 0)]
    pub io_threads: usize,
    /// Form of the HTTP `endpoint-load-metrics` ORCA header when a request does not name
    /// one in `endpoint-load-metrics-format` (gRPC always sends `endpoint-load-metrics-bin`).
    #[arg(long, value_enum, default_value_t = crate::orca::Format::Text)]
    pub load_report_format: crate::orca::Format,
    /// Serve ModelMesh's model-runtime SPI (mmesh.ModelRuntime: loadModel, unloadModel,
    /// modelSize, predictModelSize, runtimeStatus) on this port; needs a memory budget
    /// (--memory-budget on the CPU). Off by default. See docs/DEPLOY.md § ModelMesh.
    #[arg(long)]
    pub modelmesh_port: Option<u16>,
    /// Snapshot transition budget, 0 < f ≤ 1: a new version of a serving model takes the
    /// unversioned traffic only while the slice's lane utilization is below FRACTION (the old
    /// version serves meanwhile, then drains and is unloaded). Off: switch at once.
    #[arg(long, value_name = "FRACTION")]
    pub transition_budget: Option<f64>,
    /// Seconds a transition waits for the slice to drop below --transition-budget before it
    /// proceeds anyway.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub transition_max_wait: f64,
}

impl ServeArgs {
    /// The front-end thread count `--io-threads` resolves to on this machine.
    pub fn io_threads(&self) -> usize {
        if self.io_threads > 0 {
            return self.io_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 4).max(1)
    }

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
            lane_spin: Duration::from_micros(self.lane_spin_us),
            caller_runs: Duration::from_micros(self.caller_runs_us),
            caller_timers: self.caller_timers,
            lane_priorities: self.lane_priorities,
            schedule: self.schedule,
            memory_budget: self.memory_budget,
            device: self.device.into(),
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            max_inflight: self.max_inflight,
            body_timeout: Duration::try_from_secs_f64(self.body_timeout_secs)
                .ok()
                .filter(|t| !t.is_zero())
                .context("--body-timeout-secs must be a positive number of seconds")?,
            control_token: self.control_token.clone(),
            load_report_format: self.load_report_format,
            modelmesh_port: self.modelmesh_port,
            drain_timeout: Duration::try_from_secs_f64(self.drain_timeout)
                .ok()
                .context("--drain-timeout must be a number of seconds, 0 or more")?,
            overrun_factor: Some(self.batch_overrun_factor)
                .filter(|f| *f >= 1.0 && f.is_finite())
                .context("--batch-overrun-factor must be a number, 1 or more")?,
            transition_budget: match self.transition_budget {
                Some(f) if !(f > 0.0 && f <= 1.0) => {
                    bail!("--transition-budget must be a fraction above 0 and at most 1")
                }
                f => f,
            },
            transition_max_wait: Duration::try_from_secs_f64(self.transition_max_wait)
                .ok()
                .context("--transition-max-wait must be a number of seconds, 0 or more")?,
        })
    }
}

/// `cohost gen` options.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output repository folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Preset: mlp-tiny, mlp-small, dlrm-tiny, dlrm-small, dlrm-large-tables, dlrm-v2 (MLPerf DLRM-v2 shape).
    #[arg(long)]
    pub preset: String,
    /// Number of models to generate.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Random seed for the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the embedding-table row count (DLRM presets; for dlrm-v2 a cap on MLPerf's rows, default 10,000).
    #[arg(long)]
    pub rows: Option<usize>,
}

/// `cohost import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The checkpoint: a `.pt`/`.pth` state_dict (zip) or a safetensors file.
    #[arg(long)]
    pub from: PathBuf,
    /// The model folder to create, `DIR/NAME` (DIR is the model repository).
    #[arg(long)]
    pub out: PathBuf,
    /// Tensor naming: auto, reference (dlrm_s_pytorch.py), torchrec, cohost.
    #[arg(long, default_value = "auto", value_parser = parse_layout)]
    pub layout: cohost_models::import::Layout,
    /// TorchRec table names in the model's order, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "table_map")]
    pub tables: Option<Vec<String>>,
    /// A TOML file of `[[table]]` entries (`name`, optional `multi_hot`), in model order.
    #[arg(long)]
    pub table_map: Option<PathBuf>,
    /// Indices per bag: one value for every table, or one per table, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub multi_hot: Option<Vec<usize>>,
    /// Dense features expected (checked against the checkpoint's bottom MLP).
    #[arg(long)]
    pub dense_features: Option<usize>,
    /// The interaction (dot, dot-itself, cat) when the top MLP's input width fits several.
    #[arg(long, value_parser = parse_interaction)]
    pub interaction: Option<cohost_models::import::Interaction>,
    /// Keep fp16/bf16 tensors as stored (cohost widens them at load) instead of f32.
    #[arg(long)]
    pub keep_half: bool,
}

fn parse_layout(s: &str) -> Result<cohost_models::import::Layout, String> {
    cohost_models::import::Layout::parse(s)
        .ok_or_else(|| format!("'{s}': expected auto, reference, torchrec or cohost"))
}

fn parse_interaction(s: &str) -> Result<cohost_models::import::Interaction, String> {
    cohost_models::import::Interaction::parse(s)
        .ok_or_else(|| format!("'{s}': expected dot, dot-itself, cat or dcn"))
}

/// Parses a byte size for `--memory-budget` and `--max-body-bytes`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    cohost_runtime::parse_byte_size(s)
}

/// Exit status after a second SIGINT or SIGTERM cut a graceful shutdown short.
pub const FORCED_EXIT: i32 = 130;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM; from then on a second one exits the
/// process at once with [`FORCED_EXIT`]. The handlers are installed before this returns,
/// so no signal is lost between the two. Call within a tokio runtime.
pub fn shutdown_signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (first, first_rx) = tokio::sync::oneshot::channel::<()>();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = signal(SignalKind::interrupt())
            .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
        match streams {
            Ok((mut int, mut term)) => {
                tokio::spawn(async move {
                    let mut first = Some(first);
                    loop {
                        let name = tokio::select! {
                            _ = int.recv() => "SIGINT",
                            _ = term.recv() => "SIGTERM",
                        };
                        if let Some(first) = first.take() {
                            tracing::info!(
                                "{name} received: draining (a second signal exits at once)"
                            );
                            let _ = first.send(());
                        } else {
                            tracing::warn!("{name} received again: exiting without draining");
                            std::process::exit(FORCED_EXIT);
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("cannot install the SIGINT/SIGTERM handlers: {e}"),
        }
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received: draining (a second one exits at once)");
        let _ = first.send(());
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(FORCED_EXIT);
    });
    async move {
        if first_rx.await.is_err() {
            // No handler could be installed: never a signal.
            std::future::pending::<()>().await;
        }
    }
}

/// The Tokio runtime a command line runs on: for `serve`, `--io-threads` workers; for the
/// other commands, the default multi-threaded runtime (one worker per core).
pub fn async_runtime(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        builder.worker_threads(args.io_threads());
    }
    builder.enable_all().build()
}

/// Runs a parsed command line to completion; its exit status (`bench`: the harness's).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let repository = match &args.model_repository {
                Some(dir) => {
                    if !dir.is_dir() {
                        bail!("model repository '{}' is not a folder", dir.display());
                    }
                    Some(dir.clone())
                }
                // ModelMesh brings every model through loadModel.
                None if args.modelmesh_port.is_some() => None,
                None => Some(
                    tokio::task::spawn_blocking(crate::demo::demo_repository)
                        .await?
                        .context("cannot prepare the demo repository")?,
                ),
            };
            match &repository {
                Some(dir) => tracing::info!("model repository: {}", dir.display()),
                None => tracing::info!("no model repository: models come from ModelMesh"),
            }
            tracing::info!(io_threads = args.io_threads(), "front-end threads");
            let handle = crate::serve(args.to_options(repository)?, shutdown_signals()).await?;
            handle.wait().await?;
            tracing::info!("bye");
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => {
            tokio::task::spawn_blocking(move || {
                crate::demo::generate(&args.out, &args.preset, args.count, args.seed, args.rows)
            })
            .await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => {
            let options = cohost_models::import::ImportOptions {
                from: args.from,
                out: args.out,
                layout: args.layout,
                tables: args.tables,
                table_map: args.table_map,
                multi_hot: args.multi_hot,
                dense_features: args.dense_features,
                interaction: args.interaction,
                keep_half: args.keep_half,
            };
            let done = tokio::task::spawn_blocking(move || {
                cohost_models::import::import(&options).map(|c| (c, options.out))
            })
            .await?;
            let (c, out) = done.map_err(|e| anyhow::anyhow!("cohost import: {e}"))?;
            println!(
                "imported {} layout{} into {}: {} tensors; tables in order: {}",
                c.layout.as_str(),
                if c.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" (prefix '{}')", c.prefix)
                },
                out.display(),
                c.tensors.len(),
                c.table_sources.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            tokio::task::spawn_blocking(move || crate::bench::run(&args.args)).await?
        }
    }
}

/// The `cohost` binary's `main`: logging, the command line from the process's arguments,
/// the async runtime, and the exit status.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    // `bench` becomes the `cohost-bench` process: it needs no async runtime here.
    if let Command::Bench(bench) = &cli.command {
        return match crate::bench::run(&bench.args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // `serve` gets a runtime sized for the front ends (see `--io-threads`); every other
    // command gets what `#[tokio::main]` would build.
    let runtime = match async_runtime(&cli) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["cohost", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn io_threads_default_to_a_quarter_of_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(serve_args(&[]).io_threads(), (cores / 4).max(1));
        assert_eq!(serve_args(&["--io-threads", "3"]).io_threads(), 3);
        let cli = Cli::try_parse_from(["cohost", "serve", "--io-threads", "2"]).unwrap();
        let rt = async_runtime(&cli).unwrap();
        assert_eq!(rt.metrics().num_workers(), 2);
    }

    #[test]
    fn bench_hands_every_argument_over_unread() {
        let argv = ["cohost", "bench", "--help", "--model", "m", "-x", "extra"];
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Bench(b) => assert_eq!(b.args, &argv[2..]),
            other => panic!("{other:?}"),
        }
        match Cli::try_parse_from(["cohost", "bench"]).unwrap().command {
            Command::Bench(b) => assert!(b.args.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_modelmesh_port_is_off_unless_given() {
        let options = |extra: &[&str]| serve_args(extra).to_options(None).unwrap();
        assert_eq!(options(&[]).modelmesh_port, None);
        assert_eq!(
            options(&["--modelmesh-port", "8085"]).modelmesh_port,
            Some(8085)
        );
    }

    #[test]
    fn lanes_sleep_at_once_unless_a_spin_is_given_in_microseconds() {
        let options = |extra: &[&str]| serve_args(extra).to_options(None).unwrap();
        assert_eq!(options(&[]).lane_spin, Duration::ZERO);
        assert!(options(&[]).lane_priorities, "lane priorities default on");
        assert!(!options(&["--lane-priorities", "off"]).lane_priorities);
        assert!(options(&["--lane-priorities", "on"]).lane_priorities);
        let spin = options(&["--lane-spin-us", "250"]).lane_spin;
        assert_eq!(spin, Duration::from_micros(250));
        assert_eq!(
            options(&[]).caller_runs,
            cohost_runtime::DEFAULT_CALLER_RUNS
        );
        let off = options(&["--caller-runs-us", "0"]).caller_runs;
        assert_eq!(off, Duration::ZERO);
        assert!(options(&[]).caller_timers, "caller timers default on");
        assert!(!options(&["--caller-timers", "off"]).caller_timers);
    }

    #[test]
    fn the_transition_budget_is_off_unless_given_and_must_be_a_fraction() {
        let args = |extra: &[&str]| serve_args(extra).to_options(None);
        let off = args(&[]).unwrap();
        assert_eq!(off.transition_budget, None);
        assert_eq!(off.transition_max_wait, Duration::from_secs(60));
        let on = args(&["--transition-budget", "0.7", "--transition-max-wait", "5"]).unwrap();
        assert_eq!(on.transition_budget, Some(0.7));
        assert_eq!(on.transition_max_wait, Duration::from_secs(5));
        for bad in ["0", "1.5", "-0.2", "NaN"] {
            let flag = format!("--transition-budget={bad}");
            assert!(args(&[&flag]).is_err(), "{bad}");
        }
        assert!(args(&["--transition-max-wait=-1"]).is_err());
    }
}
