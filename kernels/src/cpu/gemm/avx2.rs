//! The AVX2 + FMA + F16C row-dot kernel (`row_dots` on x86-64 CPUs that have them).

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
/// The weights are f32, or f16 when `H` (widened to f32 as they are loaded).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `x`, `y` hold `n·k`, `n·out` f32 and `w`
/// points at `out·k` weights (f16 when `H`, else f32).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn row_dots<const H: bool>(
    x: &[f32],
    n: usize,
    k: usize,
    w: *const u8,
    out: usize,
    y: &mut [f32],
) {
    // SAFETY: forwarded contract.
    unsafe {
        if n == 1 {
            columns::<1, J, H>(x, n, k, w, out, y);
        } else {
            columns::<R, JT, H>(x, n, k, w, out, y);
        }
    }
}

/// Bytes of one weight.
const fn width<const H: bool>() -> usize {
    if H { 2 } else { 4 }
}

/// Weights `c..c + 8` of the row at `w` (element offset `at`), as f32.
///
/// # Safety
/// AVX2 + F16C; the 8 weights are in bounds.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load8<const H: bool>(w: *const u8, at: usize) -> __m256 {
    // SAFETY: the caller keeps `at..at + 8` inside the weights.
    unsafe {
        if H {
            _mm256_cvtph_ps(_mm_loadu_si128(w.cast::<u16>().add(at).cast()))
        } else {
            _mm256_loadu_ps(w.cast::<f32>().add(at))
        }
    }
}

/// The first `t` (< 8) weights from element offset `at`, as f32, the other lanes 0.
///
/// # Safety
/// AVX2 + F16C; the `t` weights are in bounds.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_tail<const H: bool>(w: *const u8, at: usize, t: usize) -> __m256 {
    // SAFETY: only `at..at + t` is read.
    unsafe {
        if H {
            let mut buf = [0u16; 8];
            std::ptr::copy_nonoverlapping(w.cast::<u16>().add(at), buf.as_mut_ptr(), t);
            _mm256_cvtph_ps(_mm_loadu_si128(buf.as_ptr().cast()))
        } else {
            _mm256_maskload_ps(w.cast::<f32>().add(at), tail_mask(t))
        }
    }
}

/// Groups of `JW` weight rows outside (each read from memory once per batch), blocks
/// of up to `RB` (≤ 3) batch rows inside; the last `out % JW` weight rows one by one.
///
/// # Safety
/// As [`row_dots`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn columns<const RB: usize, const JW: usize, const H: bool>(
    x: &[f32],
    n: usize,
    k: usize,
    w: *const u8,
    out: usize,
    y: &mut [f32],
) {
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let full = out / JW * JW;
    // f16 weights feeding more than one batch row are widened a group at a time into
    // an f32 scratch that stays in L1 and read from there by the f32 tiles: each weight
    // is converted once per batch instead of once per tile of rows (and the tiles keep
    // the f32 path's registers).
    let widen = H && n > 1;
    let mut scratch = if widen {
        vec![0f32; JW * k]
    } else {
        Vec::new()
    };
    let mut o = 0;
    while o < out {
        let group = if o < full { JW } else { 1 };
        // SAFETY: weight rows o..o+group are in bounds; the scratch holds JW·k f32.
        let wg = unsafe {
            let wo = w.add(o * k * width::<H>());
            if widen {
                widen_f16(wo, group * k, scratch.as_mut_ptr());
                scratch.as_ptr().cast::<u8>()
            } else {
                wo
            }
        };
        let mut i = 0;
        while i < n {
            let rows = (n - i).min(RB);
            // SAFETY: rows i..i+rows of x, the group's weights at `wg` (f32 when
            // widened) and the matching outputs of y are in bounds.
            unsafe {
                let (xi, yi) = (xp.add(i * k), yp.add(i * out + o));
                if widen {
                    group_tile::<JW, false>(o < full, rows, xi, wg, k, yi, out);
                } else {
                    group_tile::<JW, H>(o < full, rows, xi, wg, k, yi, out);
                }
            }
            i += rows;
        }
        o += group;
    }
}

/// The tile for `rows` (≤ 3) batch rows and a whole group of `JW` weight rows, or a
/// single weight row when `!whole`.
///
/// # Safety
/// As [`tile`] for the chosen shape.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_tile<const JW: usize, const H: bool>(
    whole: bool,
    rows: usize,
    xi: *const f32,
    w: *const u8,
    k: usize,
    yi: *mut f32,
    out: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match (whole, rows) {
            (true, 3) => tile::<3, JW, H>(xi, w, k, yi, out),
            (true, 2) => tile::<2, JW, H>(xi, w, k, yi, out),
            (true, _) => tile::<1, JW, H>(xi, w, k, yi, out),
            (false, 3) => tile::<3, 1, H>(xi, w, k, yi, out),
            (false, 2) => tile::<2, 1, H>(xi, w, k, yi, out),
            (false, _) => tile::<1, 1, H>(xi, w, k, yi, out),
        }
    }
}

/// Writes `len` f16 values from `src` to `dst` as f32 (exact).
///
/// # Safety
/// AVX2 + F16C; `src` holds `len` f16 and `dst` room for `len` f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn widen_f16(src: *const u8, len: usize, dst: *mut f32) {
    let full = len / 8 * 8;
    let mut c = 0;
    // SAFETY: every read is inside `src[..len]`, every write inside `dst[..len]`.
    unsafe {
        while c < full {
            _mm256_storeu_ps(dst.add(c), load8::<true>(src, c));
            c += 8;
        }
        if full < len {
            let mut tail = [0f32; 8];
            _mm256_storeu_ps(tail.as_mut_ptr(), load_tail::<true>(src, full, len - full));
            std::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(full), len - full);
        }
    }
}

/// One tile: `y[r·out + j] = x[r] · w[j]` for `r < TR`, `j < TJ`.
///
/// # Safety
/// AVX2 + FMA + F16C; `x` points at `TR` rows of `k` f32, `w` at `TJ` rows of `k`
/// weights (f16 when `H`), `y` at `TR` rows of stride `out` with `TJ` writable values
/// each.
#[allow(
    clippy::needless_range_loop,
    reason = "r and j index the tile's registers and its rows alike; fixed-count loops unroll"
)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<const TR: usize, const TJ: usize, const H: bool>(
    x: *const f32,
    w: *const u8,
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
                let wv = load8::<H>(w, j * k + c);
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
                let wv = load_tail::<H>(w, j * k + k8, k - k8);
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
