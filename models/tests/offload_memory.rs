//! Memory with tables 4x the device budget, measured from `/proc/self/status`.
//!
//! What is counted: `RssAnon` — anonymous memory this process really allocated and
//! touched (heap, caches, copies). File-backed pages of the memory-mapped weights
//! (`RssFile`) are page cache the kernel may drop at any time and are reported, not
//! bounded. One test in its own binary, so no other test allocates meanwhile.

use cohost_kernels::Lane;
use cohost_kernels::cpu::CpuOps;
use cohost_models::{
    BackendHandle, Batch, InputData, Model, ModelConfig, PlacementOptions, WeightSource,
    build_model, synth,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Allocator arenas, candle temporaries, per-batch buffers and test scaffolding.
const OVERHEAD: u64 = 8 << 20;

/// (VmRSS, RssAnon, RssFile) in bytes.
fn rss() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

fn run(model: &dyn Model, config: &ModelConfig, rng: &mut StdRng) {
    let p = config.dlrm.as_ref().unwrap();
    let lane = Lane::cpu(0);
    for _ in 0..40 {
        let n = 128;
        let dense: Vec<f32> = (0..n * p.dense_features).map(|_| rng.random()).collect();
        let sparse: Vec<i64> = (0..n * p.table_sizes.len())
            .map(|i| rng.random_range(0..p.table_sizes[i % p.table_sizes.len()] as i64))
            .collect();
        let batch = Batch {
            rows: n,
            inputs: vec![InputData::F32(dense), InputData::I64(sparse)],
        };
        model.forward(&lane, &batch).unwrap();
    }
}

#[test]
fn tables_four_times_the_budget_stay_within_budget_plus_overhead() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc/self/status: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // dlrm-small with 10,000 rows per table: 26 x 10,000 x 64 f32 = 66.6 MB of tables.
    let dirs =
        synth::generate(dir.path(), "dlrm-small", 1, 1, Some(10_000), &mut |_, _| {}).unwrap();
    let config = ModelConfig::from_file(&dirs[0].join("config.toml")).unwrap();
    let path = dirs[0].join("1").join("model.safetensors");
    let tables: u64 = 26 * 10_000 * 64 * 4;
    let budget = tables / 4;
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let mut rng = StdRng::seed_from_u64(1);

    // Mapped: nothing is copied to host RAM; only resident tables and caches allocate.
    let before = rss();
    let placement = PlacementOptions {
        device_budget: Some(budget),
        host_budget: Some(0),
    };
    let model = build_model(&config, WeightSource::File(&path), &backend, &placement).unwrap();
    run(&*model, &config, &mut rng);
    let after = rss();
    let mem = model.memory();
    let grew = after.1.saturating_sub(before.1);
    eprintln!(
        "mapped: device {} host {} budget {budget}; RssAnon +{grew}, RssFile +{}, VmRSS +{}",
        mem.device_bytes(),
        mem.host_bytes(),
        after.2.saturating_sub(before.2),
        after.0.saturating_sub(before.0)
    );
    assert!(mem.device_bytes() <= budget);
    assert_eq!(mem.host_bytes(), 0);
    assert!(
        grew <= budget + OVERHEAD,
        "anonymous memory grew {grew} > budget {budget} + overhead {OVERHEAD}"
    );
    drop(model);

    // Host copy: offloaded tables are copied; growth is bounded by device + host bytes.
    let before = rss();
    let placement = PlacementOptions {
        device_budget: Some(budget),
        host_budget: None,
    };
    let model = build_model(&config, WeightSource::File(&path), &backend, &placement).unwrap();
    run(&*model, &config, &mut rng);
    let after = rss();
    let mem = model.memory();
    let grew = after.1.saturating_sub(before.1);
    eprintln!(
        "host copy: device {} host {}; RssAnon +{grew}",
        mem.device_bytes(),
        mem.host_bytes()
    );
    assert!(mem.device_bytes() <= budget);
    assert!(mem.host_bytes() > 2 * budget, "most tables are offloaded");
    assert!(grew <= mem.device_bytes() + mem.host_bytes() + OVERHEAD);
}
