//! The AVX-512 F row-dot kernel (used where the CPU has AVX-512 F; see `isa`).

use super::J;
use super::avx2::widen_f16;
use std::arch::x86_64::*;

/// Batch rows per tile when the batch has more than one row.
const R: usize = 4;
/// Weight rows per tile when the batch has more than one row (`R·JT` accumulators
/// plus `R + 1` loaded vectors fit the 32 AVX-512 registers).
const JT: usize = 6;
/// f32 lanes of one register.
const V: usize = 16;

/// A mask selecting the first `t` (< 16) lanes.
#[inline]
fn tail_mask(t: usize) -> __mmask16 {
    ((1u32 << t) - 1) as __mmask16
}

/// `x · wᵀ` for a few rows, in tiles of up to `R` batch rows × `JT` weight rows; a
/// single row takes tiles of `J` weight rows (as the AVX2 kernel, with 16 lanes).
///
/// Every output is summed in the same order whatever the tile (16 lane sums over the
/// columns, the last partial 16 as one masked step, then the lanes), so a row's result
/// does not depend on the batch it came in.
///
/// # Safety
/// The CPU must support AVX-512 F, AVX2, FMA and F16C; `x`, `y` hold `n·k`, `n·out`
/// f32 and `w` points at `out·k` weights (f16 when `H`, else f32).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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

/// Weights `at..at + 16` as f32.
///
/// # Safety
/// AVX-512 F; the 16 weights are in bounds.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn load16<const H: bool>(w: *const u8, at: usize) -> __m512 {
    // SAFETY: the caller keeps `at..at + 16` inside the weights.
    unsafe {
        if H {
            _mm512_cvtph_ps(_mm256_loadu_si256(w.cast::<u16>().add(at).cast()))
        } else {
            _mm512_loadu_ps(w.cast::<f32>().add(at))
        }
    }
}

/// The first `t` (< 16) weights from `at`, as f32, the other lanes 0.
///
/// # Safety
/// AVX-512 F; the `t` weights are in bounds.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn load_tail<const H: bool>(w: *const u8, at: usize, t: usize) -> __m512 {
    // SAFETY: only `at..at + t` is read (masked lanes do not fault).
    unsafe {
        if H {
            let mut buf = [0u16; 16];
            std::ptr::copy_nonoverlapping(w.cast::<u16>().add(at), buf.as_mut_ptr(), t);
            _mm512_cvtph_ps(_mm256_loadu_si256(buf.as_ptr().cast()))
        } else {
            _mm512_maskz_loadu_ps(tail_mask(t), w.cast::<f32>().add(at))
        }
    }
}

/// Groups of `JW` weight rows outside, blocks of up to `RB` (≤ 4) batch rows inside;
/// the last `out % JW` weight rows one by one (as the AVX2 kernel).
///
/// # Safety
/// As [`row_dots`].
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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

/// The tile for `rows` (≤ 4) batch rows and a whole group of `JW` weight rows, or a
/// single weight row when `!whole`.
///
/// # Safety
/// As [`tile`] for the chosen shape.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
            (true, 4) => tile::<4, JW, H>(xi, w, k, yi, out),
            (true, 3) => tile::<3, JW, H>(xi, w, k, yi, out),
            (true, 2) => tile::<2, JW, H>(xi, w, k, yi, out),
            (true, _) => tile::<1, JW, H>(xi, w, k, yi, out),
            (false, 4) => tile::<4, 1, H>(xi, w, k, yi, out),
            (false, 3) => tile::<3, 1, H>(xi, w, k, yi, out),
            (false, 2) => tile::<2, 1, H>(xi, w, k, yi, out),
            (false, _) => tile::<1, 1, H>(xi, w, k, yi, out),
        }
    }
}

/// One tile: `y[r·out + j] = x[r] · w[j]` for `r < TR`, `j < TJ`.
///
/// # Safety
/// AVX-512 F + F16C; `x` points at `TR` rows of `k` f32, `w` at `TJ` rows of `k`
/// weights (f16 when `H`), `y` at `TR` rows of stride `out` with `TJ` writable values
/// each.
#[allow(
    clippy::needless_range_loop,
    reason = "r and j index the tile's registers and its rows alike; fixed-count loops unroll"
)]
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn tile<const TR: usize, const TJ: usize, const H: bool>(
    x: *const f32,
    w: *const u8,
    k: usize,
    y: *mut f32,
    out: usize,
) {
    let kv = k / V * V;
    let mut acc = [[_mm512_setzero_ps(); TJ]; TR];
    let mut xv = [_mm512_setzero_ps(); TR];
    let mut c = 0;
    while c < kv {
        // SAFETY: c + 16 <= k: every load stays inside its row.
        unsafe {
            for r in 0..TR {
                xv[r] = _mm512_loadu_ps(x.add(r * k + c));
            }
            for j in 0..TJ {
                let wv = load16::<H>(w, j * k + c);
                for r in 0..TR {
                    acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
                }
            }
        }
        c += V;
    }
    if kv < k {
        let m = tail_mask(k - kv);
        // SAFETY: masked loads touch only columns kv..k of each row.
        unsafe {
            for r in 0..TR {
                xv[r] = _mm512_maskz_loadu_ps(m, x.add(r * k + kv));
            }
            for j in 0..TJ {
                let wv = load_tail::<H>(w, j * k + kv, k - kv);
                for r in 0..TR {
                    acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
                }
            }
        }
    }
    for r in 0..TR {
        for j in 0..TJ {
            // SAFETY: y's slot (r, j) is writable by the contract.
            unsafe { *y.add(r * out + j) = _mm512_reduce_add_ps(acc[r][j]) };
        }
    }
}
