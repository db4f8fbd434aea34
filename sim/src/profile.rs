//! Lane cost profiles: the seconds `t(n)` a lane of some kind takes to run a batch of `n`
//! rows of a model, from a file (JSON or TOML) written by `cohost-bench --profile` or by
//! hand.
//!
//! ```json
//! { "source": "cohost-bench --profile, in-process, cpu, 2 lanes",
//!   "lane_kind": "cpu", "lanes": 2,
//!   "models": {
//!     "dlrm-small": { "points": [{"rows": 1, "seconds": 8.1e-5, "batches": 900},
//!                                {"rows": 4, "seconds": 1.4e-4}] },
//!     "gpu-dlrm":   { "fixed_s": 2.0e-3, "per_row_s": 1.0e-6, "cv": 0.05 } } }
//! ```
//!
//! A model's cost is either measured points, interpolated linearly in `n` (extended past
//! the last point along the last two points' slope, and flat below the first), or
//! `fixed_s + per_row_s · n`. `cv` is the coefficient of variation of a lognormal factor
//! drawn per batch (0: every batch takes exactly `t(n)`).

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One measured batch size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Rows in the batch.
    pub rows: usize,
    /// Mean seconds a lane spent on such a batch.
    pub seconds: f64,
    /// Batches the mean is over (0: unknown).
    #[serde(default)]
    pub batches: u64,
}

/// One model's batch cost on one lane kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Measured points (used when non-empty).
    #[serde(default)]
    pub points: Vec<Point>,
    /// Seconds per batch, whatever its size (when there are no points).
    #[serde(default)]
    pub fixed_s: f64,
    /// Seconds per row (when there are no points).
    #[serde(default)]
    pub per_row_s: f64,
    /// Coefficient of variation of a batch's time around `t(n)`.
    #[serde(default)]
    pub cv: f64,
}

impl Cost {
    /// `t(n)` in seconds (no noise).
    pub fn seconds(&self, rows: usize) -> f64 {
        let n = rows as f64;
        let p = &self.points;
        match p.len() {
            0 => self.fixed_s + self.per_row_s * n,
            1 => p[0].seconds * (n / p[0].rows.max(1) as f64).max(1.0),
            _ => {
                if rows <= p[0].rows {
                    return p[0].seconds;
                }
                // The segment holding n, or the last one (extended).
                let i = p
                    .windows(2)
                    .position(|w| rows <= w[1].rows)
                    .unwrap_or(p.len() - 2);
                let (a, b) = (p[i], p[i + 1]);
                let slope = (b.seconds - a.seconds) / (b.rows - a.rows) as f64;
                (a.seconds + slope * (n - a.rows as f64)).max(0.0)
            }
        }
    }

    /// Sorts the points by rows and checks them.
    fn normalise(&mut self, model: &str) -> anyhow::Result<()> {
        self.points.sort_by_key(|p| p.rows);
        self.points.dedup_by_key(|p| p.rows);
        if self
            .points
            .iter()
            .any(|p| p.rows == 0 || p.seconds.is_nan() || p.seconds < 0.0)
        {
            bail!("profile of '{model}': points need rows >= 1 and seconds >= 0");
        }
        if self.points.is_empty() && self.fixed_s + self.per_row_s <= 0.0 {
            bail!("profile of '{model}': neither points nor a positive fixed_s + per_row_s");
        }
        Ok(())
    }
}

/// Batch costs of several models on one lane kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Profile {
    /// Where the figures come from (a measurement, a paper).
    #[serde(default)]
    pub source: String,
    /// The lane kind the figures are for ("cpu", "gpu-stream").
    #[serde(default)]
    pub lane_kind: String,
    /// Lanes of the measured slice (informative).
    #[serde(default)]
    pub lanes: usize,
    /// Cost per model name.
    pub models: BTreeMap<String, Cost>,
}

impl Profile {
    /// Reads a profile from a `.json` or `.toml` file.
    pub fn read(path: &Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let mut p: Profile = if is_toml {
            toml::from_str(&text).with_context(|| path.display().to_string())?
        } else {
            serde_json::from_str(&text).with_context(|| path.display().to_string())?
        };
        for (name, c) in &mut p.models {
            c.normalise(name)?;
        }
        Ok(p)
    }

    /// The cost of `model`: its own entry, else that of the name without a trailing
    /// `-<digits>` (copies `m-0`, `m-1`, … of `m`).
    pub fn cost(&self, model: &str) -> anyhow::Result<&Cost> {
        if let Some(c) = self.models.get(model) {
            return Ok(c);
        }
        let base = model
            .rsplit_once('-')
            .filter(|(_, d)| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .map(|(b, _)| b);
        base.and_then(|b| self.models.get(b)).with_context(|| {
            let names: Vec<&String> = self.models.keys().collect();
            format!("the profile has no cost for '{model}' (it has {names:?})")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_interpolate_and_extend_and_lines_are_lines() {
        let c = Cost {
            points: vec![
                Point {
                    rows: 1,
                    seconds: 1e-4,
                    batches: 0,
                },
                Point {
                    rows: 5,
                    seconds: 3e-4,
                    batches: 0,
                },
            ],
            ..Cost::default()
        };
        assert_eq!(c.seconds(1), 1e-4);
        assert!((c.seconds(3) - 2e-4).abs() < 1e-12);
        assert!((c.seconds(9) - 5e-4).abs() < 1e-12);
        let line = Cost {
            fixed_s: 2e-3,
            per_row_s: 1e-6,
            ..Cost::default()
        };
        assert!((line.seconds(100) - 2.1e-3).abs() < 1e-12);
    }

    #[test]
    fn copies_fall_back_to_the_base_model_and_the_bench_format_parses() {
        let text = r#"{"source":"x","lane_kind":"cpu","lanes":2,
            "models":{"dlrm-small":{"points":[{"rows":2,"seconds":0.0002,"batches":3},
                                               {"rows":1,"seconds":0.0001,"batches":9}]}}}"#;
        let dir = std::env::temp_dir().join(format!("cohost-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        std::fs::write(&path, text).unwrap();
        let p = Profile::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Sorted on read.
        assert_eq!(p.models["dlrm-small"].points[0].rows, 1);
        assert_eq!(p.cost("dlrm-small-3").unwrap().seconds(2), 0.0002);
        assert!(p.cost("other").is_err());
    }
}
