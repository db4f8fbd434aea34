//! Forward timings of the `dlrm-v2` preset (MLPerf DLRM-v2's shape: 26 multi-hot tables of
//! dim 128, DCN-v2 interaction of 3 layers of rank 512) at batch 1, 64 and 512.
//!
//! `cargo bench -p cohost-models --bench dlrm_v2` (CPU backend, one thread per op;
//! `COHOST_BENCH_THREADS=N` gives each op N threads, `COHOST_BENCH_BACKEND=cuda` runs on
//! the first CUDA device). Tables are capped at the preset's default rows (10,000); per-row
//! work does not depend on the row count. Throughput "elements" are FLOPs
//! (`flops_per_row × batch`), so criterion's `elem/s` is FLOP/s.

use cohost_kernels::Lane;
use cohost_kernels::cpu::CpuOps;
use cohost_models::{
    BackendHandle, Batch, InputData, Model, PlacementOptions, WeightSource, build_model, synth,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::sync::Arc;

fn random_batch(model: &dyn Model, rows: usize, rng: &mut StdRng) -> Batch {
    let p = model.config().dlrm.as_ref().expect("a DLRM");
    let dense = (0..rows * p.dense_features)
        .map(|_| rng.random_range(0.0f32..1.0))
        .collect();
    let mut sparse = Vec::new();
    for _ in 0..rows {
        for (t, &size) in p.table_sizes.iter().enumerate() {
            sparse.extend((0..p.multi_hot[t]).map(|_| rng.random_range(0..size as i64)));
        }
    }
    Batch {
        rows,
        inputs: vec![InputData::F32(dense), InputData::I64(sparse)],
    }
}

/// The backend and lane the bench runs on, from `COHOST_BENCH_BACKEND` / `_THREADS`.
fn backend() -> (BackendHandle, Lane, &'static str) {
    if std::env::var("COHOST_BENCH_BACKEND").as_deref() == Ok("cuda") {
        let ops = Arc::new(cohost_kernels::cuda::CudaOps::open().expect("a CUDA device"));
        let lane = ops.lane(0, 0).expect("a CUDA lane");
        return (BackendHandle::Cuda(ops), lane, "cuda");
    }
    let threads = std::env::var("COHOST_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let ops = Arc::new(CpuOps::with_threads(threads));
    (BackendHandle::Cpu(ops), Lane::cpu(0), "cpu")
}

fn dlrm_v2_forward(c: &mut Criterion) {
    let config = synth::preset("dlrm-v2").unwrap();
    let bytes = synth::random_weights(&config, 1);
    let (backend, lane, name) = backend();
    let model = build_model(
        &config,
        WeightSource::Bytes(&bytes),
        &backend,
        &PlacementOptions::default(),
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let mut g = c.benchmark_group(format!("dlrm-v2/{name}/forward"));
    g.sample_size(10);
    for n in [1usize, 64, 512] {
        let batch = random_batch(&*model, n, &mut rng);
        g.throughput(Throughput::Elements(model.flops_per_row() * n as u64));
        g.bench_function(format!("batch-{n}"), |b| {
            b.iter(|| black_box(model.forward(&lane, black_box(&batch)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, dlrm_v2_forward);
criterion_main!(benches);
