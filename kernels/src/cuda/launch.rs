//! What the launches of [`CudaOps`](super::CudaOps) share: cross-lane ordering, shape and
//! argument checks, and asynchronous host-to-device copies.

use super::err;
use super::tensor::CudaTensor;
use crate::{KernelError, Result};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut, DeviceRepr};
use std::sync::Arc;

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

/// Checks that `len` values make a `rows x cols` matrix.
pub(crate) fn check_len(what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(KernelError::Shape(format!(
            "{what}: {len} values do not make a [{rows}, {cols}] matrix"
        )));
    }
    Ok(())
}

/// `v` as the i32 a kernel or cuBLAS argument takes, or a shape error.
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
