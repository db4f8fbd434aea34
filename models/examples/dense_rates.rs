//! GFLOP/s of the CPU dense kernels on one thread, layer by layer (mlp-small's and
//! dlrm-small's shapes), interleaved: the packed-weights kernel (`cpu::packed`, what dense
//! layers use, on the best instruction set this CPU has and on AVX2) against the row-major path (`cpu::matmul_wt`: row-dots up to 64 rows, then
//! the `gemm` crate, which repacks the weights every call), bias + ReLU included in both.
//!
//! `cargo run --release -p cohost-models --example dense_rates -- [ROUNDS] [SECS]` prints
//! one line per layer and batch: the median GFLOP/s of each kernel over ROUNDS (default 5)
//! rounds of SECS (default 0.2) seconds, their min..max, the packed/row-major ratio and the
//! best-ISA/AVX2 packed ratio. A third argument, BATCH, measures that batch size only.

use cohost_kernels::Activation;
use cohost_kernels::cpu::isa::{Isa, detected};
use cohost_kernels::cpu::packed::{linear_packed_on, pack};
use cohost_kernels::cpu::{isa, matmul_wt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

/// `(k, out)` of every dense layer of mlp-small and dlrm-small.
const LAYERS: [(usize, usize); 8] = [
    (256, 1024),
    (1024, 512),
    (512, 64),
    (13, 512),
    (512, 256),
    (256, 64),
    (415, 512),
    (256, 1),
];

const BATCHES: [usize; 6] = [1, 4, 16, 64, 256, 512];

/// GFLOP/s of `f` (which does `flops` per call) run for `secs`.
fn rate(flops: f64, secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f();
        calls += 1;
    }
    flops * calls as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().map_or(5, |s| s.parse().expect("ROUNDS"));
    let secs: f64 = args.get(1).map_or(0.2, |s| s.parse().expect("SECS"));
    let only: Option<usize> = args.get(2).map(|s| s.parse().expect("BATCH"));
    let best = detected();
    println!(
        "isa {} (detected {}); GFLOP/s median (min..max) of {rounds} rounds",
        isa().name(),
        best.name()
    );
    println!(
        "layer k->out | batch | packed {} | row-major | packed/row-major | packed avx2 | {}/avx2",
        best.name(),
        best.name()
    );
    let mut rng = StdRng::seed_from_u64(1);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    for (k, out) in LAYERS {
        let w = rand(out * k);
        let b = rand(out);
        let p = pack(&w, out, k);
        for n in BATCHES.into_iter().filter(|&n| only.is_none_or(|o| o == n)) {
            let x = rand(n * k);
            let mut y = vec![0f32; n * out];
            let flops = (2 * n * k * out) as f64;
            let (mut packed, mut rowmajor, mut ratio) = (vec![], vec![], vec![]);
            let (mut avx2, mut isa_ratio) = (vec![], vec![]);
            for _ in 0..rounds {
                let mut on = |set: Isa| {
                    rate(flops, secs, || {
                        linear_packed_on(
                            set,
                            black_box(&x),
                            n,
                            k,
                            &p,
                            out,
                            &b,
                            Activation::Relu,
                            &mut y,
                            1,
                        )
                    })
                };
                let a = on(best);
                let a2 = on(Isa::Avx2);
                avx2.push(a2);
                isa_ratio.push(a / a2);
                let r = rate(flops, secs, || {
                    matmul_wt(black_box(&x), n, k, &w, out, &mut y, 1);
                    for row in y.chunks_exact_mut(out) {
                        for (v, &bb) in row.iter_mut().zip(&b) {
                            *v = (*v + bb).max(0.0);
                        }
                    }
                });
                packed.push(a);
                rowmajor.push(r);
                ratio.push(a / r);
            }
            let span = |v: &[f64]| {
                let (lo, hi) = v
                    .iter()
                    .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
                format!("{lo:.1}..{hi:.1}")
            };
            let (sa, sr, sq) = (span(&packed), span(&rowmajor), span(&ratio));
            let (s2, si) = (span(&avx2), span(&isa_ratio));
            println!(
                "{k}->{out} | {n} | {:.1} ({sa}) | {:.1} ({sr}) | {:.2} ({sq}) | {:.1} ({s2}) | {:.2} ({si})",
                median(&mut packed),
                median(&mut rowmajor),
                median(&mut ratio),
                median(&mut avx2),
                median(&mut isa_ratio),
            );
        }
    }
}
