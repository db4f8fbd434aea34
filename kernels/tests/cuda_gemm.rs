//! The cuBLAS arguments of a linear layer (`cuda::gemm::linear_gemm_config`), run through a
//! column-major reference SGEMM that reads them exactly as `cublasSgemm` does, against the
//! row-major `Y = X · Wᵀ` in f64. Needs no GPU.

use cohost_kernels::cuda::gemm::{GemmArgs, Transpose, linear_gemm_config};
mod common;

use common::random;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `C = op(A) · op(B)` (alpha 1, beta 0) read as cuBLAS reads its arguments: column-major
/// storage, `op(A)` is `m x k` and `A` is stored `lda`-strided with `m` (N) or `k` (T) rows;
/// likewise B (`k x n`) and C (`m x n`, `ldc`). Refuses what cuBLAS refuses
/// (`CUBLAS_STATUS_INVALID_VALUE`) and any read or write past the buffers.
fn sgemm(g: &GemmArgs, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<(), String> {
    let (m, n, k) = (g.m as i64, g.n as i64, g.k as i64);
    if m < 0 || n < 0 || k < 0 {
        return Err(format!("negative dimension in {g:?}"));
    }
    // Stored rows of A and B (the leading dimension must cover them, and be at least 1).
    let a_rows = if g.transa == Transpose::N { m } else { k };
    let b_rows = if g.transb == Transpose::N { k } else { n };
    for (what, ld, rows) in [
        ("lda", g.lda, a_rows),
        ("ldb", g.ldb, b_rows),
        ("ldc", g.ldc, m),
    ] {
        if (ld as i64) < rows.max(1) {
            return Err(format!("{what} = {ld} < max(1, {rows}) in {g:?}"));
        }
    }
    let at = |i: i64, l: i64| -> Result<f64, String> {
        // op(A)[i, l]
        let idx = match g.transa {
            Transpose::N => i + l * g.lda as i64,
            Transpose::T => l + i * g.lda as i64,
        };
        a.get(idx as usize)
            .map(|&v| v as f64)
            .ok_or_else(|| format!("A read at {idx} past its {} values in {g:?}", a.len()))
    };
    let bt = |l: i64, j: i64| -> Result<f64, String> {
        let idx = match g.transb {
            Transpose::N => l + j * g.ldb as i64,
            Transpose::T => j + l * g.ldb as i64,
        };
        b.get(idx as usize)
            .map(|&v| v as f64)
            .ok_or_else(|| format!("B read at {idx} past its {} values in {g:?}", b.len()))
    };
    for j in 0..n {
        for i in 0..m {
            let mut acc = 0f64;
            for l in 0..k {
                acc += at(i, l)? * bt(l, j)?;
            }
            let idx = (i + j * g.ldc as i64) as usize;
            let len = c.len();
            *c.get_mut(idx)
                .ok_or_else(|| format!("C write at {idx} past its {len} values in {g:?}"))? =
                acc as f32;
        }
    }
    Ok(())
}

/// Checks the backend's arguments compute row-major `y = x · wᵀ` for `x: [n, k]`,
/// `w: [out, k]`; `tweak` may alter the arguments first.
fn check(n: usize, k: usize, out: usize, tweak: impl Fn(&mut GemmArgs)) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64((n * 1_000_003 + k * 1009 + out) as u64);
    let (x, w) = (random(&mut rng, n * k), random(&mut rng, out * k));
    let mut args = linear_gemm_config(n, k, out).map_err(|e| e.to_string())?;
    tweak(&mut args);
    // The backend's buffers: w is A, x is B, y is C; y starts as garbage (beta = 0).
    let mut y = vec![f32::NAN; n * out];
    sgemm(&args, &w, &x, &mut y)?;
    for r in 0..n {
        for o in 0..out {
            let want: f64 = (0..k)
                .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                .sum();
            let got = y[r * out + o] as f64;
            if (got - want).abs() > 1e-5 * want.abs().max(1.0) {
                return Err(format!(
                    "[{n}, {k}] -> {out}: y[{r}, {o}] = {got}, want {want} ({args:?})"
                ));
            }
        }
    }
    Ok(())
}

/// `(in, out)` of every linear layer of the presets (`models::synth::preset`): the MLPs, the
/// DLRM bottom MLPs and the top MLPs behind the interaction (`d + F(F-1)/2` inputs).
const PRESET_LAYERS: &[(usize, usize)] = &[
    // mlp-tiny 8-16-16-4
    (8, 16),
    (16, 16),
    (16, 4),
    // mlp-small 256-1024-512-64
    (256, 1024),
    (1024, 512),
    (512, 64),
    // dlrm-tiny: bottom 4-16-8, top (8 + 4*3/2 = 14)-16-8-1
    (4, 16),
    (16, 8),
    (14, 16),
    (8, 1),
    // dlrm-small: bottom 13-512-256-64, top (64 + 27*26/2 = 415)-512-256-1
    (13, 512),
    (512, 256),
    (256, 64),
    (415, 512),
    (256, 1),
    // dlrm-large-tables: bottom 13-256-64, top (64 + 9*8/2 = 100)-256-1
    (13, 256),
    (100, 256),
];

#[test]
fn linear_gemm_arguments_compute_x_times_w_transposed_on_the_preset_layers() {
    for &(k, out) in PRESET_LAYERS {
        for n in [1, 3] {
            check(n, k, out, |_| {}).unwrap();
        }
    }
    // Larger batches on a few layers (the reference is O(n·k·out)).
    for &(n, k, out) in &[(32, 415, 512), (512, 13, 512), (33, 100, 256)] {
        check(n, k, out, |_| {}).unwrap();
    }
}

#[test]
fn linear_gemm_arguments_handle_batch_one_and_empty_inputs() {
    for &(k, out) in &[(1, 1), (1, 7), (129, 65), (7, 1)] {
        check(1, k, out, |_| {}).unwrap();
    }
    // k = 0: y is all zeros (beta 0), and the leading dimensions stay valid (>= 1).
    for &(n, out) in &[(1, 1), (5, 3), (1, 64)] {
        check(n, 0, out, |_| {}).unwrap();
        let a = linear_gemm_config(n, 0, out).unwrap();
        assert_eq!((a.k, a.lda, a.ldb), (0, 1, 1));
    }
    let a = linear_gemm_config(37, 129, 65).unwrap();
    assert_eq!(
        a,
        GemmArgs {
            transa: Transpose::T,
            transb: Transpose::N,
            m: 65,
            n: 37,
            k: 129,
            lda: 129,
            ldb: 129,
            ldc: 65,
        }
    );
    assert!(linear_gemm_config(1, 1 << 31, 1).is_err());
}

#[test]
fn the_reference_rejects_wrong_arguments() {
    // The test is only worth something if wrong arguments turn it red.
    type Tweak = fn(&mut GemmArgs);
    let swaps: [(&str, Tweak); 5] = [
        ("lda = out", |a| a.lda = a.m),
        ("ldb = out", |a| a.ldb = a.m),
        ("ldc = n", |a| a.ldc = a.n),
        ("transa = N", |a| a.transa = Transpose::N),
        ("m and n swapped", |a| std::mem::swap(&mut a.m, &mut a.n)),
    ];
    for (what, tweak) in swaps {
        for &(n, k, out) in &[(3, 13, 512), (2, 415, 512), (5, 256, 1)] {
            assert!(
                check(n, k, out, tweak).is_err(),
                "{what} on [{n}, {k}] -> {out} passed"
            );
        }
    }
}
