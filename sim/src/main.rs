//! The `cohost-sim` binary: one slice at a rate (`run`), its peak within a P99 target
//! (`search`), the batching-policy comparison for 1 and N models (`compare`), the noisy
//! neighbour (`noisy`), and a fleet behind a router (`fleet`).

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use cohost_models::{ModelConfig, synth};
use cohost_runtime::ScheduleKind;
use cohost_sim::{ArrivalKind, Batching, Goal, ModelSpec, Peak, Profile, SliceRun};
use std::path::PathBuf;

mod fleet_cli;
use fleet_cli::{FleetArgs, fleet_cmd};

#[derive(Debug, Parser)]
#[command(
    name = "cohost-sim",
    version,
    about = "cohost's policies on a virtual clock"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One slice at a fixed offered rate; prints the report as JSON.
    Run {
        #[command(flatten)]
        slice: SliceArgs,
        /// Offered requests per second, all models together.
        #[arg(long)]
        rate: f64,
    },
    /// The highest offered rate whose P99 stays within the target.
    Search {
        #[command(flatten)]
        slice: SliceArgs,
    },
    /// Peak rate per batching setting, for 1 model and for N copies sharing the lanes.
    Compare {
        #[command(flatten)]
        slice: SliceArgs,
        /// Batching settings to compare.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "none,static-0,static-100x16,static-100x64,static-500x16,static-500x64,static-2000x64,adaptive"
        )]
        batchings: Vec<String>,
        /// Model counts to compare.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        counts: Vec<usize>,
    },
    /// 4 models, one offered 3x its fair share (queue 8, one lane): the quiet models' P99
    /// alone and beside it.
    Noisy {
        #[command(flatten)]
        slice: SliceArgs,
        /// The 4 models' capacity (req/s); searched when absent.
        #[arg(long)]
        capacity: Option<f64>,
    },
    /// H hosts behind a router.
    Fleet(FleetArgs),
    /// A new version loaded mid-run (cold first batches), with and without the budget.
    Transition(TransitionArgs),
}

#[derive(Debug, Clone, Args)]
struct TransitionArgs {
    #[command(flatten)]
    slice: SliceArgs,
    /// Offered load phases, `UNTIL_S:RATE` in order (e.g. 2:400000,4:100000).
    #[arg(long, value_delimiter = ',', default_value = "2:400000,4:100000")]
    phases: Vec<String>,
    /// When version 2 is loaded, seconds.
    #[arg(long, default_value_t = 1.0)]
    arrive: f64,
    /// Version 2's first batches that pay the cold-start factor.
    #[arg(long, default_value_t = 20)]
    cold_batches: u64,
    /// Cold-start factor on those batches.
    #[arg(long, default_value_t = 3.0)]
    cold_factor: f64,
    /// Budgets to compare (`none`: switch at once).
    #[arg(long, value_delimiter = ',', default_value = "none,0.5,0.8")]
    budgets: Vec<String>,
    /// The runtime's transition_max_wait, seconds.
    #[arg(long, default_value_t = 60.0)]
    max_wait: f64,
}

#[derive(Debug, Clone, Args)]
struct SliceArgs {
    /// Lane cost profile (JSON or TOML).
    #[arg(long)]
    profile: PathBuf,
    /// Model (its profile entry, and its config from the repository or a preset).
    #[arg(long, default_value = "dlrm-small")]
    model: String,
    /// Model repository to read `MODEL/config.toml` (or `MODEL-0/config.toml`) from
    /// (default: the preset of that name); `--batching` replaces its `[batching]` table.
    #[arg(long = "model-repository", value_name = "DIR")]
    model_repository: Option<PathBuf>,
    /// Copies of the model sharing the slice (named MODEL-0, MODEL-1, ...).
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Batching setting: none, static-0, static-DELAYxROWS, adaptive.
    #[arg(long, default_value = "adaptive")]
    batching: String,
    /// P99 target, ms (the adaptive policy's and the search's).
    #[arg(long = "p99-target", default_value_t = 10.0)]
    p99_target: f64,
    /// Lanes of the slice.
    #[arg(long, default_value_t = 2)]
    lanes: usize,
    /// Cross-model policy (edf-fair, edf-fair-work-conserving, fifo).
    #[arg(long, default_value = "edf-fair")]
    schedule: ScheduleKind,
    /// Arrival spacing.
    #[arg(long, value_enum, default_value = "poisson")]
    arrivals: ArrivalKind,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Client timeout per request, seconds (default none, as the in-process harness).
    #[arg(long)]
    timeout: Option<f64>,
    /// Seconds of warm-up.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Microseconds added to each answered request (the front end's part of its latency).
    #[arg(long, default_value_t = 0.0)]
    reply_us: f64,
    /// CPU microseconds per request outside the lanes on the lanes' cores (a CPU slice's
    /// client and front end; `cohost-bench`'s CPU per request less its compute per row).
    #[arg(long = "host-us-per-request", default_value_t = 0.0)]
    host_us: f64,
    /// Search: first rate tried.
    #[arg(long, default_value_t = 1000.0)]
    search_start: f64,
    /// Search: relative precision.
    #[arg(long, default_value_t = 0.05)]
    search_precision: f64,
    /// Seed of every draw.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SliceArgs {
    fn base_config(&self) -> anyhow::Result<ModelConfig> {
        match &self.model_repository {
            Some(dir) => {
                // MODEL, or the first of its copies (MODEL-0).
                let mut path = dir.join(&self.model).join("config.toml");
                if !path.exists() {
                    path = dir.join(format!("{}-0", self.model)).join("config.toml");
                }
                ModelConfig::from_file(&path).map_err(|e| anyhow::anyhow!("{e}"))
            }
            None => synth::preset(&self.model)
                .or_else(|| synth::preset("dlrm-small"))
                .context("no preset config"),
        }
    }

    /// The run for `batching` with `copies` models at `rate` in all.
    fn run_at(
        &self,
        profile: &Profile,
        batching: &Batching,
        copies: usize,
        rate: f64,
    ) -> anyhow::Result<SliceRun> {
        let base = batching.config(&self.base_config()?, self.p99_target);
        let models = (0..copies)
            .map(|i| {
                let name = if copies == 1 {
                    self.model.clone()
                } else {
                    format!("{}-{i}", self.model)
                };
                Ok(ModelSpec {
                    cost: profile.cost(&name)?.clone(),
                    name,
                    config: base.clone(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SliceRun {
            rates: vec![rate / copies as f64; copies],
            models,
            lanes: self.lanes,
            schedule: self.schedule,
            arrivals: self.arrivals,
            rows: self.rows,
            timeout_s: self.timeout,
            warmup_s: self.warmup,
            duration_s: self.duration,
            reply_us: self.reply_us,
            host_us: self.host_us,
            seed: self.seed,
        })
    }

    fn goal(&self) -> Goal {
        Goal {
            p99_ms: self.p99_target,
            max_error_rate: 0.001,
            start: self.search_start,
            precision: self.search_precision,
        }
    }

    fn peak(&self, profile: &Profile, batching: &Batching, copies: usize) -> anyhow::Result<Peak> {
        // Build once to surface config/profile errors, then search.
        self.run_at(profile, batching, copies, 1.0)?;
        Ok(cohost_sim::search(&self.goal(), |rate| {
            cohost_sim::run(
                &self
                    .run_at(profile, batching, copies, rate)
                    .expect("checked"),
            )
        }))
    }
}

fn peak_cells(p: &Peak) -> String {
    match (&p.max_rate, &p.best) {
        (Some(r), Some(b)) => format!(
            "{r:.0} | {:.2} | {:.2} | {:.2}",
            b.overall.mean_batch, b.overall.p99_ms, b.utilization
        ),
        _ => "none passed | | |".into(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { slice, rate } => {
            let profile = Profile::read(&slice.profile)?;
            let b: Batching = slice.batching.parse()?;
            let report = cohost_sim::run(&slice.run_at(&profile, &b, slice.copies, rate)?);
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Search { slice } => {
            let profile = Profile::read(&slice.profile)?;
            let b: Batching = slice.batching.parse()?;
            let p = slice.peak(&profile, &b, slice.copies)?;
            println!("| batching | models | max req/s | mean batch | p99 ms | lane util |");
            println!("|---|---:|---:|---:|---:|---:|");
            println!("| {b} | {} | {} |", slice.copies, peak_cells(&p));
        }
        Command::Compare {
            slice,
            batchings,
            counts,
        } => {
            let profile = Profile::read(&slice.profile)?;
            let bs: Vec<Batching> = batchings
                .iter()
                .map(|s| s.parse())
                .collect::<anyhow::Result<_>>()?;
            println!(
                "profile {} ({}), {} lanes, P99 target {} ms, schedule {:?}, window {} s, seed {}",
                slice.profile.display(),
                profile.source,
                slice.lanes,
                slice.p99_target,
                slice.schedule,
                slice.duration,
                slice.seed
            );
            println!("\n| batching | models | max req/s | mean batch | p99 ms | lane util |");
            println!("|---|---:|---:|---:|---:|---:|");
            let mut peaks: Vec<(Batching, usize, f64)> = Vec::new();
            for &n in &counts {
                for b in &bs {
                    let p = slice.peak(&profile, b, n)?;
                    println!("| {b} | {n} | {} |", peak_cells(&p));
                    peaks.push((*b, n, p.max_rate.unwrap_or(0.0)));
                }
            }
            let get = |b: &str, n: usize| -> f64 {
                let b: Batching = b.parse().expect("known name");
                peaks
                    .iter()
                    .find(|p| p.0 == b && p.1 == n)
                    .map_or(f64::NAN, |p| p.2)
            };
            println!();
            for &n in &counts {
                let best_static = peaks
                    .iter()
                    .filter(|p| p.1 == n && matches!(p.0, Batching::Static { .. }))
                    .max_by(|a, b| a.2.total_cmp(&b.2));
                let a = get("adaptive", n);
                print!(
                    "{n} model(s): adaptive / none {:.2}, adaptive / static-0 {:.2}",
                    a / get("none", n),
                    a / get("static-0", n)
                );
                if let Some(s) = best_static {
                    print!(", adaptive / best static ({}) {:.2}", s.0, a / s.2);
                }
                println!();
            }
            if counts.len() >= 2 {
                let (one, many) = (counts[0], counts[counts.len() - 1]);
                for b in &bs {
                    let s = b.to_string();
                    println!(
                        "{s}: {many} models / {one} model {:.2}",
                        get(&s, many) / get(&s, one)
                    );
                }
            }
        }
        Command::Noisy { slice, capacity } => noisy(&slice, capacity)?,
        Command::Fleet(a) => fleet_cmd(&a)?,
        Command::Transition(t) => transition(&t)?,
    }
    Ok(())
}

/// The noisy-neighbour experiment of docs/BATCHING.md § (c), in simulation.
fn noisy(slice: &SliceArgs, capacity: Option<f64>) -> anyhow::Result<()> {
    let profile = Profile::read(&slice.profile)?;
    let b: Batching = slice.batching.parse()?;
    let capacity = match capacity {
        Some(c) => c,
        None => match slice.peak(&profile, &b, 4)?.max_rate {
            Some(c) => c,
            None => bail!("no rate met the target for 4 models"),
        },
    };
    let quiet = capacity / 8.0;
    let flood = 3.0 * capacity / 4.0;
    println!(
        "4 x {}, {b}, capacity {capacity:.0} req/s: quiet models at {quiet:.0} req/s each, the noisy one at {flood:.0} (queue 8, 1 lane)",
        slice.model
    );
    println!(
        "\n| schedule | quiet P99 alone (ms) | quiet P99 beside the flood (ms) | ratio | noisy refused | noisy answered req/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for kind in [
        ScheduleKind::EdfFair,
        ScheduleKind::EdfFairWorkConserving,
        ScheduleKind::Fifo,
    ] {
        let s = SliceArgs {
            schedule: kind,
            ..slice.clone()
        };
        let mut spec = s.run_at(&profile, &b, 4, 4.0 * quiet)?;
        spec.models[3].config.max_queue_len = 8;
        spec.models[3].config.max_lanes = Some(1);
        spec.rates = vec![quiet, quiet, quiet, 0.0];
        let alone = cohost_sim::run(&spec);
        spec.rates[3] = flood;
        let with = cohost_sim::run(&spec);
        let quiet_p99 = |r: &cohost_sim::SliceReport| {
            r.models[..3].iter().map(|m| m.1.p99_ms).fold(0.0, f64::max)
        };
        let (a, w) = (quiet_p99(&alone), quiet_p99(&with));
        let n = &with.models[3].1;
        println!(
            "| {kind:?} | {a:.2} | {w:.2} | {:.2} | {:.3} | {:.0} |",
            w / a,
            n.error_rate,
            n.throughput
        );
    }
    Ok(())
}

/// The transition-budget experiment: one slice, version 2 loaded mid-run, per budget.
fn transition(t: &TransitionArgs) -> anyhow::Result<()> {
    let s = &t.slice;
    let profile = Profile::read(&s.profile)?;
    let b: Batching = s.batching.parse()?;
    let model = s.run_at(&profile, &b, 1, 1.0)?.models.remove(0);
    let phases = t
        .phases
        .iter()
        .map(|p| {
            let (u, r) = p
                .split_once(':')
                .with_context(|| format!("phase {p:?}: expected UNTIL_S:RATE"))?;
            Ok((u.parse::<f64>()?, r.parse::<f64>()?))
        })
        .collect::<anyhow::Result<Vec<(f64, f64)>>>()?;
    let timeout_s = s.timeout.unwrap_or(2.0 * s.p99_target / 1e3);
    println!(
        "{} ({b}), {} lanes, phases {:?}, version 2 at {} s, first {} batches x{}, timeout {} ms, max wait {} s, seed {}",
        s.model,
        s.lanes,
        phases,
        t.arrive,
        t.cold_batches,
        t.cold_factor,
        timeout_s * 1e3,
        t.max_wait,
        s.seed
    );
    println!(
        "\n| budget | switched at (s) | outcome | utilization then | P99 after load (ms) | timeouts after load | refused | cold batches' P99 (ms) | cold timeouts |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for budget in &t.budgets {
        let budget = match budget.as_str() {
            "none" => None,
            x => Some(x.parse::<f64>().with_context(|| format!("budget {x:?}"))?),
        };
        let r = cohost_sim::transition::run(&cohost_sim::transition::TransitionRun {
            model: model.clone(),
            lanes: s.lanes,
            schedule: s.schedule,
            phases: phases.clone(),
            arrive_s: t.arrive,
            cold_batches: t.cold_batches,
            cold_factor: t.cold_factor,
            budget,
            max_wait_s: t.max_wait,
            timeout_s,
            seed: s.seed,
        })?;
        let a = &r.after_load;
        let refused = a.error_rate - a.timeout_rate;
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {} ({:.4}) | {:.4} | {:.2} | {} |",
            budget.map_or("none".into(), |b| b.to_string()),
            r.switched_s.map_or("never".into(), |x| format!("{x:.2}")),
            r.outcome,
            r.utilization_at_switch,
            a.p99_ms,
            (a.timeout_rate * a.offered as f64).round(),
            a.timeout_rate,
            refused,
            r.cold.p99_ms,
            (r.cold.timeout_rate * r.cold.offered as f64).round()
        );
    }
    Ok(())
}
