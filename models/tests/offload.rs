//! DLRM table placement and offload: outputs bit-identical to all-resident (host copy
//! and memory-mapped file, f32/f16, LRU/LFU, caches down to one row), the greedy order,
//! the host budget, `offload = false` errors and reported memory.

mod common;

use cohost_kernels::Lane;
use cohost_kernels::TablePlacement;
use cohost_kernels::cpu::CpuOps;
use cohost_kernels::offload::{CacheConfig, CachePolicy, RowCache};
use cohost_models::config::CachePolicyKind;
use cohost_models::{
    BackendHandle, Model, ModelConfig, ModelError, PlacementOptions, WeightSource, build_model,
    synth,
};
use common::{Store, random_batch, random_tensors, to_safetensors};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn cpu() -> BackendHandle {
    BackendHandle::Cpu(Arc::new(CpuOps::new()))
}

/// dlrm-tiny with larger tables: 400, 1000, 4000 rows of dim 8.
fn config() -> ModelConfig {
    let mut c = synth::preset("dlrm-tiny").unwrap();
    c.dlrm.as_mut().unwrap().table_sizes = vec![400, 1000, 4000];
    c
}

fn build(
    c: &ModelConfig,
    w: WeightSource<'_>,
    device: Option<u64>,
    host: Option<u64>,
) -> Result<Arc<dyn Model>, ModelError> {
    let placement = PlacementOptions {
        device_budget: device,
        host_budget: host,
    };
    build_model(c, w, &cpu(), &placement)
}

/// Device bytes when every table is offloaded with `c`'s cache settings.
fn all_offloaded_budget(c: &ModelConfig, dense: u64) -> u64 {
    let p = c.dlrm.as_ref().unwrap();
    let policy = match p.cache_policy {
        CachePolicyKind::Lru => CachePolicy::Lru,
        CachePolicyKind::Lfu => CachePolicy::Lfu,
    };
    let caches: u64 = p
        .table_sizes
        .iter()
        .map(|&r| {
            let rows = p.cache_rows.unwrap_or(r.div_ceil(10)).min(r);
            RowCache::footprint(p.embedding_dim, &CacheConfig::rows(rows, policy))
        })
        .sum();
    dense + caches
}

fn placements(m: &dyn Model) -> Vec<TablePlacement> {
    m.memory().tables.iter().map(|t| t.1).collect()
}

fn bits(v: &[Vec<f32>]) -> Vec<u32> {
    v.iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn offloaded_outputs_are_bit_identical_to_resident() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let lane = Lane::cpu(0);
    let mut checked = 0;
    for store in [Store::F32, Store::F16] {
        let base = config();
        let bytes = to_safetensors(&random_tensors(&base, 11), store);
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let resident = build(&base, WeightSource::Bytes(&bytes), None, None).unwrap();
        let dense = resident.memory().weight_bytes;
        for cache_rows in [Some(1), Some(2), None, Some(40)] {
            for policy in [CachePolicyKind::Lru, CachePolicyKind::Lfu] {
                let mut c = base.clone();
                let p = c.dlrm.as_mut().unwrap();
                p.cache_rows = cache_rows;
                p.cache_policy = policy;
                let budget = Some(all_offloaded_budget(&c, dense));
                let host = build(&c, WeightSource::Bytes(&bytes), budget, None).unwrap();
                let mapped = build(&c, WeightSource::File(&path), budget, Some(0)).unwrap();
                assert_eq!(placements(&*host), vec![TablePlacement::HostOffloaded; 3]);
                assert_eq!(placements(&*mapped), vec![TablePlacement::MappedFile; 3]);
                for _ in 0..12 {
                    let n = rng.random_range(1..=32);
                    let batch = random_batch(&c, n, &mut rng);
                    let want = bits(&resident.forward(&lane, &batch).unwrap());
                    assert_eq!(bits(&host.forward(&lane, &batch).unwrap()), want);
                    assert_eq!(bits(&mapped.forward(&lane, &batch).unwrap()), want);
                    checked += 1;
                }
                let m = mapped.memory();
                assert!(
                    m.tables
                        .iter()
                        .all(|t| t.2.misses > 0 && t.2.host_bytes == 0)
                );
            }
        }
    }
    assert_eq!(checked, 2 * 4 * 2 * 12);
}

#[test]
fn largest_tables_are_offloaded_first_and_memory_is_reported() {
    let c = config();
    let bytes = to_safetensors(&random_tensors(&c, 5), Store::F32);
    let resident = build(&c, WeightSource::Bytes(&bytes), None, None).unwrap();
    let dense = resident.memory().weight_bytes;
    let cache2 = RowCache::footprint(8, &CacheConfig::rows(400, CachePolicy::Lru));
    // Room for tables 0 and 1 (1400 rows x 32 B) and table 2's cache of 400 rows.
    let budget = dense + 1400 * 32 + cache2;
    let m = build(&c, WeightSource::Bytes(&bytes), Some(budget), None).unwrap();
    use TablePlacement::*;
    assert_eq!(placements(&*m), vec![Resident, Resident, HostOffloaded]);
    let mem = m.memory();
    assert_eq!(mem.device_bytes(), budget);
    assert_eq!(mem.host_bytes(), 4000 * 32);
    let t2 = &mem.tables[2].2;
    assert_eq!(
        (t2.cache_bytes, t2.cache_capacity_rows, t2.mapped_bytes),
        (cache2, 400, 0)
    );
    // One byte less: table 1 goes too (next largest).
    let m = build(&c, WeightSource::Bytes(&bytes), Some(budget - 1), None).unwrap();
    assert_eq!(
        placements(&*m),
        vec![Resident, HostOffloaded, HostOffloaded]
    );
    assert!(m.memory().device_bytes() < budget);
}

#[test]
fn host_budget_copies_small_tables_and_maps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let c = config();
    let bytes = to_safetensors(&random_tensors(&c, 9), Store::F32);
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let dense = build(&c, WeightSource::Bytes(&bytes), None, None)
        .unwrap()
        .memory()
        .weight_bytes;
    let budget = Some(all_offloaded_budget(&c, dense));
    // Tables 0 and 1 fit 1400 rows x 32 B of host budget; table 2 is mapped.
    let m = build(&c, WeightSource::File(&path), budget, Some(1400 * 32)).unwrap();
    use TablePlacement::*;
    assert_eq!(
        placements(&*m),
        vec![HostOffloaded, HostOffloaded, MappedFile]
    );
    let mem = m.memory();
    assert_eq!(mem.host_bytes(), 1400 * 32);
    assert_eq!(mem.tables[2].2.mapped_bytes, 4000 * 32);
    // The same from in-memory bytes: nothing to map, so a clear error.
    match build(&c, WeightSource::Bytes(&bytes), budget, Some(1400 * 32)) {
        Err(ModelError::Memory(e)) => {
            assert!(
                e.contains("embeddings.2") && e.contains("memory-mapped"),
                "{e}"
            )
        }
        other => panic!("expected a memory error, got {:?}", other.err()),
    }
}

#[test]
fn offload_false_names_the_table_its_size_and_the_budget() {
    let mut c = config();
    c.dlrm.as_mut().unwrap().offload = false;
    let bytes = to_safetensors(&random_tensors(&c, 2), Store::F32);
    let dense = build(&c, WeightSource::Bytes(&bytes), None, None)
        .unwrap()
        .memory()
        .weight_bytes;
    let budget = dense + 1000;
    match build(&c, WeightSource::Bytes(&bytes), Some(budget), None) {
        Err(ModelError::Memory(e)) => {
            assert!(e.contains("table 'embeddings.2'"), "{e}");
            assert!(e.contains("128000 bytes"), "{e}");
            assert!(e.contains(&format!("budget is {budget} bytes")), "{e}");
            assert!(e.contains("offload = true"), "{e}");
        }
        other => panic!("expected a memory error, got {:?}", other.err()),
    }
    // The config's own budget applies too.
    c.memory_budget = Some(budget);
    assert!(matches!(
        build(&c, WeightSource::Bytes(&bytes), None, None),
        Err(ModelError::Memory(_))
    ));
}

#[test]
fn caches_that_cannot_fit_are_refused() {
    let mut c = config();
    c.dlrm.as_mut().unwrap().cache_rows = Some(300);
    let bytes = to_safetensors(&random_tensors(&c, 4), Store::F32);
    let dense = build(&c, WeightSource::Bytes(&bytes), None, None)
        .unwrap()
        .memory()
        .weight_bytes;
    match build(&c, WeightSource::Bytes(&bytes), Some(dense + 100), None) {
        Err(ModelError::Memory(e)) => assert!(e.contains("cache_rows"), "{e}"),
        other => panic!("expected a memory error, got {:?}", other.err()),
    }
}

#[test]
fn cache_bytes_and_policy_keys_parse() {
    let mut c = config();
    let p = c.dlrm.as_mut().unwrap();
    p.cache_bytes = Some(64 * 32);
    p.cache_policy = CachePolicyKind::Lfu;
    let text = c.to_toml();
    assert!(text.contains("cache_policy = \"lfu\""), "{text}");
    let back = ModelConfig::from_toml(&text, std::path::Path::new("x")).unwrap();
    assert_eq!(back, c);
    let bytes = to_safetensors(&random_tensors(&c, 1), Store::F32);
    let m = build(&c, WeightSource::Bytes(&bytes), Some(0), None);
    assert!(m.is_err(), "dense weights alone exceed a zero budget");
    let dense = build(&c, WeightSource::Bytes(&bytes), None, None)
        .unwrap()
        .memory()
        .weight_bytes;
    let cache = RowCache::footprint(8, &CacheConfig::rows(64, CachePolicy::Lfu));
    let budget = dense + 400 * 32 + 2 * cache;
    let m = build(&c, WeightSource::Bytes(&bytes), Some(budget), None).unwrap();
    assert_eq!(m.memory().device_bytes(), budget);
    let rows: Vec<u64> = m
        .memory()
        .tables
        .iter()
        .map(|t| t.2.cache_capacity_rows)
        .collect();
    assert_eq!(rows, vec![0, 64, 64], "64 rows of 32 bytes where offloaded");
}
