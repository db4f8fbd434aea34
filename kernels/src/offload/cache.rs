//! The bounded hot-row cache (the "device tier" of an offloaded table): sharded, each
//! shard one mutex over its slots, index and eviction policy.
//!
//! A row is copied into or out of a slot only while its shard's lock is held, so a
//! reader never sees a half-written row. Rows are read from the host tier outside the
//! lock; when two lanes miss the same row at once the second insert finds it present.

use super::policy::{EvictionPolicy, Lfu, Lru};
use super::slots::SlotMap;
use super::source::RowSource;
use super::{CacheConfig, CachePolicy};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most shards a cache is split into (fewer when it holds fewer rows).
pub const MAX_SHARDS: usize = 64;

/// Hit, miss and eviction counts since the cache was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Lookups served from the cache (once per distinct row per batch).
    pub hits: u64,
    /// Lookups that read the host tier.
    pub misses: u64,
    /// Rows dropped to make room.
    pub evictions: u64,
}

struct Shard {
    /// Which row each slot holds, and the eviction policy.
    slots: SlotMap,
    /// `capacity x dim` row values.
    data: Vec<f32>,
}

impl Shard {
    fn new(capacity: usize, dim: usize, policy: CachePolicy) -> Shard {
        Shard {
            slots: SlotMap::new(capacity, policy),
            data: vec![0.0; capacity.max(1) * dim],
        }
    }

    /// Copies a cached row into `out`; false when absent.
    fn read(&mut self, key: u64, out: &mut [f32]) -> bool {
        let Some(slot) = self.slots.lookup(key) else {
            return false;
        };
        let d = out.len();
        out.copy_from_slice(&self.data[slot as usize * d..(slot as usize + 1) * d]);
        true
    }

    /// Caches `row` under `key`; returns true when another row was evicted for it.
    fn insert(&mut self, key: u64, row: &[f32]) -> bool {
        if self.slots.contains(key) {
            return false;
        }
        let a = self.slots.admit(key);
        let d = row.len();
        self.data[a.slot as usize * d..(a.slot as usize + 1) * d].copy_from_slice(row);
        a.evicted.is_some()
    }
}

/// A bounded, concurrent cache of `dim`-wide f32 rows.
pub struct RowCache {
    dim: usize,
    capacity: usize,
    policy: CachePolicy,
    shards: Vec<Mutex<Shard>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl RowCache {
    /// A cache of `config.capacity_rows` rows (at least 1) of `dim` values.
    pub fn new(dim: usize, config: &CacheConfig) -> RowCache {
        let capacity = config.capacity_rows.max(1);
        let n = shard_count(capacity, config.shards);
        let shards = (0..n)
            .map(|i| {
                let cap = capacity / n + usize::from(i < capacity % n);
                Mutex::new(Shard::new(cap, dim, config.policy))
            })
            .collect();
        RowCache {
            dim,
            capacity,
            policy: config.policy,
            shards,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Rows the cache can hold.
    pub fn capacity_rows(&self) -> usize {
        self.capacity
    }

    /// Number of shards (independent locks).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes the cache holds: row slots plus its index (see [`RowCache::footprint`]).
    pub fn bytes(&self) -> u64 {
        Self::footprint(
            self.dim,
            &CacheConfig {
                capacity_rows: self.capacity,
                policy: self.policy,
                shards: self.shards.len(),
            },
        )
    }

    /// Bytes a cache built from `config` for `dim`-wide rows takes: the row slots
    /// (`rows·dim·4`, allocated up front) plus each shard's index (row→slot map, slot→row
    /// keys, policy state), from the same capacities the shards allocate.
    pub fn footprint(dim: usize, config: &CacheConfig) -> u64 {
        let capacity = config.capacity_rows.max(1);
        let n = shard_count(capacity, config.shards);
        let slots = (capacity * dim * size_of::<f32>()) as u64;
        let index: u64 = (0..n)
            .map(|i| shard_index_bytes(capacity / n + usize::from(i < capacity % n), config.policy))
            .sum();
        slots + index
    }

    /// Counters since the cache was built.
    pub fn counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn shard_of(&self, key: u64) -> usize {
        let h = key.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        ((h >> 32) as usize) % self.shards.len()
    }

    /// Copies rows `keys` (distinct, each `< source.rows()`) into `out` (`keys.len()·dim`
    /// values, row `i` at `i·dim`): from the cache on a hit, else from `source`, then
    /// admits the missed rows (evicting by policy). Counts one hit or miss per key.
    pub fn gather(&self, keys: &[u64], source: &dyn RowSource, out: &mut [f32]) {
        let d = self.dim;
        assert_eq!(out.len(), keys.len() * d, "gather: output size");
        let mut order: Vec<(u32, u32)> = keys
            .iter()
            .enumerate()
            .map(|(p, &k)| (self.shard_of(k) as u32, p as u32))
            .collect();
        order.sort_unstable();
        let (mut hits, mut misses, mut evictions) = (0u64, 0u64, 0u64);
        let mut missed: Vec<usize> = Vec::new();
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let shard = &self.shards[group[0].0 as usize];
            missed.clear();
            {
                let mut s = shard.lock();
                for &(_, p) in group {
                    let p = p as usize;
                    if s.read(keys[p], &mut out[p * d..(p + 1) * d]) {
                        hits += 1;
                    } else {
                        missed.push(p);
                    }
                }
            }
            if missed.is_empty() {
                continue;
            }
            for &p in &missed {
                source.read_row(keys[p] as usize, &mut out[p * d..(p + 1) * d]);
            }
            misses += missed.len() as u64;
            let mut s = shard.lock();
            for &p in &missed {
                evictions += u64::from(s.insert(keys[p], &out[p * d..(p + 1) * d]));
            }
        }
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
        self.evictions.fetch_add(evictions, Ordering::Relaxed);
    }
}

/// Index bytes of one shard of `cap` rows (see [`Shard::new`]).
fn shard_index_bytes(cap: usize, policy: CachePolicy) -> u64 {
    // hashbrown: power-of-two buckets at load factor 7/8, (u64, u32) entries padded to 16
    // bytes, one control byte per bucket plus one 16-byte group.
    let want = 2 * cap;
    let buckets = match want {
        0 => 0,
        1..4 => 4,
        4..8 => 8,
        _ => (want * 8 / 7).next_power_of_two(),
    };
    let map = if buckets == 0 { 0 } else { buckets * 17 + 16 };
    let keys = cap * size_of::<u64>();
    let policy = match policy {
        CachePolicy::Lru => Lru::index_bytes(cap),
        CachePolicy::Lfu => Lfu::index_bytes(cap),
    };
    (map + keys) as u64 + policy
}

/// Shards for a cache of `capacity` rows: `requested` when non-zero, else up to
/// [`MAX_SHARDS`] with at least 64 rows per shard; never more than `capacity`.
fn shard_count(capacity: usize, requested: usize) -> usize {
    let n = if requested > 0 {
        requested
    } else {
        (capacity / 64).clamp(1, MAX_SHARDS)
    };
    n.min(capacity).max(1)
}
