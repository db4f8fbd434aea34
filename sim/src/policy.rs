//! Batching settings by name, as the harness's scripts spell them, and the model configs
//! they give.

use anyhow::bail;
use cohost_models::{BatchingPolicyKind, ModelConfig};
use std::fmt;
use std::str::FromStr;

/// A batching setting: `none`, `static-0` (delay 0, max batch 512), `static-DxN` (delay D
/// µs, max batch N rows), `adaptive`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Batching {
    /// Every request alone.
    None,
    /// Close at `max_batch` rows or after `delay_us`.
    Static {
        /// Longest the oldest request waits, µs.
        delay_us: u64,
        /// Largest batch in rows (None: the model's `max_batch_size`).
        max_batch: Option<usize>,
    },
    /// SLO-aware, from the P99 target.
    Adaptive,
}

impl FromStr for Batching {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "none" => Batching::None,
            "adaptive" => Batching::Adaptive,
            "static-0" => Batching::Static {
                delay_us: 0,
                max_batch: None,
            },
            _ => {
                let Some((d, n)) = s.strip_prefix("static-").and_then(|r| r.split_once('x')) else {
                    bail!("batching '{s}': one of none, static-0, static-DELAYxROWS, adaptive");
                };
                Batching::Static {
                    delay_us: d.trim_end_matches("us").parse()?,
                    max_batch: Some(n.parse()?),
                }
            }
        })
    }
}

impl fmt::Display for Batching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Batching::None => write!(f, "none"),
            Batching::Adaptive => write!(f, "adaptive"),
            Batching::Static {
                delay_us: 0,
                max_batch: None,
            } => write!(f, "static-0"),
            Batching::Static {
                delay_us,
                max_batch,
            } => write!(f, "static-{delay_us}x{}", max_batch.unwrap_or(0)),
        }
    }
}

impl Batching {
    /// `base` with this batching, the adaptive policy aiming at `p99_ms`.
    pub fn config(&self, base: &ModelConfig, p99_ms: f64) -> ModelConfig {
        let mut c = base.clone();
        let b = &mut c.batching;
        match *self {
            Batching::None => b.policy = BatchingPolicyKind::None,
            Batching::Static {
                delay_us,
                max_batch,
            } => {
                b.policy = BatchingPolicyKind::Static;
                b.max_queue_delay_us = delay_us;
                b.max_batch_size = max_batch;
            }
            Batching::Adaptive => {
                b.policy = BatchingPolicyKind::Adaptive;
                b.p99_target_ms = Some(p99_ms);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ["none", "static-0", "static-500x64", "adaptive"] {
            assert_eq!(s.parse::<Batching>().unwrap().to_string(), s);
        }
        assert!("static-5".parse::<Batching>().is_err());
    }
}
