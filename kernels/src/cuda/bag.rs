//! The embedding-table launches of [`CudaOps`]: index checks and upload, bag-sum, cache-fill
//! gather.

use super::backend::CudaOps;
use super::err;
use super::grid;
use super::lane::{LaneState, Staging};
use super::launch::{CrossLane, copy_htod, to_i32};
use super::tensor::{CudaTensor, device_len};
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

/// How many bags of `bag` indices `indices` holds; an error naming `what` when they do not split.
pub(crate) fn bag_count(
    what: std::fmt::Arguments<'_>,
    indices: &[i64],
    bag: usize,
) -> Result<usize> {
    if bag == 0 || !indices.len().is_multiple_of(bag) {
        return Err(KernelError::Shape(format!(
            "{what}: {} indices do not split into bags of {bag}",
            indices.len()
        )));
    }
    Ok(indices.len() / bag)
}

impl CudaOps {
    /// Copies `indices` to a fresh device buffer on the lane (through pinned staging).
    pub(crate) fn upload_indices(&self, st: &LaneState, indices: &[i64]) -> Result<CudaSlice<i64>> {
        let stream = &st.stream;
        // SAFETY: fully overwritten by the copy below (an empty list's one slot is unread).
        let mut dst = unsafe { stream.alloc::<i64>(device_len(indices.len())) }
            .map_err(err("cuMemAllocAsync"))?;
        if indices.is_empty() {
            return Ok(dst);
        }
        if !Staging::<i64>::stages(indices.len()) {
            copy_htod(stream, indices, &mut dst)?;
            return Ok(dst);
        }
        let mut staging = st.up_i64.lock();
        staging
            .take(&self.ctx, indices.len())?
            .copy_from_slice(indices);
        copy_htod(stream, staging.filled(indices.len())?, &mut dst)?;
        staging.issued(stream)?;
        Ok(dst)
    }

    /// `sum` pooling over bags from the `? x dim` table at device address `table` with no
    /// index check: the raw-address launch behind every table, public so the GPU suite can
    /// inject a device fault with it.
    ///
    /// # Safety
    ///
    /// Every index must be a row of a live table of `dim` columns at `table`. An index
    /// outside it makes the kernel read out of bounds: an illegal-address fault that loses
    /// the whole context (sticky, see [`CudaOps::batch_boundary`]).
    #[doc(hidden)]
    pub unsafe fn bag_sum_raw(
        &self,
        lane: &Lane,
        table: u64,
        dim: usize,
        indices: &[i64],
        bag: usize,
    ) -> Result<CudaTensor> {
        self.bag_sum_at(lane, table, dim, indices, bag)
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
        let n = bag_count(format_args!("embedding bag"), indices, bag)?;
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = self.alloc(stream, n, dim)?;
        if n == 0 || dim == 0 {
            return Ok(out);
        }
        let idx = self.upload_indices(&st, indices)?;
        let (n_arg, bag_arg, dim_arg) = (n as i64, to_i32(bag)?, to_i32(dim)?);
        let cfg = grid::rows(n, dim, self.sm_count()).into();
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

    /// Copies rows `src_rows[k]` of the `? x dst.cols` table at device address `src` to rows
    /// `dst_rows[k]` of `dst`, on `lane`. The safe entry point is
    /// [`CudaOps::gather_rows`], which takes the table itself.
    ///
    /// # Safety
    ///
    /// `src` must be the device address of a live table of `dst.cols` columns, and
    /// [`check_gather`] must have accepted the rows against that table and `dst`: the kernel
    /// reads `src + src_rows[k] * dst.cols` unchecked.
    pub(crate) unsafe fn gather_rows_at(
        &self,
        lane: &Lane,
        src: u64,
        src_rows: &[i64],
        dst: &mut CudaTensor,
        dst_rows: &[i64],
    ) -> Result<()> {
        if src_rows.is_empty() || dst.cols == 0 {
            return Ok(());
        }
        let st = self.lane_state(lane)?;
        let stream = &st.stream;
        let cross = CrossLane::enter(stream, &[&*dst])?;
        let from = self.upload_indices(&st, src_rows)?;
        let to = self.upload_indices(&st, dst_rows)?;
        let (count, dim) = (src_rows.len() as i64, to_i32(dst.cols)?);
        let cfg = grid::rows(src_rows.len(), dst.cols, self.sm_count()).into();
        let mut b = stream.launch_builder(&self.kernels.gather_rows);
        b.arg(&src)
            .arg(&from)
            .arg(&to)
            .arg(&count)
            .arg(&dim)
            .arg(&mut dst.data);
        // SAFETY: argument types match `gather_rows_f32`; rows checked (the caller's contract).
        unsafe { b.launch(cfg) }.map_err(err("gather_rows launch"))?;
        cross.leave()
    }
}

/// Checks a row gather from a `src = (rows, dim)` table into a `dst = (rows, cols)` matrix:
/// as many source as destination rows, every row inside its matrix, and `dim == cols`.
pub(crate) fn check_gather(
    src: (usize, usize),
    src_rows: &[i64],
    dst: (usize, usize),
    dst_rows: &[i64],
) -> Result<()> {
    if src_rows.len() != dst_rows.len() {
        return Err(KernelError::Shape(format!(
            "gather_rows: {} source rows but {} destination rows",
            src_rows.len(),
            dst_rows.len()
        )));
    }
    if src.1 != dst.1 {
        return Err(KernelError::Shape(format!(
            "gather_rows: source rows have {} values, destination rows {}",
            src.1, dst.1
        )));
    }
    check_indices("gather source", src_rows, src.0)?;
    check_indices("gather destination", dst_rows, dst.0)
}

#[cfg(test)]
mod tests {
    use super::{check_gather, check_indices};
    use crate::KernelError;

    #[test]
    fn indices_must_lie_inside_the_table() {
        assert!(check_indices("t", &[0, 9], 10).is_ok());
        assert!(check_indices("t", &[], 0).is_ok());
        for bad in [10, -1, i64::MAX, i64::MIN] {
            assert_eq!(
                check_indices("t", &[0, bad], 10),
                Err(KernelError::IndexOutOfRange {
                    table: "t".into(),
                    index: bad,
                    rows: 10
                })
            );
        }
        assert!(check_indices("t", &[0], 0).is_err());
    }

    #[test]
    fn a_gather_is_checked_against_both_matrices() {
        let (src, dst) = ((100, 8), (4, 8));
        assert!(check_gather(src, &[99, 3], dst, &[2, 0]).is_ok());
        assert!(check_gather(src, &[], dst, &[]).is_ok());
        let oob = |r: Result<(), KernelError>, table: &str, index: i64, rows: usize| {
            assert_eq!(
                r,
                Err(KernelError::IndexOutOfRange {
                    table: table.into(),
                    index,
                    rows
                })
            )
        };
        oob(
            check_gather(src, &[100], dst, &[0]),
            "gather source",
            100,
            100,
        );
        oob(
            check_gather(src, &[-1], dst, &[0]),
            "gather source",
            -1,
            100,
        );
        oob(
            check_gather(src, &[0], dst, &[4]),
            "gather destination",
            4,
            4,
        );
        // Counts and row widths must agree.
        assert!(matches!(
            check_gather(src, &[0, 1], dst, &[0]),
            Err(KernelError::Shape(_))
        ));
        assert!(matches!(
            check_gather((100, 16), &[0], dst, &[0]),
            Err(KernelError::Shape(_))
        ));
    }
}
