//! What to send: the model mix, request batch sizes, and request generation from each
//! model's `config.toml` (dense features ~ N(0, 1), sparse indices uniform or Zipf).
//! [`crate::prepared`] encodes a pool of them before measuring, so generation cost is off
//! the path.

use crate::zipf::{IndexDist, IndexSampler};
use anyhow::{Context, bail, ensure};
use cohost_models::{DataType, ModelConfig};
use cohost_runtime::{Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

/// A generated request: named input tensors carrying `rows` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    /// Input tensors, batch dimension first.
    pub inputs: Vec<Tensor>,
    /// Rows (the batch dimension).
    pub rows: usize,
}

/// Request batch sizes drawn from a discrete distribution (`1` or `1:0.7,8:0.3`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchDist {
    /// (rows, weight) pairs.
    pub choices: Vec<(usize, f64)>,
}

impl BatchDist {
    /// Every request has `rows` rows.
    pub fn fixed(rows: usize) -> Self {
        BatchDist {
            choices: vec![(rows, 1.0)],
        }
    }

    /// Parses `N` or `N:W,M:V,...`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut choices = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, w) = match part.split_once(':') {
                Some((n, w)) => (
                    n,
                    w.parse::<f64>()
                        .with_context(|| format!("weight in '{part}'"))?,
                ),
                None => (part, 1.0),
            };
            let n: usize = n
                .parse()
                .with_context(|| format!("batch size in '{part}'"))?;
            ensure!(n > 0, "batch size must be at least 1 (got '{part}')");
            ensure!(
                w.is_finite() && w > 0.0,
                "weight must be positive (got '{part}')"
            );
            choices.push((n, w));
        }
        ensure!(!choices.is_empty(), "empty batch-size distribution '{s}'");
        Ok(BatchDist { choices })
    }

    /// Mean rows per request.
    pub fn mean(&self) -> f64 {
        let total: f64 = self.choices.iter().map(|c| c.1).sum();
        self.choices.iter().map(|&(n, w)| n as f64 * w).sum::<f64>() / total
    }

    /// Draws a batch size.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total: f64 = self.choices.iter().map(|c| c.1).sum();
        let mut x = rng.random::<f64>() * total;
        for &(n, w) in &self.choices {
            if x < w {
                return n;
            }
            x -= w;
        }
        self.choices.last().unwrap().0
    }
}

/// One model of the mix and its share of the traffic.
#[derive(Debug, Clone)]
pub struct ModelShare {
    /// Model name.
    pub name: String,
    /// Relative share of requests.
    pub weight: f64,
    /// Its configuration (inputs, tables).
    pub config: ModelConfig,
}

/// Parses `NAME[:WEIGHT]`.
pub fn parse_model_weight(s: &str) -> anyhow::Result<(String, f64)> {
    match s.rsplit_once(':') {
        Some((name, w)) if !name.is_empty() => {
            let w: f64 = w
                .parse()
                .with_context(|| format!("weight in --model '{s}'"))?;
            ensure!(
                w.is_finite() && w > 0.0,
                "--model '{s}': weight must be positive"
            );
            Ok((name.to_string(), w))
        }
        _ => Ok((s.to_string(), 1.0)),
    }
}

/// Reads `<repo>/<name>/config.toml`.
pub fn read_config(repo: &Path, name: &str) -> anyhow::Result<ModelConfig> {
    let path = repo.join(name).join("config.toml");
    ModelConfig::from_file(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Everything needed to generate requests, independent of the target.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The model mix.
    pub models: Vec<ModelShare>,
    /// Rows per request.
    pub batch: BatchDist,
    /// Sparse index distribution.
    pub index: IndexDist,
    /// Pre-generated requests per model.
    pub pool_size: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Where each element of a row of one integer input draws its index from.
enum IntLayout {
    /// Element `j` of a row uses `samplers[table_of[j]]`.
    Tables(Vec<usize>),
    /// No table information: all zeros.
    Zero,
}

/// Generates requests for one model.
pub struct RequestGenerator {
    config: ModelConfig,
    samplers: Vec<IndexSampler>,
    layouts: Vec<Option<IntLayout>>,
}

fn row_width(dims: &[i64]) -> anyhow::Result<usize> {
    dims.iter().skip(1).try_fold(1usize, |acc, &d| {
        ensure!(
            d > 0,
            "only the batch dimension may be variable, got dims {dims:?}"
        );
        Ok(acc * d as usize)
    })
}

fn is_float(d: DataType) -> bool {
    matches!(
        d,
        DataType::FP32 | DataType::FP16 | DataType::BF16 | DataType::FP64
    )
}

impl RequestGenerator {
    /// Plans how to fill each input: which table each sparse element indexes.
    pub fn new(config: &ModelConfig, dist: IndexDist, rng: &mut impl Rng) -> anyhow::Result<Self> {
        let (tables, hots): (Vec<usize>, Vec<usize>) = match &config.dlrm {
            Some(p) => {
                let hot = |t: usize| *p.multi_hot.get(t).or(p.multi_hot.first()).unwrap_or(&1);
                (
                    p.table_sizes.clone(),
                    (0..p.table_sizes.len()).map(hot).collect(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let samplers = tables
            .iter()
            .map(|&rows| IndexSampler::new(rows as u64, dist, rng))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let int_inputs: Vec<usize> = (0..config.inputs.len())
            .filter(|&i| !is_float(config.inputs[i].datatype))
            .collect();
        let widths = int_inputs
            .iter()
            .map(|&i| row_width(&config.inputs[i].dims))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let all_hot: usize = hots.iter().sum();
        let table_major = |hs: &[usize], first: usize| -> Vec<usize> {
            hs.iter()
                .enumerate()
                .flat_map(|(t, &h)| std::iter::repeat_n(first + t, h))
                .collect()
        };
        let mut layouts: Vec<Option<IntLayout>> = (0..config.inputs.len()).map(|_| None).collect();
        if tables.is_empty() {
            for &i in &int_inputs {
                layouts[i] = Some(IntLayout::Zero);
            }
        } else if int_inputs.len() == 1 && widths[0] == all_hot {
            // One sparse input, [-1, tables, multi_hot] or [-1, sum(multi_hot)], table-major.
            layouts[int_inputs[0]] = Some(IntLayout::Tables(table_major(&hots, 0)));
        } else if int_inputs.len() == tables.len() && widths.iter().zip(&hots).all(|(w, h)| w == h)
        {
            // One input per table.
            for (t, &i) in int_inputs.iter().enumerate() {
                layouts[i] = Some(IntLayout::Tables(vec![t; hots[t]]));
            }
        } else {
            bail!(
                "cannot map sparse inputs {:?} (row widths {widths:?}) onto {} tables with multi-hot {hots:?}",
                int_inputs
                    .iter()
                    .map(|&i| &config.inputs[i].name)
                    .collect::<Vec<_>>(),
                tables.len()
            );
        }
        Ok(RequestGenerator {
            config: config.clone(),
            samplers,
            layouts,
        })
    }

    /// One request of `rows` rows.
    pub fn generate(&self, rows: usize, rng: &mut impl Rng) -> anyhow::Result<GenRequest> {
        let mut inputs = Vec::with_capacity(self.config.inputs.len());
        for (spec, layout) in self.config.inputs.iter().zip(&self.layouts) {
            let width = row_width(&spec.dims)?;
            let mut shape = spec.dims.clone();
            shape[0] = rows as i64;
            let n = rows * width;
            let data = match (layout, spec.datatype) {
                (None, DataType::FP32) => {
                    TensorData::F32((0..n).map(|_| StandardNormal.sample(rng)).collect())
                }
                (None, d) => bail!("input '{}': cannot generate {d} dense data", spec.name),
                (Some(layout), d) => {
                    let idx: Vec<i64> = match layout {
                        IntLayout::Zero => vec![0; n],
                        IntLayout::Tables(table_of) => (0..n)
                            .map(|k| self.samplers[table_of[k % width]].sample(rng) as i64)
                            .collect(),
                    };
                    match d {
                        DataType::INT64 => TensorData::I64(idx),
                        DataType::INT32 => {
                            TensorData::I32(idx.into_iter().map(|x| x as i32).collect())
                        }
                        d => bail!("input '{}': cannot generate {d} sparse indices", spec.name),
                    }
                }
            };
            inputs.push(Tensor::new(spec.name.clone(), shape, data));
        }
        Ok(GenRequest { inputs, rows })
    }
}
