//! Where each DLRM embedding table lives, decided once at load time against the budgets.
//!
//! Device tier: with a device budget (the smaller of the runtime's remaining budget and
//! the model's `memory_budget`), every table starts resident; while dense weights +
//! resident tables + caches exceed it, the largest remaining resident table (ties: lowest
//! index) is offloaded and only its hot-row cache stays in the device tier.
//!
//! Host tier: offloaded tables, smallest first, are copied into host RAM while they fit
//! the host budget; the rest are read in place from the memory-mapped weights file.
//! See `docs/OFFLOAD.md`.

use super::{dense_bytes, rows_bytes, table_bytes};
use crate::config::{CachePolicyKind, DlrmParams, ModelConfig};
use crate::model::{ModelError, PlacementOptions};
use cohost_kernels::offload::{CacheConfig, CachePolicy, CacheTier, RowCache, default_cache_rows};

/// The tier chosen for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Whole table in the device tier.
    Resident,
    /// Full copy in host RAM, hot rows cached.
    Host,
    /// Read in place from the mapped weights file, hot rows cached.
    Mapped,
}

/// One table's placement and, when offloaded, its cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TablePlan {
    pub tier: Tier,
    pub cache: CacheConfig,
}

/// Bytes of table `t` as resident f32.
fn bytes_of(p: &DlrmParams, t: usize) -> u64 {
    rows_bytes(p.table_sizes[t], p.embedding_dim)
}

/// The cache each table would get if offloaded.
pub(crate) fn cache_config(p: &DlrmParams, rows: usize) -> CacheConfig {
    let policy = match p.cache_policy {
        CachePolicyKind::Lru => CachePolicy::Lru,
        CachePolicyKind::Lfu => CachePolicy::Lfu,
    };
    let cap = match (p.cache_rows, p.cache_bytes) {
        (Some(r), _) => r,
        (None, Some(b)) => CacheConfig::bytes(b, p.embedding_dim, policy).capacity_rows,
        (None, None) => default_cache_rows(rows),
    };
    CacheConfig::rows(cap.clamp(1, rows.max(1)), policy)
}

/// The device budget in effect: the smaller of the placement's and the config's.
fn device_budget(config: &ModelConfig, placement: &PlacementOptions) -> Option<u64> {
    match (placement.device_budget, config.memory_budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Places every table; `file` says whether the weights can be memory-mapped, `tier`
/// where the backend keeps hot-row caches.
pub(crate) fn plan(
    config: &ModelConfig,
    p: &DlrmParams,
    placement: &PlacementOptions,
    file: bool,
    tier: CacheTier,
) -> Result<Vec<TablePlan>, ModelError> {
    let n = p.table_sizes.len();
    let caches: Vec<CacheConfig> = p.table_sizes.iter().map(|&r| cache_config(p, r)).collect();
    let cache_cost = |t: usize| RowCache::footprint(p.embedding_dim, &caches[t]);
    let device_cache = |t: usize| match tier {
        CacheTier::Device => cache_cost(t),
        CacheTier::Host => 0,
    };
    let mut tiers = vec![Tier::Resident; n];
    if let Some(budget) = device_budget(config, placement) {
        let dense = dense_bytes(p, config.weight_precision);
        let tables = table_bytes(p);
        if dense > budget {
            return Err(ModelError::Memory(format!(
                "the dense layers alone need {dense} bytes but the model's device budget is \
                 {budget} bytes"
            )));
        }
        let mut device = dense.saturating_add(tables);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&t| (std::cmp::Reverse(bytes_of(p, t)), t));
        if device > budget && !p.offload {
            let t = order[0];
            return Err(ModelError::Memory(format!(
                "table 'embeddings.{t}' ({} bytes, {} x {} f32) does not fit: the model needs \
                 {device} bytes of device memory ({dense} dense + {tables} embedding tables) \
                 but its budget is {budget} bytes; set `offload = true` under [dlrm] to keep \
                 tables in host memory behind a device-side cache",
                bytes_of(p, t),
                p.table_sizes[t],
                p.embedding_dim
            )));
        }
        for &t in &order {
            if device <= budget {
                break;
            }
            if device_cache(t) < bytes_of(p, t) {
                tiers[t] = Tier::Host;
                device = device.saturating_sub(bytes_of(p, t)) + device_cache(t);
            }
        }
        if device > budget {
            return Err(ModelError::Memory(format!(
                "even with tables offloaded the model needs {device} bytes of device memory \
                 (dense weights, resident tables and hot-row caches) but its budget is \
                 {budget} bytes; lower dlrm.cache_rows / dlrm.cache_bytes"
            )));
        }
    }
    // Host tier: smallest offloaded tables are copied first, the rest are mapped.
    let mut host_left = placement.host_budget;
    let mut off: Vec<usize> = (0..n).filter(|&t| tiers[t] != Tier::Resident).collect();
    off.sort_by_key(|&t| (bytes_of(p, t), t));
    for t in off {
        let host = bytes_of(p, t).saturating_add(cache_cost(t) - device_cache(t));
        match host_left {
            None => {}
            Some(left) if host <= left => host_left = Some(left - host),
            Some(_) if file => tiers[t] = Tier::Mapped,
            Some(left) => {
                return Err(ModelError::Memory(format!(
                    "table 'embeddings.{t}' ({host} bytes) is offloaded but exceeds the \
                     {left} bytes left in the host budget, and the weights are not a file \
                     that could be memory-mapped"
                )));
            }
        }
    }
    Ok((0..n)
        .map(|t| TablePlan {
            tier: tiers[t],
            cache: caches[t],
        })
        .collect())
}
