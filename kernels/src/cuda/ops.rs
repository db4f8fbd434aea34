//! [`CudaOps`]: the [`Ops`] trait on cuBLAS and the NVRTC kernels.

use super::lane::{LaneRegistry, LaneState, MAX_STAGED_BYTES};
use super::nvrtc::{Kernels, kernels_for};
use super::probe::{guard, open_device};
use super::table::ResidentTable;
use super::tensor::CudaTensor;
use super::{Libraries, err};
use crate::{Activation, EmbeddingStore, KernelError, Lane, LaneKind, Ops, Result};
use cudarc::cublas::{Gemm, GemmConfig, sys::cublasOperation_t};
use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig,
    PushKernelArg, sys::CUdevice_attribute,
};
use std::sync::Arc;

/// Most features (x plus pooled tables) one dot interaction takes; matches
/// `COHOST_MAX_FEATURES` in `kernels/cuda/interaction.cu`.
pub const MAX_FEATURES: usize = 128;

/// Statically-sized shared memory a block may use without opting in (48 KiB).
const MAX_SMEM_BYTES: usize = 48 << 10;

/// The feature pointers of one dot interaction, passed to the kernel by value.
#[repr(C)]
#[derive(Clone, Copy)]
struct FeaturePtrs {
    p: [u64; MAX_FEATURES],
}

// SAFETY: a plain array of device addresses, laid out as the CUDA struct `FeaturePtrs`.
unsafe impl DeviceRepr for FeaturePtrs {}

/// cuBLAS + NVRTC ops on one CUDA device (context); lanes are streams of that context.
///
/// # Synchronisation (explicit, not cudarc's event tracking)
///
/// [`CudaOps::new`] turns cudarc's per-buffer event tracking off for its context, and the
/// backend orders work itself:
/// - a weight (or resident table) is copied on the context's default stream, which is then
///   synchronised once, so every lane can read it at once with no per-launch events;
///   before a weight is freed the default stream waits on every lane's queued work;
/// - per-batch tensors are made and used on one lane, so stream order suffices; if an op is
///   handed a tensor from another lane, that lane is joined in before, and the tensor's own
///   stream waits for the op after (so its stream-ordered free cannot overtake the read).
///
/// Event tracking was rejected because each launch would record a shared read event per
/// argument from every lane (a weight's single read event cannot represent concurrent
/// readers on several streams) and cost two driver calls per argument per launch.
pub struct CudaOps {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) kernels: Arc<Kernels>,
    lanes: Arc<LaneRegistry>,
    sm_count: u32,
    priority_range: (i32, i32),
}

impl std::fmt::Debug for CudaOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaOps")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.kernels.arch)
            .field("sm_count", &self.sm_count)
            .finish()
    }
}

impl CudaOps {
    /// Opens device 0 (after the library checks) and builds the backend on it.
    pub fn open() -> Result<Self> {
        let ctx = open_device().map_err(KernelError::Unavailable)?;
        Self::new(ctx)
    }

    /// Builds the backend on `ctx`: compiles the kernels with NVRTC (once per context,
    /// cached) and turns off cudarc's event tracking on `ctx` (see the type's docs).
    pub fn new(ctx: Arc<CudaContext>) -> Result<Self> {
        Libraries::check()
            .require_all()
            .map_err(KernelError::Unavailable)?;
        let kernels = kernels_for(&ctx).map_err(KernelError::Cuda)?;
        let (sm_count, priority_range) = guard("device attributes", || {
            let sm = ctx
                .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(|e| format!("SM count: {e:?}"))?;
            ctx.bind_to_thread()
                .map_err(|e| format!("cuCtxSetCurrent: {e:?}"))?;
            let range = cudarc::driver::result::stream::get_priority_range()
                .map_err(|e| format!("stream priority range: {e:?}"))?;
            Ok((sm.max(1) as u32, range))
        })
        .map_err(KernelError::Cuda)?;
        // SAFETY: every buffer this backend creates is ordered explicitly (type docs).
        unsafe { ctx.disable_event_tracking() };
        Ok(CudaOps {
            ctx,
            kernels,
            lanes: Arc::new(LaneRegistry::new()),
            sm_count,
            priority_range,
        })
    }

    /// A new lane: a non-blocking stream with `priority` (CUDA convention: lower is more
    /// urgent; 0 is the default; clamped into [`CudaOps::priority_range`]).
    pub fn lane(&self, index: usize, priority: i32) -> Result<Lane> {
        let (least, greatest) = self.priority_range;
        let priority = priority.clamp(greatest.min(least), greatest.max(least));
        let stream = self
            .ctx
            .new_stream_with_priority(priority)
            .map_err(err("cuStreamCreateWithPriority"))?;
        let lane = Lane {
            index,
            kind: LaneKind::Cuda(stream),
        };
        self.lanes.get(&self.ctx, &lane)?;
        Ok(lane)
    }

    /// `(least, greatest)` stream priorities of the device (e.g. `(0, -5)`).
    pub fn priority_range(&self) -> (i32, i32) {
        self.priority_range
    }

    /// The context the backend runs in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The `compute_XY` architecture the kernels were compiled for.
    pub fn arch(&self) -> &str {
        &self.kernels.arch
    }

    /// Waits until all work of every lane and of the default stream is done.
    pub fn synchronize(&self) -> Result<()> {
        self.ctx.synchronize().map_err(err("cuCtxSynchronize"))
    }

    pub(crate) fn lane_state(&self, lane: &Lane) -> Result<Arc<LaneState>> {
        self.lanes.get(&self.ctx, lane)
    }

    /// A shared (all-lane) matrix copied synchronously on the default stream.
    pub(crate) fn shared_tensor(
        &self,
        data: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<CudaTensor> {
        check_len("weight", data.len(), rows, cols)?;
        let stream = self.ctx.default_stream();
        let slice = stream.clone_htod(data).map_err(err("weight upload"))?;
        stream.synchronize().map_err(err("weight upload"))?;
        Ok(CudaTensor {
            data: slice,
            rows,
            cols,
            shared: Some(self.lanes.clone()),
        })
    }

    /// An uninitialised per-batch matrix on `stream`.
    pub(crate) fn alloc(
        &self,
        stream: &Arc<CudaStream>,
        rows: usize,
        cols: usize,
    ) -> Result<CudaTensor> {
        // SAFETY: every caller fully overwrites the buffer before reading it.
        let data = unsafe { stream.alloc::<f32>(rows * cols) }.map_err(err("cuMemAllocAsync"))?;
        Ok(CudaTensor {
            data,
            rows,
            cols,
            shared: None,
        })
    }

    /// Launch shape for a grid-stride kernel over `items` blocks' worth of work.
    pub(crate) fn grid(&self, items: usize, threads: u32, smem: u32) -> LaunchConfig {
        let max_blocks = (self.sm_count as usize) * 32;
        LaunchConfig {
            grid_dim: (items.clamp(1, max_blocks) as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem,
        }
    }

    fn elementwise(&self, elems: usize) -> LaunchConfig {
        self.grid(elems.div_ceil(256), 256, 0)
    }
}

/// Orders a foreign lane's tensors around an op issued on `lane` (see [`CudaOps`] docs).
pub(crate) struct CrossLane<'a> {
    lane: &'a CudaStream,
    foreign: Vec<Arc<CudaStream>>,
}

impl<'a> CrossLane<'a> {
    pub(crate) fn enter(lane: &'a CudaStream, inputs: &[&CudaTensor]) -> Result<Self> {
        let mut foreign = Vec::new();
        for t in inputs {
            let home = t.data.stream();
            if t.shared.is_none() && home.cu_stream() != lane.cu_stream() {
                lane.join(home).map_err(err("cross-lane wait"))?;
                foreign.push(home.clone());
            }
        }
        Ok(CrossLane { lane, foreign })
    }

    pub(crate) fn leave(self) -> Result<()> {
        for home in self.foreign {
            home.join(self.lane).map_err(err("cross-lane wait"))?;
        }
        Ok(())
    }
}

fn check_len(what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(KernelError::Shape(format!(
            "{what}: {len} values do not make a [{rows}, {cols}] matrix"
        )));
    }
    Ok(())
}

pub(crate) fn to_i32(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| KernelError::Shape(format!("dimension {v} exceeds i32")))
}

/// Asynchronous host-to-device copy of `src` into `dst` on `stream`.
pub(crate) fn copy_htod<T: DeviceRepr>(
    stream: &CudaStream,
    src: &[T],
    dst: &mut CudaSlice<T>,
) -> Result<()> {
    stream
        .context()
        .bind_to_thread()
        .map_err(err("cuCtxSetCurrent"))?;
    let (dptr, _sync) = dst.device_ptr_mut(stream);
    // SAFETY: `dst` holds at least `src.len()` elements; `src` stays alive (pinned staging
    // guarded by its event, or pageable memory the driver consumes before returning).
    unsafe { cudarc::driver::result::memcpy_htod_async(dptr, src, stream.cu_stream()) }
        .map_err(err("cuMemcpyHtoDAsync"))
}

impl Ops for CudaOps {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        self.shared_tensor(data, rows, cols)
    }

    fn upload(&self, lane: &Lane, data: &[f32], rows: usize, cols: usize) -> Result<CudaTensor> {
        check_len("upload", data.len(), rows, cols)?;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut t = self.alloc(stream, rows, cols)?;
        if data.is_empty() {
            return Ok(t);
        }
        if size_of_val(data) > MAX_STAGED_BYTES {
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
        let out = if size_of_val(&0f32) * len > MAX_STAGED_BYTES {
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
        // Row-major Y[n, out] = X · Wᵀ is column-major Yᵀ[out, n] = W · Xᵀ. cuBLAS sees the
        // row-major W [out, in] as a column-major [in, out] matrix (so op = T) and X as a
        // column-major [in, n] matrix (op = N); the result is Yᵀ column-major = Y row-major.
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: to_i32(out_dim)?,
            n: to_i32(n)?,
            k: to_i32(k)?,
            alpha: 1.0f32,
            lda: to_i32(k.max(1))?,
            ldb: to_i32(k.max(1))?,
            beta: 0.0f32,
            ldc: to_i32(out_dim)?,
        };
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
        unsafe { l.launch(self.elementwise(n * out_dim)) }.map_err(err("bias_act launch"))?;
        cross.leave()?;
        Ok(y)
    }

    fn dot_interaction(
        &self,
        lane: &Lane,
        x: &CudaTensor,
        pooled: &[CudaTensor],
    ) -> Result<CudaTensor> {
        let (n, d) = x.shape();
        let feats = pooled.len() + 1;
        if feats > MAX_FEATURES {
            return Err(KernelError::Shape(format!(
                "dot_interaction: {feats} features, at most {MAX_FEATURES} supported"
            )));
        }
        for (t, p) in pooled.iter().enumerate() {
            if p.shape() != (n, d) {
                return Err(KernelError::Shape(format!(
                    "dot_interaction: pooled[{t}] is {:?}, x is ({n}, {d})",
                    p.shape()
                )));
            }
        }
        let width = d + feats * (feats - 1) / 2;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = self.alloc(stream, n, width)?;
        if n == 0 || width == 0 {
            return Ok(out);
        }
        let inputs: Vec<&CudaTensor> = std::iter::once(x).chain(pooled.iter()).collect();
        let cross = CrossLane::enter(stream, &inputs)?;
        let mut ptrs = FeaturePtrs {
            p: [0; MAX_FEATURES],
        };
        for (slot, t) in ptrs.p.iter_mut().zip(&inputs) {
            *slot = t.data.device_ptr(stream).0;
        }
        let smem = feats * d * size_of::<f32>();
        let use_smem = i32::from(smem <= MAX_SMEM_BYTES);
        let smem = if use_smem == 1 { smem as u32 } else { 0 };
        let (feats_arg, n_arg, d_arg) = (feats as i32, n as i64, to_i32(d)?);
        let mut l = stream.launch_builder(&self.kernels.dot_interaction);
        l.arg(&ptrs)
            .arg(&feats_arg)
            .arg(&n_arg)
            .arg(&d_arg)
            .arg(&mut out.data)
            .arg(&use_smem);
        // SAFETY: argument types match `dot_interaction_f32`; every feature is [n, d].
        unsafe { l.launch(self.grid(n, 128, smem)) }.map_err(err("dot_interaction launch"))?;
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
        unsafe { l.launch(self.elementwise(n)) }.map_err(err("sigmoid launch"))?;
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
}

/// The activation code the CUDA kernels understand (`COHOST_ACT_*` in elementwise.cu).
fn activation_code(act: Activation) -> i32 {
    match act {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
    }
}
