//! MLP family: `input [-1, layers[0]]` → (Linear+ReLU)* → Linear (→ sigmoid) →
//! `output [-1, layers.last]`.
//!
//! Weights: `layers.{i}.weight` `[layers[i+1], layers[i]]` and `layers.{i}.bias`
//! `[layers[i+1]]` for `i` in `0..layers.len()-1`.

use crate::config::ModelConfig;
use crate::layers::{DenseStack, f32_input};
use crate::model::{Batch, MemoryReport, Model, ModelError};
use crate::st_reader::Weights;
use cohost_kernels::{Activation, Lane, Ops};
use std::sync::Arc;

/// A loaded MLP on backend `O`.
pub struct Mlp<O: Ops> {
    ops: Arc<O>,
    config: ModelConfig,
    stack: DenseStack<O>,
    inp: usize,
}

impl<O: Ops> Mlp<O> {
    /// Builds an MLP from a validated config and its weights.
    pub fn new(
        ops: Arc<O>,
        config: &ModelConfig,
        weights: &Weights<'_>,
    ) -> Result<Self, ModelError> {
        let params = config
            .mlp
            .as_ref()
            .ok_or_else(|| ModelError::Weights("config has no [mlp] table".into()))?;
        let last = params.layers.len().saturating_sub(2);
        let out_act = if params.sigmoid {
            Activation::Sigmoid
        } else {
            Activation::None
        };
        let stack = DenseStack::load(
            &*ops,
            weights,
            "layers",
            &params.layers,
            config.weight_precision,
            |i| {
                if i == last { out_act } else { Activation::Relu }
            },
        )?;
        Ok(Mlp {
            ops,
            config: config.clone(),
            stack,
            inp: params.layers[0],
        })
    }
}

impl<O: Ops> Model for Mlp<O> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn check(&self, batch: &Batch) -> Result<(), ModelError> {
        f32_input(&self.config, batch, 0, self.inp).map(|_| ())
    }

    fn forward(&self, lane: &Lane, batch: &Batch) -> Result<Vec<Vec<f32>>, ModelError> {
        let x = f32_input(&self.config, batch, 0, self.inp)?;
        if batch.rows == 0 {
            return Ok(vec![Vec::new()]);
        }
        let x = self.ops.upload(lane, x, batch.rows, self.inp)?;
        let y = self.stack.forward(&*self.ops, lane, x)?;
        Ok(vec![self.ops.download(lane, &y)?])
    }

    fn memory(&self) -> MemoryReport {
        MemoryReport {
            weight_bytes: self.stack.bytes(),
            tables: Vec::new(),
        }
    }

    fn flops_per_row(&self) -> u64 {
        self.stack.flops_per_row()
    }
}
