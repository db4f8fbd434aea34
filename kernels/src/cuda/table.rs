//! Embedding tables on the CUDA backend.

use super::backend::CudaOps;
use super::bag::{check_gather, check_indices};
use super::err;
use super::pinned::{PinnedRefusal, PinnedReservation, pinned_budget};
use super::tensor::CudaTensor;
use crate::{EmbeddingStore, KernelError, Lane, Result, TableMemory, TablePlacement};
use cudarc::driver::{DevicePtr, PinnedHostSlice, sys};

/// A table wholly in device memory, pooled by the `embedding_bag_sum_f32` kernel.
pub struct ResidentTable {
    name: String,
    table: CudaTensor,
}

impl ResidentTable {
    /// Wraps a shared device matrix (from [`CudaOps::resident_table`]) as a table.
    pub(crate) fn new(name: &str, table: CudaTensor) -> Self {
        ResidentTable {
            name: name.to_string(),
            table,
        }
    }
}

impl EmbeddingStore<CudaOps> for ResidentTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn rows(&self) -> usize {
        self.table.rows
    }

    fn dim(&self) -> usize {
        self.table.cols
    }

    fn placement(&self) -> TablePlacement {
        TablePlacement::Resident
    }

    fn bag_sum(
        &self,
        ops: &CudaOps,
        lane: &Lane,
        indices: &[i64],
        bag: usize,
    ) -> Result<CudaTensor> {
        check_indices(&self.name, indices, self.table.rows)?;
        let (ptr, _) = self.table.data.device_ptr(self.table.data.stream());
        ops.bag_sum_at(lane, ptr, self.table.cols, indices, bag)
    }

    fn memory(&self) -> TableMemory {
        TableMemory {
            resident_bytes: (self.table.rows * self.table.cols * size_of::<f32>()) as u64,
            ..TableMemory::default()
        }
    }
}

impl CudaOps {
    /// Copies rows `src_rows[k]` of `src` to rows `dst_rows[k]` of `dst` on `lane`: the
    /// cache fill of an offloaded table on a miss. Refused unless there are as many source as
    /// destination rows, every row lies inside its matrix and the row widths agree.
    pub fn gather_rows(
        &self,
        lane: &Lane,
        src: &MappedHostTable,
        src_rows: &[i64],
        dst: &mut CudaTensor,
        dst_rows: &[i64],
    ) -> Result<()> {
        check_gather((src.rows, src.dim), src_rows, dst.shape(), dst_rows)?;
        // SAFETY: `src` is alive for the call (and waits for every lane before it is
        // freed); its rows, `dim == dst.cols` and `dst`'s rows were checked just above.
        unsafe { self.gather_rows_at(lane, src.device_ptr, src_rows, dst, dst_rows) }
    }
}

/// A table kept in pinned, device-mapped host memory and read by the kernels over the bus
/// (zero copy): for tables that do not fit the slice's memory budget.
///
/// Every bag reads its rows from host RAM; [`super::CachedMappedTable`] adds a device-side
/// cache of hot rows. Its pinned bytes count against [`super::pinned_budget`].
pub struct MappedHostTable {
    name: String,
    rows: usize,
    dim: usize,
    host: PinnedHostSlice<f32>,
    device_ptr: u64,
    /// The table's share of the pinned budget, returned when the table is dropped.
    _reservation: PinnedReservation,
}

/// Reserves the pinned bytes of a `values`-long table named `name` from the process budget.
pub(crate) fn reserve_table(
    name: &str,
    values: usize,
) -> std::result::Result<PinnedReservation, PinnedRefusal> {
    let bytes = (values.max(1) as u64).saturating_mul(size_of::<f32>() as u64);
    pinned_budget().reserve(bytes, &format!("table '{name}'"))
}

impl MappedHostTable {
    /// Copies `data` (`rows x dim`) into pinned host memory mapped into `ops`'s context,
    /// reserved against the process-wide [`super::pinned_budget`] (a refusal is an error).
    pub fn new(ops: &CudaOps, name: &str, data: &[f32], rows: usize, dim: usize) -> Result<Self> {
        let reservation = reserve_table(name, data.len())
            .map_err(|refusal| KernelError::Unavailable(refusal.to_string()))?;
        Self::with_reservation(ops, name, data, rows, dim, reservation)
    }

    /// As [`MappedHostTable::new`], holding pinned bytes already reserved for it.
    pub(crate) fn with_reservation(
        ops: &CudaOps,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
        reservation: PinnedReservation,
    ) -> Result<Self> {
        if rows.checked_mul(dim) != Some(data.len()) {
            return Err(KernelError::Shape(format!(
                "table '{name}': {} values do not make [{rows}, {dim}]",
                data.len()
            )));
        }
        let ctx = ops.context();
        let flags = sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE;
        // SAFETY: filled right below, before any kernel can read it.
        let mut host = unsafe { ctx.alloc_pinned_with_flags::<f32>(data.len().max(1), flags) }
            .map_err(err("cuMemHostAlloc(DEVICEMAP)"))?;
        let slice = host.as_mut_slice().map_err(err("pinned table"))?;
        slice[..data.len()].copy_from_slice(data);
        let mut device_ptr = 0u64;
        ctx.bind_to_thread().map_err(err("cuCtxSetCurrent"))?;
        // SAFETY: `host` is a live DEVICEMAP allocation of this context.
        unsafe {
            let p = host.as_mut_ptr().map_err(err("pinned table"))?;
            sys::cuMemHostGetDevicePointer_v2(&mut device_ptr, p.cast(), 0)
                .result()
                .map_err(err("cuMemHostGetDevicePointer"))?;
        }
        Ok(MappedHostTable {
            name: name.to_string(),
            rows,
            dim,
            host,
            device_ptr,
            _reservation: reservation,
        })
    }

    /// The device address of the mapped table.
    pub fn device_ptr(&self) -> u64 {
        self.device_ptr
    }
}

impl EmbeddingStore<CudaOps> for MappedHostTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn placement(&self) -> TablePlacement {
        TablePlacement::HostOffloaded
    }

    fn bag_sum(
        &self,
        ops: &CudaOps,
        lane: &Lane,
        indices: &[i64],
        bag: usize,
    ) -> Result<CudaTensor> {
        check_indices(&self.name, indices, self.rows)?;
        ops.bag_sum_at(lane, self.device_ptr, self.dim, indices, bag)
    }

    fn memory(&self) -> TableMemory {
        TableMemory {
            host_bytes: self.host.num_bytes() as u64,
            ..TableMemory::default()
        }
    }
}

impl Drop for MappedHostTable {
    fn drop(&mut self) {
        // Kernels may still read the mapped memory on any lane: wait for all of them
        // before the pinned allocation is released.
        let _ = self.host.context().synchronize();
    }
}
