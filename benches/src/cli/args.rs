//! `cohost bench`'s arguments, and the load, pacing and search settings they describe.

use crate::loadgen::{DEFAULT_SPIN, Pacing};
use crate::search::SearchSpec;
use std::path::PathBuf;
use std::time::Duration;

/// Which protocol the harness speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// KServe v2 HTTP with JSON tensors.
    #[value(alias = "http")]
    HttpJson,
    /// KServe v2 HTTP with the binary tensor extension.
    #[value(alias = "binary")]
    HttpBinary,
    /// KServe v2 gRPC (raw_input_contents).
    Grpc,
    /// The embedded runtime on `--model-repository`, no sockets.
    #[value(alias = "inproc")]
    InProcess,
}

/// What paces open-loop arrivals (`--pacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PacingKind {
    /// A dedicated OS thread: precise sleeps, a short busy-wait before each arrival.
    Thread,
    /// tokio's timer: up to 1 ms late per arrival (charged to each request's latency).
    Tokio,
}

/// `cohost bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where requests go.
    #[arg(long, value_enum, default_value = "http-json")]
    pub target: TargetKind,
    /// Server address (default http://127.0.0.1:8000, or :8001 for gRPC).
    #[arg(long)]
    pub url: Option<String>,
    /// Model repository: configs for request generation (needed for DLRM and in-process).
    #[arg(long = "model-repository", value_name = "DIR")]
    pub model_repository: Option<PathBuf>,
    /// Model to load, NAME or NAME:WEIGHT for a weighted mix; repeatable.
    #[arg(long = "model", value_name = "NAME[:WEIGHT]", required = true)]
    pub models: Vec<String>,
    /// Open loop: Poisson arrivals at this many requests per second.
    #[arg(long, conflicts_with_all = ["concurrency", "p99_target"])]
    pub rate: Option<f64>,
    /// Closed loop: this many clients, each waiting for its answer (default 1).
    #[arg(long, conflicts_with = "p99_target")]
    pub concurrency: Option<usize>,
    /// Find the highest open-loop rate whose P99 (ms) stays within this target.
    #[arg(long = "p99-target", value_name = "MS")]
    pub p99_target: Option<f64>,
    /// Rows per request: `1` or a distribution like `1:0.7,8:0.3`.
    #[arg(long = "batch-size", default_value = "1")]
    pub batch_size: String,
    /// Sparse indices Zipf(ALPHA) over each table's rows (default uniform).
    #[arg(long, value_name = "ALPHA")]
    pub zipf: Option<f64>,
    /// Seconds of warm-up before each measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Open loop: most requests in flight; further arrivals count as client drops.
    #[arg(long, default_value_t = 1024)]
    pub max_outstanding: usize,
    /// Open loop: what paces arrivals.
    #[arg(long, value_enum, default_value = "thread")]
    pub pacing: PacingKind,
    /// `--pacing thread`: busy-wait this many µs before each arrival instead of sleeping
    /// (capped at a tenth of the mean gap between arrivals).
    #[arg(long, value_name = "US", default_value_t = DEFAULT_SPIN.as_micros() as u64)]
    pub pacer_spin_us: u64,
    /// Pre-generated requests per model.
    #[arg(long, default_value_t = 256)]
    pub pool_size: usize,
    /// Seed of request generation and arrivals.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// In-process: lanes of the runtime (0 = derive from the machine).
    #[arg(long, default_value_t = 0)]
    pub lanes: usize,
    /// In-process: microseconds an idle lane spins for new work before it sleeps (as
    /// `cohost serve --lane-spin-us`).
    #[arg(long, default_value_t = 0)]
    pub lane_spin_us: u64,
    /// In-process: lane priority classes, on or off (as `cohost serve --lane-priorities`):
    /// on, one lane in four takes urgent work first (a CUDA stream at high priority).
    #[arg(long, default_value = "on", value_name = "on|off", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub lane_priorities: bool,

    /// In-process: cross-model scheduling policy (edf-fair, edf-fair-work-conserving, fifo).
    #[arg(long, default_value = "edf-fair")]
    pub schedule: cohost_runtime::ScheduleKind,
    /// HTTP: most connections open at once; a request finding all busy waits for one (the
    /// wait counts in its latency). 0 = a connection per request in flight.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// gRPC: the server's HTTP address, whose `/metrics` gives its CPU per request (e.g.
    /// http://127.0.0.1:8000); without it only the client's CPU is reported.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Client-side timeout per request, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Search: first rate tried (req/s).
    #[arg(long, default_value_t = 50.0)]
    pub search_start: f64,
    /// Search: highest rate ever offered (req/s).
    #[arg(long, default_value_t = 1e6)]
    pub search_max: f64,
    /// Search: stop when (first fail - last pass) / last pass is at most this.
    #[arg(long, default_value_t = 0.05)]
    pub search_precision: f64,
    /// Search: stretch a step's window (up to 10x) to measure about this many requests.
    #[arg(long, default_value_t = 500)]
    pub search_min_requests: u64,
    /// Search: a step passes only with an error rate below this.
    #[arg(long, default_value_t = 0.001)]
    pub max_error_rate: f64,
    /// Search: re-measure a failing step up to this many times; it fails only if every
    /// attempt fails (one stall of a shared machine must not decide the search).
    #[arg(long, default_value_t = 1)]
    pub search_retries: u32,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the results as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write a latency-vs-throughput SVG plot.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// In-process: write (or merge into) a lane cost profile `t(n)` per model for
    /// `cohost-sim`, from the runtime's per-batch-size statistics after the run.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Never draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Capacity oracle: max rate under `--p99-target` per slice shape (in-process).
    #[arg(long, requires = "p99_target")]
    pub oracle: bool,
    /// Oracle: lane counts to try.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub oracle_lanes: Vec<usize>,
    /// Oracle: device memory budgets to try (e.g. 8MiB,64MiB,unlimited).
    #[arg(long, value_delimiter = ',', default_value = "unlimited")]
    pub oracle_memory: Vec<String>,
    /// Oracle: report the smallest shape serving this many requests per second.
    #[arg(long, value_name = "REQ_PER_S")]
    pub target_rate: Option<f64>,
}

impl BenchArgs {
    /// The open-loop pacing these arguments ask for.
    pub fn pacing(&self) -> Pacing {
        match self.pacing {
            PacingKind::Thread => Pacing::Thread {
                spin: Duration::from_micros(self.pacer_spin_us),
            },
            PacingKind::Tokio => Pacing::Tokio,
        }
    }

    /// The peak search these arguments ask for, around a P99 target.
    pub fn search_spec(&self, p99_target_ms: f64) -> SearchSpec {
        SearchSpec {
            max_error_rate: self.max_error_rate,
            start_rate: self.search_start,
            max_rate: self.search_max,
            precision: self.search_precision,
            min_requests: self.search_min_requests,
            retries: self.search_retries,
            ..SearchSpec::new(p99_target_ms)
        }
    }
}
