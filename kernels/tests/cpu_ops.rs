//! Each CPU op against an independent f64 loop (or a hand-computed value).
//!
//! Tolerance: `|got - ref| <= 1e-5 * max(|ref|, 1)` — f32 accumulation over at most a
//! few hundred terms of O(1) values stays well inside it.

use cohost_kernels::cpu::gemm::{matmul_wt_f16, row_dots, row_dots_f16};
use cohost_kernels::cpu::{CpuOps, embedding_bag_sum};
use cohost_kernels::{Activation, KernelError, Lane, Ops};
use half::f16;
mod common;

use common::{act64, random};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// `(rows, k, out)` of the linear tests.
const LINEAR_SIZES: [(usize, usize, usize); 14] = [
    (1, 1, 1),
    (1, 13, 7),
    (1, 16, 19),
    (2, 8, 5),
    (3, 9, 3),
    (4, 33, 17),
    (5, 33, 17),
    (6, 7, 2),
    (7, 70, 9),
    (8, 16, 12),
    (9, 16, 9),
    (32, 33, 21),
    (33, 9, 4),
    (64, 70, 129),
];

#[test]
fn linear_matches_f64_loops_for_every_activation_and_odd_sizes() {
    // Rows 1..=32 take the row-dot kernel (tiles of 3 batch rows x 4 weight rows, or 8
    // weight rows for a single row), more rows the gemm crate. Row counts 7, 8 and 32 end
    // on a partial row tile; out = 5, 9, 17, 129 on single weight rows after the 4-row
    // groups; k = 7, 8, 9, 33 and 70 cover an empty, exact and partial 8-wide tail;
    // 2 threads cover gemm's rayon path.
    for ops in [CpuOps::new(), CpuOps::with_threads(2)] {
        linear_against_f64(&ops, false);
    }
}

#[test]
fn linear_with_f16_weights_matches_f64_loops_over_the_rounded_weights() {
    // The same shapes with weights stored as f16: the reference multiplies by each weight
    // rounded to f16 (what the layer holds), so the tolerance is the f32 one.
    for ops in [CpuOps::new(), CpuOps::with_threads(2)] {
        linear_against_f64(&ops, true);
    }
}

/// `ops.linear` against f64 loops over [`LINEAR_SIZES`], weights stored as f16 when `half`.
fn linear_against_f64(ops: &CpuOps, half: bool) {
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(1);
    for &(n, k, m) in &LINEAR_SIZES {
        let x = random(&mut rng, n * k);
        let w = random(&mut rng, m * k);
        let b = random(&mut rng, m);
        // The weights as the layer holds them.
        let held: Vec<f32> = if half {
            w.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
        } else {
            w.clone()
        };
        for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
            let xt = ops.upload(&lane, &x, n, k).unwrap();
            let wt = if half {
                ops.weight_f16(&w, m, k).unwrap()
            } else {
                ops.weight(&w, m, k).unwrap()
            };
            let bt = ops.weight(&b, 1, m).unwrap();
            let y = ops.linear(&lane, &xt, &wt, &bt, act).unwrap();
            assert_eq!(ops.shape(&y), (n, m));
            let got = ops.download(&lane, &y).unwrap();
            let mut want = vec![0f64; n * m];
            for r in 0..n {
                for o in 0..m {
                    let mut s = b[o] as f64;
                    for i in 0..k {
                        s += x[r * k + i] as f64 * held[o * k + i] as f64;
                    }
                    want[r * m + o] = act64(s, act);
                }
            }
            let what = format!(
                "linear {n}x{k}x{m} {act:?}, {} threads, f16 weights {half}",
                ops.threads()
            );
            assert_close(&got, &want, &what);
        }
    }
}

#[test]
fn row_dot_results_do_not_depend_on_the_batch_a_row_came_in() {
    // The small-batch kernel sums every output in one fixed order whatever its tile, so a
    // row gives bit-identical results alone, in a batch of 2, 3, 7 or 32 rows.
    let mut rng = StdRng::seed_from_u64(9);
    let (k, m) = (37, 13);
    let x = random(&mut rng, 32 * k);
    let w = random(&mut rng, m * k);
    let product = |rows: &[f32], n: usize| {
        let mut y = vec![0f32; n * m];
        row_dots(rows, n, k, &w, m, &mut y);
        y
    };
    let alone: Vec<Vec<f32>> = (0..32)
        .map(|r| product(&x[r * k..(r + 1) * k], 1))
        .collect();
    for n in [2, 3, 7, 32] {
        let y = product(&x[..n * k], n);
        for (r, want) in alone.iter().enumerate().take(n) {
            assert_eq!(
                &y[r * m..(r + 1) * m],
                &want[..],
                "row {r} of a batch of {n}"
            );
        }
    }
}

#[test]
fn f16_weights_give_exactly_the_f32_kernel_on_the_widened_weights() {
    // Widening f16 to f32 is exact and the sums run in the same order, so the f16 kernel's
    // result is bit-identical to the f32 kernel's on the widened weights, for every tile
    // shape (1..=32 rows; k with and without an 8-wide tail; out with single rows left).
    let mut rng = StdRng::seed_from_u64(11);
    for (k, m) in [(37, 13), (415, 9), (8, 4)] {
        let x = random(&mut rng, 40 * k);
        let w16: Vec<f16> = random(&mut rng, m * k)
            .into_iter()
            .map(f16::from_f32)
            .collect();
        let wide: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
        for n in [1, 2, 3, 4, 7, 32] {
            let mut a = vec![0f32; n * m];
            let mut b = vec![0f32; n * m];
            row_dots_f16(&x[..n * k], n, k, &w16, m, &mut a);
            row_dots(&x[..n * k], n, k, &wide, m, &mut b);
            assert_eq!(a, b, "k {k} m {m} n {n}");
        }
        // Past 32 rows the weights are widened into an f32 copy per call and go to the gemm crate.
        let n = 40;
        let mut a = vec![0f32; n * m];
        matmul_wt_f16(&x, n, k, &w16, m, &mut a, 1);
        let mut b = vec![0f32; n * m];
        cohost_kernels::cpu::matmul_wt(&x, n, k, &wide, m, &mut b, 1);
        assert_eq!(a, b, "k {k} m {m} n {n}");
    }
}

#[test]
fn linear_relu_clamps_negatives_to_zero() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x = ops.upload(&lane, &[1.0, 2.0], 1, 2).unwrap();
    let w = ops.weight(&[1.0, 1.0, -1.0, -1.0], 2, 2).unwrap();
    let b = ops.weight(&[0.5, 0.5], 1, 2).unwrap();
    let y = ops.linear(&lane, &x, &w, &b, Activation::Relu).unwrap();
    assert_eq!(ops.download(&lane, &y).unwrap(), vec![3.5, 0.0]);
}

#[test]
fn linear_rejects_mismatched_shapes() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x = ops.upload(&lane, &[0.0; 6], 2, 3).unwrap();
    let w = ops.weight(&[0.0; 8], 2, 4).unwrap();
    let b = ops.weight(&[0.0; 2], 1, 2).unwrap();
    let err = ops.linear(&lane, &x, &w, &b, Activation::None).unwrap_err();
    assert!(matches!(err, KernelError::Shape(_)), "{err:?}");
    assert!(matches!(
        ops.upload(&lane, &[0.0; 5], 2, 3),
        Err(KernelError::Shape(_))
    ));
}

#[test]
fn dot_interaction_hand_computed_order() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    // One row, d = 2: x = (1, 2), e0 = (3, 4), e1 = (5, 6).
    let x = ops.upload(&lane, &[1.0, 2.0], 1, 2).unwrap();
    let e0 = ops.upload(&lane, &[3.0, 4.0], 1, 2).unwrap();
    let e1 = ops.upload(&lane, &[5.0, 6.0], 1, 2).unwrap();
    let z = ops.dot_interaction(&lane, &x, &[e0, e1]).unwrap();
    // [x, T1·T0, T2·T0, T2·T1] = [1, 2, 11, 17, 39].
    assert_eq!(
        ops.download(&lane, &z).unwrap(),
        vec![1.0, 2.0, 11.0, 17.0, 39.0]
    );
}

#[test]
fn dot_interaction_matches_f64_loops_small_and_threaded() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(2);
    for &(n, d, k) in &[(1, 3, 1), (7, 8, 3), (300, 16, 5)] {
        let x = random(&mut rng, n * d);
        let es: Vec<Vec<f32>> = (0..k).map(|_| random(&mut rng, n * d)).collect();
        let xt = ops.upload(&lane, &x, n, d).unwrap();
        let et: Vec<_> = es
            .iter()
            .map(|e| ops.upload(&lane, e, n, d).unwrap())
            .collect();
        let z = ops.dot_interaction(&lane, &xt, &et).unwrap();
        let f = k + 1;
        let width = d + f * (f - 1) / 2;
        assert_eq!(ops.shape(&z), (n, width));
        let got = ops.download(&lane, &z).unwrap();
        let mut want = Vec::with_capacity(n * width);
        for r in 0..n {
            let t = |i: usize| -> &[f32] {
                if i == 0 {
                    &x[r * d..(r + 1) * d]
                } else {
                    &es[i - 1][r * d..(r + 1) * d]
                }
            };
            want.extend(t(0).iter().map(|&v| v as f64));
            for i in 0..f {
                for j in 0..i {
                    want.push(
                        t(i).iter()
                            .zip(t(j))
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum(),
                    );
                }
            }
        }
        assert_close(&got, &want, &format!("dot_interaction n={n} d={d} k={k}"));
    }
}

#[test]
fn dot_interaction_rejects_mismatched_pooled() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x = ops.upload(&lane, &[0.0; 4], 2, 2).unwrap();
    let e = ops.upload(&lane, &[0.0; 3], 1, 3).unwrap();
    assert!(matches!(
        ops.dot_interaction(&lane, &x, &[e]),
        Err(KernelError::Shape(_))
    ));
}

#[test]
fn sigmoid_matches_f64() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x: Vec<f32> = vec![-30.0, -2.5, -1.0, 0.0, 0.5, 3.0, 30.0, 7.25];
    let t = ops.upload(&lane, &x, 2, 4).unwrap();
    let y = ops.sigmoid(&lane, &t).unwrap();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
        .collect();
    assert_close(&ops.download(&lane, &y).unwrap(), &want, "sigmoid");
    // The input is untouched (sigmoid allocates its result).
    assert_eq!(ops.download(&lane, &t).unwrap(), x);
}

#[test]
fn resident_table_bag_sum_matches_f64_including_multi_hot() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, dim) = (50, 6);
    let data = random(&mut rng, rows * dim);
    let table = ops.resident_table("t0", &data, rows, dim).unwrap();
    assert_eq!((table.rows(), table.dim(), table.name()), (rows, dim, "t0"));
    assert_eq!(table.memory().resident_bytes, (rows * dim * 4) as u64);
    for bag in [1, 3] {
        let n = 9;
        let idx: Vec<i64> = (0..n * bag)
            .map(|_| rng.random_range(0..rows as i64))
            .collect();
        let y = table.bag_sum(&ops, &lane, &idx, bag).unwrap();
        assert_eq!(ops.shape(&y), (n, dim));
        let mut want = vec![0f64; n * dim];
        for r in 0..n {
            for b in 0..bag {
                let i = idx[r * bag + b] as usize;
                for c in 0..dim {
                    want[r * dim + c] += data[i * dim + c] as f64;
                }
            }
        }
        assert_close(
            &ops.download(&lane, &y).unwrap(),
            &want,
            &format!("bag {bag}"),
        );
    }
}

#[test]
fn bag_sum_rejects_out_of_range_and_negative_indices() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let table = ops.resident_table("t7", &[0.0; 20], 10, 2).unwrap();
    for bad in [10i64, -1] {
        let err = table.bag_sum(&ops, &lane, &[0, bad], 1).unwrap_err();
        assert_eq!(
            err,
            KernelError::IndexOutOfRange {
                table: "t7".into(),
                index: bad,
                rows: 10
            }
        );
    }
    assert!(matches!(
        table.bag_sum(&ops, &lane, &[0, 1, 2], 2),
        Err(KernelError::Shape(_))
    ));
}

#[test]
fn prefetch_ignores_rows_outside_the_table_and_changes_no_result() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let data: Vec<f32> = (0..40).map(|v| v as f32).collect();
    let table = ops.resident_table("t8", &data, 10, 4).unwrap();
    let before = table.bag_sum(&ops, &lane, &[9, 0, 3], 1).unwrap();
    table.prefetch(&[9, 0, 3, -1, 10, i64::MAX, i64::MIN]);
    let after = table.bag_sum(&ops, &lane, &[9, 0, 3], 1).unwrap();
    let want = [
        36.0, 37.0, 38.0, 39.0, 0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0,
    ];
    assert_eq!(ops.download(&lane, &before).unwrap(), want);
    assert_eq!(ops.download(&lane, &after).unwrap(), want);
}

#[test]
fn embedding_bag_sum_free_function_sums_bags() {
    // 3 rows of dim 2: r0 = (1, 2), r1 = (10, 20), r2 = (100, 200).
    let table = [1.0, 2.0, 10.0, 20.0, 100.0, 200.0];
    let mut out = [0f32; 4];
    embedding_bag_sum(&table, 2, &[0, 2, 1, 1], 2, &mut out);
    assert_eq!(out, [101.0, 202.0, 20.0, 40.0]);
}

#[test]
fn weights_round_trip_and_strided_or_contiguous_w_agree() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(4);
    let (n, k, m) = (3, 5, 4);
    let w = random(&mut rng, m * k);
    // What comes back from a weight is [m, k] row-major, whatever the storage.
    let wt = ops.weight(&w, m, k).unwrap();
    assert_eq!(ops.shape(&wt), (m, k));
    assert_eq!(ops.download(&lane, &wt).unwrap(), w);
    // A `w` stored transposed (a strided view of a contiguous wᵀ) gives the same linear.
    let wu = ops
        .upload(&lane, &w, m, k)
        .unwrap()
        .t()
        .unwrap()
        .contiguous()
        .unwrap()
        .t()
        .unwrap();
    let x = ops.upload(&lane, &random(&mut rng, n * k), n, k).unwrap();
    let b = ops.weight(&random(&mut rng, m), 1, m).unwrap();
    let y1 = ops.linear(&lane, &x, &wt, &b, Activation::Relu).unwrap();
    let y2 = ops.linear(&lane, &x, &wu, &b, Activation::Relu).unwrap();
    assert_close(
        &ops.download(&lane, &y1).unwrap(),
        &ops.download(&lane, &y2)
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>(),
        "weight layouts",
    );
    // Weights also work as ordinary operands of the other ops.
    let z = ops
        .dot_interaction(&lane, &wt, std::slice::from_ref(&wt))
        .unwrap();
    assert_eq!(ops.shape(&z), (m, k + 1));
}
