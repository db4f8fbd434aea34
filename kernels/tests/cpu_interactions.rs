//! The DLRM interaction variants and the DCN cross combine on the CPU against independent
//! f64 loops (and hand-computed values).
//!
//! Tolerance: `|got - ref| <= 1e-5 * max(|ref|, 1)` (f32 sums of at most a few hundred
//! O(1) products); the cat interaction and the cross combine's `a·b + c` are checked the same way.

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::{KernelError, Lane, Ops};
mod common;

use common::random;
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

/// `(n, d, tables)` of the interaction tests: one row, a few, many rows and odd widths.
const SIZES: [(usize, usize, usize); 5] =
    [(1, 3, 1), (7, 8, 3), (300, 16, 5), (5, 13, 26), (2, 1, 4)];

/// Features `[x, e_0, ..]` as random `n x d` host matrices and as CPU tensors.
fn features(
    ops: &CpuOps,
    lane: &Lane,
    rng: &mut StdRng,
    n: usize,
    d: usize,
    k: usize,
) -> (Vec<Vec<f32>>, Vec<candle_core::Tensor>) {
    let host: Vec<Vec<f32>> = (0..=k).map(|_| random(rng, n * d)).collect();
    let dev = host
        .iter()
        .map(|v| ops.upload(lane, v, n, d).unwrap())
        .collect();
    (host, dev)
}

#[test]
fn dot_interaction_itself_hand_computed_order() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    // One row, d = 2: x = (1, 2), e0 = (3, 4), e1 = (5, 6).
    let x = ops.upload(&lane, &[1.0, 2.0], 1, 2).unwrap();
    let e0 = ops.upload(&lane, &[3.0, 4.0], 1, 2).unwrap();
    let e1 = ops.upload(&lane, &[5.0, 6.0], 1, 2).unwrap();
    let z = ops.dot_interaction_itself(&lane, &x, &[e0, e1]).unwrap();
    // [x, T0·T0, T1·T0, T1·T1, T2·T0, T2·T1, T2·T2] = [1, 2, 5, 11, 25, 17, 39, 61].
    assert_eq!(
        ops.download(&lane, &z).unwrap(),
        vec![1.0, 2.0, 5.0, 11.0, 25.0, 17.0, 39.0, 61.0]
    );
}

#[test]
fn dot_interaction_itself_matches_f64_loops() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(3);
    for (n, d, k) in SIZES {
        let (t, dev) = features(&ops, &lane, &mut rng, n, d, k);
        let z = ops
            .dot_interaction_itself(&lane, &dev[0], &dev[1..])
            .unwrap();
        let f = k + 1;
        let width = d + f * (f + 1) / 2;
        assert_eq!(ops.shape(&z), (n, width));
        let mut want = Vec::with_capacity(n * width);
        for r in 0..n {
            let row = |i: usize| &t[i][r * d..(r + 1) * d];
            want.extend(row(0).iter().map(|&v| v as f64));
            for i in 0..f {
                for j in 0..=i {
                    let dot = row(i).iter().zip(row(j));
                    want.push(dot.map(|(&a, &b)| a as f64 * b as f64).sum());
                }
            }
        }
        let got = ops.download(&lane, &z).unwrap();
        assert_close(&got, &want, &format!("itself n={n} d={d} k={k}"));
    }
}

#[test]
fn cat_interaction_places_features_side_by_side() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x = ops.upload(&lane, &[1.0, 2.0, 3.0, 4.0], 2, 2).unwrap();
    let e0 = ops.upload(&lane, &[5.0, 6.0, 7.0, 8.0], 2, 2).unwrap();
    let z = ops.cat_interaction(&lane, &x, &[e0]).unwrap();
    assert_eq!(ops.shape(&z), (2, 4));
    assert_eq!(
        ops.download(&lane, &z).unwrap(),
        vec![1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]
    );
    let mut rng = StdRng::seed_from_u64(4);
    for (n, d, k) in SIZES {
        let (t, dev) = features(&ops, &lane, &mut rng, n, d, k);
        let z = ops.cat_interaction(&lane, &dev[0], &dev[1..]).unwrap();
        assert_eq!(ops.shape(&z), (n, (k + 1) * d));
        let want: Vec<f64> = (0..n)
            .flat_map(|r| t.iter().flat_map(move |f| &f[r * d..(r + 1) * d]))
            .map(|&v| v as f64)
            .collect();
        let got = ops.download(&lane, &z).unwrap();
        assert_close(&got, &want, &format!("cat n={n} d={d} k={k}"));
    }
}

#[test]
fn cross_matches_f64_loops() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(5);
    for (n, w) in [(1, 1), (1, 3456), (7, 33), (64, 416)] {
        let [x0, y, xl] = [0, 1, 2].map(|_| random(&mut rng, n * w));
        let up = |v: &[f32]| ops.upload(&lane, v, n, w).unwrap();
        let out = ops.cross(&lane, &up(&x0), &up(&y), &up(&xl)).unwrap();
        assert_eq!(ops.shape(&out), (n, w));
        let want: Vec<f64> = (0..n * w)
            .map(|i| x0[i] as f64 * y[i] as f64 + xl[i] as f64)
            .collect();
        let got = ops.download(&lane, &out).unwrap();
        assert_close(&got, &want, &format!("cross n={n} w={w}"));
    }
}

#[test]
fn variants_reject_mismatched_shapes() {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let x = ops.upload(&lane, &[0.0; 4], 2, 2).unwrap();
    let e = ops.upload(&lane, &[0.0; 3], 1, 3).unwrap();
    let shape_err =
        |r: cohost_kernels::Result<candle_core::Tensor>| matches!(r, Err(KernelError::Shape(_)));
    assert!(shape_err(ops.dot_interaction_itself(
        &lane,
        &x,
        std::slice::from_ref(&e)
    )));
    assert!(shape_err(ops.cat_interaction(
        &lane,
        &x,
        std::slice::from_ref(&e)
    )));
    let y = ops.upload(&lane, &[0.0; 6], 2, 3).unwrap();
    assert!(shape_err(ops.cross(&lane, &x, &y, &x)));
    assert!(shape_err(ops.cross(&lane, &x, &x, &y)));
}
