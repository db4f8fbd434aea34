//! Per-lane state: each CUDA stream a batch may run on gets its own cuBLAS handle and its
//! own rings of pinned staging buffers for uploads and downloads.

use super::err;
use super::probe::guard;
use super::ring::{SlotRing, UPLOAD_SLOTS, stages};
use crate::{KernelError, Lane, LaneKind, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaStream, DeviceRepr, PinnedHostSlice, ValidAsZeroBits, sys,
};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// A small ring of reusable page-locked host buffers, each guarded by the event of the
/// last copy through it (the slot choice is [`SlotRing`]'s): filling the next upload waits
/// for an earlier copy only when every buffer's copy is still pending.
pub(crate) struct Staging<T> {
    ring: SlotRing,
    bufs: Vec<Option<PinnedHostSlice<T>>>,
    done: Vec<CudaEvent>,
    /// The slot lent by the last [`Staging::take`].
    current: usize,
    flags: u32,
}

impl<T: DeviceRepr + ValidAsZeroBits> Staging<T> {
    fn new(ctx: &Arc<CudaContext>, slots: usize, flags: u32) -> Result<Self> {
        let ring = SlotRing::new(slots);
        let done = (0..ring.len())
            .map(|_| ctx.new_event(None).map_err(err("cuEventCreate")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Staging {
            bufs: (0..ring.len()).map(|_| None).collect(),
            ring,
            done,
            current: 0,
            flags,
        })
    }

    /// Whether a copy of `len` elements goes through staging (larger ones bypass it).
    pub(crate) fn stages(len: usize) -> bool {
        stages(len, size_of::<T>())
    }

    /// Lends the first `len` slots of a buffer no pending copy uses (waiting for the oldest
    /// copy only when all are pending).
    pub(crate) fn take(&mut self, ctx: &Arc<CudaContext>, len: usize) -> Result<&mut [T]> {
        let done = &self.done;
        let choice = self.ring.choose(len, |slot| {
            done[slot].try_is_complete().map_err(err("cuEventQuery"))
        })?;
        let slot = choice.slot;
        if choice.wait {
            self.done[slot]
                .synchronize()
                .map_err(err("cuEventSynchronize"))?;
        }
        if let Some(cap) = choice.grow_to {
            self.bufs[slot] = None;
            // SAFETY: the contents are written by the caller before any copy reads them.
            match unsafe { ctx.alloc_pinned_with_flags::<T>(cap, self.flags) } {
                Ok(buf) => self.bufs[slot] = Some(buf),
                Err(e) => {
                    self.ring.forget(slot);
                    return Err(err("cuMemHostAlloc")(e));
                }
            }
        }
        self.current = slot;
        let buf = self.bufs[slot]
            .as_mut()
            .expect("the ring allocates before use");
        let slice = buf.as_mut_slice().map_err(err("pinned buffer"))?;
        Ok(&mut slice[..len])
    }

    /// The first `len` slots, as filled by the caller after [`Staging::take`].
    pub(crate) fn filled(&self, len: usize) -> Result<&[T]> {
        let buf = self.bufs[self.current]
            .as_ref()
            .expect("take() allocates the buffer");
        Ok(&buf.as_slice().map_err(err("pinned buffer"))?[..len])
    }

    /// Records that an asynchronous copy through the lent buffer was just issued on `stream`.
    pub(crate) fn issued(&mut self, stream: &CudaStream) -> Result<()> {
        self.done[self.current]
            .record(stream)
            .map_err(err("cuEventRecord"))?;
        self.ring.issued(self.current);
        Ok(())
    }
}

impl<T> Drop for Staging<T> {
    fn drop(&mut self) {
        for (slot, done) in self.done.iter().enumerate() {
            if self.ring.is_pending(slot) {
                // The pinned buffer must outlive the copy reading or writing it.
                let _ = done.synchronize();
            }
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
            up_f32: Mutex::new(Staging::new(&ctx, UPLOAD_SLOTS, wc)?),
            up_i64: Mutex::new(Staging::new(&ctx, UPLOAD_SLOTS, wc)?),
            // A download synchronises before the host reads it: one buffer is enough.
            down_f32: Mutex::new(Staging::new(&ctx, 1, 0)?),
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
