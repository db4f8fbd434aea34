//! The CPU backend: [`CpuOps`] runs the ops on candle tensors (f32, 2-D, host memory).
//!
//! Tensors are candle's; products run on the calling lane's thread. A dense layer's weights
//! ([`Ops::dense_weight`]) are packed once into the [`packed`] kernel's panels, which fuses
//! the bias add and ReLU into its epilogue; other weights ([`Ops::weight`]) stay row-major
//! and take [`gemm`] (a row-dot kernel for a few rows, else the `gemm` crate) followed by
//! one in-place bias-and-activation pass. Dot interaction and embedding-bag are plain loops
//! over contiguous slices.

mod concat;
mod cross;
mod dot;
pub mod gemm;
mod interaction;
pub mod isa;
pub mod packed;
mod self_interaction;
mod table;
mod view;

pub use concat::cat_interaction_rows;
pub use cross::cross_rows;
pub use gemm::{matmul_wt, matmul_wt_f16};
pub use interaction::dot_interaction_rows;
pub use isa::{Isa, isa};
pub use packed::linear_packed;
pub use self_interaction::dot_interaction_itself_rows;
pub use table::{CpuTable, embedding_bag_sum};

use crate::{Activation, EmbeddingStore, KernelError, Lane, Ops, Result};
use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Tensor};
use view::View;

/// candle-backed ops on the host.
#[derive(Debug)]
pub struct CpuOps {
    threads: usize,
}

impl Default for CpuOps {
    fn default() -> Self {
        CpuOps::new()
    }
}

impl CpuOps {
    /// A CPU backend whose ops run on the calling lane's thread alone.
    pub fn new() -> Self {
        CpuOps { threads: 1 }
    }

    /// A CPU backend whose ops may use up to `threads` threads each (spare cores per lane).
    pub fn with_threads(threads: usize) -> Self {
        CpuOps {
            threads: threads.max(1),
        }
    }

    /// Threads one op may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// [`Ops::linear`] with `w` from [`Ops::dense_weight`] (`panels × wk × PANEL`).
    fn linear_packed(
        &self,
        x: &Tensor,
        w: &Tensor,
        (panels, wk): (usize, usize),
        b: &Tensor,
        act: Activation,
    ) -> Result<Tensor> {
        let (n, k) = dims2(x)?;
        let out = b.elem_count();
        if k != wk || out.div_ceil(packed::PANEL) != panels {
            return Err(KernelError::Shape(format!(
                "linear: x [{n}, {k}], packed w of {panels} panels x {wk}, b {:?}: need {k} \
                 inputs and {panels} panels of {} for b's outputs",
                b.dims(),
                packed::PANEL
            )));
        }
        let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
        let (xv, wv, bv) = (View::of(&x)?, View::of(&w)?, View::of(&b)?);
        let mut y = vec![0f32; n * out];
        packed::linear_packed(
            xv.as_slice(),
            n,
            k,
            wv.as_slice(),
            out,
            bv.as_slice(),
            act,
            &mut y,
            self.threads,
        );
        Ok(Tensor::from_vec(y, (n, out), &Device::Cpu)?)
    }
}

/// Applies `y = act(y + bias)` row by row; `bias` empty means no bias.
pub(crate) fn bias_act_in_place(y: &mut [f32], bias: &[f32], act: Activation) {
    // One loop per activation so each body vectorises (no per-element branch).
    match act {
        Activation::None => epilogue(y, bias, |v| v),
        Activation::Relu => epilogue(y, bias, |v| v.max(0.0)),
        Activation::Sigmoid => epilogue(y, bias, |v| 1.0 / (1.0 + (-v).exp())),
    }
}

#[inline(always)]
fn epilogue(y: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
    if bias.is_empty() {
        y.iter_mut().for_each(|v| *v = f(*v));
        return;
    }
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = f(*v + b);
        }
    }
}

/// The fused epilogue of `linear` (and the body of `sigmoid`) as a candle in-place op.
struct BiasAct<'a> {
    bias: &'a [f32],
    act: Activation,
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "cohost-bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(v) = storage else {
            candle_core::bail!("cohost-bias-act: expected f32 storage")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("cohost-bias-act: expected a contiguous tensor")
        };
        bias_act_in_place(&mut v[start..end], self.bias, self.act);
        Ok(())
    }
}

fn host_matrix(data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
    if data.len() != rows * cols {
        return Err(KernelError::Shape(format!(
            "{} values cannot form a {rows} x {cols} matrix",
            data.len()
        )));
    }
    Ok(Tensor::from_slice(data, (rows, cols), &Device::Cpu)?)
}

fn dims2(t: &Tensor) -> Result<(usize, usize)> {
    t.dims2()
        .map_err(|_| KernelError::Shape(format!("expected a 2-D matrix, got {:?}", t.dims())))
}

/// `[x, pooled..]` as contiguous tensors after checking every one is `[n, d]` like `x`.
fn features(op: &str, x: &Tensor, pooled: &[Tensor]) -> Result<(usize, usize, Vec<Tensor>)> {
    let (n, d) = dims2(x)?;
    let mut all = Vec::with_capacity(pooled.len() + 1);
    all.push(x.contiguous()?);
    for (t, p) in pooled.iter().enumerate() {
        let dims = dims2(p)?;
        if dims != (n, d) {
            return Err(KernelError::Shape(format!(
                "{op}: pooled[{t}] is {dims:?}, x is ({n}, {d})"
            )));
        }
        all.push(p.contiguous()?);
    }
    Ok((n, d, all))
}

impl Ops for CpuOps {
    type Tensor = Tensor;

    fn name(&self) -> &'static str {
        "cpu"
    }

    /// Stores the matrix row-major as given. A contiguous transposed copy was measured
    /// (interleaved A/B, docs/BENCHMARKS.md) and gemm ran no faster on it: it packs either.
    fn weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        host_matrix(data, rows, cols)
    }

    /// Stores the matrix packed into the [`packed`] kernel's panels, a
    /// `[out.div_ceil(PANEL), k, PANEL]` f32 tensor ([`packed::pack`]), which [`Ops::linear`]
    /// recognises by its three dimensions.
    fn dense_weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        if data.len() != rows * cols {
            return Err(KernelError::Shape(format!(
                "{} values cannot form a {rows} x {cols} matrix",
                data.len()
            )));
        }
        // Fewer outputs than one panel (a DLRM's last 256→1 layer): padding to 16 columns
        // made the packed kernel 4–6× slower there than the row-dot path (CPU-EFFICIENCY.md,
        // "Packed dense weights"), so those keep the plain layout.
        if rows < packed::PANEL {
            return self.weight(data, rows, cols);
        }
        let panels = rows.div_ceil(packed::PANEL);
        Ok(Tensor::from_vec(
            packed::pack(data, rows, cols),
            (panels, cols, packed::PANEL),
            &Device::Cpu,
        )?)
    }

    /// Stores the matrix as f16 (candle's `F16` dtype): half the bytes a batch streams.
    fn weight_f16(&self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        let m = host_matrix(data, rows, cols)?;
        Ok(m.to_dtype(candle_core::DType::F16)?)
    }

    fn upload(&self, _lane: &Lane, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        host_matrix(data, rows, cols)
    }

    fn download(&self, _lane: &Lane, t: &Tensor) -> Result<Vec<f32>> {
        let t = t.contiguous()?;
        let v = View::of(&t)?;
        Ok(v.as_slice().to_vec())
    }

    fn shape(&self, t: &Tensor) -> (usize, usize) {
        match t.dims() {
            [r, c] => (*r, *c),
            [c] => (1, *c),
            _ => (t.elem_count(), 1),
        }
    }

    fn linear(
        &self,
        _lane: &Lane,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        act: Activation,
    ) -> Result<Tensor> {
        if let &[panels, wk, packed::PANEL] = w.dims() {
            return self.linear_packed(x, w, (panels, wk), b, act);
        }
        let (n, k) = dims2(x)?;
        let (out, wk) = dims2(w)?;
        if k != wk || b.elem_count() != out {
            return Err(KernelError::Shape(format!(
                "linear: x [{n}, {k}], w [{out}, {wk}], b {:?}: need w [out, {k}] and b [1, out]",
                b.dims()
            )));
        }
        let x = x.contiguous()?;
        let w = w.contiguous()?;
        let b = b.contiguous()?;
        let (xv, wv, bv) = (View::of(&x)?, View::of_weights(&w)?, View::of(&b)?);
        let mut y = vec![0f32; n * out];
        let xs = xv.as_slice();
        match wv.halves() {
            Some(w16) => matmul_wt_f16(xs, n, k, w16, out, &mut y, self.threads),
            None => matmul_wt(xs, n, k, wv.as_slice(), out, &mut y, self.threads),
        }
        bias_act_in_place(&mut y, bv.as_slice(), act);
        Ok(Tensor::from_vec(y, (n, out), &Device::Cpu)?)
    }

    fn dot_interaction(&self, _lane: &Lane, x: &Tensor, pooled: &[Tensor]) -> Result<Tensor> {
        let (n, d, all) = features("dot_interaction", x, pooled)?;
        let views = all.iter().map(View::of).collect::<Result<Vec<_>>>()?;
        let slices: Vec<&[f32]> = views.iter().map(View::as_slice).collect();
        let f = slices.len();
        let width = d + f * (f - 1) / 2;
        let mut out = vec![0f32; n * width];
        dot_interaction_rows(&slices, d, &mut out, self.threads);
        Ok(Tensor::from_vec(out, (n, width), &Device::Cpu)?)
    }

    fn dot_interaction_itself(
        &self,
        _lane: &Lane,
        x: &Tensor,
        pooled: &[Tensor],
    ) -> Result<Tensor> {
        let (n, d, all) = features("dot_interaction_itself", x, pooled)?;
        let views = all.iter().map(View::of).collect::<Result<Vec<_>>>()?;
        let slices: Vec<&[f32]> = views.iter().map(View::as_slice).collect();
        let f = slices.len();
        let width = d + f * (f + 1) / 2;
        let mut out = vec![0f32; n * width];
        dot_interaction_itself_rows(&slices, d, &mut out);
        Ok(Tensor::from_vec(out, (n, width), &Device::Cpu)?)
    }

    fn cat_interaction(&self, _lane: &Lane, x: &Tensor, pooled: &[Tensor]) -> Result<Tensor> {
        let (n, d, all) = features("cat_interaction", x, pooled)?;
        let views = all.iter().map(View::of).collect::<Result<Vec<_>>>()?;
        let slices: Vec<&[f32]> = views.iter().map(View::as_slice).collect();
        let width = slices.len() * d;
        let mut out = vec![0f32; n * width];
        cat_interaction_rows(&slices, d, &mut out);
        Ok(Tensor::from_vec(out, (n, width), &Device::Cpu)?)
    }

    fn cross(&self, _lane: &Lane, x0: &Tensor, y: &Tensor, xl: &Tensor) -> Result<Tensor> {
        let (n, w) = dims2(x0)?;
        for (what, t) in [("y", y), ("xl", xl)] {
            let dims = dims2(t)?;
            if dims != (n, w) {
                return Err(KernelError::Shape(format!(
                    "cross: {what} is {dims:?}, x0 is ({n}, {w})"
                )));
            }
        }
        let (x0, y, xl) = (x0.contiguous()?, y.contiguous()?, xl.contiguous()?);
        let (a, b, c) = (View::of(&x0)?, View::of(&y)?, View::of(&xl)?);
        let mut out = vec![0f32; n * w];
        cross_rows(a.as_slice(), b.as_slice(), c.as_slice(), &mut out);
        Ok(Tensor::from_vec(out, (n, w), &Device::Cpu)?)
    }

    fn sigmoid(&self, _lane: &Lane, x: &Tensor) -> Result<Tensor> {
        // A fresh buffer either way: `contiguous` copies a strided view, `copy` the rest.
        let y = if x.is_contiguous() {
            x.copy()?
        } else {
            x.contiguous()?
        };
        y.inplace_op1(&BiasAct {
            bias: &[],
            act: Activation::Sigmoid,
        })?;
        Ok(y)
    }

    fn resident_table(
        &self,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
    ) -> Result<Box<dyn EmbeddingStore<Self>>> {
        Ok(Box::new(CpuTable::new(name, data.to_vec(), rows, dim)?))
    }
}
