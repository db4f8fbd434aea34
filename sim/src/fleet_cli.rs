//! `cohost-sim fleet`: its arguments and the run (a search per router, or a rate sweep).

use anyhow::Context;
use clap::Args;
use cohost_models::synth;
use cohost_runtime::ScheduleKind;
use cohost_sim::fleet::{self, FleetReport, FleetSpec, Freshness, Router};
use cohost_sim::plot::{Series, lines};
use cohost_sim::{Batching, Cost, Goal, Profile};
use std::path::PathBuf;
#[derive(Debug, Clone, Args)]
pub(crate) struct FleetArgs {
    /// Lane cost profile; the cost of `--model` is a factor-1 model on a speed-1 host.
    #[arg(long)]
    profile: PathBuf,
    /// The profile entry every model's cost is scaled from.
    #[arg(long, default_value = "gpu-ranker")]
    model: String,
    /// Hosts.
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    /// Distinct models.
    #[arg(long, default_value_t = 100)]
    models: usize,
    /// Lanes per host.
    #[arg(long, default_value_t = 4)]
    lanes: usize,
    /// Zipf exponent of model popularity.
    #[arg(long, default_value_t = 1.0)]
    skew: f64,
    /// Fraction of hosts holding the most popular model.
    #[arg(long, default_value_t = 0.5)]
    top_share: f64,
    /// Fewest replicas of a model.
    #[arg(long, default_value_t = 2)]
    min_replicas: usize,
    /// Spread (coefficient of variation) of model costs.
    #[arg(long, default_value_t = 0.5)]
    model_cost_cv: f64,
    /// Spread (coefficient of variation) of host speeds.
    #[arg(long, default_value_t = 0.25)]
    host_speed_cv: f64,
    /// Batching setting of every model.
    #[arg(long, default_value = "adaptive")]
    batching: String,
    /// Cross-model policy on each host (edf-fair, edf-fair-work-conserving, fifo).
    #[arg(long, default_value = "edf-fair")]
    schedule: ScheduleKind,
    /// P99 target, ms.
    #[arg(long = "p99-target", default_value_t = 50.0)]
    p99_target: f64,
    /// Client timeout, ms (default 2x the P99 target).
    #[arg(long)]
    timeout_ms: Option<f64>,
    /// Queue bound per model, requests.
    #[arg(long, default_value_t = 256)]
    max_queue_len: usize,
    /// Seconds of warm-up.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds of the window.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Offered rates (req/s) to sweep for the table and plots; a search per policy when empty.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Search: first rate.
    #[arg(long, default_value_t = 1000.0)]
    search_start: f64,
    /// Routers to compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "random,p2c-host,p2c-model"
    )]
    routers: Vec<Router>,
    /// Freshness of the figures (random ignores it).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "fresh,stale")]
    freshness: Vec<Freshness>,
    /// Folder for SVG plots of the sweep.
    #[arg(long)]
    svg_dir: Option<PathBuf>,
    /// Write every report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(crate) fn fleet_cmd(a: &FleetArgs) -> anyhow::Result<()> {
    let profile = Profile::read(&a.profile)?;
    let cost: Cost = profile.cost(&a.model)?.clone();
    let batching: Batching = a.batching.parse()?;
    let mut config = batching.config(
        &synth::preset("dlrm-small").context("preset")?,
        a.p99_target,
    );
    config.max_queue_len = a.max_queue_len;
    let spec = FleetSpec {
        hosts: a.hosts,
        models: a.models,
        lanes: a.lanes,
        skew: a.skew,
        top_share: a.top_share,
        min_replicas: a.min_replicas,
        model_cost_cv: a.model_cost_cv,
        host_speed_cv: a.host_speed_cv,
        config,
        cost,
        schedule: a.schedule,
        timeout_s: a.timeout_ms.unwrap_or(2.0 * a.p99_target) / 1e3,
        warmup_s: a.warmup,
        duration_s: a.duration,
        seed: a.seed,
    };
    let placement = spec.placement();
    let reps: Vec<usize> = placement.replicas.iter().map(Vec::len).collect();
    println!(
        "fleet: {} hosts x {} lanes, {} models (replicas max {} median {}), batching {}, schedule {:?}, P99 target {} ms, timeout {} ms, profile {} ({})",
        a.hosts,
        a.lanes,
        a.models,
        reps.iter().max().unwrap_or(&0),
        {
            let mut r = reps.clone();
            r.sort_unstable();
            r[r.len() / 2]
        },
        batching,
        a.schedule,
        a.p99_target,
        spec.timeout_s * 1e3,
        a.profile.display(),
        a.model
    );
    let mut policies: Vec<(Router, Freshness)> = Vec::new();
    for &r in &a.routers {
        for &f in &a.freshness {
            if r == Router::Random && policies.iter().any(|p| p.0 == r) {
                continue;
            }
            policies.push((r, f));
        }
    }
    let name = |r: Router, f: Freshness| match r {
        Router::Random => "random".to_string(),
        _ => format!("{r:?}-{f:?}").to_lowercase(),
    };
    let mut all: Vec<FleetReport> = Vec::new();
    println!(
        "\n| policy | offered req/s | P99 ms | timeout rate | refused | host util p50 / p95 / max | mean batch |\n|---|---:|---:|---:|---:|---|---:|"
    );
    let row = |n: &str, r: &FleetReport| {
        println!(
            "| {n} | {:.0} | {:.2} | {:.4} | {:.4} | {:.2} / {:.2} / {:.2} | {:.2} |",
            r.offered_rate,
            r.overall.p99_ms,
            r.overall.timeout_rate,
            r.refusal_rate,
            r.util_p50,
            r.util_p95,
            r.util_max,
            r.overall.mean_batch
        )
    };
    if a.rates.is_empty() {
        let goal = Goal {
            p99_ms: a.p99_target,
            max_error_rate: 0.001,
            start: a.search_start,
            precision: 0.03,
        };
        let mut peaks = Vec::new();
        for &(r, f) in &policies {
            let mut best: Option<FleetReport> = None;
            let mut steps = Vec::new();
            let peak = cohost_sim::search(&goal, |rate| {
                let rep = fleet::run(&spec, &placement, r, f, rate);
                steps.push(rep.clone());
                // search() only reads the summary; carry the fleet figures alongside.
                cohost_sim::SliceReport {
                    offered_rate: rate,
                    overall: rep.overall,
                    models: Vec::new(),
                    utilization: rep.util_p50,
                }
            });
            if let Some(m) = peak.max_rate {
                best = steps.iter().find(|s| s.offered_rate == m).cloned();
            }
            match &best {
                Some(b) => row(&format!("{} (peak)", name(r, f)), b),
                None => println!("| {} | none passed | | | | | |", name(r, f)),
            }
            peaks.push((name(r, f), peak.max_rate));
            all.extend(steps);
        }
        let base = peaks.iter().find(|p| p.0 == "random").and_then(|p| p.1);
        println!(
            "\nhighest offered load within P99 <= {} ms and < 0.1% errors:",
            a.p99_target
        );
        for (n, p) in &peaks {
            match (p, base) {
                (Some(p), Some(b)) => println!("  {n}: {p:.0} req/s ({:.2}x random)", p / b),
                (Some(p), None) => println!("  {n}: {p:.0} req/s"),
                _ => println!("  {n}: none"),
            }
        }
    } else {
        for &(r, f) in &policies {
            for &rate in &a.rates {
                let rep = fleet::run(&spec, &placement, r, f, rate);
                row(&name(r, f), &rep);
                all.push(rep);
            }
        }
        if let Some(dir) = &a.svg_dir {
            std::fs::create_dir_all(dir)?;
            let series = |y: fn(&FleetReport) -> f64| -> Vec<Series> {
                policies
                    .iter()
                    .map(|&(r, f)| {
                        let pts = all
                            .iter()
                            .filter(|x| x.router == r && (r == Router::Random || x.freshness == f))
                            .map(|x| (x.offered_rate, y(x)))
                            .collect();
                        (name(r, f), pts)
                    })
                    .collect()
            };
            let t = format!("{} hosts, {} models", a.hosts, a.models);
            lines(
                &dir.join(format!("fleet-{}-p99.svg", a.hosts)),
                &format!("{t}: P99 latency"),
                "offered load (req/s)",
                "P99 (ms)",
                &series(|x| x.overall.p99_ms),
                Some((a.p99_target, "P99 target")),
            )?;
            lines(
                &dir.join(format!("fleet-{}-util-p95.svg", a.hosts)),
                &format!("{t}: host utilization, p95 over hosts"),
                "offered load (req/s)",
                "p95 host utilization",
                &series(|x| x.util_p95),
                None,
            )?;
            lines(
                &dir.join(format!("fleet-{}-util-max.svg", a.hosts)),
                &format!("{t}: busiest host's utilization"),
                "offered load (req/s)",
                "max host utilization",
                &series(|x| x.util_max),
                None,
            )?;
            lines(
                &dir.join(format!("fleet-{}-timeouts.svg", a.hosts)),
                &format!("{t}: timeout rate"),
                "offered load (req/s)",
                "timed-out share of requests",
                &series(|x| x.overall.timeout_rate),
                None,
            )?;
        }
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}
