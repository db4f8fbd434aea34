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
/// some (the `crossover-*` benchmark of `models/benches/forward.rs`; docs/CPU-EFFICIENCY.md,
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
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;
