//! Per-table embedding metrics (placement, tier bytes, hot-row cache counters) for every
//! loaded model version, read from `Model::memory()` and published through the
//! `metrics` facade on each `/metrics` scrape.
//!
//! Series, labelled `{model, version, table}`:
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `cohost_embedding_cache_hits_total` | counter (set absolute) | distinct rows served from the cache |
//! | `cohost_embedding_cache_misses_total` | counter (set absolute) | distinct rows read from the host tier |
//! | `cohost_embedding_cache_evictions_total` | counter (set absolute) | rows evicted |
//! | `cohost_embedding_cache_bytes` | gauge | device-tier bytes of the cache (slots + index) |
//! | `cohost_embedding_resident_bytes` | gauge | device-tier bytes of a resident table |
//! | `cohost_embedding_host_bytes` | gauge | host RAM holding an offloaded table |
//! | `cohost_embedding_mapped_bytes` | gauge | file bytes a mapped table reads in place |
//! | `cohost_embedding_hit_rate` | gauge | hits / (hits + misses) since load |
//! | `cohost_embedding_table_placement` | gauge = 1 | extra label `placement` = resident, host, mapped |

use crate::Runtime;
use cohost_kernels::{TableMemory, TablePlacement};
use metrics::{counter, gauge};

/// One table of one loaded model version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableSample {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: u64,
    /// Table name (`embeddings.3`).
    pub table: String,
    /// Where its rows live.
    pub placement: TablePlacement,
    /// Bytes per tier and cache counters.
    pub memory: TableMemory,
}

/// Short label of an embedding table's placement (`resident`, `host` or `mapped`), as
/// the `placement` label of `cohost_embedding_table_placement` spells it.
pub fn placement_label(p: TablePlacement) -> &'static str {
    match p {
        TablePlacement::Resident => "resident",
        TablePlacement::HostOffloaded => "host",
        TablePlacement::MappedFile => "mapped",
    }
}

/// Every table of every loaded model version (models unloading meanwhile are skipped).
pub(crate) fn table_samples(runtime: &Runtime) -> Vec<TableSample> {
    let mut out = Vec::new();
    for m in runtime.models() {
        let Ok(mem) = runtime.memory(&m.name, Some(m.version)) else {
            continue;
        };
        out.extend(
            mem.tables
                .into_iter()
                .map(|(table, placement, memory)| TableSample {
                    model: m.name.clone(),
                    version: m.version,
                    table,
                    placement,
                    memory,
                }),
        );
    }
    out
}

/// Sets the embedding-table series (`cohost_embedding_*`) for every loaded model through
/// the `metrics` facade; call on each `/metrics` scrape, before rendering (cost: one lock
/// per cache shard per table).
pub fn record_table_metrics(runtime: &Runtime) {
    for s in table_samples(runtime) {
        let labels = [
            ("model", s.model.clone()),
            ("version", s.version.to_string()),
            ("table", s.table.clone()),
        ];
        let m = &s.memory;
        counter!("cohost_embedding_cache_hits_total", &labels).absolute(m.hits);
        counter!("cohost_embedding_cache_misses_total", &labels).absolute(m.misses);
        counter!("cohost_embedding_cache_evictions_total", &labels).absolute(m.evictions);
        gauge!("cohost_embedding_cache_bytes", &labels).set(m.cache_bytes as f64);
        gauge!("cohost_embedding_resident_bytes", &labels).set(m.resident_bytes as f64);
        gauge!("cohost_embedding_host_bytes", &labels).set(m.host_bytes as f64);
        gauge!("cohost_embedding_mapped_bytes", &labels).set(m.mapped_bytes as f64);
        gauge!("cohost_embedding_hit_rate", &labels).set(m.hit_rate());
        let mut placed = labels.to_vec();
        placed.push(("placement", placement_label(s.placement).to_string()));
        gauge!("cohost_embedding_table_placement", &placed).set(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuntimeOptions, Tensor, TensorData};
    use cohost_models::synth;

    #[test]
    fn samples_show_placement_bytes_and_counters() {
        let mut config = synth::preset("dlrm-tiny").unwrap();
        let weights = synth::random_weights(&config, 1);
        // Room for the dense layers (601 f32), tables 0 and 1 and table 2's cache only.
        let cache = cohost_kernels::offload::RowCache::footprint(
            8,
            &cohost_kernels::offload::CacheConfig::rows(100, Default::default()),
        );
        config.memory_budget = Some(601 * 4 + 350 * 32 + cache);
        let rt = Runtime::new(
            RuntimeOptions::default()
                .lanes(1)
                .device(crate::Device::Cpu),
        )
        .unwrap();
        rt.load_model_from("m", 1, config, &weights).unwrap();
        let s = table_samples(&rt);
        let placements: Vec<&str> = s.iter().map(|t| placement_label(t.placement)).collect();
        assert_eq!(placements, ["resident", "resident", "host"]);
        assert_eq!(s[2].memory.host_bytes, 1000 * 32);
        assert_eq!(s[2].memory.cache_capacity_rows, 100);
        assert!(s[2].memory.cache_bytes > 0 && s[0].memory.resident_bytes == 100 * 32);
        let req = crate::InferRequest {
            inputs: vec![
                Tensor::new("dense", vec![1, 4], TensorData::F32(vec![0.5; 4])),
                Tensor::new(
                    "sparse",
                    vec![1, 6],
                    TensorData::I64(vec![1, 2, 3, 4, 5, 6]),
                ),
            ],
            ..Default::default()
        };
        let rt2 = rt.clone();
        std::thread::spawn(move || {
            let r = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            r.block_on(async { rt2.infer("m", None, req).await.unwrap() });
        })
        .join()
        .unwrap();
        let s = table_samples(&rt);
        assert_eq!((s[2].memory.hits, s[2].memory.misses), (0, 2));
        record_table_metrics(&rt); // no recorder installed: must not panic
        rt.shutdown();
    }
}
