//! cohost's side of `scripts/compare-ort.sh`: one preset model in-process on the CPU
//! backend, driven line by line over stdin so the script can interleave it with ONNX Runtime.
//!
//! `cargo run --release -p cohost-models --example compare_ort -- PRESET DIR [TABLE_ROWS]`
//! writes `DIR/model.safetensors` (seed 1; DLRM tables of TABLE_ROWS rows, default 10,000),
//! `DIR/dense.f32` and, for a DLRM, `DIR/sparse.i64` (512 rows of inputs, seed 2, raw
//! little-endian, row-major), prints `{"ready": ...}`, then answers one JSON line per command:
//!
//! - `out N`: runs rows `0..N` once and writes the output to `DIR/out-N.f32`;
//! - `time N LANES SECS`: `LANES` threads, each its own lane (one core each), run batches of
//!   rows `0..N` for `SECS` seconds after a warm-up; answers per-batch latencies and rows/s.

use cohost_kernels::Lane;
use cohost_kernels::cpu::{CpuOps, isa};
use cohost_models::{
    BackendHandle, Batch, InputData, Model, PlacementOptions, WeightSource, build_model, synth,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows of inputs written (the largest batch measured).
const MAX_ROWS: usize = 512;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(preset), Some(dir)) = (args.first(), args.get(1)) else {
        return Err("usage: compare_ort PRESET DIR [TABLE_ROWS]".into());
    };
    let table_rows: usize = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    let mut config = synth::preset(preset).ok_or("unknown preset")?;
    config.max_batch_size = config.max_batch_size.max(MAX_ROWS);
    if let Some(d) = config.dlrm.as_mut() {
        d.table_sizes = vec![table_rows; d.table_sizes.len()];
    }
    let bytes = synth::random_weights(&config, 1);
    std::fs::write(dir.join("model.safetensors"), &bytes)?;
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let model = build_model(
        &config,
        WeightSource::Bytes(&bytes),
        &backend,
        &PlacementOptions::default(),
    )?;
    let inputs = write_inputs(&*model, dir)?;
    println!(
        "{{\"ready\": true, \"isa\": \"{}\", \"flops_per_row\": {}}}",
        isa().name(),
        model.flops_per_row()
    );
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["out", n] => {
                let n: usize = n.parse()?;
                let y = model
                    .forward(&Lane::cpu(0), &first_rows(&inputs, n))?
                    .remove(0);
                let raw: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(dir.join(format!("out-{n}.f32")), raw)?;
                format!("{{\"ok\": true, \"values\": {}}}", y.len())
            }
            ["time", n, lanes, secs] => {
                let (n, lanes, secs): (usize, usize, f64) =
                    (n.parse()?, lanes.parse()?, secs.parse()?);
                time(&model, &first_rows(&inputs, n), lanes, secs)
            }
            ["quit"] => break,
            _ => format!("{{\"error\": \"unknown command {line:?}\"}}"),
        };
        println!("{reply}");
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// Writes `MAX_ROWS` rows of random inputs for `model` to `dir` and returns them.
fn write_inputs(model: &dyn Model, dir: &Path) -> std::io::Result<Batch> {
    let config = model.config();
    let mut rng = StdRng::seed_from_u64(2);
    let width = match (&config.mlp, &config.dlrm) {
        (Some(m), _) => m.layers[0],
        (_, Some(d)) => d.dense_features,
        _ => unreachable!("a model is an MLP or a DLRM"),
    };
    let dense: Vec<f32> = (0..MAX_ROWS * width)
        .map(|_| rng.random_range(0.0f32..1.0))
        .collect();
    let raw: Vec<u8> = dense.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("dense.f32"), raw)?;
    let mut inputs = vec![InputData::F32(dense)];
    if let Some(p) = &config.dlrm {
        let bag = |t: usize| p.multi_hot[if p.multi_hot.len() == 1 { 0 } else { t }];
        let mut sparse = Vec::new();
        for _ in 0..MAX_ROWS {
            for (t, &size) in p.table_sizes.iter().enumerate() {
                sparse.extend((0..bag(t)).map(|_| rng.random_range(0..size as i64)));
            }
        }
        let raw: Vec<u8> = sparse.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("sparse.i64"), raw)?;
        inputs.push(InputData::I64(sparse));
    }
    Ok(Batch {
        rows: MAX_ROWS,
        inputs,
    })
}

/// The first `n` rows of `all`.
fn first_rows(all: &Batch, n: usize) -> Batch {
    let inputs = all
        .inputs
        .iter()
        .map(|input| match input {
            InputData::F32(v) => InputData::F32(v[..v.len() / all.rows * n].to_vec()),
            InputData::I64(v) => InputData::I64(v[..v.len() / all.rows * n].to_vec()),
        })
        .collect();
    Batch { rows: n, inputs }
}

/// Runs `batch` on `lanes` threads for `secs` seconds each; one JSON line of the result.
fn time(model: &Arc<dyn Model>, batch: &Batch, lanes: usize, secs: f64) -> String {
    let run = Duration::from_secs_f64(secs);
    let per_lane: Vec<(Vec<f64>, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..lanes)
            .map(|l| {
                s.spawn(move || {
                    let lane = Lane::cpu(l);
                    let warm = Instant::now();
                    while warm.elapsed() < run / 5 {
                        std::hint::black_box(model.forward(&lane, batch).unwrap());
                    }
                    let mut us = Vec::new();
                    let start = Instant::now();
                    while start.elapsed() < run {
                        let t = Instant::now();
                        std::hint::black_box(model.forward(&lane, batch).unwrap());
                        us.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    (us, start.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Rows/s summed over the lanes, each over its own measured time.
    let rows_per_s: f64 = per_lane
        .iter()
        .map(|(us, secs)| (us.len() * batch.rows) as f64 / secs)
        .sum();
    let batches: usize = per_lane.iter().map(|l| l.0.len()).sum();
    let mut all: Vec<f64> = per_lane.into_iter().flat_map(|l| l.0).collect();
    all.sort_by(f64::total_cmp);
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
    format!(
        "{{\"median_us\": {:.2}, \"p10_us\": {:.2}, \"p90_us\": {:.2}, \"batches\": {batches}, \"rows_per_s\": {rows_per_s:.1}}}",
        q(0.5),
        q(0.1),
        q(0.9)
    )
}
