//! The dense layer's product over weights packed once at load: `y = act(x · wᵀ + b)` with
//! `w` (`[out, k]`, PyTorch's layout) rearranged into panels of [`PANEL`] output columns.
//!
//! Panel `p` holds, for each input column `c = 0..k` in order, the weights of outputs
//! `p·PANEL .. p·PANEL + PANEL` side by side (zeros past `out`), so the micro-kernel reads
//! one contiguous `PANEL`-wide row of weights per input column and multiplies it into a
//! tile of batch rows held in registers. Packing happens once, in [`pack`] (the CPU
//! backend's `Ops::dense_weight`), never per call.
//!
//! Blocking: the inputs are cut into blocks of at most [`KC`] columns (one panel's slice of
//! a block, `KC·PANEL` f32, stays in L1 while it meets every tile of rows), the batch into
//! blocks of at most [`MC`] rows (a block of `x` stays in L2 while every panel passes).
//! Each output is the sum, block by block in column order, of a fresh in-register sum over
//! the block's columns, so a row's result does not depend on the batch it came in nor on
//! the tile it fell in (only on the instruction set). The bias add and ReLU are applied in
//! the last block's epilogue, before the tile is stored; a sigmoid is one pass after.
//!
//! The AVX-512 F micro-kernel (6 rows × 32 columns, one panel a vector) runs where
//! [`isa()`] allows AVX-512; the AVX2 + FMA one (6 rows × 16 columns, or wider and shorter
//! for batches of fewer than 6 rows) where it allows AVX2; else a portable loop over the
//! same layout. The two vector kernels give the same bits.

use super::bias_act_in_place;
use super::isa::{Isa, isa};
use crate::Activation;

/// Output columns per packed panel (two AVX2 vectors).
pub const PANEL: usize = 16;

/// Most input columns per block (a panel's slice of a block is `KC·PANEL·4` = 16 KiB).
pub const KC: usize = 256;

/// Most batch rows per block (a block of `x` is at most `MC·KC·4` = 144 KiB).
pub const MC: usize = 144;

/// Batch rows per micro-tile once a batch has at least that many.
const MR: usize = 6;

/// Length of `w` (`out × k`) packed: whole panels, the last padded with zeros.
pub fn packed_len(out: usize, k: usize) -> usize {
    out.div_ceil(PANEL) * k * PANEL
}

/// Packs `w` (`out × k`, row-major) into panels of [`PANEL`] output columns.
pub fn pack(w: &[f32], out: usize, k: usize) -> Vec<f32> {
    assert_eq!(w.len(), out * k, "pack: w is not out x k");
    let mut packed = vec![0f32; packed_len(out, k)];
    for (p, panel) in packed.chunks_exact_mut((k * PANEL).max(1)).enumerate() {
        for j in 0..PANEL.min(out - p * PANEL) {
            let row = &w[(p * PANEL + j) * k..(p * PANEL + j + 1) * k];
            for (c, &v) in row.iter().enumerate() {
                panel[c * PANEL + j] = v;
            }
        }
    }
    packed
}

/// Writes `act(x · wᵀ + bias)` into `y` (`n × out`), with `x` `n × k`, `packed` = [`pack`]
/// of `w` (`out × k`) and `bias` of `out` values (or empty: none), using up to `threads`
/// threads (split by batch rows; 1: the calling thread only).
#[allow(
    clippy::too_many_arguments,
    reason = "the product's operands and sizes"
)]
pub fn linear_packed(
    x: &[f32],
    n: usize,
    k: usize,
    packed: &[f32],
    out: usize,
    bias: &[f32],
    act: Activation,
    y: &mut [f32],
    threads: usize,
) {
    linear_packed_on(isa(), x, n, k, packed, out, bias, act, y, threads);
}

/// [`linear_packed`] on the instruction set `isa` (capped at what the CPU has), whatever
/// [`isa()`] says: tests and benchmarks compare the paths in one process with it.
#[allow(
    clippy::too_many_arguments,
    reason = "the product's operands and sizes"
)]
pub fn linear_packed_on(
    isa: Isa,
    x: &[f32],
    n: usize,
    k: usize,
    packed: &[f32],
    out: usize,
    bias: &[f32],
    act: Activation,
    y: &mut [f32],
    threads: usize,
) {
    assert_eq!(x.len(), n * k, "linear_packed: x is not n x k");
    assert_eq!(
        packed.len(),
        packed_len(out, k),
        "linear_packed: packed weights are not out x k"
    );
    assert_eq!(y.len(), n * out, "linear_packed: y is not n x out");
    assert!(
        bias.is_empty() || bias.len() == out,
        "linear_packed: bias is not out values"
    );
    if n == 0 || out == 0 {
        return;
    }
    if k == 0 {
        y.fill(0.0);
        bias_act_in_place(y, bias, act);
        return;
    }
    let isa = isa.min(super::isa::detected());
    let relu = act == Activation::Relu;
    // Rows split between threads in whole micro-tiles; fewer than 4 tiles a thread is not
    // worth a thread.
    let threads = threads.min(n / (4 * MR)).max(1);
    if threads == 1 {
        product(isa, x, n, k, packed, out, bias, relu, y);
    } else {
        let per = n.div_ceil(threads).div_ceil(MR) * MR;
        std::thread::scope(|s| {
            for (xs, ys) in x.chunks(per * k).zip(y.chunks_mut(per * out)) {
                let rows = xs.len() / k;
                s.spawn(move || product(isa, xs, rows, k, packed, out, bias, relu, ys));
            }
        });
    }
    if act == Activation::Sigmoid {
        bias_act_in_place(y, &[], act);
    }
}

/// Where one block's tiles read and write, and what their epilogue does.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    /// First row of `x` in the block, at its first column.
    pub x: *const f32,
    /// Row stride of `x` (its `k`).
    pub lda: usize,
    /// Rows in the block.
    pub rows: usize,
    /// Columns in the block.
    pub cols: usize,
    /// Panel 0's weights at the block's first column.
    pub b: *const f32,
    /// f32 between one panel and the next (`k·PANEL`).
    pub panel_stride: usize,
    /// Panels (`out.div_ceil(PANEL)`).
    pub panels: usize,
    /// `y` at the block's first row.
    pub y: *mut f32,
    /// Row stride of `y` and the number of valid output columns (`out`).
    pub out: usize,
    /// The bias (`out` values) or null; added in the last block only.
    pub bias: *const f32,
    /// Clamp at 0 in the last block.
    pub relu: bool,
    /// The first block of columns: store the sums (else add them to `y`).
    pub first: bool,
    /// The last block of columns: apply the bias and ReLU.
    pub last: bool,
}

#[allow(
    clippy::too_many_arguments,
    reason = "the product's operands and sizes"
)]
fn product(
    isa: Isa,
    x: &[f32],
    n: usize,
    k: usize,
    packed: &[f32],
    out: usize,
    bias: &[f32],
    relu: bool,
    y: &mut [f32],
) {
    // Equal blocks of at most KC columns (a function of k alone, so results are too).
    let kc = k.div_ceil(k.div_ceil(KC));
    let mut c0 = 0;
    while c0 < k {
        let cols = kc.min(k - c0);
        let mut r0 = 0;
        while r0 < n {
            let rows = MC.min(n - r0);
            // SAFETY: offsets inside x (n·k), packed (panels·k·PANEL) and y (n·out).
            let block = unsafe {
                Block {
                    x: x.as_ptr().add(r0 * k + c0),
                    lda: k,
                    rows,
                    cols,
                    b: packed.as_ptr().add(c0 * PANEL),
                    panel_stride: k * PANEL,
                    panels: out.div_ceil(PANEL),
                    y: y.as_mut_ptr().add(r0 * out),
                    out,
                    bias: if bias.is_empty() {
                        std::ptr::null()
                    } else {
                        bias.as_ptr()
                    },
                    relu,
                    first: c0 == 0,
                    last: c0 + cols == k,
                }
            };
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 + FMA (`isa` is capped at the detected set);
                // the block lies inside the slices (checked sizes, offsets above).
                Isa::Avx2 => unsafe { avx2::block(&block) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX-512 F (`isa` is capped at the detected set); the
                // block lies inside the slices (checked sizes, offsets above).
                Isa::Avx512 => unsafe { avx512::block(&block) },
                // SAFETY: as above, without the ISA requirement.
                _ => unsafe { portable_block(&block) },
            }
            r0 += rows;
        }
        c0 += cols;
    }
}

/// One block by plain loops (any CPU): one batch row × one panel at a time.
///
/// # Safety
/// `b` describes a block inside live slices with the sizes it states.
unsafe fn portable_block(b: &Block) {
    for r in 0..b.rows {
        for p in 0..b.panels {
            let mut acc = [0f32; PANEL];
            // SAFETY: row r of the block's x, panel p's slice of the block's columns.
            unsafe {
                let xr = std::slice::from_raw_parts(b.x.add(r * b.lda), b.cols);
                let wp = std::slice::from_raw_parts(b.b.add(p * b.panel_stride), b.cols * PANEL);
                for (&a, wc) in xr.iter().zip(wp.chunks_exact(PANEL)) {
                    for (s, &w) in acc.iter_mut().zip(wc) {
                        *s += a * w;
                    }
                }
            }
            let valid = PANEL.min(b.out - p * PANEL);
            for (j, &s) in acc.iter().enumerate().take(valid) {
                let o = p * PANEL + j;
                // SAFETY: (r, o) lies in the block's rows of y; o < out indexes the bias.
                unsafe {
                    let at = b.y.add(r * b.out + o);
                    let mut v = if b.first { s } else { *at + s };
                    if b.last {
                        if !b.bias.is_null() {
                            v += *b.bias.add(o);
                        }
                        if b.relu {
                            v = v.max(0.0);
                        }
                    }
                    *at = v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;
