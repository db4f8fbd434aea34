//! The dense layer's product `y = x · wᵀ` (`x` is `n × k`, `w` is `[out, k]` as PyTorch
//! stores it), run on the calling lane's thread.
//!
//! Lanes are the CPU backend's parallelism (one worker thread per core), so a product
//! runs on the lane that asked for it unless the backend was given spare threads per lane.
//! Batches of up to [`DOT_ROWS`] rows take a tiled row-dot kernel that reads each weight
//! row from memory once per batch (the weights need no repacking); larger ones go to the
//! `gemm` crate (candle's own GEMM) directly, which skips candle's per-call thread-count
//! probe and its hand-off to the rayon pool.
//!
//! The row-dot kernel has AVX-512 code (16 lanes, 4 × 6 tiles), AVX2 + FMA code (8 lanes,
//! 3 × 4 tiles) and a portable fallback, picked at run time by [`isa()`] (which
//! `COHOST_CPU_ISA` can cap, e.g. to test the AVX2 path on an AVX-512 CPU).
//!
//! Weights may also be stored as IEEE f16 ([`matmul_wt_f16`]): half the bytes to stream,
//! widened to f32 as they are loaded, products and sums in f32.

use super::dot::dots;
use super::isa::{Isa, isa};
use half::f16;

/// Batches of at most this many rows use the row-dot kernel: on one AVX2 thread it beat
/// the `gemm` crate on mlp-small's and dlrm-small's layers up to 64 rows and up to 128 on
/// some (the `crossover-*` benchmark of `models/benches/forward.rs`; docs/BENCHMARKS.md,
/// "CPU forward vs ONNX Runtime"); past 64 the batch rows no longer fit L2 beside a group.
pub const DOT_ROWS: usize = 64;

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
fn check_sizes<W>(what: &str, x: &[f32], n: usize, k: usize, w: &[W], out: usize, y: &[f32]) {
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

/// [`gemm_crate`] posed the other way round, `yᵀ = w · xᵀ` (the weights as the left
/// operand, written into `y` through transposed strides); same contract.
pub fn gemm_crate_wx(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f32],
    out: usize,
    y: &mut [f32],
    threads: usize,
) {
    check_sizes("gemm_crate_wx", x, n, k, w, out, y);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: as `gemm_crate`: dst is yᵀ (out × n: element (o, i) at y[i·out + o], rs 1,
    // cs out), lhs is w (out × k row-major: rs k, cs 1), rhs is xᵀ (k × n: element (c, i)
    // at x[i·k + c], rs 1, cs k).
    unsafe {
        gemm::gemm(
            out,
            n,
            k,
            y.as_mut_ptr(),
            out as isize,
            1,
            false,
            w.as_ptr(),
            1,
            k as isize,
            x.as_ptr(),
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

/// [`matmul_wt`] with the weights stored as f16: each weight is widened to f32 exactly,
/// so the result is `x · f32(w)ᵀ` summed in f32 (same contract otherwise).
pub fn matmul_wt_f16(
    x: &[f32],
    n: usize,
    k: usize,
    w: &[f16],
    out: usize,
    y: &mut [f32],
    threads: usize,
) {
    check_sizes("matmul_wt_f16", x, n, k, w, out, y);
    if n == 0 || out == 0 {
        return;
    }
    if n <= DOT_ROWS && isa() >= Isa::Avx2 {
        row_dots_f16(x, n, k, w, out, y);
    } else {
        // Many rows (or no AVX2): widen once, then the f32 path; the widening is one pass
        // over the weights, shared by every row.
        matmul_wt(x, n, k, &widened(w), out, y, threads);
    }
}

/// f16 weights as f32 (exact), for the paths that take f32 weights.
fn widened(w: &[f16]) -> Vec<f32> {
    w.iter().map(|v| v.to_f32()).collect()
}

/// The small-batch path alone: `x · wᵀ` by row-dot products (same contract as
/// [`matmul_wt`], one thread), with AVX-512 or AVX2 + FMA code when [`isa()`] allows.
pub fn row_dots(x: &[f32], n: usize, k: usize, w: &[f32], out: usize, y: &mut [f32]) {
    check_sizes("row_dots", x, n, k, w, out, y);
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: the CPU supports AVX-512 F, AVX2, FMA and F16C (`isa` detected them);
        // sizes checked above; `w` holds `out·k` f32.
        Isa::Avx512 => {
            return unsafe { avx512::row_dots::<false>(x, n, k, w.as_ptr().cast(), out, y) };
        }
        // SAFETY: the CPU supports AVX2, FMA and F16C (`isa` detected them); sizes checked
        // above; `w` holds `out·k` f32.
        Isa::Avx2 => return unsafe { avx2::row_dots::<false>(x, n, k, w.as_ptr().cast(), out, y) },
        Isa::Portable => {}
    }
    row_dots_portable(x, n, k, w, out, y);
}

/// [`row_dots`] with f16 weights (AVX-512 or AVX2 + FMA + F16C, else widened first).
pub fn row_dots_f16(x: &[f32], n: usize, k: usize, w: &[f16], out: usize, y: &mut [f32]) {
    check_sizes("row_dots_f16", x, n, k, w, out, y);
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: the CPU supports AVX-512 F, AVX2, FMA and F16C (`isa` detected them);
        // sizes checked above; `w` holds `out·k` f16 (`half::f16` is a transparent u16).
        Isa::Avx512 => {
            return unsafe { avx512::row_dots::<true>(x, n, k, w.as_ptr().cast(), out, y) };
        }
        // SAFETY: the CPU supports AVX2, FMA and F16C (`isa` detected them); sizes checked
        // above; `w` holds `out·k` f16 (`half::f16` is a transparent u16).
        Isa::Avx2 => return unsafe { avx2::row_dots::<true>(x, n, k, w.as_ptr().cast(), out, y) },
        Isa::Portable => {}
    }
    row_dots_portable(x, n, k, &widened(w), out, y);
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
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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
}
