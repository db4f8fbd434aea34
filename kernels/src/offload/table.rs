//! [`OffloadedTable`]: an [`EmbeddingStore`] over a host tier and a hot-row cache, for
//! any backend.

use super::CacheConfig;
use super::cache::RowCache;
use super::slots::RowMap;
use super::source::RowSource;
use crate::cpu::embedding_bag_sum;
use crate::table::check_bags;
use crate::{EmbeddingStore, Lane, Ops, Result, TableMemory, TablePlacement};

/// Where the hot-row cache's memory is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    /// In the device tier (`cache_bytes`): the CPU backend's separate bounded cache.
    Device,
    /// In host RAM (`host_bytes`): backends whose device-side cache is not built yet
    /// (CUDA today), which run this table with the cache and pooling on the host.
    Host,
}

/// An offloaded table: every row in `source`, hot rows in a [`RowCache`]; bags are
/// pooled on the host from the gathered rows and uploaded as one `[n, dim]` matrix.
pub struct OffloadedTable {
    name: String,
    source: Box<dyn RowSource>,
    cache: RowCache,
    tier: CacheTier,
}

impl OffloadedTable {
    /// Serves `source` through a cache sized by `cache` (at most the table's rows).
    pub fn new(
        name: &str,
        source: Box<dyn RowSource>,
        cache: CacheConfig,
        tier: CacheTier,
    ) -> Self {
        let cache = CacheConfig {
            capacity_rows: cache.capacity_rows.clamp(1, source.rows().max(1)),
            ..cache
        };
        OffloadedTable {
            name: name.to_string(),
            cache: RowCache::new(source.dim(), &cache),
            source,
            tier,
        }
    }

    /// The hot-row cache.
    pub fn cache(&self) -> &RowCache {
        &self.cache
    }

    /// Sum-pools `bag` rows per output row into a host buffer `[n, dim]`, bit-identical
    /// to [`embedding_bag_sum`] over the full table.
    pub fn bag_sum_host(&self, indices: &[i64], bag: usize) -> Result<Vec<f32>> {
        let rows = self.source.rows();
        let n = check_bags(&self.name, indices, rows, bag)?;
        // Each distinct row is looked up once per batch; `local` re-addresses the bags
        // into the compact buffer of gathered rows, keeping their order.
        let mut first: RowMap<u32> = RowMap::default();
        first.reserve(indices.len());
        let mut keys = Vec::with_capacity(indices.len());
        let local: Vec<i64> = indices
            .iter()
            .map(|&i| {
                *first.entry(i as u64).or_insert_with(|| {
                    keys.push(i as u64);
                    (keys.len() - 1) as u32
                }) as i64
            })
            .collect();
        let dim = self.source.dim();
        let mut gathered = vec![0f32; keys.len() * dim];
        self.cache.gather(&keys, &*self.source, &mut gathered);
        let mut out = vec![0f32; n * dim];
        embedding_bag_sum(&gathered, dim, &local, bag, &mut out);
        Ok(out)
    }
}

impl<O: Ops> EmbeddingStore<O> for OffloadedTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn rows(&self) -> usize {
        self.source.rows()
    }

    fn dim(&self) -> usize {
        self.source.dim()
    }

    fn placement(&self) -> TablePlacement {
        self.source.placement()
    }

    fn bag_sum(&self, ops: &O, lane: &Lane, indices: &[i64], bag: usize) -> Result<O::Tensor> {
        let out = self.bag_sum_host(indices, bag)?;
        let n = indices.len() / bag;
        ops.upload(lane, &out, n, self.source.dim())
    }

    fn memory(&self) -> TableMemory {
        let c = self.cache.counters();
        let cache = self.cache.bytes();
        let (cache_bytes, extra_host) = match self.tier {
            CacheTier::Device => (cache, 0),
            CacheTier::Host => (0, cache),
        };
        TableMemory {
            resident_bytes: 0,
            cache_bytes,
            host_bytes: self.source.host_bytes() + extra_host,
            mapped_bytes: self.source.mapped_bytes(),
            cache_capacity_rows: self.cache.capacity_rows() as u64,
            hits: c.hits,
            misses: c.misses,
            evictions: c.evictions,
        }
    }
}
