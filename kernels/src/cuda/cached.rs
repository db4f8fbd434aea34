//! [`CachedMappedTable`]: an offloaded table on the CUDA backend — every row in pinned,
//! device-mapped host memory, hot rows in a cache of slots in device memory.
//!
//! Per batch, on the host: [`plan_cached_batch`] dedupes the indices, looks each row up in
//! the [`SlotMap`] (the same slot map and LRU/LFU policies as the CPU cache), admits the
//! misses and builds a per-index source (cache slot or host row). One launch of
//! `embedding_bag_cached_f32` then pools hits from the device slots and misses from mapped
//! host memory, and copies the missed rows into their new slots.

use super::backend::CudaOps;
use super::err;
use super::grid;
use super::launch::to_i32;
use super::table::{MappedHostTable, reserve_table};
use super::tensor::CudaTensor;
use crate::offload::{CacheConfig, CacheCounters, SlotMap, plan_cached_batch};
use crate::table::check_bags;
use crate::{EmbeddingStore, Lane, Result, TableMemory, TablePlacement};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, PushKernelArg};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct CacheState {
    slots: SlotMap,
    /// The stream of the last launch that read or filled the slots: the next launch on
    /// another lane waits for it, so slot reads and fills of two lanes never overlap.
    last: Option<Arc<CudaStream>>,
}

/// An offloaded table served on the device: mapped host rows plus a device hot-row cache.
pub struct CachedMappedTable {
    host: MappedHostTable,
    /// `capacity x dim` slots in device memory.
    slots: CudaSlice<f32>,
    slots_ptr: u64,
    capacity: usize,
    state: Mutex<CacheState>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl CachedMappedTable {
    /// Copies `data` (`rows x dim`) into pinned mapped memory and allocates a device cache
    /// of `cache.capacity_rows` rows (clamped to `1..=rows`) evicting by `cache.policy`.
    pub fn new(
        ops: &CudaOps,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
        cache: CacheConfig,
    ) -> Result<Self> {
        let host = MappedHostTable::new(ops, name, data, rows, dim)?;
        Self::around(ops, host, rows, dim, cache)
    }

    /// As [`CachedMappedTable::new`], or `Ok(None)` (with a warning) when the process-wide
    /// pinned budget refuses the table's rows: the caller then serves it from the host tier.
    pub(crate) fn within_budget(
        ops: &CudaOps,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
        cache: CacheConfig,
    ) -> Result<Option<Self>> {
        let reservation = match reserve_table(name, data.len()) {
            Ok(r) => r,
            Err(refusal) => {
                tracing::warn!(
                    "{refusal}; serving it from host memory (host-side cache and pooling)"
                );
                return Ok(None);
            }
        };
        let host = MappedHostTable::with_reservation(ops, name, data, rows, dim, reservation)?;
        Self::around(ops, host, rows, dim, cache).map(Some)
    }

    /// Adds a device cache of `cache.capacity_rows` slots around a mapped table.
    fn around(
        ops: &CudaOps,
        host: MappedHostTable,
        rows: usize,
        dim: usize,
        cache: CacheConfig,
    ) -> Result<Self> {
        let capacity = cache.capacity_rows.clamp(1, rows.max(1));
        let stream = ops.context().default_stream();
        let slots = stream
            .alloc_zeros::<f32>((capacity * dim).max(1))
            .map_err(err("cuMemAlloc (cache slots)"))?;
        let slots_ptr = slots.device_ptr(&stream).0;
        Ok(CachedMappedTable {
            host,
            slots_ptr,
            slots,
            capacity,
            state: Mutex::new(CacheState {
                slots: SlotMap::new(capacity, cache.policy),
                last: None,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    /// Hit, miss and eviction counts since the table was built.
    pub fn counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

impl EmbeddingStore<CudaOps> for CachedMappedTable {
    fn name(&self) -> &str {
        EmbeddingStore::<CudaOps>::name(&self.host)
    }

    fn rows(&self) -> usize {
        EmbeddingStore::<CudaOps>::rows(&self.host)
    }

    fn dim(&self) -> usize {
        EmbeddingStore::<CudaOps>::dim(&self.host)
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
        let (name, rows, dim) = (self.name(), self.rows(), self.dim());
        let n = check_bags(name, indices, rows, bag)?;
        let st = ops.lane_state(lane)?;
        let stream = &st.stream;
        let mut out = ops.alloc(stream, n, dim)?;
        if n == 0 || dim == 0 {
            return Ok(out);
        }
        // Held through the launch: plans and launches of this table are issued in one order.
        let mut state = self.state.lock();
        let plan = plan_cached_batch(&mut state.slots, indices);
        if let Some(prev) = &state.last
            && prev.cu_stream() != stream.cu_stream()
        {
            stream.join(prev).map_err(err("cache cross-lane wait"))?;
        }
        let src = ops.upload_indices(&st, &plan.src)?;
        let fill_rows = ops.upload_indices(&st, &plan.fill_rows)?;
        let fill_slots = ops.upload_indices(&st, &plan.fill_slots)?;
        let (n_arg, bag_arg, dim_arg) = (n as i64, to_i32(bag)?, to_i32(dim)?);
        let n_fill = plan.fill_rows.len() as i64;
        let host_ptr = self.host.device_ptr();
        let cfg = grid::rows(n.max(plan.fill_rows.len()), dim, ops.sm_count()).into();
        let mut b = stream.launch_builder(&ops.kernels.embedding_bag_cached);
        b.arg(&host_ptr)
            .arg(&self.slots_ptr)
            .arg(&src)
            .arg(&n_arg)
            .arg(&bag_arg)
            .arg(&dim_arg)
            .arg(&fill_rows)
            .arg(&fill_slots)
            .arg(&n_fill)
            .arg(&mut out.data);
        // SAFETY: argument types match `embedding_bag_cached_f32`; host rows were checked
        // against the table, slots come from a SlotMap of `capacity` slots.
        unsafe { b.launch(cfg) }.map_err(err("embedding_bag_cached launch"))?;
        state.last = Some(stream.clone());
        drop(state);
        self.hits.fetch_add(plan.hits, Ordering::Relaxed);
        self.misses.fetch_add(plan.misses, Ordering::Relaxed);
        self.evictions.fetch_add(plan.evictions, Ordering::Relaxed);
        Ok(out)
    }

    fn memory(&self) -> TableMemory {
        let c = self.counters();
        TableMemory {
            resident_bytes: 0,
            cache_bytes: (self.capacity * self.dim() * size_of::<f32>()) as u64,
            host_bytes: EmbeddingStore::<CudaOps>::memory(&self.host).host_bytes,
            mapped_bytes: 0,
            cache_capacity_rows: self.capacity as u64,
            hits: c.hits,
            misses: c.misses,
            evictions: c.evictions,
        }
    }
}

impl Drop for CachedMappedTable {
    fn drop(&mut self) {
        // Lanes may still read or fill the slots: wait for all of them before the slot
        // buffer's free is queued (the mapped host table waits the same way).
        let _ = self.slots.context().synchronize();
    }
}
