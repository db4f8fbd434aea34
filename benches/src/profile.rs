//! `--profile FILE`: the lane cost profile `t(n)` of each model, from the runtime's own
//! per-batch-size statistics after an in-process run, in the format `cohost-sim` reads
//! (docs/SIMULATION.md). Points already in FILE are merged in, weighted by their batch
//! counts, so several runs (different policies, different batch sizes) add up to one
//! profile.

use anyhow::Context;
use cohost_runtime::Runtime;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Mean seconds and batch count per batch size.
type Points = BTreeMap<u64, (f64, u64)>;

fn read_points(model: &Value) -> Points {
    let mut points = Points::new();
    for p in model["points"].as_array().into_iter().flatten() {
        if let (Some(n), Some(s)) = (p["rows"].as_u64(), p["seconds"].as_f64()) {
            points.insert(n, (s, p["batches"].as_u64().unwrap_or(1)));
        }
    }
    points
}

/// Writes (or merges into) the profile at `path` from `runtime`'s statistics of `models`.
pub fn write(path: &Path, runtime: &Runtime, models: &[&str]) -> anyhow::Result<()> {
    let mut file: Value = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| path.display().to_string())?,
        Err(_) => json!({ "models": {} }),
    };
    file["source"] = json!(format!(
        "cohost-bench --profile: in-process, backend {}, {} lanes (lane time per batch: gather + forward + split)",
        runtime.backend_name(),
        runtime.lane_count()
    ));
    file["lane_kind"] = json!(runtime.backend_name());
    file["lanes"] = json!(runtime.lane_count());
    for name in models {
        let stats = runtime
            .stats(Some(name), None)
            .map_err(|e| anyhow::anyhow!("statistics of '{name}': {e}"))?;
        let mut points = read_points(&file["models"][*name]);
        for s in &stats {
            for b in &s.batch_stats {
                let n = b.compute_infer.count;
                if n == 0 {
                    continue;
                }
                let ns = b.compute_input.ns + b.compute_infer.ns + b.compute_output.ns;
                let mean = ns as f64 * 1e-9 / n as f64;
                let e = points.entry(b.batch_size).or_insert((0.0, 0));
                let total = e.1 + n;
                e.0 = (e.0 * e.1 as f64 + mean * n as f64) / total as f64;
                e.1 = total;
            }
        }
        let pts: Vec<Value> = points
            .iter()
            .map(|(n, (s, c))| json!({ "rows": n, "seconds": s, "batches": c }))
            .collect();
        file["models"][*name] = json!({ "points": pts });
    }
    std::fs::write(path, serde_json::to_string_pretty(&file)?)
        .with_context(|| path.display().to_string())?;
    eprintln!("profile of {models:?} written to {}", path.display());
    Ok(())
}
