//! The embedding-table launches of [`CudaOps`]: index checks and upload, bag-sum, cache-fill
//! gather.

use super::backend::CudaOps;
use super::err;
use super::lane::{LaneState, MAX_STAGED_BYTES};
use super::launch::{CrossLane, copy_htod, to_i32};
use super::tensor::CudaTensor;
use crate::{KernelError, Lane, Result};
use cudarc::driver::{CudaSlice, PushKernelArg};

/// Checks every index against `rows` (an out-of-range read on the device would be a sticky
/// context error that fails every tenant, so it is refused on the host first).
pub(crate) fn check_indices(table: &str, indices: &[i64], rows: usize) -> Result<()> {
    match indices.iter().find(|&&i| i < 0 || i as u64 >= rows as u64) {
        Some(&index) => Err(KernelError::IndexOutOfRange {
            table: table.to_string(),
            index,
            rows,
        }),
        None => Ok(()),
    }
}

impl CudaOps {
    /// Copies `indices` to a fresh device buffer on the lane (through pinned staging).
    pub(crate) fn upload_indices(&self, st: &LaneState, indices: &[i64]) -> Result<CudaSlice<i64>> {
        let stream = &st.stream;
        if indices.is_empty() || size_of_val(indices) > MAX_STAGED_BYTES {
            return stream.clone_htod(indices).map_err(err("index upload"));
        }
        // SAFETY: fully overwritten by the copy below.
        let mut dst =
            unsafe { stream.alloc::<i64>(indices.len()) }.map_err(err("cuMemAllocAsync"))?;
        let mut staging = st.up_i64.lock();
        staging
            .take(&self.ctx, indices.len())?
            .copy_from_slice(indices);
        copy_htod(stream, staging.filled(indices.len())?, &mut dst)?;
        staging.issued(stream)?;
        Ok(dst)
    }

    /// `sum` pooling over bags from a table at device address `table` (device memory or
    /// mapped host memory); indices must already be checked against the table's rows.
    pub(crate) fn bag_sum_at(
        &self,
        lane: &Lane,
        table: u64,
        dim: usize,
        indices: &[i64],
        bag: usize,
    ) -> Result<CudaTensor> {
        if bag == 0 || !indices.len().is_multiple_of(bag) {
            return Err(KernelError::Shape(format!(
                "embedding bag: {} indices do not split into bags of {bag}",
                indices.len()
            )));
        }
        let n = indices.len() / bag;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = self.alloc(stream, n, dim)?;
        if n == 0 || dim == 0 {
            return Ok(out);
        }
        let idx = self.upload_indices(&st, indices)?;
        let (n_arg, bag_arg, dim_arg) = (n as i64, to_i32(bag)?, to_i32(dim)?);
        let threads = (dim.next_multiple_of(32)).clamp(32, 256) as u32;
        let cfg = self.grid(n, threads, 0);
        let mut b = stream.launch_builder(&self.kernels.embedding_bag_sum);
        b.arg(&table)
            .arg(&idx)
            .arg(&n_arg)
            .arg(&bag_arg)
            .arg(&dim_arg)
            .arg(&mut out.data);
        // SAFETY: argument types match `embedding_bag_sum_f32`; indices were validated.
        unsafe { b.launch(cfg) }.map_err(err("embedding_bag_sum launch"))?;
        Ok(out)
    }

    /// Copies rows `src_rows[k]` of the `? x dim` table at device address `src` (device
    /// memory or mapped host memory) to rows `dst_rows[k]` of `dst`, on `lane`: the cache
    /// fill of an offloaded table on a miss. Row numbers are checked against `src_len_rows`
    /// and `dst`.
    pub fn gather_rows(
        &self,
        lane: &Lane,
        src: u64,
        src_len_rows: usize,
        src_rows: &[i64],
        dst: &mut CudaTensor,
        dst_rows: &[i64],
    ) -> Result<()> {
        if src_rows.len() != dst_rows.len() {
            return Err(KernelError::Shape(format!(
                "gather_rows: {} source rows but {} destination rows",
                src_rows.len(),
                dst_rows.len()
            )));
        }
        check_indices("gather source", src_rows, src_len_rows)?;
        check_indices("gather destination", dst_rows, dst.rows)?;
        if src_rows.is_empty() || dst.cols == 0 {
            return Ok(());
        }
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let cross = CrossLane::enter(stream, &[&*dst])?;
        let from = self.upload_indices(&st, src_rows)?;
        let to = self.upload_indices(&st, dst_rows)?;
        let (count, dim) = (src_rows.len() as i64, to_i32(dst.cols)?);
        let threads = (dst.cols.next_multiple_of(32)).clamp(32, 256) as u32;
        let cfg = self.grid(src_rows.len(), threads, 0);
        let mut b = stream.launch_builder(&self.kernels.gather_rows);
        b.arg(&src)
            .arg(&from)
            .arg(&to)
            .arg(&count)
            .arg(&dim)
            .arg(&mut dst.data);
        // SAFETY: argument types match `gather_rows_f32`; all rows were checked above.
        unsafe { b.launch(cfg) }.map_err(err("gather_rows launch"))?;
        cross.leave()
    }
}
