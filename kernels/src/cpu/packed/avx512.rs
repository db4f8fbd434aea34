//! The AVX-512 F micro-kernel over packed weight panels (`linear_packed` on x86-64 CPUs
//! that have AVX-512: one 16-column panel is one 512-bit vector).
//!
//! A tile is `TR` batch rows × `V` panels: per input column it loads `V` weight vectors,
//! broadcasts `TR` batch values and issues `TR·V` multiply-adds into register accumulators.
//! Batches of 6 rows or more take 6 × 32 tiles (12 accumulators, 2 weight vectors and a
//! broadcast), each pair of panels meeting every 6-row tile of the block while its slice
//! is in L1; a rest of 4 or 5 rows takes one tile of its height on the same panels, and 1
//! to 3 rows (or a whole batch under 6) take tiles that trade rows for panels so that
//! enough independent sums stay in flight (1 × 128, 2 × 128, 3 × 64, 4 × 64, 5 × 64).
//! (12 × 32 tiles, 24 accumulators, ran at a third of this speed on Zen5: 74 against 215
//! GFLOP/s at batch 256, `dense_rates`.) The rest cases up to 11 rows stay for any `MR`. Every output is one chain of multiply-adds over the block's
//! columns in order, as in the AVX2 kernel, so both give the same bits.

use super::{Block, PANEL};
use std::arch::x86_64::*;

/// Batch rows per tile once a block has at least that many.
const MR: usize = 6;

/// Runs every tile of one block.
///
/// # Safety
/// The CPU must support AVX-512 F; `b` describes a block inside live slices with the
/// sizes it states (x: `rows` rows of stride `lda` with `cols` columns; panels of
/// `panel_stride` f32 holding `cols·PANEL` from `b.b`; y: `rows × out`; bias null or `out`
/// values).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block(b: &Block) {
    // SAFETY: forwarded contract; every tile below stays inside the block.
    unsafe {
        let full = b.rows / MR * MR;
        let rest = b.rows - full;
        if full > 0 {
            let mut p = 0;
            while p < b.panels {
                let two = p + 2 <= b.panels;
                let mut r = 0;
                while r < full {
                    if two {
                        tile::<MR, 2>(b, r, p);
                    } else {
                        tile::<MR, 1>(b, r, p);
                    }
                    r += MR;
                }
                if rest >= 4 {
                    if two {
                        rest_tile::<2>(b, full, rest, p);
                    } else {
                        rest_tile::<1>(b, full, rest, p);
                    }
                }
                p += if two { 2 } else { 1 };
            }
            if rest >= 4 {
                return;
            }
        }
        match rest {
            0 => {}
            1 => rows_across::<1, 8>(b, full),
            2 => rows_across::<2, 8>(b, full),
            3 => rows_across::<3, 4>(b, full),
            4 => rows_across::<4, 4>(b, full),
            5 => rows_across::<5, 4>(b, full),
            6 => rows_across::<6, 4>(b, full),
            7 => rows_across::<7, 2>(b, full),
            8 => rows_across::<8, 2>(b, full),
            9 => rows_across::<9, 2>(b, full),
            10 => rows_across::<10, 2>(b, full),
            _ => rows_across::<11, 2>(b, full),
        }
    }
}

/// One tile of `rest` (4 to `MR - 1`) rows from row `r` on panels `p..p + V`.
///
/// # Safety
/// As [`block`], with rows `r..r + rest` and panels `p..p + V` inside the block.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn rest_tile<const V: usize>(b: &Block, r: usize, rest: usize, p: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match rest {
            4 => tile::<4, V>(b, r, p),
            5 => tile::<5, V>(b, r, p),
            6 => tile::<6, V>(b, r, p),
            7 => tile::<7, V>(b, r, p),
            8 => tile::<8, V>(b, r, p),
            9 => tile::<9, V>(b, r, p),
            10 => tile::<10, V>(b, r, p),
            _ => tile::<11, V>(b, r, p),
        }
    }
}

/// `TR` rows from row `r` across every panel, `V` panels per tile, the panels left over
/// in tiles of half as many, and so on down to one.
///
/// # Safety
/// As [`block`], with rows `r..r + TR` inside the block.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn rows_across<const TR: usize, const V: usize>(b: &Block, r: usize) {
    let mut p = 0;
    // SAFETY: forwarded contract; each tile's panels exist (p + width <= panels).
    unsafe {
        while p + V <= b.panels {
            tile::<TR, V>(b, r, p);
            p += V;
        }
        if V >= 8 && p + 4 <= b.panels {
            tile::<TR, 4>(b, r, p);
            p += 4;
        }
        if V >= 4 && p + 2 <= b.panels {
            tile::<TR, 2>(b, r, p);
            p += 2;
        }
        if p < b.panels {
            tile::<TR, 1>(b, r, p);
        }
    }
}

/// One tile: rows `r..r + TR` of the block × panels `p..p + V`, over the block's columns,
/// then the epilogue (add to `y` unless the first block; bias and ReLU in the last;
/// columns past `out` neither read nor written).
///
/// # Safety
/// As [`block`], with the tile's rows and panels inside the block.
#[allow(
    clippy::needless_range_loop,
    reason = "t and v index the tile's registers and its rows alike; fixed-count loops unroll"
)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const TR: usize, const V: usize>(b: &Block, r: usize, p: usize) {
    let mut acc = [[_mm512_setzero_ps(); V]; TR];
    // SAFETY: every read is inside rows r..r+TR of x (columns 0..cols) and panels p..p+V
    // (cols·PANEL f32 each from b.b); every write inside y's rows r..r+TR, columns
    // p·PANEL.. below out.
    unsafe {
        let x = b.x.add(r * b.lda);
        let w = b.b.add(p * b.panel_stride);
        for c in 0..b.cols {
            let mut wv = [_mm512_setzero_ps(); V];
            for v in 0..V {
                wv[v] = _mm512_loadu_ps(w.add(v * b.panel_stride + c * PANEL));
            }
            for t in 0..TR {
                let a = _mm512_set1_ps(*x.add(t * b.lda + c));
                for v in 0..V {
                    acc[t][v] = _mm512_fmadd_ps(a, wv[v], acc[t][v]);
                }
            }
        }
        for v in 0..V {
            let o = (p + v) * PANEL;
            if o >= b.out {
                break;
            }
            let valid = (b.out - o).min(PANEL);
            let mask: __mmask16 = if valid == PANEL {
                0xffff
            } else {
                (1u16 << valid) - 1
            };
            let bias = if b.last && !b.bias.is_null() {
                _mm512_maskz_loadu_ps(mask, b.bias.add(o))
            } else {
                _mm512_setzero_ps()
            };
            for t in 0..TR {
                let at = b.y.add((r + t) * b.out + o);
                let mut s = acc[t][v];
                if !b.first {
                    s = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), s);
                }
                if b.last {
                    s = _mm512_add_ps(s, bias);
                    if b.relu {
                        s = _mm512_max_ps(s, _mm512_setzero_ps());
                    }
                }
                _mm512_mask_storeu_ps(at, mask, s);
            }
        }
    }
}
