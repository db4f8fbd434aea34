//! Running `cohost bench`: the workload, the target it names, then one window, a peak
//! search or the oracle, printed and written out.

use super::args::{BenchArgs, TargetKind};
use super::metadata::config_from_metadata;
use super::print::{print_server_side, step_line};
use crate::grpc::GrpcTarget;
use crate::loadgen::{LoadMode, LoadSpec};
use crate::oracle::OracleOptions;
use crate::prepared::prepare;
use crate::report::{self, Report};
use crate::search::find_max_rate;
use crate::target::{HttpTarget, InProcessTarget, Target};
use crate::workload::{BatchDist, ModelShare, Workload, parse_model_weight, read_config};
use crate::zipf::IndexDist;
use anyhow::{Context, bail};
use cohost_runtime::{Runtime, RuntimeOptions};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Runs `cohost bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let url = |port: u16| {
        args.url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
    };
    let workload = workload(&args).await?;
    if args.profile.is_some() && args.target != TargetKind::InProcess {
        bail!("--profile needs --target in-process (it reads the runtime's own statistics)");
    }
    if args.oracle {
        return crate::oracle::run(&oracle_options(&args)?, workload).await;
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
                    .lane_priorities(args.lane_priorities)
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
                "in-process runtime: backend {}, {} lanes, lane priorities {}",
                runtime.backend_name(),
                runtime.lane_count(),
                if args.lane_priorities { "on" } else { "off" }
            );
            let names: Vec<String> = workload.models.iter().map(|m| m.name.clone()).collect();
            let mut result = run_with(InProcessTarget::new(runtime.clone()), &args, workload).await;
            if let (Ok(()), Some(path)) = (&result, &args.profile) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                result = crate::profile::write(path, &runtime, &names);
            }
            runtime.shutdown();
            result
        }
    }
}

/// The oracle's options from `--oracle` arguments.
fn oracle_options(args: &BenchArgs) -> anyhow::Result<OracleOptions> {
    let Some(p99) = args.p99_target else {
        bail!("--oracle needs --p99-target MS");
    };
    Ok(OracleOptions {
        model_repository: args.model_repository.clone(),
        schedule: args.schedule,
        lanes: args.oracle_lanes.clone(),
        memory: args.oracle_memory.clone(),
        load: LoadSpec {
            max_outstanding: args.max_outstanding,
            drain_timeout: Duration::from_secs_f64(args.timeout),
            seed: args.seed,
            pacing: args.pacing(),
            ..LoadSpec::new(
                LoadMode::Open { rate: 1.0 },
                Duration::from_secs_f64(args.warmup),
                Duration::from_secs_f64(args.duration),
            )
        },
        search: args.search_spec(p99),
        target_rate: args.target_rate,
        json: args.json.clone(),
    })
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
        models.push(ModelShare {
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
        let report = crate::server_side::measure(target, prepared, &load).await;
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
