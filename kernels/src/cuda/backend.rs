//! [`CudaOps`]: one CUDA context with its compiled kernels, its lanes and launch shapes.

use super::lane::{LaneRegistry, LaneState};
use super::launch::check_len;
use super::nvrtc::{Kernels, kernels_for};
use super::probe::{guard, open_device};
use super::tensor::{CudaTensor, device_len};
use super::{Libraries, err};
use crate::{KernelError, Lane, LaneKind, Result};
use cudarc::driver::{CudaContext, CudaStream, sys::CUdevice_attribute};
use std::sync::Arc;

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

    /// Opens device 0 again after `old` lost its context to a sticky fault: forgets `old`'s
    /// cached kernels, drops it, resets the primary context (destroying what is left of
    /// it, e.g. streams other threads still hold) and builds the backend afresh, kernels
    /// recompiled. `old` None: an earlier attempt already did the first two steps.
    pub fn reopen(old: Option<Arc<CudaOps>>) -> Result<Self> {
        if let Some(old) = old {
            super::nvrtc::forget_kernels(&old.ctx);
            let device = old.ctx.cu_device();
            drop(old);
            guard("cuDevicePrimaryCtxReset", || {
                // SAFETY: no model holds device state of this context any more (the runtime
                // released them all); the handles left are streams it never uses again.
                unsafe { cudarc::driver::sys::cuDevicePrimaryCtxReset_v2(device) }
                    .result()
                    .map_err(|e| format!("cuDevicePrimaryCtxReset: {e:?}"))
            })
            .map_err(KernelError::Cuda)?;
        }
        Self::open()
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
        let stream = guard("cuStreamCreateWithPriority", || {
            self.ctx
                .new_stream_with_priority(priority)
                .map_err(|e| format!("cuStreamCreateWithPriority: {e:?}"))
        })
        .map_err(KernelError::Cuda)?;
        let lane = Lane {
            index,
            kind: LaneKind::Cuda(stream),
            priority: crate::LanePriority::Normal,
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
        // SAFETY: overwritten by the copy below (an empty matrix's one slot is never read).
        let mut slice = unsafe { stream.alloc::<f32>(device_len(data.len())) }
            .map_err(err("cuMemAllocAsync"))?;
        if !data.is_empty() {
            stream
                .memcpy_htod(data, &mut slice)
                .map_err(err("weight upload"))?;
        }
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
        let len = rows
            .checked_mul(cols)
            .ok_or_else(|| KernelError::Shape(format!("[{rows}, {cols}] overflows usize")))?;
        // SAFETY: every caller fully overwrites the buffer before reading it.
        let data =
            unsafe { stream.alloc::<f32>(device_len(len)) }.map_err(err("cuMemAllocAsync"))?;
        Ok(CudaTensor {
            data,
            rows,
            cols,
            shared: None,
        })
    }

    /// Streaming multiprocessors of the device (at least 1), for [`super::grid`].
    pub(crate) fn sm_count(&self) -> u32 {
        self.sm_count
    }
}
