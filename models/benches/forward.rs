//! Forward-pass and GEMM micro-benchmarks on the CPU backend.
//!
//! Throughput is reported in "elements" that are FLOPs (criterion's `elem/s` = FLOP/s):
//! `flops_per_row × batch` for a forward pass, `2·m·n·k` for a GEMM, so the distance to
//! the machine's GEMM rate is visible. dlrm-small is built with 10,000 rows per table
//! (not 100,000) so it loads in seconds; per-row work does not depend on the row count.
//!
//! The forward groups run every batch once per instruction set the CPU has (`avx2`, and
//! `avx512` where detected), switched with `isa::cap` inside one process so the paths are
//! measured interleaved.

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::cpu::gemm::{gemm_crate, gemm_crate_wx, row_dots, row_dots_f16};
use cohost_kernels::cpu::isa::{self, Isa};
use cohost_kernels::cpu::packed::{linear_packed, pack};
use cohost_kernels::{Activation, Lane, Ops};
use cohost_models::{
    BackendHandle, Batch, InputData, Model, PlacementOptions, WeightSource, build_model, synth,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::sync::Arc;

const ROWS_PER_TABLE: usize = 10_000;

fn random_batch(model: &dyn Model, rows: usize, rng: &mut StdRng) -> Batch {
    let p = model.config().dlrm.as_ref().expect("a DLRM");
    let dense = (0..rows * p.dense_features)
        .map(|_| rng.random_range(0.0f32..1.0))
        .collect();
    let bag = |t: usize| {
        if p.multi_hot.len() == 1 {
            p.multi_hot[0]
        } else {
            p.multi_hot[t]
        }
    };
    let mut sparse = Vec::new();
    for _ in 0..rows {
        for (t, &size) in p.table_sizes.iter().enumerate() {
            sparse.extend((0..bag(t)).map(|_| rng.random_range(0..size as i64)));
        }
    }
    Batch {
        rows,
        inputs: vec![InputData::F32(dense), InputData::I64(sparse)],
    }
}

/// Batch sizes of the forward groups.
const FORWARD_BATCHES: [usize; 6] = [1, 4, 16, 64, 256, 512];

/// The instruction sets to compare: AVX2 (the fallback) and the detected one if higher.
fn isas() -> Vec<Isa> {
    let best = isa::detected();
    let mut v = vec![Isa::Avx2.min(best)];
    if best > v[0] {
        v.push(best);
    }
    v
}

fn mlp_small_forward(c: &mut Criterion) {
    let mut config = synth::preset("mlp-small").unwrap();
    config.max_batch_size = 512;
    let bytes = synth::random_weights(&config, 1);
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let model = build_model(
        &config,
        WeightSource::Bytes(&bytes),
        &backend,
        &PlacementOptions::default(),
    )
    .unwrap();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(2);
    let mut g = c.benchmark_group("mlp-small/forward");
    for n in FORWARD_BATCHES {
        let x = (0..n * 256)
            .map(|_| rng.random_range(0.0f32..1.0))
            .collect();
        let batch = Batch {
            rows: n,
            inputs: vec![InputData::F32(x)],
        };
        g.throughput(Throughput::Elements(model.flops_per_row() * n as u64));
        for set in isas() {
            g.bench_function(format!("{}/batch-{n}", set.name()), |b| {
                isa::cap(set);
                b.iter(|| black_box(model.forward(&lane, black_box(&batch)).unwrap()))
            });
        }
    }
    g.finish();
    isa::cap(isa::detected());
}

fn dlrm_small_forward(c: &mut Criterion) {
    let mut config = synth::preset("dlrm-small").unwrap();
    config.dlrm.as_mut().unwrap().table_sizes = vec![ROWS_PER_TABLE; 26];
    config.max_batch_size = 512;
    let bytes = synth::random_weights(&config, 1);
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let model = build_model(
        &config,
        WeightSource::Bytes(&bytes),
        &backend,
        &PlacementOptions::default(),
    )
    .unwrap();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(2);
    let mut g = c.benchmark_group("dlrm-small-10k/forward");
    for n in FORWARD_BATCHES {
        let batch = random_batch(&*model, n, &mut rng);
        g.throughput(Throughput::Elements(model.flops_per_row() * n as u64));
        for set in isas() {
            g.bench_function(format!("{}/batch-{n}", set.name()), |b| {
                isa::cap(set);
                b.iter(|| black_box(model.forward(&lane, black_box(&batch)).unwrap()))
            });
        }
    }
    g.finish();
    isa::cap(isa::detected());
    // Serving looks up different rows every batch: 66 MB of tables do not fit the cache,
    // so these pay the embedding reads' misses that the same batch repeated above hides.
    let mut g = c.benchmark_group("dlrm-small-10k/forward-fresh-rows");
    for n in [1usize, 4, 16] {
        let batches: Vec<Batch> = (0..2048)
            .map(|_| random_batch(&*model, n, &mut rng))
            .collect();
        let mut next = batches.iter().cycle();
        g.throughput(Throughput::Elements(model.flops_per_row() * n as u64));
        g.bench_function(format!("batch-{n}"), |b| {
            b.iter(|| black_box(model.forward(&lane, next.next().unwrap()).unwrap()))
        });
    }
    g.finish();
}

/// The top MLP's first layer of dlrm-small (`[n, 415] · [512, 415]ᵀ`) four ways: candle
/// matmul on the row-major PyTorch layout viewed transposed (strided `wᵀ`, what
/// `CpuOps::linear` did before it called the kernels itself), the row-dot kernel (small
/// batches), the `gemm` crate called directly on one thread, and the full
/// `CpuOps::linear` (the kernel it picks, plus the fused bias + ReLU epilogue).
fn gemm(c: &mut Criterion) {
    let (k, m) = (415usize, 512usize);
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(3);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let w_data = rand(m * k);
    let w = ops.weight(&w_data, m, k).unwrap();
    let b = ops.weight(&rand(m), 1, m).unwrap();
    let mut g = c.benchmark_group("gemm-415x512");
    for n in [1usize, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32, 64, 512] {
        let x_data = rand(n * k);
        let x = ops.upload(&lane, &x_data, n, k).unwrap();
        let mut y = vec![0f32; n * m];
        g.throughput(Throughput::Elements((2 * n * k * m) as u64));
        g.bench_function(format!("candle-strided-wT/batch-{n}"), |bch| {
            bch.iter(|| black_box(x.matmul(&w.t().unwrap()).unwrap()))
        });
        if n <= 32 {
            g.bench_function(format!("row-dots/batch-{n}"), |bch| {
                bch.iter(|| row_dots(black_box(&x_data), n, k, &w_data, m, &mut y))
            });
        }
        g.bench_function(format!("gemm-crate-1-thread/batch-{n}"), |bch| {
            bch.iter(|| gemm_crate(black_box(&x_data), n, k, &w_data, m, &mut y, 1))
        });
        g.bench_function(format!("cpuops-linear-relu/batch-{n}"), |bch| {
            bch.iter(|| black_box(ops.linear(&lane, &x, &w, &b, Activation::Relu).unwrap()))
        });
    }
    g.finish();
}

/// Where the row-dot kernel and the `gemm` crate cross over, on one thread, for the
/// layers of mlp-small and dlrm-small's widest top layer (`k → m`), the `gemm` crate
/// posed both ways (`x · wᵀ` and `w · xᵀ`), and the packed-weights kernel dense layers use
/// (bias + ReLU included).
fn crossover(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    for (k, m) in [(256usize, 1024usize), (1024, 512), (415, 512)] {
        let w = rand(m * k);
        let (packed, bias) = (pack(&w, m, k), rand(m));
        let mut g = c.benchmark_group(format!("crossover-{k}x{m}"));
        for n in [16usize, 24, 32, 48, 64, 96, 128, 256, 512] {
            let x = rand(n * k);
            let mut y = vec![0f32; n * m];
            g.throughput(Throughput::Elements((2 * n * k * m) as u64));
            if n <= 128 {
                g.bench_function(format!("row-dots/batch-{n}"), |b| {
                    b.iter(|| row_dots(black_box(&x), n, k, &w, m, &mut y))
                });
            }
            g.bench_function(format!("gemm-xw/batch-{n}"), |b| {
                b.iter(|| gemm_crate(black_box(&x), n, k, &w, m, &mut y, 1))
            });
            g.bench_function(format!("gemm-wx/batch-{n}"), |b| {
                b.iter(|| gemm_crate_wx(black_box(&x), n, k, &w, m, &mut y, 1))
            });
            g.bench_function(format!("packed/batch-{n}"), |b| {
                b.iter(|| {
                    let relu = Activation::Relu;
                    linear_packed(black_box(&x), n, k, &packed, m, &bias, relu, &mut y, 1)
                })
            });
        }
        g.finish();
    }
}

/// dlrm-small's non-GEMM work at batch 512: the dot interaction of 27 features of dim 64
/// (2·351·64 FLOPs per row) and one one-hot embedding-bag over a 10k-row table.
fn interaction_and_bags(c: &mut Criterion) {
    let (n, d) = (512usize, 64usize);
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(4);
    let mut rand =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let x = ops.upload(&lane, &rand(n * d), n, d).unwrap();
    let pooled: Vec<_> = (0..26)
        .map(|_| ops.upload(&lane, &rand(n * d), n, d).unwrap())
        .collect();
    let table = ops
        .resident_table("t", &rand(ROWS_PER_TABLE * d), ROWS_PER_TABLE, d)
        .unwrap();
    let idx: Vec<i64> = (0..n as i64)
        .map(|i| (i * 7919) % ROWS_PER_TABLE as i64)
        .collect();
    let mut g = c.benchmark_group("ops-batch-512");
    g.throughput(Throughput::Elements((2 * 351 * d * n) as u64));
    g.bench_function("dot-interaction-27x64", |b| {
        b.iter(|| black_box(ops.dot_interaction(&lane, &x, &pooled).unwrap()))
    });
    g.throughput(Throughput::Elements((d * n) as u64));
    g.bench_function("bag-sum-one-hot-64", |b| {
        b.iter(|| black_box(table.bag_sum(&ops, &lane, &idx, 1).unwrap()))
    });
    g.finish();
}

/// The same layer with its weights out of cache, as when many models take turns on a lane:
/// 40 copies of the weights (34 MB, more than this machine's L3) used in turn. Compare with
/// `gemm-415x512/row-dots` (one copy, in cache).
fn gemm_cold_weights(c: &mut Criterion) {
    let (k, m, copies) = (415usize, 512usize, 40usize);
    let mut rng = StdRng::seed_from_u64(5);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let ws: Vec<Vec<f32>> = (0..copies).map(|_| rand(m * k)).collect();
    let mut g = c.benchmark_group("gemm-415x512-cold-weights");
    for n in [1usize, 4, 8] {
        let x = rand(n * k);
        let mut y = vec![0f32; n * m];
        let mut next = ws.iter().cycle();
        g.throughput(Throughput::Elements((2 * n * k * m) as u64));
        g.bench_function(format!("row-dots/batch-{n}"), |b| {
            b.iter(|| row_dots(black_box(&x), n, k, next.next().unwrap(), m, &mut y))
        });
    }
    g.finish();
}

/// The same layer's weights stored as f32 and as f16, over 1, 8 and 20 copies used in
/// turn: 20 copies are 17 MB in f32 (8.5 MB in f16), about the dense weights of 8
/// dlrm-small models taking turns on the lanes.
fn gemm_weights_in_turn_f32_f16(c: &mut Criterion) {
    let (k, m) = (415usize, 512usize);
    let mut rng = StdRng::seed_from_u64(6);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let ws: Vec<Vec<f32>> = (0..20).map(|_| rand(m * k)).collect();
    let hs: Vec<Vec<f16>> = ws
        .iter()
        .map(|w| w.iter().map(|&v| f16::from_f32(v)).collect())
        .collect();
    let mut g = c.benchmark_group("gemm-415x512-in-turn");
    for copies in [1usize, 8, 20] {
        for n in [1usize, 4, 8] {
            let x = rand(n * k);
            let mut y = vec![0f32; n * m];
            g.throughput(Throughput::Elements((2 * n * k * m) as u64));
            let mut next = ws[..copies].iter().cycle();
            g.bench_function(format!("f32/copies-{copies}/batch-{n}"), |b| {
                b.iter(|| row_dots(black_box(&x), n, k, next.next().unwrap(), m, &mut y))
            });
            let mut next = hs[..copies].iter().cycle();
            g.bench_function(format!("f16/copies-{copies}/batch-{n}"), |b| {
                b.iter(|| row_dots_f16(black_box(&x), n, k, next.next().unwrap(), m, &mut y))
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    mlp_small_forward,
    dlrm_small_forward,
    gemm,
    crossover,
    gemm_cold_weights,
    gemm_weights_in_turn_f32_f16,
    interaction_and_bags
);
criterion_main!(benches);
