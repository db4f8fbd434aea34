//! The CUDA backend's matrix: a device buffer plus its shape.

use super::lane::LaneRegistry;
use cudarc::driver::CudaSlice;
use std::sync::Arc;

/// Elements to allocate for a buffer of `elems` values: never 0, because `cuMemAlloc` and
/// `cuMemAllocAsync` refuse 0 bytes (`CUDA_ERROR_INVALID_VALUE`); an empty tensor or index
/// list holds one slot no kernel reads.
pub(crate) fn device_len(elems: usize) -> usize {
    elems.max(1)
}

/// A `rows x cols` row-major f32 matrix in device memory.
///
/// A per-batch tensor lives on the stream (lane) that made it and is freed, stream-ordered,
/// on that stream. A shared tensor (a weight or a resident table) lives on the context's
/// default stream; before it is freed the default stream is made to wait for the work
/// already queued on every lane, so no lane can still be reading it.
pub struct CudaTensor {
    pub(crate) data: CudaSlice<f32>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// `Some` for weights and tables: the lanes that may read it.
    pub(crate) shared: Option<Arc<LaneRegistry>>,
}

impl CudaTensor {
    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The device buffer: `rows * cols` values, row-major (one unused value when empty, see
    /// [`device_len`]).
    pub fn slice(&self) -> &CudaSlice<f32> {
        &self.data
    }

    /// Whether this is a weight/table shared by every lane (as opposed to per-batch data).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_shared() { "shared" } else { "lane" };
        write!(f, "CudaTensor([{}, {}], {kind})", self.rows, self.cols)
    }
}

impl Drop for CudaTensor {
    fn drop(&mut self) {
        if let Some(lanes) = &self.shared {
            // Runs before `data` is dropped, i.e. before cudarc queues the free on the
            // default stream.
            lanes.order_after_all_lanes(self.data.stream());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::device_len;

    #[test]
    fn empty_buffers_still_allocate_one_element() {
        assert_eq!(device_len(0), 1);
        assert_eq!(device_len(1), 1);
        assert_eq!(device_len(4096), 4096);
    }
}
