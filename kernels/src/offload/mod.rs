//! Offloaded embedding tables: the full table in a host tier (a copy in RAM, or the
//! memory-mapped weights file) and a bounded cache of hot rows in the device tier.
//!
//! ```text
//! bag_sum(indices) ─▶ dedup keys ─▶ RowCache::gather ─ hit ─▶ copy from slot
//!                                                    └ miss ─▶ RowSource::read_row ─▶ admit (evict by policy)
//!                  ─▶ sum-pool the gathered rows in the original order ─▶ [n, dim]
//! ```
//!
//! The pooled result is bit-identical to a resident table's: the same rows are summed
//! in the same order by the same loop ([`crate::cpu::embedding_bag_sum`]).
//! See `docs/OFFLOAD.md`.

mod cache;
mod policy;
mod slots;
mod source;
mod table;

pub use cache::{CacheCounters, MAX_SHARDS, RowCache};
pub use policy::{EvictionPolicy, Lfu, Lru};
pub use slots::{
    Admitted, CachedBatchPlan, RowHasher, RowMap, SlotMap, plan_cached_batch, slot_source,
};
pub use source::{HostRows, MappedRows, RowSource, SharedBytes, StoredType};
pub use table::{CacheTier, OffloadedTable};

/// Which rows a full cache shard gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Least recently used (the baseline).
    #[default]
    Lru,
    /// Least frequently used among cached rows, ties by least recently used.
    Lfu,
}

/// Size and policy of a hot-row cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Rows the cache holds (at least 1).
    pub capacity_rows: usize,
    /// Eviction policy.
    pub policy: CachePolicy,
    /// Independent locks the cache is split into; 0 picks one per 64 rows, at most
    /// [`MAX_SHARDS`]. Policies are exact per shard (1 shard = one global LRU/LFU).
    pub shards: usize,
}

impl CacheConfig {
    /// `rows` rows with `policy` and automatic sharding.
    pub fn rows(rows: usize, policy: CachePolicy) -> Self {
        CacheConfig {
            capacity_rows: rows.max(1),
            policy,
            shards: 0,
        }
    }

    /// As many `dim`-wide f32 rows as fit in `bytes` of row storage (at least 1).
    pub fn bytes(bytes: u64, dim: usize, policy: CachePolicy) -> Self {
        let row = (dim.max(1) * size_of::<f32>()) as u64;
        Self::rows((bytes / row) as usize, policy)
    }
}

/// Default cache size: 10% of a table's rows, rounded up, at least 1.
pub fn default_cache_rows(rows: usize) -> usize {
    rows.div_ceil(10).max(1)
}
