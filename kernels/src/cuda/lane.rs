//! Per-lane state: each CUDA stream a batch may run on gets its own cuBLAS handle and its
//! own pinned staging buffers for uploads and downloads.

use super::err;
use super::probe::guard;
use crate::{KernelError, Lane, LaneKind, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaStream, DeviceRepr, PinnedHostSlice, ValidAsZeroBits, sys,
};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// Copies larger than this bypass the pinned staging buffer (the driver stages them itself),
/// so a lane never pins more than a few of these.
pub(crate) const MAX_STAGED_BYTES: usize = 16 << 20;

/// A reusable page-locked host buffer plus the event of the last copy that used it.
pub(crate) struct Staging<T> {
    buf: Option<PinnedHostSlice<T>>,
    done: CudaEvent,
    pending: bool,
    flags: u32,
}

impl<T: DeviceRepr + ValidAsZeroBits> Staging<T> {
    fn new(ctx: &Arc<CudaContext>, flags: u32) -> Result<Self> {
        Ok(Staging {
            buf: None,
            done: ctx.new_event(None).map_err(err("cuEventCreate"))?,
            pending: false,
            flags,
        })
    }

    /// Waits for the previous copy through this buffer, then lends its first `len` slots.
    pub(crate) fn take(&mut self, ctx: &Arc<CudaContext>, len: usize) -> Result<&mut [T]> {
        self.wait()?;
        if self.buf.as_ref().is_none_or(|b| b.len() < len) {
            self.buf = None;
            let cap = len.next_power_of_two().max(4096);
            // SAFETY: the contents are written by the caller before any copy reads them.
            let buf = unsafe { ctx.alloc_pinned_with_flags::<T>(cap, self.flags) }
                .map_err(err("cuMemHostAlloc"))?;
            self.buf = Some(buf);
        }
        let buf = self.buf.as_mut().expect("allocated above");
        let slice = buf.as_mut_slice().map_err(err("pinned buffer"))?;
        Ok(&mut slice[..len])
    }

    /// The first `len` slots, as filled by the caller after [`Staging::take`].
    pub(crate) fn filled(&self, len: usize) -> Result<&[T]> {
        let buf = self.buf.as_ref().expect("take() allocates the buffer");
        Ok(&buf.as_slice().map_err(err("pinned buffer"))?[..len])
    }

    /// Records that an asynchronous copy through the buffer was just issued on `stream`.
    pub(crate) fn issued(&mut self, stream: &CudaStream) -> Result<()> {
        self.done.record(stream).map_err(err("cuEventRecord"))?;
        self.pending = true;
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        if self.pending {
            self.done.synchronize().map_err(err("cuEventSynchronize"))?;
            self.pending = false;
        }
        Ok(())
    }
}

impl<T> Drop for Staging<T> {
    fn drop(&mut self) {
        if self.pending {
            // The pinned buffer must outlive the copy reading or writing it.
            let _ = self.done.synchronize();
        }
    }
}

/// Everything one lane (stream) owns.
pub(crate) struct LaneState {
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    pub(crate) up_f32: Mutex<Staging<f32>>,
    pub(crate) up_i64: Mutex<Staging<i64>>,
    pub(crate) down_f32: Mutex<Staging<f32>>,
}

impl LaneState {
    fn new(stream: Arc<CudaStream>) -> Result<Self> {
        let ctx = stream.context().clone();
        let blas = CudaBlas::new(stream.clone()).map_err(err("cublasCreate"))?;
        // Uploads: write-combined (the host only writes them). Downloads: cached, host reads.
        let wc = sys::CU_MEMHOSTALLOC_WRITECOMBINED;
        Ok(LaneState {
            up_f32: Mutex::new(Staging::new(&ctx, wc)?),
            up_i64: Mutex::new(Staging::new(&ctx, wc)?),
            down_f32: Mutex::new(Staging::new(&ctx, 0)?),
            blas,
            stream,
        })
    }
}

/// The lanes a [`super::CudaOps`] has seen, keyed by raw stream handle.
pub(crate) struct LaneRegistry {
    lanes: RwLock<HashMap<usize, Arc<LaneState>>>,
}

impl LaneRegistry {
    pub(crate) fn new() -> Self {
        LaneRegistry {
            lanes: RwLock::new(HashMap::new()),
        }
    }

    /// The state of `lane`'s stream, created on first sight (a stream made elsewhere works).
    pub(crate) fn get(&self, ctx: &Arc<CudaContext>, lane: &Lane) -> Result<Arc<LaneState>> {
        let LaneKind::Cuda(stream) = &lane.kind else {
            return Err(KernelError::Unavailable(format!(
                "{lane:?} is a CPU lane; the CUDA backend needs a CUDA stream lane"
            )));
        };
        if stream.context().cu_ctx() != ctx.cu_ctx() {
            return Err(KernelError::Cuda(format!(
                "{lane:?} belongs to another CUDA context than this backend's"
            )));
        }
        let key = stream.cu_stream() as usize;
        if let Some(state) = self.lanes.read().get(&key) {
            return Ok(state.clone());
        }
        let mut lanes = self.lanes.write();
        if let Some(state) = lanes.get(&key) {
            return Ok(state.clone());
        }
        // The first cuBLAS call (cublasCreate) happens here: guard it like the probe, so a
        // missing symbol in an old libcublas is an error, not a panic.
        let state = guard("lane setup (cublasCreate)", || {
            LaneState::new(stream.clone()).map_err(|e| e.to_string())
        })
        .map_err(KernelError::Cuda)?;
        let state = Arc::new(state);
        lanes.insert(key, state.clone());
        Ok(state)
    }

    /// Makes `stream` wait for the work queued so far on every known lane (host does not
    /// block). Used before freeing a weight any lane may still be reading.
    pub(crate) fn order_after_all_lanes(&self, stream: &CudaStream) {
        for state in self.lanes.read().values() {
            if state.stream.cu_stream() == stream.cu_stream() {
                continue;
            }
            match state.stream.record_event(None) {
                Ok(ev) => {
                    if stream.wait(&ev).is_err() {
                        let _ = state.stream.synchronize();
                    }
                }
                Err(_) => {
                    let _ = state.stream.synchronize();
                }
            }
        }
    }
}
