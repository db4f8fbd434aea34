//! The capacity oracle (`cohost bench --oracle`): for a model (or a mix) served by the
//! in-process runtime, the maximum throughput under the P99 target at each slice shape
//! (lanes × memory budget), and the smallest shape that serves a target rate.
//!
//! A shape is a fresh [`Runtime`] with that many lanes and that device memory budget; a
//! model whose load fails there (over budget) "does not fit". On a GPU the lanes are
//! streams on whatever MIG instance the process sees, and the table names its profile;
//! on the CPU the shapes are worker-thread counts ("cpu").

use crate::loadgen::{LoadMode, LoadSpec};
use crate::prepared::prepare;
use crate::search::{SearchSpec, find_max_rate};
use crate::target::InProcessTarget;
use crate::workload::Workload;
use anyhow::{Context, bail};
use cohost_runtime::{Runtime, RuntimeOptions, ScheduleKind};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// What the oracle measures and how (`cohost bench --oracle` fills it from its arguments).
#[derive(Debug, Clone)]
pub struct OracleOptions {
    /// The repository every shape's runtime loads its models from (required).
    pub model_repository: Option<PathBuf>,
    /// Cross-model scheduling of every shape's runtime.
    pub schedule: ScheduleKind,
    /// Lane counts to try.
    pub lanes: Vec<usize>,
    /// Device memory budgets to try, as written (`64MiB`, `unlimited`).
    pub memory: Vec<String>,
    /// Each step's warm-up and window, pacing, seed, bound on outstanding requests and
    /// drain timeout (its mode is set per step).
    pub load: LoadSpec,
    /// The peak search at every shape, its P99 target included.
    pub search: SearchSpec,
    /// Report the smallest shape serving this many requests per second.
    pub target_rate: Option<f64>,
    /// Write the results as JSON.
    pub json: Option<PathBuf>,
}

/// A slice shape: lanes and a device memory budget (None = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Lanes (CPU worker threads or CUDA streams).
    pub lanes: usize,
    /// Device memory budget in bytes; None = unlimited.
    pub memory: Option<u64>,
}

impl Shape {
    /// Orders shapes by size: fewer lanes first, then less memory (unlimited last).
    pub fn size_key(&self) -> (usize, u64) {
        (self.lanes, self.memory.unwrap_or(u64::MAX))
    }

    /// "2 lanes, 64 MiB" style label.
    pub fn label(&self) -> String {
        format!("{} lanes, {}", self.lanes, memory_label(self.memory))
    }
}

/// What one shape achieved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The models loaded; the search found this maximum rate (None: not even the lowest).
    Fits {
        /// Largest offered rate that met the target (req/s), if any.
        max_rate: Option<f64>,
        /// Achieved throughput at that rate (req/s).
        throughput: f64,
        /// P99 at that rate (ms).
        p99_ms: f64,
        /// Device bytes the loaded models hold.
        device_bytes: u64,
    },
    /// A model failed to load within the budget.
    DoesNotFit {
        /// The runtime's reason.
        reason: String,
    },
}

/// One measured shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeResult {
    /// The shape.
    pub shape: Shape,
    /// What it achieved.
    pub outcome: Outcome,
}

impl ShapeResult {
    /// The maximum rate under the target, 0 when it does not fit or nothing passed.
    pub fn max_rate(&self) -> f64 {
        match &self.outcome {
            Outcome::Fits { max_rate, .. } => max_rate.unwrap_or(0.0),
            Outcome::DoesNotFit { .. } => 0.0,
        }
    }
}

/// The smallest shape (fewest lanes, then least memory) whose maximum rate under the
/// target reaches `target_rate`; None when no measured shape does.
pub fn smallest_serving(cells: &[ShapeResult], target_rate: f64) -> Option<&ShapeResult> {
    cells
        .iter()
        .filter(
            |c| matches!(c.outcome, Outcome::Fits { max_rate: Some(r), .. } if r >= target_rate),
        )
        .min_by_key(|c| c.shape.size_key())
}

/// "64 MiB", "unlimited".
pub fn memory_label(memory: Option<u64>) -> String {
    match memory {
        None => "unlimited".into(),
        Some(b) if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        Some(b) if b >= 1 << 20 => format!("{:.0} MiB", b as f64 / (1 << 20) as f64),
        Some(b) => format!("{b} B"),
    }
}

/// Parses a memory budget: `unlimited`/`none`/`inf`, or a byte size ("64MiB", "2GB").
pub fn parse_memory(s: &str) -> anyhow::Result<Option<u64>> {
    let t = s.trim().to_ascii_lowercase();
    if t == "unlimited" || t == "none" || t == "inf" {
        return Ok(None);
    }
    cohost_runtime::parse_byte_size(s)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("memory budget: {e}"))
}

/// The table a capacity planner reads: lanes down, memory budgets across.
pub fn markdown(cells: &[ShapeResult], p99_ms: f64, device: &str) -> String {
    let mut lanes: Vec<usize> = cells.iter().map(|c| c.shape.lanes).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let mut mems: Vec<Option<u64>> = Vec::new();
    for c in cells {
        if !mems.contains(&c.shape.memory) {
            mems.push(c.shape.memory);
        }
    }
    mems.sort_by_key(|m| m.unwrap_or(u64::MAX));
    let mut out = format!("max req/s with P99 <= {p99_ms} ms ({device})\n\n| lanes |");
    for m in &mems {
        let _ = write!(out, " {} |", memory_label(*m));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(mems.len()));
    for l in &lanes {
        let _ = write!(out, "\n| {l} |");
        for m in &mems {
            let cell = cells
                .iter()
                .find(|c| c.shape.lanes == *l && c.shape.memory == *m);
            let text = match cell.map(|c| &c.outcome) {
                None => "-".to_string(),
                Some(Outcome::DoesNotFit { .. }) => "does not fit".into(),
                Some(Outcome::Fits {
                    max_rate: None,
                    device_bytes,
                    ..
                }) => format!("none passes ({})", memory_label(Some(*device_bytes))),
                Some(Outcome::Fits {
                    max_rate: Some(_),
                    throughput,
                    p99_ms,
                    device_bytes,
                }) => format!(
                    "{throughput:.0} (p99 {p99_ms:.2} ms, uses {})",
                    memory_label(Some(*device_bytes))
                ),
            };
            let _ = write!(out, " {text} |");
        }
    }
    out.push('\n');
    out
}

/// Measures one shape: a fresh runtime, the workload's models loaded, the peak search.
async fn measure_shape(
    options: &OracleOptions,
    workload: &Workload,
    shape: Shape,
    device: &mut String,
) -> anyhow::Result<ShapeResult> {
    let Some(repo) = options.model_repository.clone() else {
        bail!("--oracle needs --model-repository DIR");
    };
    let runtime = Runtime::new(
        RuntimeOptions::default()
            .repository(repo)
            .lanes(shape.lanes)
            .memory_budget(shape.memory)
            .schedule(options.schedule),
    )
    .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))?;
    *device = runtime.device().mig_profile.clone().map_or_else(
        || runtime.backend_name().to_string(),
        |p| format!("MIG {p}"),
    );
    for m in &workload.models {
        if let Err(e) = runtime.load_model(&m.name) {
            runtime.shutdown();
            return Ok(ShapeResult {
                shape,
                outcome: Outcome::DoesNotFit { reason: e.message },
            });
        }
    }
    let device_bytes = runtime.memory_used();
    let target = Arc::new(InProcessTarget::new(runtime.clone()));
    let prepared = Arc::new(prepare(target.as_ref(), workload)?);
    let load = LoadSpec {
        mode: LoadMode::Open { rate: 1.0 },
        ..options.load.clone()
    };
    let spec = &options.search;
    let label = shape.label();
    let result = find_max_rate(target, prepared, &load, spec, |s| {
        eprintln!(
            "  [{label}] {} {:.1} req/s: achieved {:.1}, p99 {:.3} ms, errors {:.3}% {}",
            s.phase,
            s.rate,
            s.report.overall.throughput,
            s.report.overall.p99_ms,
            s.report.overall.error_rate * 100.0,
            if s.pass { "PASS" } else { "FAIL" }
        )
    })
    .await;
    runtime.shutdown();
    let (throughput, p99_ms) = result
        .best
        .as_ref()
        .map_or((0.0, 0.0), |b| (b.overall.throughput, b.overall.p99_ms));
    Ok(ShapeResult {
        shape,
        outcome: Outcome::Fits {
            max_rate: result.max_rate,
            throughput,
            p99_ms,
            device_bytes,
        },
    })
}

/// Runs the oracle over `--oracle-lanes` × `--oracle-memory` and prints the table and,
/// with `--target-rate`, the smallest shape that serves it.
pub async fn run(options: &OracleOptions, workload: Workload) -> anyhow::Result<()> {
    let p99 = options.search.p99_target_ms;
    let memories = options
        .memory
        .iter()
        .map(|m| parse_memory(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cells = Vec::new();
    let mut device = "cpu".to_string();
    for &lanes in &options.lanes {
        for &memory in &memories {
            let shape = Shape { lanes, memory };
            eprintln!("oracle: shape {}", shape.label());
            cells.push(measure_shape(options, &workload, shape, &mut device).await?);
        }
    }
    println!("{}", markdown(&cells, p99, &device));
    if let Some(rate) = options.target_rate {
        match smallest_serving(&cells, rate) {
            Some(c) => println!(
                "smallest shape serving {rate:.1} req/s at P99 <= {p99} ms: {} {} ({:.0} req/s max)",
                device,
                c.shape.label(),
                c.max_rate()
            ),
            None => println!(
                "no measured shape serves {rate:.1} req/s at P99 <= {p99} ms (largest: {:.0} req/s)",
                cells.iter().map(ShapeResult::max_rate).fold(0.0, f64::max)
            ),
        }
    }
    if let Some(path) = &options.json {
        let json = serde_json::json!({
            "p99_target_ms": p99,
            "device": device,
            "target_rate": options.target_rate,
            "cells": cells,
            "smallest": options.target_rate.and_then(|r| smallest_serving(&cells, r)),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits(lanes: usize, mib: Option<u64>, rate: Option<f64>) -> ShapeResult {
        ShapeResult {
            shape: Shape {
                lanes,
                memory: mib.map(|m| m << 20),
            },
            outcome: Outcome::Fits {
                max_rate: rate,
                throughput: rate.unwrap_or(0.0),
                p99_ms: 5.0,
                device_bytes: 10 << 20,
            },
        }
    }

    fn no_fit(lanes: usize, mib: u64) -> ShapeResult {
        ShapeResult {
            shape: Shape {
                lanes,
                memory: Some(mib << 20),
            },
            outcome: Outcome::DoesNotFit {
                reason: "over budget".into(),
            },
        }
    }

    /// Synthetic measurements: 1 lane serves ~1000 req/s, 2 lanes ~1900; the model needs
    /// more than 8 MiB.
    fn grid() -> Vec<ShapeResult> {
        vec![
            no_fit(1, 8),
            fits(1, Some(64), Some(1000.0)),
            fits(1, None, Some(1050.0)),
            no_fit(2, 8),
            fits(2, Some(64), Some(1900.0)),
            fits(2, None, Some(2000.0)),
        ]
    }

    #[test]
    fn picks_fewest_lanes_then_least_memory() {
        let g = grid();
        let s = smallest_serving(&g, 900.0).unwrap();
        assert_eq!(
            s.shape,
            Shape {
                lanes: 1,
                memory: Some(64 << 20)
            }
        );
        // Only the unlimited 1-lane shape reaches 1020.
        let s = smallest_serving(&g, 1020.0).unwrap();
        assert_eq!((s.shape.lanes, s.shape.memory), (1, None));
        // Needs two lanes; the smaller budget suffices.
        let s = smallest_serving(&g, 1500.0).unwrap();
        assert_eq!((s.shape.lanes, s.shape.memory), (2, Some(64 << 20)));
        assert!(smallest_serving(&g, 5000.0).is_none());
    }

    #[test]
    fn shapes_that_do_not_fit_or_never_pass_are_never_chosen() {
        let g = vec![
            no_fit(1, 8),
            fits(1, Some(64), None),
            fits(2, Some(8), Some(0.0)),
            fits(4, Some(64), Some(3.0)),
        ];
        // A zero target is met by any shape where some rate passed, never by one that
        // does not fit or where no rate passed.
        let s = smallest_serving(&g, 0.0).unwrap();
        assert_eq!((s.shape.lanes, s.shape.memory), (2, Some(8 << 20)));
        let s = smallest_serving(&g, 1.0).unwrap();
        assert_eq!(s.shape.lanes, 4);
    }

    #[test]
    fn memory_budgets_parse_and_print() {
        assert_eq!(parse_memory("64MiB").unwrap(), Some(64 << 20));
        assert_eq!(parse_memory("1g").unwrap(), Some(1 << 30));
        assert_eq!(parse_memory("unlimited").unwrap(), None);
        assert_eq!(parse_memory("2MB").unwrap(), Some(2_000_000));
        assert!(parse_memory("12 parsecs").is_err());
        assert_eq!(memory_label(Some(64 << 20)), "64 MiB");
        assert_eq!(memory_label(Some(2 << 30)), "2 GiB");
        assert_eq!(memory_label(None), "unlimited");
    }

    #[test]
    fn table_has_a_row_per_lane_count_and_a_column_per_budget() {
        let t = markdown(&grid(), 10.0, "cpu");
        assert!(t.contains("| lanes | 8 MiB | 64 MiB | unlimited |"), "{t}");
        assert!(t.contains("| 1 | does not fit | 1000 (p99 5.00 ms"), "{t}");
        assert!(t.lines().filter(|l| l.starts_with("| 2 |")).count() == 1);
    }
}
