//! A stack of linear layers (weights allocated once through [`Ops::dense_weight`], which
//! the CPU backend packs for its product kernel) and the
//! batch-input accessors shared by the families.

use crate::config::{ModelConfig, WeightPrecision};
use crate::model::{Batch, InputData, ModelError};
use crate::st_reader::Weights;
use cohost_kernels::{Activation, Lane, Ops};

/// The largest finite f16.
const F16_MAX: f32 = 65504.0;

/// Bytes one `inp → out` layer holds: its weight matrix in `precision`, its bias in f32
/// (saturating at `u64::MAX`, which no budget admits).
pub(crate) fn layer_bytes(inp: usize, out: usize, precision: WeightPrecision) -> u64 {
    let (inp, out) = (inp as u64, out as u64);
    inp.saturating_mul(out)
        .saturating_mul(precision.bytes())
        .saturating_add(out.saturating_mul(4))
}

/// One `act(x · wᵀ + b)` layer.
struct Linear<O: Ops> {
    w: O::Tensor,
    b: O::Tensor,
    act: Activation,
    inp: usize,
    out: usize,
    precision: WeightPrecision,
}

/// Linear layers applied in order: `{prefix}.{i}.weight` `[out, in]`, `{prefix}.{i}.bias`.
pub(crate) struct DenseStack<O: Ops> {
    layers: Vec<Linear<O>>,
}

impl<O: Ops> DenseStack<O> {
    /// Loads `widths.len() - 1` layers, weight matrices stored in `precision`; `act(i)` is
    /// layer `i`'s activation.
    pub(crate) fn load(
        ops: &O,
        weights: &Weights<'_>,
        prefix: &str,
        widths: &[usize],
        precision: WeightPrecision,
        act: impl Fn(usize) -> Activation,
    ) -> Result<Self, ModelError> {
        let mut layers = Vec::with_capacity(widths.len().saturating_sub(1));
        for (i, pair) in widths.windows(2).enumerate() {
            let (inp, out) = (pair[0], pair[1]);
            let name = format!("{prefix}.{i}.weight");
            let w = weights.matrix(&name, &[out, inp])?;
            let w = match precision {
                WeightPrecision::Fp32 => ops.dense_weight(&w, out, inp)?,
                WeightPrecision::Fp16 => {
                    if let Some(v) = w.iter().find(|v| !v.is_finite() || v.abs() > F16_MAX) {
                        return Err(ModelError::Weights(format!(
                            "'{name}' holds {v}, outside f16's range (±{F16_MAX}): use weight_precision = \"fp32\""
                        )));
                    }
                    ops.weight_f16(&w, out, inp)?
                }
            };
            let b = weights.matrix(&format!("{prefix}.{i}.bias"), &[out])?;
            layers.push(Linear {
                w,
                b: ops.weight(&b, 1, out)?,
                act: act(i),
                inp,
                out,
                precision,
            });
        }
        Ok(DenseStack { layers })
    }

    /// Runs every layer on `lane`.
    pub(crate) fn forward(
        &self,
        ops: &O,
        lane: &Lane,
        x: O::Tensor,
    ) -> Result<O::Tensor, ModelError> {
        let mut x = x;
        for l in &self.layers {
            x = ops.linear(lane, &x, &l.w, &l.b, l.act)?;
        }
        Ok(x)
    }

    /// Bytes of weights (in their precision) and biases (f32) held.
    pub(crate) fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| layer_bytes(l.inp, l.out, l.precision))
            .fold(0, u64::saturating_add)
    }

    /// Multiply-adds counted as 2 FLOPs, per row.
    pub(crate) fn flops_per_row(&self) -> u64 {
        self.layers.iter().map(|l| 2 * (l.inp * l.out) as u64).sum()
    }
}

/// Input `i` of `batch` as `rows x width` f32 values, or an error naming the input.
pub(crate) fn f32_input<'b>(
    config: &ModelConfig,
    batch: &'b Batch,
    i: usize,
    width: usize,
) -> Result<&'b [f32], ModelError> {
    match batch.inputs.get(i) {
        Some(InputData::F32(v)) => sized(config, batch, i, width, v),
        Some(InputData::I64(_)) => Err(wrong_type(config, i, "FP32")),
        None => Err(missing(config, batch, i)),
    }
}

/// Input `i` of `batch` as `rows x width` i64 values, or an error naming the input.
pub(crate) fn i64_input<'b>(
    config: &ModelConfig,
    batch: &'b Batch,
    i: usize,
    width: usize,
) -> Result<&'b [i64], ModelError> {
    match batch.inputs.get(i) {
        Some(InputData::I64(v)) => sized(config, batch, i, width, v),
        Some(InputData::F32(_)) => Err(wrong_type(config, i, "INT64")),
        None => Err(missing(config, batch, i)),
    }
}

/// The name of input `i` as configured.
pub(crate) fn input_name(config: &ModelConfig, i: usize) -> &str {
    config.inputs.get(i).map_or("?", |s| s.name.as_str())
}

fn sized<'b, T>(
    config: &ModelConfig,
    batch: &Batch,
    i: usize,
    width: usize,
    v: &'b [T],
) -> Result<&'b [T], ModelError> {
    if batch.rows > config.max_batch_size {
        return Err(ModelError::Input(format!(
            "batch of {} rows exceeds max_batch_size {}",
            batch.rows, config.max_batch_size
        )));
    }
    if v.len() != batch.rows * width {
        return Err(ModelError::Input(format!(
            "input '{}': expected {} values ({} rows x {width}), got {}",
            input_name(config, i),
            batch.rows * width,
            batch.rows,
            v.len()
        )));
    }
    Ok(v)
}

fn wrong_type(config: &ModelConfig, i: usize, want: &str) -> ModelError {
    ModelError::Input(format!(
        "input '{}': expected {want} data",
        input_name(config, i)
    ))
}

fn missing(config: &ModelConfig, batch: &Batch, i: usize) -> ModelError {
    ModelError::Input(format!(
        "expected {} inputs, got {} (missing '{}')",
        config.inputs.len(),
        batch.inputs.len(),
        input_name(config, i)
    ))
}
