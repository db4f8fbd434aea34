//! A whole DLRM on the CUDA backend against the same weights on the CPU backend: resident
//! tables, host-offloaded tables (pinned mapped rows + the device hot-row cache), the mmap
//! tier copied into pinned memory, and tables over the pinned budget (host fallback).
//!
//! Skips, printing "skipped: no CUDA device", when `cuda::probe()` fails; with
//! `COHOST_REQUIRE_CUDA=1` a missing device fails instead (docs/CUDA.md, GPU suite).
//!
//! Tolerance: relative 1e-4 (|got − want| / max(|want|, 1e-6)). cuBLAS and candle sum the
//! GEMMs of six 512/256-wide layers and the 27-feature dot interaction in different orders
//! (and cuBLAS may fuse multiply-adds), so fp32 rounding differs by ~1e-6..1e-5 relative at
//! the sigmoid; a wrong row, slot or stale staging buffer moves an output by far more.

mod common;

use cohost_kernels::TablePlacement;
use cohost_kernels::cpu::CpuOps;
use cohost_kernels::cuda::{self, CudaOps};
use cohost_kernels::offload::{CacheConfig, CachePolicy};
use cohost_models::{
    BackendHandle, Batch, Model, ModelConfig, PlacementOptions, WeightSource, build_model, synth,
};
use common::{Store, cuda_or_skip, random_batch, random_tensors, to_safetensors};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::{Arc, Mutex};

const TOL: f64 = 1e-4;

/// Serialises the tests: one of them changes the process-wide pinned budget.
static BUDGET_LOCK: Mutex<()> = Mutex::new(());

/// Cache rows per offloaded table: small, so batches miss, and repeats hit.
const CACHE_ROWS: usize = 256;

/// dlrm-small's dense shape (13 dense features, 512-256-64 bottom, 512-256-1 top, 26 tables
/// of dim 64) with 20 000-row tables, so the weights are 133 MB rather than 666 MB.
fn config() -> ModelConfig {
    let mut c = synth::preset("dlrm-small").unwrap();
    let p = c.dlrm.as_mut().unwrap();
    p.table_sizes = vec![20_000; 26];
    p.cache_rows = Some(CACHE_ROWS);
    c
}

/// The same weights as safetensors bytes and as a file (for the mmap tier).
struct Fixture {
    config: ModelConfig,
    bytes: Vec<u8>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let config = config();
    let bytes = to_safetensors(&random_tensors(&config, 17), Store::F32);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    Fixture {
        config,
        bytes,
        _dir: dir,
        path,
    }
}

/// A device budget with room for the dense weights and every table's cache, none resident.
fn all_offloaded(c: &ModelConfig, dense: u64) -> PlacementOptions {
    let p = c.dlrm.as_ref().unwrap();
    let cache = cohost_kernels::offload::RowCache::footprint(
        p.embedding_dim,
        &CacheConfig::rows(CACHE_ROWS, CachePolicy::Lru),
    );
    PlacementOptions {
        device_budget: Some(dense + cache * p.table_sizes.len() as u64),
        host_budget: None,
    }
}

fn placements(m: &dyn Model) -> Vec<TablePlacement> {
    m.memory().tables.iter().map(|t| t.1).collect()
}

/// The batches compared: batch 1, larger ones, and a repeat (so the device cache hits).
fn batches(c: &ModelConfig) -> Vec<Batch> {
    let mut rng = StdRng::seed_from_u64(4);
    let mut out: Vec<Batch> = [1, 7, 64, 1, 200]
        .iter()
        .map(|&n| random_batch(c, n, &mut rng))
        .collect();
    out.push(out[2].clone());
    out
}

/// Runs every batch on both models and compares outputs at [`TOL`].
fn compare(what: &str, cpu: &dyn Model, gpu: &dyn Model, gpu_ops: &CudaOps, c: &ModelConfig) {
    let (cpu_lane, gpu_lane) = (cohost_kernels::Lane::cpu(0), gpu_ops.lane(0, 0).unwrap());
    for (b, batch) in batches(c).iter().enumerate() {
        let want = cpu.forward(&cpu_lane, batch).unwrap();
        let got = gpu.forward(&gpu_lane, batch).unwrap();
        assert_eq!(got.len(), want.len(), "{what}: outputs");
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            let rel = (*g as f64 - *w as f64).abs() / (*w as f64).abs().max(1e-6);
            assert!(
                rel <= TOL,
                "{what}, batch {b}: got {g}, want {w} (rel {rel:.2e})"
            );
        }
        assert!(
            gpu_ops.batch_boundary(&gpu_lane).is_ok(),
            "{what}: no fault"
        );
    }
}

#[test]
fn cuda_dlrm_matches_cpu_with_resident_offloaded_and_mapped_tables() {
    let _lock = BUDGET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ops) = cuda_or_skip() else { return };
    let f = fixture();
    let (c, w) = (&f.config, || WeightSource::Bytes(&f.bytes));
    let cpu_backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let gpu_backend = BackendHandle::Cuda(ops.clone());
    let none = PlacementOptions::default();
    let cpu = build_model(c, w(), &cpu_backend, &none).unwrap();
    let resident = build_model(c, w(), &gpu_backend, &none).unwrap();
    assert_eq!(placements(&*resident), vec![TablePlacement::Resident; 26]);
    compare("resident", &*cpu, &*resident, &ops, c);

    let offload = all_offloaded(c, resident.memory().weight_bytes);
    let host = build_model(c, w(), &gpu_backend, &offload).unwrap();
    assert_eq!(placements(&*host), vec![TablePlacement::HostOffloaded; 26]);
    compare("host-offloaded", &*cpu, &*host, &ops, c);
    let mem = host.memory();
    assert!(
        mem.tables.iter().all(|t| t.2.cache_bytes > 0),
        "device caches"
    );
    assert!(
        mem.tables.iter().all(|t| t.2.hits > 0 && t.2.misses > 0),
        "the repeated batch hits the device cache"
    );

    let mapped_opts = PlacementOptions {
        host_budget: Some(0),
        ..offload
    };
    let mapped = build_model(c, WeightSource::File(&f.path), &gpu_backend, &mapped_opts).unwrap();
    assert!(
        placements(&*mapped)
            .iter()
            .all(|&p| p != TablePlacement::Resident)
    );
    compare("mmap tier in pinned memory", &*cpu, &*mapped, &ops, c);
    assert!(mapped.memory().tables.iter().all(|t| t.2.cache_bytes > 0));
}

#[test]
fn tables_over_the_pinned_budget_fall_back_to_the_host_tier_and_still_match() {
    let _lock = BUDGET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ops) = cuda_or_skip() else { return };
    let f = fixture();
    let c = &f.config;
    let cpu_backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let gpu_backend = BackendHandle::Cuda(ops.clone());
    let cpu = build_model(
        c,
        WeightSource::Bytes(&f.bytes),
        &cpu_backend,
        &Default::default(),
    )
    .unwrap();
    let dense = cpu.memory().weight_bytes;
    let budget = cuda::pinned_budget();
    let before = budget.limit();
    // Room for 3 tables' rows (20 000 x 64 x 4 B each) beyond what is pinned now.
    let table = 20_000 * 64 * 4;
    budget.set_limit(budget.used() + 3 * table);
    let opts = PlacementOptions {
        host_budget: Some(0),
        ..all_offloaded(c, dense)
    };
    let result = build_model(c, WeightSource::File(&f.path), &gpu_backend, &opts);
    let host = build_model(
        c,
        WeightSource::Bytes(&f.bytes),
        &gpu_backend,
        &all_offloaded(c, dense),
    );
    budget.set_limit(before);
    let (mapped, host) = (result.unwrap(), host.unwrap());
    // 3 tables pinned (device cache), the other 23 read from the mapped file on the host.
    let mem = mapped.memory();
    let pinned = mem.tables.iter().filter(|t| t.2.cache_bytes > 0).count();
    let fallback: Vec<_> = mem.tables.iter().filter(|t| t.2.cache_bytes == 0).collect();
    assert_eq!((pinned, fallback.len()), (3, 23));
    assert!(
        fallback
            .iter()
            .all(|t| t.1 == TablePlacement::MappedFile && t.2.mapped_bytes > 0)
    );
    compare("mmap tier past the pinned budget", &*cpu, &*mapped, &ops, c);
    // The host tier's tables are refused too once `mapped` holds the budget: all host.
    assert!(host.memory().tables.iter().all(|t| t.2.cache_bytes == 0));
    compare("host tier past the pinned budget", &*cpu, &*host, &ops, c);
    drop(mapped);
    assert_eq!(budget.used(), 0, "dropped tables return their pinned bytes");
}
