//! The [`Ops`] trait of [`CudaOps`] on cuBLAS and the NVRTC kernels.

use super::backend::CudaOps;
use super::err;
use super::gemm::linear_gemm_config;
use super::grid;
use super::lane::Staging;
use super::launch::{CrossLane, check_len, copy_htod, to_i32};
use super::table::ResidentTable;
use super::tensor::CudaTensor;
use crate::{Activation, EmbeddingStore, KernelError, Lane, Ops, Result};
use cudarc::cublas::Gemm;
use cudarc::driver::{CudaStream, DevicePtr, DeviceRepr, PushKernelArg};

/// Most features (x plus pooled tables) one dot interaction takes; matches
/// `COHOST_MAX_FEATURES` in `kernels/cuda/interaction.cu`.
pub const MAX_FEATURES: usize = 128;

/// The feature pointers of one dot interaction, passed to the kernel by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct FeaturePtrs {
    p: [u64; MAX_FEATURES],
}

// SAFETY: a plain array of device addresses, laid out as the CUDA struct `FeaturePtrs`.
unsafe impl DeviceRepr for FeaturePtrs {}

impl Ops for CudaOps {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        self.shared_tensor(data, rows, cols)
    }

    /// Refused: the CUDA backend has no f16 path (see [`f16_refusal`]).
    fn weight_f16(&self, _data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        Err(f16_refusal(rows, cols))
    }

    fn upload(&self, lane: &Lane, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        check_len("upload", data.len(), rows, cols)?;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut t = self.alloc(stream, rows, cols)?;
        if data.is_empty() {
            return Ok(t);
        }
        if !Staging::<f32>::stages(data.len()) {
            copy_htod(stream, data, &mut t.data)?;
            return Ok(t);
        }
        let mut staging = st.up_f32.lock();
        staging.take(&self.ctx, data.len())?.copy_from_slice(data);
        copy_htod(stream, staging.filled(data.len())?, &mut t.data)?;
        staging.issued(stream)?;
        Ok(t)
    }

    fn download(&self, lane: &Lane, t: &CudaTensor) -> Result<Vec<f32>> {
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let len = t.rows * t.cols;
        if len == 0 {
            return Ok(Vec::new());
        }
        let cross = CrossLane::enter(stream, &[t])?;
        stream
            .context()
            .bind_to_thread()
            .map_err(err("cuCtxSetCurrent"))?;
        let (src, _sync) = t.data.device_ptr(stream);
        let out = if !Staging::<f32>::stages(len) {
            let mut out = vec![0f32; len];
            // SAFETY: `out` has room for `len` values; synchronised below before use.
            unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut out, src, stream.cu_stream()) }
                .map_err(err("cuMemcpyDtoHAsync"))?;
            stream.synchronize().map_err(err("download"))?;
            out
        } else {
            let mut staging = st.down_f32.lock();
            let host = staging.take(&self.ctx, len)?;
            // SAFETY: the pinned buffer has `len` slots and is read only after the sync.
            unsafe { cudarc::driver::result::memcpy_dtoh_async(host, src, stream.cu_stream()) }
                .map_err(err("cuMemcpyDtoHAsync"))?;
            stream.synchronize().map_err(err("download"))?;
            staging.filled(len)?.to_vec()
        };
        cross.leave()?;
        Ok(out)
    }

    fn shape(&self, t: &CudaTensor) -> (usize, usize) {
        t.shape()
    }

    fn linear(
        &self,
        lane: &Lane,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        act: Activation,
    ) -> Result<CudaTensor> {
        let ((n, k), (out_dim, wk)) = (x.shape(), w.shape());
        if k != wk || b.rows * b.cols != out_dim {
            return Err(KernelError::Shape(format!(
                "linear: x [{n}, {k}], w [{out_dim}, {wk}], b [{}, {}]: need w [out, {k}] and b [1, out]",
                b.rows, b.cols
            )));
        }
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut y = self.alloc(stream, n, out_dim)?;
        if n == 0 || out_dim == 0 {
            return Ok(y);
        }
        let cross = CrossLane::enter(stream, &[x, w, b])?;
        // Row-major Y = X · Wᵀ as column-major Yᵀ = W · Xᵀ (see `gemm`).
        let cfg = linear_gemm_config(n, k, out_dim)?.sgemm();
        // SAFETY: shapes checked above; all three buffers hold exactly the sizes cuBLAS reads.
        unsafe { st.blas.gemm(cfg, &w.data, &x.data, &mut y.data) }.map_err(err("cublasSgemm"))?;
        let (rows, cols, act_code) = (n as i64, out_dim as i64, activation_code(act));
        let mut l = stream.launch_builder(&self.kernels.bias_act);
        l.arg(&mut y.data)
            .arg(&b.data)
            .arg(&rows)
            .arg(&cols)
            .arg(&act_code);
        // SAFETY: argument types match `bias_act_f32`; `b` has `cols` values.
        unsafe { l.launch(grid::elementwise(n * out_dim, self.sm_count()).into()) }
            .map_err(err("bias_act launch"))?;
        cross.leave()?;
        Ok(y)
    }

    fn dot_interaction(
        &self,
        lane: &Lane,
        x: &CudaTensor,
        pooled: &[CudaTensor],
    ) -> Result<CudaTensor> {
        self.dot(lane, x, pooled, false)
    }

    fn dot_interaction_itself(
        &self,
        lane: &Lane,
        x: &CudaTensor,
        pooled: &[CudaTensor],
    ) -> Result<CudaTensor> {
        self.dot(lane, x, pooled, true)
    }

    fn cat_interaction(
        &self,
        lane: &Lane,
        x: &CudaTensor,
        pooled: &[CudaTensor],
    ) -> Result<CudaTensor> {
        let (n, d) = check_features("cat_interaction", x, pooled)?;
        let feats = pooled.len() + 1;
        let width = feats * d;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = self.alloc(stream, n, width)?;
        if n == 0 || width == 0 {
            return Ok(out);
        }
        let inputs: Vec<&CudaTensor> = std::iter::once(x).chain(pooled.iter()).collect();
        let cross = CrossLane::enter(stream, &inputs)?;
        let ptrs = feature_ptrs(stream, &inputs);
        let (feats_arg, n_arg, d_arg) = (feats as i32, n as i64, to_i32(d)?);
        let mut l = stream.launch_builder(&self.kernels.cat_interaction);
        l.arg(&ptrs)
            .arg(&feats_arg)
            .arg(&n_arg)
            .arg(&d_arg)
            .arg(&mut out.data);
        // SAFETY: argument types match `cat_interaction_f32`; every feature is [n, d].
        unsafe { l.launch(grid::elementwise(n * width, self.sm_count()).into()) }
            .map_err(err("cat_interaction launch"))?;
        cross.leave()?;
        Ok(out)
    }

    fn cross(
        &self,
        lane: &Lane,
        x0: &CudaTensor,
        y: &CudaTensor,
        xl: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (rows, cols) = x0.shape();
        for (what, t) in [("y", y), ("xl", xl)] {
            if t.shape() != (rows, cols) {
                return Err(KernelError::Shape(format!(
                    "cross: {what} is {:?}, x0 is ({rows}, {cols})",
                    t.shape()
                )));
            }
        }
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = self.alloc(stream, rows, cols)?;
        let n = rows * cols;
        if n == 0 {
            return Ok(out);
        }
        let cross = CrossLane::enter(stream, &[x0, y, xl])?;
        let n_arg = n as i64;
        let mut l = stream.launch_builder(&self.kernels.cross);
        l.arg(&x0.data)
            .arg(&y.data)
            .arg(&xl.data)
            .arg(&mut out.data)
            .arg(&n_arg);
        // SAFETY: argument types match `cross_f32`; all four buffers hold `n` values.
        unsafe { l.launch(grid::elementwise(n, self.sm_count()).into()) }
            .map_err(err("cross launch"))?;
        cross.leave()?;
        Ok(out)
    }

    fn sigmoid(&self, lane: &Lane, x: &CudaTensor) -> Result<CudaTensor> {
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let (rows, cols) = x.shape();
        let mut out = self.alloc(stream, rows, cols)?;
        let n = rows * cols;
        if n == 0 {
            return Ok(out);
        }
        let cross = CrossLane::enter(stream, &[x])?;
        let n_arg = n as i64;
        let mut l = stream.launch_builder(&self.kernels.sigmoid);
        l.arg(&x.data).arg(&mut out.data).arg(&n_arg);
        // SAFETY: argument types match `sigmoid_f32`; both buffers hold `n` values.
        unsafe { l.launch(grid::elementwise(n, self.sm_count()).into()) }
            .map_err(err("sigmoid launch"))?;
        cross.leave()?;
        Ok(out)
    }

    fn resident_table(
        &self,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
    ) -> Result<Box<dyn EmbeddingStore<Self>>> {
        let table = self.shared_tensor(data, rows, dim)?;
        Ok(Box::new(ResidentTable::new(name, table)))
    }

    fn offloaded_table(
        &self,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
        cache: crate::offload::CacheConfig,
    ) -> Result<Option<Box<dyn EmbeddingStore<Self>>>> {
        // `None` when the pinned budget refuses: the caller's generic offloaded table.
        let table =
            super::cached::CachedMappedTable::within_budget(self, name, data, rows, dim, cache)?;
        Ok(table.map(|t| Box::new(t) as Box<dyn EmbeddingStore<Self>>))
    }
}

impl CudaOps {
    /// The dot interaction, strict lower triangle or (`itself`) with the diagonal too.
    fn dot(
        &self,
        lane: &Lane,
        x: &CudaTensor,
        pooled: &[CudaTensor],
        itself: bool,
    ) -> Result<CudaTensor> {
        let op = if itself {
            "dot_interaction_itself"
        } else {
            "dot_interaction"
        };
        let (n, d) = check_features(op, x, pooled)?;
        let feats = pooled.len() + 1;
        let pairs = if itself {
            feats * (feats + 1) / 2
        } else {
            feats * (feats - 1) / 2
        };
        let width = d + pairs;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = self.alloc(stream, n, width)?;
        if n == 0 || width == 0 {
            return Ok(out);
        }
        let inputs: Vec<&CudaTensor> = std::iter::once(x).chain(pooled.iter()).collect();
        let cross = CrossLane::enter(stream, &inputs)?;
        let ptrs = feature_ptrs(stream, &inputs);
        let shape = grid::interaction(n, feats, d, self.sm_count());
        let use_smem = i32::from(shape.use_smem);
        let (feats_arg, n_arg, d_arg) = (feats as i32, n as i64, to_i32(d)?);
        let itself_arg = i32::from(itself);
        let mut l = stream.launch_builder(&self.kernels.dot_interaction);
        l.arg(&ptrs)
            .arg(&feats_arg)
            .arg(&n_arg)
            .arg(&d_arg)
            .arg(&mut out.data)
            .arg(&use_smem)
            .arg(&itself_arg);
        // SAFETY: argument types match `dot_interaction_f32`; every feature is [n, d].
        unsafe { l.launch(shape.launch.into()) }.map_err(err("dot_interaction launch"))?;
        cross.leave()?;
        Ok(out)
    }
}

/// `(n, d)` of `x` after checking there are at most [`MAX_FEATURES`] features, all `[n, d]`.
fn check_features(op: &str, x: &CudaTensor, pooled: &[CudaTensor]) -> Result<(usize, usize)> {
    let (n, d) = x.shape();
    let feats = pooled.len() + 1;
    if feats > MAX_FEATURES {
        return Err(KernelError::Shape(format!(
            "{op}: {feats} features, at most {MAX_FEATURES} supported"
        )));
    }
    for (t, p) in pooled.iter().enumerate() {
        if p.shape() != (n, d) {
            return Err(KernelError::Shape(format!(
                "{op}: pooled[{t}] is {:?}, x is ({n}, {d})",
                p.shape()
            )));
        }
    }
    Ok((n, d))
}

/// The device addresses of `inputs`, in order, as the kernels' `FeaturePtrs`.
fn feature_ptrs(stream: &CudaStream, inputs: &[&CudaTensor]) -> FeaturePtrs {
    let mut ptrs = FeaturePtrs {
        p: [0; MAX_FEATURES],
    };
    for (slot, t) in ptrs.p.iter_mut().zip(inputs) {
        *slot = t.data.device_ptr(stream).0;
    }
    ptrs
}

/// The activation code the CUDA kernels understand (`COHOST_ACT_*` in elementwise.cu).
fn activation_code(act: Activation) -> i32 {
    match act {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
    }
}

/// Why an f16 weight is refused on CUDA: there is no f16 GEMM path, and keeping it as f32
/// would hold twice the bytes the placement counted for it.
pub(crate) fn f16_refusal(rows: usize, cols: usize) -> KernelError {
    KernelError::Unavailable(format!(
        "the CUDA backend has no f16 weight path: a [{rows}, {cols}] weight with \
         weight_precision = \"fp16\" cannot be loaded on CUDA; use weight_precision = \"fp32\""
    ))
}

#[cfg(test)]
mod tests {
    use super::f16_refusal;

    #[test]
    fn f16_weights_are_refused_naming_the_precision() {
        let e = f16_refusal(64, 13).to_string();
        assert!(
            e.starts_with("backend unavailable: the CUDA backend has no f16"),
            "{e}"
        );
        assert!(
            e.contains("weight_precision = \"fp16\"") && e.contains("[64, 13]"),
            "{e}"
        );
        assert!(e.contains("use weight_precision = \"fp32\""), "{e}");
    }
}
