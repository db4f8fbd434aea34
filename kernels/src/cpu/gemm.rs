//! The dense layer's product `y = x · wᵀ` (`x` is `n × k`, `w` is `[out, k]` as PyTorch
//! stores it), run on the calling lane's thread.
//!
//! Lanes are the CPU backend's parallelism (one worker thread per core), so a product
//! runs on the lane that asked for it unless the backend was given spare threads per lane.
//! Batches of up to [`DOT_ROWS`] rows take a tiled row-dot kernel that reads each weight
//! row from memory once per batch (the weights need no repacking); larger ones go to the
//! `gemm` crate (candle's own GEMM) directly, which skips candle's per-call thread-count
//! probe and its hand-off to the rayon pool.

use super::dot::dots;

/// Batches of at most this many rows use the row-dot kernel (on one thread it beats the
/// `gemm` crate up to here: `docs/results/session-5/kernel-tiles.txt`).
pub const DOT_ROWS: usize = 32;

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

    /// Batch rows per tile when the batch has more than one row.
    const R: usize = 3;
    /// Weight rows per tile when the batch has more than one row (`R·JT` accumulators
    /// plus `R + 1` loaded vectors fit the 16 AVX registers).
    const JT: usize = 4;

    /// Sum of the 8 lanes of `v`.
    #[inline]
    #[target_feature(enable = "avx")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// A load mask selecting the first `t` (< 8) lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn tail_mask(t: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(t as i32), lanes)
    }

    /// `x · wᵀ` for a few rows, in tiles of up to `R` batch rows × `JT` weight rows: each
    /// weight vector loaded feeds `R` rows' sums and each batch vector `JT`, so a tile does
    /// `R·JT` multiply-adds per `R + JT` loads. A single row takes tiles of `J` weight rows.
    ///
    /// Every output is summed in the same order whatever the tile (8 lane sums over the
    /// columns, the last partial 8 as one masked step, then the lanes), so a row's result
    /// does not depend on the batch it came in.
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
        // SAFETY: forwarded contract.
        unsafe {
            if n == 1 {
                columns::<1, J>(x, n, k, w, out, y);
            } else {
                columns::<R, JT>(x, n, k, w, out, y);
            }
        }
    }

    /// Groups of `JW` weight rows outside (each read from memory once per batch), blocks
    /// of up to `RB` (≤ 3) batch rows inside; the last `out % JW` weight rows one by one.
    ///
    /// # Safety
    /// As [`row_dots`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns<const RB: usize, const JW: usize>(
        x: &[f32],
        n: usize,
        k: usize,
        w: &[f32],
        out: usize,
        y: &mut [f32],
    ) {
        let (xp, wp, yp) = (x.as_ptr(), w.as_ptr(), y.as_mut_ptr());
        let full = out / JW * JW;
        let mut o = 0;
        while o < out {
            let mut i = 0;
            while i < n {
                let rows = (n - i).min(RB);
                // SAFETY: rows i..i+rows of x, weight rows o..o+JW (or o alone past
                // `full`) and the matching outputs of y are in bounds.
                unsafe {
                    let (xi, wo, yi) = (xp.add(i * k), wp.add(o * k), yp.add(i * out + o));
                    match (o < full, rows) {
                        (true, 3) => tile::<3, JW>(xi, wo, k, yi, out),
                        (true, 2) => tile::<2, JW>(xi, wo, k, yi, out),
                        (true, _) => tile::<1, JW>(xi, wo, k, yi, out),
                        (false, 3) => tile::<3, 1>(xi, wo, k, yi, out),
                        (false, 2) => tile::<2, 1>(xi, wo, k, yi, out),
                        (false, _) => tile::<1, 1>(xi, wo, k, yi, out),
                    }
                }
                i += rows;
            }
            o += if o < full { JW } else { 1 };
        }
    }

    /// One tile: `y[r·out + j] = x[r] · w[j]` for `r < TR`, `j < TJ`.
    ///
    /// # Safety
    /// AVX2 + FMA; `x` points at `TR` rows of `k` f32, `w` at `TJ` rows of `k`, `y` at
    /// `TR` rows of stride `out` with `TJ` writable values each.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(
        clippy::needless_range_loop,
        reason = "r and j index the tile's registers and its rows alike; fixed-count loops unroll"
    )]
    unsafe fn tile<const TR: usize, const TJ: usize>(
        x: *const f32,
        w: *const f32,
        k: usize,
        y: *mut f32,
        out: usize,
    ) {
        let k8 = k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); TJ]; TR];
        let mut xv = [_mm256_setzero_ps(); TR];
        let mut c = 0;
        while c < k8 {
            // SAFETY: c + 8 <= k: every load stays inside its row.
            unsafe {
                for r in 0..TR {
                    xv[r] = _mm256_loadu_ps(x.add(r * k + c));
                }
                for j in 0..TJ {
                    let wv = _mm256_loadu_ps(w.add(j * k + c));
                    for r in 0..TR {
                        acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
                    }
                }
            }
            c += 8;
        }
        if k8 < k {
            // The last k - k8 (< 8) columns as one masked step: lanes past k read nothing
            // and count as 0.
            let m = tail_mask(k - k8);
            // SAFETY: masked loads touch only columns k8..k of each row.
            unsafe {
                for r in 0..TR {
                    xv[r] = _mm256_maskload_ps(x.add(r * k + k8), m);
                }
                for j in 0..TJ {
                    let wv = _mm256_maskload_ps(w.add(j * k + k8), m);
                    for r in 0..TR {
                        acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
                    }
                }
            }
        }
        for r in 0..TR {
            for j in 0..TJ {
                // SAFETY: y's slot (r, j) is writable by the contract.
                unsafe { *y.add(r * out + j) = hsum(acc[r][j]) };
            }
        }
    }
}
