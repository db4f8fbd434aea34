//! The AVX2 + FMA micro-kernel over packed weight panels (`linear_packed` on x86-64 CPUs
//! that have them).
//!
//! A tile is `TR` batch rows × `V` vectors of 8 output columns (`V / 2` panels): per input
//! column it loads `V` weight vectors, broadcasts `TR` batch values and issues `TR·V`
//! multiply-adds into register accumulators. Batches of 6 rows or more take 6 × 16 tiles
//! (12 accumulators, 2 weight vectors, 1 broadcast: 15 of the 16 registers); a rest of 4
//! or 5 rows takes 4 × 16 or 5 × 16 tiles, and 1 to 3 rows take tiles that trade rows for
//! panels so that enough independent sums stay in flight (1 × 64, 2 × 48, 3 × 32).

use super::{Block, PANEL};
use std::arch::x86_64::*;

/// A mask selecting the first `t` (< 8) lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn lanes(t: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(t as i32), idx)
}

/// Runs every tile of one block.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `b` describes a block inside live slices with the
/// sizes it states (x: `rows` rows of stride `lda` with `cols` columns; panels of
/// `panel_stride` f32 holding `cols·PANEL` from `b.b`; y: `rows × out`; bias null or `out`
/// values).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block(b: &Block) {
    // SAFETY: forwarded contract; every tile below stays inside the block.
    unsafe {
        let full = b.rows / 6 * 6;
        let rest = b.rows - full;
        if full > 0 {
            // Each panel's slice meets every 6-row tile (and a 4- or 5-row rest, which
            // keeps 8 or 10 sums in flight) while it is in L1.
            for p in 0..b.panels {
                let mut r = 0;
                while r < full {
                    tile::<6, 2>(b, r, p);
                    r += 6;
                }
                match rest {
                    4 => tile::<4, 2>(b, full, p),
                    5 => tile::<5, 2>(b, full, p),
                    _ => {}
                }
            }
        }
        // 1 to 3 rows keep too few sums in flight on one panel: they take several at once.
        match rest {
            1 => rows_across::<1, 8>(b, full),
            2 => rows_across::<2, 6>(b, full),
            3 => rows_across::<3, 4>(b, full),
            4 if full == 0 => rows_across::<4, 2>(b, 0),
            5 if full == 0 => rows_across::<5, 2>(b, 0),
            _ => {}
        }
    }
}

/// `TR` rows from row `r` across every panel, `V / 2` panels per tile and the panels left
/// over one at a time.
///
/// # Safety
/// As [`block`], with rows `r..r + TR` inside the block.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_across<const TR: usize, const V: usize>(b: &Block, r: usize) {
    let per = V / 2;
    let mut p = 0;
    // SAFETY: forwarded contract; panels p..p + per exist.
    unsafe {
        while p + per <= b.panels {
            tile::<TR, V>(b, r, p);
            p += per;
        }
        while p < b.panels {
            tile::<TR, 2>(b, r, p);
            p += 1;
        }
    }
}

/// One tile: rows `r..r + TR` of the block × panels `p..p + V / 2`, over the block's
/// columns, then the epilogue (add to `y` unless the first block; bias and ReLU in the
/// last; columns past `out` neither read nor written).
///
/// # Safety
/// As [`block`], with the tile's rows and panels inside the block.
#[allow(
    clippy::needless_range_loop,
    reason = "t and v index the tile's registers and its rows alike; fixed-count loops unroll"
)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const TR: usize, const V: usize>(b: &Block, r: usize, p: usize) {
    let mut acc = [[_mm256_setzero_ps(); V]; TR];
    // SAFETY: every read is inside rows r..r+TR of x (columns 0..cols) and panels
    // p..p+V/2 (cols·PANEL f32 each from b.b); every write inside y's rows r..r+TR,
    // columns p·PANEL.. below out.
    unsafe {
        let x = b.x.add(r * b.lda);
        let w = b.b.add(p * b.panel_stride);
        let col = |v: usize| w.add((v / 2) * b.panel_stride + (v % 2) * 8);
        for c in 0..b.cols {
            let mut wv = [_mm256_setzero_ps(); V];
            for v in 0..V {
                wv[v] = _mm256_loadu_ps(col(v).add(c * PANEL));
            }
            for t in 0..TR {
                let a = _mm256_broadcast_ss(&*x.add(t * b.lda + c));
                for v in 0..V {
                    acc[t][v] = _mm256_fmadd_ps(a, wv[v], acc[t][v]);
                }
            }
        }
        let first_col = p * PANEL;
        for v in 0..V {
            let o = first_col + v * 8;
            if o >= b.out {
                break;
            }
            let valid = (b.out - o).min(8);
            let mask = lanes(valid);
            let bias = if b.last && !b.bias.is_null() {
                if valid == 8 {
                    _mm256_loadu_ps(b.bias.add(o))
                } else {
                    _mm256_maskload_ps(b.bias.add(o), mask)
                }
            } else {
                _mm256_setzero_ps()
            };
            for t in 0..TR {
                let at = b.y.add((r + t) * b.out + o);
                let mut s = acc[t][v];
                if !b.first {
                    let old = if valid == 8 {
                        _mm256_loadu_ps(at)
                    } else {
                        _mm256_maskload_ps(at, mask)
                    };
                    s = _mm256_add_ps(old, s);
                }
                if b.last {
                    s = _mm256_add_ps(s, bias);
                    if b.relu {
                        s = _mm256_max_ps(s, _mm256_setzero_ps());
                    }
                }
                if valid == 8 {
                    _mm256_storeu_ps(at, s);
                } else {
                    _mm256_maskstore_ps(at, mask, s);
                }
            }
        }
    }
}
