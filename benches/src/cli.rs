//! `cohost bench`: arguments, target set-up, and printing/writing results.

use crate::grpc::GrpcTarget;
use crate::load::{DEFAULT_SPIN, LoadMode, LoadSpec, Pacing};
use crate::report::{self, Report};
use crate::search::{SearchSpec, Step, find_max_rate};
use crate::target::{HttpTarget, InProcessTarget, Target};
use crate::workload::{BatchDist, ModelLoad, Workload, parse_model_weight, prepare, read_config};
use crate::zipf::IndexDist;
use anyhow::{Context, bail};
use cohost_models::{BatchingConfig, DataType, Family, ModelConfig, TensorSpec, VersionPolicy};
use cohost_runtime::{Runtime, RuntimeOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
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

/// Runs `cohost bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let url = |port: u16| {
        args.url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
    };
    let workload = workload(&args).await?;
    if args.oracle {
        return crate::oracle::run(&args, workload).await;
    }
    match args.target {
        TargetKind::HttpJson | TargetKind::HttpBinary => {
            let binary = matches!(args.target, TargetKind::HttpBinary);
            let target = HttpTarget::new(&url(8000), binary, timeout)?
                .with_max_connections(args.connections);
            run_with(target, &args, workload).await
        }
        TargetKind::Grpc => {
            let connections = 4;
            let mut target = GrpcTarget::connect(&url(8001), connections, timeout).await?;
            if let Some(m) = &args.metrics_url {
                target = target.with_metrics(m.clone());
            }
            run_with(target, &args, workload).await
        }
        TargetKind::InProcess => {
            let Some(repo) = args.model_repository.clone() else {
                bail!("--target in-process needs --model-repository DIR");
            };
            let runtime = Runtime::new(
                RuntimeOptions::default()
                    .repository(repo)
                    .lanes(args.lanes)
                    .lane_spin(std::time::Duration::from_micros(args.lane_spin_us))
                    .schedule(args.schedule),
            )
            .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))?;
            let failures = runtime.load_all();
            for m in &workload.models {
                if let Some((_, e)) = failures.iter().find(|(n, _)| n == &m.name) {
                    bail!("model '{}' failed to load: {e}", m.name);
                }
            }
            eprintln!(
                "in-process runtime: backend {}, {} lanes",
                runtime.backend_name(),
                runtime.lane_count()
            );
            let result = run_with(InProcessTarget::new(runtime.clone()), &args, workload).await;
            runtime.shutdown();
            result
        }
    }
}

/// Builds the workload: configs from the repository, or (HTTP, no DLRM) the server's metadata.
async fn workload(args: &BenchArgs) -> anyhow::Result<Workload> {
    let mut models = Vec::new();
    for spec in &args.models {
        let (name, weight) = parse_model_weight(spec)?;
        let config = match &args.model_repository {
            Some(repo) => read_config(repo, &name)?,
            None if matches!(args.target, TargetKind::HttpJson | TargetKind::HttpBinary) => {
                let base = args
                    .url
                    .clone()
                    .unwrap_or_else(|| "http://127.0.0.1:8000".into());
                config_from_metadata(&base, &name).await?
            }
            None => bail!("--model-repository DIR is needed to generate requests for '{name}'"),
        };
        models.push(ModelLoad {
            name,
            weight,
            config,
        });
    }
    let batch = BatchDist::parse(&args.batch_size)?;
    for m in &models {
        if let Some(&(n, _)) = batch.choices.iter().find(|c| c.0 > m.config.max_batch_size) {
            eprintln!(
                "warning: batch size {n} > {}'s max_batch_size {}; clamped",
                m.name, m.config.max_batch_size
            );
        }
    }
    let index = match args.zipf {
        Some(a) if a > 0.0 => IndexDist::Zipf(a),
        _ => IndexDist::Uniform,
    };
    Ok(Workload {
        models,
        batch,
        index,
        pool_size: args.pool_size,
        seed: args.seed,
    })
}

/// A config good enough for request generation from `GET /v2/models/{name}` (dense models).
async fn config_from_metadata(base: &str, name: &str) -> anyhow::Result<ModelConfig> {
    let url = format!("{}/v2/models/{name}", base.trim_end_matches('/'));
    let meta: serde_json::Value = reqwest::get(&url)
        .await?
        .error_for_status()?
        .json()
        .await
        .with_context(|| url.clone())?;
    let mut inputs = Vec::new();
    for i in meta["inputs"]
        .as_array()
        .context("metadata without inputs")?
    {
        let datatype =
            DataType::parse(i["datatype"].as_str().unwrap_or("")).context("input datatype")?;
        if datatype != DataType::FP32 {
            bail!(
                "model '{name}' has a {datatype} input: pass --model-repository DIR so indices fit its tables"
            );
        }
        let dims = i["shape"]
            .as_array()
            .context("input shape")?
            .iter()
            .filter_map(|d| d.as_i64())
            .collect();
        inputs.push(TensorSpec {
            name: i["name"].as_str().unwrap_or("").to_string(),
            datatype,
            dims,
        });
    }
    Ok(ModelConfig {
        family: Family::Mlp,
        inputs,
        outputs: Vec::new(),
        max_batch_size: usize::MAX,
        batching: BatchingConfig::default(),
        priority: 0,
        weight: 1.0,
        max_queue_len: 0,
        max_lanes: None,
        memory_budget: None,
        version_policy: VersionPolicy::default(),
        weight_precision: Default::default(),
        mlp: None,
        dlrm: None,
    })
}

/// The server-side table of `report`, when the server's statistics were read.
fn print_server_side(report: &Report) {
    if !report.server.is_empty() {
        println!(
            "\nserver side at {:.1} req/s offered (its statistics over warm-up and window):\n{}",
            report.offered,
            crate::server_stats::markdown(&report.server)
        );
    }
    if let Some(cpu) = &report.cpu {
        println!("{}", crate::server_stats::cpu_line(cpu));
    }
}

fn step_line(i: usize, s: &Step) -> String {
    let o = &s.report.overall;
    format!(
        "step {i:>2} {:<6} offered {:>9.1} req/s  achieved {:>9.1} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {:.3}% {}  {}",
        s.phase,
        s.rate,
        o.throughput,
        o.p50_ms,
        o.p99_ms,
        o.error_rate * 100.0,
        report::errors_line(o),
        if s.pass { "PASS" } else { "FAIL" }
    )
}

async fn run_with<T: Target>(
    target: T,
    args: &BenchArgs,
    workload: Workload,
) -> anyhow::Result<()> {
    let target = Arc::new(target);
    let prepared = Arc::new(prepare(target.as_ref(), &workload)?);
    let mode = match (args.rate, args.concurrency) {
        (Some(rate), _) => LoadMode::Open { rate },
        (None, c) => LoadMode::Closed {
            concurrency: c.unwrap_or(1),
        },
    };
    let load = LoadSpec {
        max_outstanding: args.max_outstanding,
        drain_timeout: Duration::from_secs_f64(args.timeout),
        seed: args.seed,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        pacing: args.pacing(),
        ..LoadSpec::new(
            mode,
            Duration::from_secs_f64(args.warmup),
            Duration::from_secs_f64(args.duration),
        )
    };
    let models: Vec<&str> = workload.models.iter().map(|m| m.name.as_str()).collect();
    eprintln!(
        "cohost bench: target {} models {models:?} batch-size {} index {:?}, warm-up {} s, window {} s",
        target.name(),
        args.batch_size,
        workload.index,
        args.warmup,
        args.duration
    );
    let (reports, json) = if let Some(p99) = args.p99_target {
        let spec = args.search_spec(p99);
        let mut n = 0;
        let result = find_max_rate(target, prepared, &load, &spec, |s| {
            n += 1;
            println!("{}", step_line(n, s));
        })
        .await;
        println!();
        match (result.max_rate, &result.best) {
            (Some(rate), Some(best)) => println!(
                "max rate with P99 <= {p99} ms and < {}% errors: {rate:.1} req/s offered, {:.1} req/s / {:.1} rows/s achieved, p99 {:.3} ms (first fail {})",
                spec.max_error_rate * 100.0,
                best.overall.throughput,
                best.overall.rows_per_s,
                best.overall.p99_ms,
                result
                    .first_fail
                    .map_or("none".into(), |f| format!("{f:.1} req/s")),
            ),
            _ => println!(
                "no rate down to {} req/s met P99 <= {p99} ms",
                spec.min_rate
            ),
        }
        if let Some(best) = &result.best {
            print_server_side(best);
        }
        let reports: Vec<Report> = result.steps.iter().map(|s| s.report.clone()).collect();
        let json = serde_json::json!({ "p99_target_ms": p99, "search": result });
        (reports, json)
    } else {
        let report = crate::server_stats::measure(target, prepared, &load).await;
        if let Some(l) = &report.send_lateness {
            println!(
                "send lateness ({} pacer, scheduled -> sent): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                l.pacing, l.p50_us, l.p99_us, l.max_us
            );
        }
        if report.overall.errors > 0 {
            println!("errors: {}", report::errors_line(&report.overall));
        }
        print_server_side(&report);
        let json = serde_json::to_value(&report)?;
        (vec![report], json)
    };
    println!("\n{}", report::markdown(&reports));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| path.display().to_string())?;
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, report::csv(&reports)).with_context(|| path.display().to_string())?;
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "{} {}: latency vs throughput",
            reports[0].target,
            models.join("+")
        );
        crate::plot::latency_vs_throughput(path, &title, &reports, args.p99_target)?;
    }
    Ok(())
}
