//! The packed-weights dense product (`cpu::packed`) on every instruction-set path this CPU
//! runs, against an independent f64 loop, at shapes that end on partial tiles, panels and
//! blocks.
//!
//! Tolerance: `|got - ref| <= 1e-5 * max(|ref|, 1)`.

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::cpu::isa::{Isa, detected};
use cohost_kernels::cpu::packed::{KC, MC, PANEL, linear_packed_on, pack, packed_len};
use cohost_kernels::{Activation, Lane, Ops};
mod common;

use common::{act64, random};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.abs().max(1.0);
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// Every path this CPU can run: portable, AVX2, and AVX-512 where present.
fn paths() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| i <= detected())
        .collect()
}

/// `act(x · wᵀ + b)` in f64 (`b` empty: no bias).
fn reference(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    m: usize,
    b: &[f32],
    act: Activation,
) -> Vec<f64> {
    let mut want = vec![0f64; n * m];
    for r in 0..n {
        for o in 0..m {
            let mut s = b.get(o).map_or(0.0, |&v| v as f64);
            for c in 0..k {
                s += x[r * k + c] as f64 * w[o * k + c] as f64;
            }
            want[r * m + o] = act64(s, act);
        }
    }
    want
}

/// `(rows, k, out)`: rows 1..=5 (the wide tiles), 6, 7, 11, 13 (a 6-row tile and every
/// remainder), MC ± 1 and 2·MC + 5 (row blocks); k = 1, 7, KC − 1, KC, KC + 1, 3·KC + 5 and
/// 1500 (column blocks, the large-k sums); out = 1, 15, 16, 17, 33, 64, 65, 100 (partial and
/// whole panels, more panels than a wide tile takes). Then the AVX-512 kernel's blocking:
/// 12-row tiles exact and with every rest (1 to 11 rows, inside the panel loop or across),
/// an odd last panel, 1 to 8 panels across (8 + 4 + 2 + 1 left over), k = 1, out exactly a
/// panel, M = 1 and M = 513, and MC, KC and PANEL all exact at once.
const SHAPES: [(usize, usize, usize); 40] = [
    (1, 1, 1),
    (1, 7, 100),
    (1, 1500, 65),
    (2, 13, 33),
    (2, 257, 100),
    (3, 9, 64),
    (3, KC, 17),
    (4, 33, 100),
    (5, 70, 65),
    (5, KC - 1, 15),
    (6, 16, 16),
    (7, 3 * KC + 5, 17),
    (11, 5, 1),
    (13, KC + 1, 65),
    (6, 1500, 33),
    (MC - 1, 40, 33),
    (MC, 7, 16),
    (MC + 1, 300, 65),
    (2 * MC + 5, 64, 100),
    (17, 415, 1),
    (64, 256, 64),
    (32, 1, 15),
    (12, 33, 32),
    (24, 20, 48),
    (13, 40, 33),
    (14, 9, 100),
    (15, 129, 144),
    (16, 300, 1024),
    (19, 64, 100),
    (23, 1, 17),
    (1, 1, 16),
    (1, 70, 240),
    (2, 50, 112),
    (8, 31, 208),
    (11, 17, 65),
    (10, 1, 16),
    (MC, KC, PANEL),
    (MC + 17, 2 * KC + 3, 47),
    (513, 257, 65),
    (513, 1, 16),
];

#[test]
fn packing_puts_each_weight_in_its_panel_row_and_pads_with_zeros() {
    // w[o][c] = 100·o + c for 17 outputs × 3 inputs: two panels, the second 1 column wide.
    let (m, k) = (17, 3);
    let w: Vec<f32> = (0..m * k).map(|i| (100 * (i / k) + i % k) as f32).collect();
    let p = pack(&w, m, k);
    assert_eq!(p.len(), packed_len(m, k));
    assert_eq!(p.len(), 2 * k * PANEL);
    for c in 0..k {
        for j in 0..PANEL {
            assert_eq!(
                p[c * PANEL + j],
                (100 * j + c) as f32,
                "panel 0 c {c} j {j}"
            );
            let want = if j == 0 { (1600 + c) as f32 } else { 0.0 };
            assert_eq!(p[k * PANEL + c * PANEL + j], want, "panel 1 c {c} j {j}");
        }
    }
}

#[test]
fn packed_product_matches_f64_loops_on_every_path_activation_and_shape() {
    let mut rng = StdRng::seed_from_u64(21);
    for &(n, k, m) in &SHAPES {
        let x = random(&mut rng, n * k);
        let w = random(&mut rng, m * k);
        let b = random(&mut rng, m);
        let p = pack(&w, m, k);
        for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
            for bias in [&b[..], &[]] {
                let want = reference(&x, n, k, &w, m, bias, act);
                for isa in paths() {
                    for threads in [1, 2] {
                        let mut y = vec![f32::NAN; n * m];
                        linear_packed_on(isa, &x, n, k, &p, m, bias, act, &mut y, threads);
                        let what = format!(
                            "{n}x{k}x{m} {act:?} bias {} {} threads {threads}",
                            !bias.is_empty(),
                            isa.name()
                        );
                        assert_close(&y, &want, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn packed_results_do_not_depend_on_the_batch_a_row_came_in() {
    // Each output sums its column blocks in one fixed order whatever the tile (6-row,
    // wide, remainder) or thread, so a row's result is bit-identical alone or in a batch.
    let mut rng = StdRng::seed_from_u64(22);
    let (k, m) = (KC + 37, 70);
    let rows = MC + 9;
    let x = random(&mut rng, rows * k);
    let w = random(&mut rng, m * k);
    let b = random(&mut rng, m);
    let p = pack(&w, m, k);
    for isa in paths() {
        let product = |xs: &[f32], n: usize, threads: usize| {
            let mut y = vec![0f32; n * m];
            linear_packed_on(isa, xs, n, k, &p, m, &b, Activation::Relu, &mut y, threads);
            y
        };
        let alone: Vec<Vec<f32>> = (0..rows)
            .map(|r| product(&x[r * k..(r + 1) * k], 1, 1))
            .collect();
        for (n, threads) in [
            (2, 1),
            (3, 1),
            (5, 1),
            (7, 1),
            (13, 1),
            (rows, 1),
            (rows, 2),
        ] {
            let y = product(&x[..n * k], n, threads);
            for (r, want) in alone.iter().enumerate().take(n) {
                assert_eq!(
                    &y[r * m..(r + 1) * m],
                    &want[..],
                    "{}: row {r} of a batch of {n}, {threads} threads",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn dense_weights_give_the_linear_layer_through_ops() {
    // Through the backend: dense_weight packs, linear recognises the packed tensor.
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(23);
    for ops in [CpuOps::new(), CpuOps::with_threads(2)] {
        for &(n, k, m) in &[(1, 256, 1024), (7, 415, 1), (64, 70, 129), (300, 33, 17)] {
            let x = random(&mut rng, n * k);
            let w = random(&mut rng, m * k);
            let b = random(&mut rng, m);
            let xt = ops.upload(&lane, &x, n, k).unwrap();
            let wt = ops.dense_weight(&w, m, k).unwrap();
            let bt = ops.weight(&b, 1, m).unwrap();
            for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
                let y = ops.linear(&lane, &xt, &wt, &bt, act).unwrap();
                assert_eq!(ops.shape(&y), (n, m));
                let got = ops.download(&lane, &y).unwrap();
                let what = format!("ops {n}x{k}x{m} {act:?} {} threads", ops.threads());
                assert_close(&got, &reference(&x, n, k, &w, m, &b, act), &what);
            }
        }
    }
}

#[test]
fn linear_rejects_packed_weights_of_the_wrong_shape() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x = ops.upload(&lane, &[0.0; 6], 2, 3).unwrap();
    // 17 outputs of 3 inputs: 2 panels.
    let w = ops.dense_weight(&[0.0; 51], 17, 3).unwrap();
    let b17 = ops.weight(&[0.0; 17], 1, 17).unwrap();
    assert!(ops.linear(&lane, &x, &w, &b17, Activation::None).is_ok());
    // A bias of 40 outputs needs 3 panels.
    let b40 = ops.weight(&[0.0; 40], 1, 40).unwrap();
    assert!(ops.linear(&lane, &x, &w, &b40, Activation::None).is_err());
    // x of 4 inputs against weights of 3.
    let x4 = ops.upload(&lane, &[0.0; 8], 2, 4).unwrap();
    assert!(ops.linear(&lane, &x4, &w, &b17, Activation::None).is_err());
}

#[test]
fn avx2_and_avx512_paths_give_the_same_bits() {
    // Both run one fused multiply-add chain per output over each block's columns in order,
    // whatever their tiles, so they agree exactly (skipped on CPUs without AVX-512).
    if detected() < Isa::Avx512 {
        return;
    }
    let mut rng = StdRng::seed_from_u64(24);
    for &(n, k, m) in &[
        (513, 300, 100),
        (17, KC + 1, 1024),
        (5, 9, 16),
        (1, 256, 1000),
    ] {
        let x = random(&mut rng, n * k);
        let w = random(&mut rng, m * k);
        let b = random(&mut rng, m);
        let p = pack(&w, m, k);
        let run = |isa: Isa| {
            let mut y = vec![f32::NAN; n * m];
            linear_packed_on(isa, &x, n, k, &p, m, &b, Activation::Relu, &mut y, 1);
            y
        };
        let (two, five) = (run(Isa::Avx2), run(Isa::Avx512));
        for (i, (a, c)) in two.iter().zip(&five).enumerate() {
            assert_eq!(
                a.to_bits(),
                c.to_bits(),
                "{n}x{k}x{m}[{i}]: avx2 {a}, avx512 {c}"
            );
        }
    }
}
