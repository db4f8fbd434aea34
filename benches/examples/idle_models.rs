//! Issue 22 item 4: what idle models cost the ones serving traffic. Two in-process
//! runtimes on the same lanes' count: A loads only the ACTIVE models, B loads the same
//! ACTIVE models and IDLE more of the same preset that get no request. A closed loop
//! (CONCURRENCY requests outstanding per active model) runs on A and B in turn, ROUNDS
//! times, so a slow stretch of a shared machine hits both; per window it prints the
//! answered rate, p50/p99 and scheduler passes per request, then the B/A throughput ratio.
//! Before that: how long B's idle models took to load and what each added to the
//! process's resident memory beyond its weights.
//!
//! ```text
//! cargo run --release -p cohost-bench --example idle_models -- \
//!   [--idle 1000] [--active 10] [--preset mlp-small] [--lanes 2] [--concurrency 4] \
//!   [--seconds 3] [--rounds 3] [--shared-weights]
//! ```
//!
//! Every idle model is built from its own copy of the weights (as a repository load
//! does), unless `--shared-weights` serves one built model under every idle name (then
//! the memory figure is the bookkeeping alone).

use cohost_models::synth;
use cohost_runtime::{InferRequest, Runtime, RuntimeOptions, Tensor, TensorData};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    idle: usize,
    active: usize,
    preset: String,
    lanes: usize,
    concurrency: usize,
    seconds: f64,
    rounds: usize,
    shared_weights: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        idle: 1000,
        active: 10,
        preset: "mlp-small".into(),
        lanes: 2,
        concurrency: 4,
        seconds: 3.0,
        rounds: 3,
        shared_weights: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--shared-weights" {
            a.shared_weights = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--idle" => a.idle = value.parse()?,
            "--active" => a.active = value.parse()?,
            "--preset" => a.preset = value,
            "--lanes" => a.lanes = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--rounds" => a.rounds = value.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

/// Resident bytes of this process (`/proc/self/statm`).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU seconds this process used so far (`/proc/self/stat` utime + stime; clients and
/// lanes together, the same for both runtimes).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// One window's figures.
struct Window {
    answered: usize,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    passes: u64,
    cpu_seconds: f64,
}

/// CONCURRENCY requests outstanding per active model for `seconds` (after a quarter of a
/// second of warm-up that is not counted).
async fn closed_loop(
    rt: &Runtime,
    models: &[String],
    request: &InferRequest,
    concurrency: usize,
    seconds: f64,
) -> Window {
    let warmup = Duration::from_millis(250);
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop = Arc::new(AtomicBool::new(false));
    let passes_before = Arc::new(std::sync::Mutex::new(None::<u64>));
    let mut tasks = Vec::new();
    for m in models {
        for _ in 0..concurrency {
            let (rt, m, req, stop) = (rt.clone(), m.clone(), request.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    rt.infer(&m, None, req.clone()).await.expect("inference");
                    if t >= measure_from {
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                }
                lat
            }));
        }
    }
    tokio::time::sleep(warmup).await;
    *passes_before.lock().unwrap() = Some(rt.scheduler_passes());
    let measured_from = Instant::now();
    let cpu_from = cpu_seconds();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let elapsed = measured_from.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_from;
    let passes = rt.scheduler_passes() - passes_before.lock().unwrap().unwrap_or(0);
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u64> = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    lat.sort_unstable();
    let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    Window {
        answered: lat.len(),
        seconds: elapsed,
        p50_us: q(0.5).copied().unwrap_or(0),
        p99_us: q(0.99).copied().unwrap_or(0),
        passes,
        cpu_seconds: cpu,
    }
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let config =
        synth::preset(&a.preset).ok_or_else(|| anyhow::anyhow!("unknown preset {}", a.preset))?;
    let weights = synth::random_weights(&config, 42);
    let weight_bytes = synth::weight_bytes(&config);
    let options = || RuntimeOptions::default().lanes(a.lanes);
    let active: Vec<String> = (0..a.active).map(|i| format!("active-{i}")).collect();

    let only = Runtime::new(options())?;
    let crowded = Runtime::new(options())?;
    for rt in [&only, &crowded] {
        for m in &active {
            rt.load_model_from(m, 1, config.clone(), &weights)?;
        }
    }
    let rss_before = resident_bytes();
    let loading = Instant::now();
    if a.shared_weights {
        crowded.load_model_from("idle-0", 1, config.clone(), &weights)?;
        let model = cohost_models::build_model(
            &config,
            cohost_models::WeightSource::Bytes(&weights),
            &cohost_models::BackendHandle::Cpu(Arc::new(cohost_kernels::cpu::CpuOps::default())),
            &cohost_models::PlacementOptions::default(),
        )?;
        for i in 1..a.idle {
            crowded.load_model_instance(&format!("idle-{i}"), 1, model.clone())?;
        }
    } else {
        for i in 0..a.idle {
            crowded.load_model_from(&format!("idle-{i}"), 1, config.clone(), &weights)?;
        }
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    let per_model = (resident_bytes().saturating_sub(rss_before)) as f64 / a.idle.max(1) as f64;
    let beyond = if a.shared_weights {
        per_model
    } else {
        per_model - weight_bytes as f64
    };
    println!(
        "{} idle {} loaded in {:.2} s ({:.2} ms each); resident memory {:.1} KB per idle model, \
         {:.1} KB beyond its {:.1} KB of weights{}",
        a.idle,
        a.preset,
        load_seconds,
        load_seconds * 1e3 / a.idle.max(1) as f64,
        per_model / 1e3,
        beyond / 1e3,
        weight_bytes as f64 / 1e3,
        if a.shared_weights {
            " (weights shared: --shared-weights)"
        } else {
            ""
        }
    );

    let width: i64 = config.inputs[0].dims[1..].iter().product();
    let request = InferRequest {
        inputs: vec![Tensor::new(
            &config.inputs[0].name,
            vec![1, width],
            TensorData::F32((0..width).map(|i| (i as f32 * 0.37).sin()).collect()),
        )],
        ..Default::default()
    };
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.lanes.max(1))
        .enable_all()
        .build()?;
    println!(
        "{} active models x {} outstanding requests of 1 row, {} lanes, {} s windows, {} rounds",
        a.active, a.concurrency, a.lanes, a.seconds, a.rounds
    );
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    for r in 1..=a.rounds {
        let mut rates = [0.0; 2];
        let mut cpus = [0.0; 2];
        for (k, (label, rt)) in [("alone", &only), ("with idle", &crowded)]
            .into_iter()
            .enumerate()
        {
            let w = client.block_on(closed_loop(rt, &active, &request, a.concurrency, a.seconds));
            rates[k] = w.answered as f64 / w.seconds;
            println!(
                "round {r} {label:<9}: {:8.0} req/s  p50 {:6} us  p99 {:6} us  passes {:.2}/req  \
                 CPU {:6.1} us/req",
                rates[k],
                w.p50_us,
                w.p99_us,
                w.passes as f64 / w.answered.max(1) as f64,
                w.cpu_seconds * 1e6 / w.answered.max(1) as f64
            );
            cpus[k] = w.cpu_seconds / w.answered.max(1) as f64;
        }
        ratios.push(rates[1] / rates[0]);
        cpu_ratios.push(cpus[1] / cpus[0]);
    }
    cpu_ratios.sort_by(f64::total_cmp);
    println!(
        "CPU per request with {} idle / alone: median {:.3} (min {:.3}, max {:.3})",
        a.idle,
        cpu_ratios[cpu_ratios.len() / 2],
        cpu_ratios[0],
        cpu_ratios[cpu_ratios.len() - 1]
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput with {} idle / alone: median {:.3} (min {:.3}, max {:.3})",
        a.idle,
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    only.shutdown();
    crowded.shutdown();
    Ok(())
}
