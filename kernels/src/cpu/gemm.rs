//! The dense layer's product `y = x · wᵀ` (`x` is `n × k`, `w` is `[out, k]` as PyTorch
//! stores it), run on the calling lane's thread.
//!
//! Lanes are the CPU backend's parallelism (one worker thread per core), so a product
//! runs on the lane that asked for it unless the backend was given spare threads per lane.
//! Small batches (a few rows) take a row-dot kernel that reads each weight row once for
//! every batch row; larger ones go to the `gemm` crate (candle's own GEMM) directly,
//! which skips candle's per-call thread-count probe and its hand-off to the rayon pool.

use super::dot::dots;

/// Batches of at most this many rows use the row-dot kernel.
pub const DOT_ROWS: usize = 8;

/// Writes `x · wᵀ` into `y` (`n × out`, row-major), with `x` `n × k` and `w` `out × k`,
/// using up to `threads` threads (1: the calling thread only).
pub fn matmul_wt(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    out: usize,
    y: &mut [f32],
    threads: usize,
) {
    check_sizes("matmul_wt", x, n, k, w, out, y);
    if n == 0 || out == 0 {
        return;
    }
    if k == 0 {
        y.fill(0.0);
        return;
    }
    if n <= DOT_ROWS {
        row_dots(x, n, k, w, out, y);
    } else {
        gemm_crate(x, n, k, w, out, y, threads);
    }
}

/// Panics unless `x` is `n × k`, `w` is `out × k` and `y` is `n × out` (the unsafe paths
/// rely on it).
fn check_sizes(what: &str, x: &[f32], n: usize, k: usize, w: &[f32], out: usize, y: &[f32]) {
    assert_eq!(x.len(), n * k, "{what}: x is not n x k");
    assert_eq!(w.len(), out * k, "{what}: w is not out x k");
    assert_eq!(y.len(), n * out, "{what}: y is not n x out");
}

/// The large-batch path alone: `x · wᵀ` by the `gemm` crate (same contract as [`matmul_wt`]).
pub fn gemm_crate(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    out: usize,
    y: &mut [f32],
    threads: usize,
) {
    check_sizes("gemm_crate", x, n, k, w, out, y);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three slices hold n×k, out×k and n×out f32 (checked above); the strides
    // describe x row-major (rs k, cs 1), wᵀ read from w (element (r, c) of wᵀ is
    // w[c·k + r]: rs 1, cs k) and y row-major (rs out, cs 1); `y` is exclusively borrowed
    // and does not overlap the inputs.
    unsafe {
        gemm::gemm(
            n,
            out,
            k,
            y.as_mut_ptr(),
            1,
            out as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The small-batch path alone: `x · wᵀ` by row-dot products (same contract as
/// [`matmul_wt`], one thread), with AVX2 + FMA code when the CPU has them.
pub fn row_dots(x: &[f32], n: usize, k: usize, w: &[f32], out: usize, y: &mut [f32]) {
    check_sizes("row_dots", x, n, k, w, out, y);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); sizes checked above.
        unsafe { avx2::row_dots(x, n, k, w, out, y) };
        return;
    }
    row_dots_portable(x, n, k, w, out, y);
}

/// Weight rows dotted together with one batch row (independent add chains, one load of
/// the batch row per step).
const J: usize = 8;

fn row_dots_portable(x: &[f32], n: usize, k: usize, w: &[f32], out: usize, y: &mut [f32]) {
    let xr = |i: usize| &x[i * k..(i + 1) * k];
    let groups = out / J;
    for g in 0..groups {
        let ws: [&[f32]; J] = std::array::from_fn(|j| &w[(g * J + j) * k..(g * J + j + 1) * k]);
        for i in 0..n {
            let v = dots(xr(i), ws);
            y[i * out + g * J..i * out + (g + 1) * J].copy_from_slice(&v);
        }
    }
    for o in groups * J..out {
        let wo = &w[o * k..(o + 1) * k];
        for i in 0..n {
            y[i * out + o] = dots(xr(i), [wo])[0];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::J;
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes of `v`.
    #[inline]
    #[target_feature(enable = "avx")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// `x · wᵀ` for a few rows: each group of `J` weight rows stays in L1 while every
    /// batch row passes over it, so the weights are read from memory once per batch.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `x`, `w`, `y` hold `n·k`, `out·k`, `n·out` f32.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_dots(
        x: &[f32],
        n: usize,
        k: usize,
        w: &[f32],
        out: usize,
        y: &mut [f32],
    ) {
        let k8 = k / 8 * 8;
        let groups = out / J;
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        for g in 0..groups {
            let wg = unsafe { wp.add(g * J * k) };
            for i in 0..n {
                let xi = unsafe { xp.add(i * k) };
                let mut acc = [_mm256_setzero_ps(); J];
                let mut c = 0;
                while c < k8 {
                    // SAFETY: c + 8 <= k, so every load stays inside row i of x and rows
                    // g·J..g·J+J of w.
                    unsafe {
                        let xv = _mm256_loadu_ps(xi.add(c));
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wg.add(j * k + c)), *a);
                        }
                    }
                    c += 8;
                }
                let mut v = [0f32; J];
                for (j, s) in v.iter_mut().enumerate() {
                    *s = hsum(acc[j]);
                    for c in k8..k {
                        *s += x[i * k + c] * w[(g * J + j) * k + c];
                    }
                }
                y[i * out + g * J..i * out + (g + 1) * J].copy_from_slice(&v);
            }
        }
        for o in groups * J..out {
            let wo = unsafe { wp.add(o * k) };
            for i in 0..n {
                let xi = unsafe { xp.add(i * k) };
                let mut acc = _mm256_setzero_ps();
                let mut c = 0;
                while c < k8 {
                    // SAFETY: c + 8 <= k (rows i of x and o of w).
                    unsafe {
                        acc = _mm256_fmadd_ps(
                            _mm256_loadu_ps(xi.add(c)),
                            _mm256_loadu_ps(wo.add(c)),
                            acc,
                        );
                    }
                    c += 8;
                }
                let mut s = hsum(acc);
                for c in k8..k {
                    s += x[i * k + c] * w[o * k + c];
                }
                y[i * out + o] = s;
            }
        }
    }
}
