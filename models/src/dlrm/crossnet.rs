//! The DCN-v2 cross net of `interaction = "dcn"` (TorchRec `LowRankCrossNet`).

use crate::model::ModelError;
use crate::st_reader::Weights;
use cohost_kernels::{Activation, Lane, Ops};

/// One low-rank cross layer: `V` `[low_rank, W]`, `W` `[W, low_rank]`, bias `[W]`.
struct CrossLayer<O: Ops> {
    v: O::Tensor,
    w: O::Tensor,
    bias: O::Tensor,
}

/// `L` low-rank cross layers over `x_0` (width `W`): `x_{l+1} = x_0 ⊙ (W_l (V_l x_l) + b_l)
/// + x_l`; weights `crossnet.{l}.v`, `crossnet.{l}.w`, `crossnet.{l}.bias`.
pub(crate) struct CrossNet<O: Ops> {
    layers: Vec<CrossLayer<O>>,
    /// The zero bias of the `V_l` products (`[1, low_rank]`), which have none.
    no_bias: O::Tensor,
    width: usize,
    low_rank: usize,
}

impl<O: Ops> CrossNet<O> {
    /// Loads `layers` cross layers of `width` features and rank `low_rank`.
    pub(crate) fn load(
        ops: &O,
        weights: &Weights<'_>,
        width: usize,
        layers: usize,
        low_rank: usize,
    ) -> Result<Self, ModelError> {
        let mut out = Vec::with_capacity(layers);
        for l in 0..layers {
            let v = weights.matrix(&format!("crossnet.{l}.v"), &[low_rank, width])?;
            let w = weights.matrix(&format!("crossnet.{l}.w"), &[width, low_rank])?;
            let bias = weights.matrix(&format!("crossnet.{l}.bias"), &[width])?;
            out.push(CrossLayer {
                v: ops.weight(&v, low_rank, width)?,
                w: ops.weight(&w, width, low_rank)?,
                bias: ops.weight(&bias, 1, width)?,
            });
        }
        Ok(CrossNet {
            layers: out,
            no_bias: ops.weight(&vec![0.0; low_rank], 1, low_rank)?,
            width,
            low_rank,
        })
    }

    /// Runs every layer on `x0` (`[n, W]`), returning `x_L`.
    pub(crate) fn forward(
        &self,
        ops: &O,
        lane: &Lane,
        x0: O::Tensor,
    ) -> Result<O::Tensor, ModelError> {
        let mut xl: Option<O::Tensor> = None;
        for layer in &self.layers {
            let x = xl.as_ref().unwrap_or(&x0);
            let u = ops.linear(lane, x, &layer.v, &self.no_bias, Activation::None)?;
            let y = ops.linear(lane, &u, &layer.w, &layer.bias, Activation::None)?;
            xl = Some(ops.cross(lane, &x0, &y, x)?);
        }
        Ok(xl.unwrap_or(x0))
    }

    /// Bytes of the weights and biases held (f32, the zero bias included).
    pub(crate) fn bytes(&self) -> u64 {
        let (w, r) = (self.width as u64, self.low_rank as u64);
        let per_layer = w.saturating_mul(r).saturating_mul(2).saturating_add(w);
        (self.layers.len() as u64)
            .saturating_mul(4)
            .saturating_mul(per_layer)
            .saturating_add(r.saturating_mul(4))
    }

    /// The two GEMMs (2 FLOPs per multiply-add) and the combine (2 per element), per row.
    pub(crate) fn flops_per_row(&self) -> u64 {
        let (w, r) = (self.width as u64, self.low_rank as u64);
        self.layers.len() as u64 * (4 * w * r + 2 * w)
    }
}
