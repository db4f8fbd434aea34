//! DLRM dot interaction over contiguous row-major slices.

use super::dot::dots;

/// Rows per thread below which the interaction runs on the calling thread only.
const ROWS_PER_THREAD: usize = 64;

/// Writes `[x, Z_flat]` per row into `out` (`n x (d + f(f-1)/2)`), where `feats[0]` is
/// `x` and `feats[1..]` the pooled embeddings, each `n x d`, and `Z_flat` holds
/// `T_i · T_j` for every `j < i`, ordered by `i` then `j`; on up to `threads` threads.
pub fn dot_interaction_rows(feats: &[&[f32]], d: usize, out: &mut [f32], threads: usize) {
    let f = feats.len();
    let width = d + f * (f - 1) / 2;
    if width == 0 || d == 0 {
        return;
    }
    let n = out.len() / width;
    assert_eq!(out.len(), n * width, "dot_interaction: output size");
    for feat in feats {
        assert_eq!(feat.len(), n * d, "dot_interaction: feature size");
    }
    let threads = threads.min(n / ROWS_PER_THREAD).max(1);
    if threads == 1 {
        rows(feats, d, 0, out);
        return;
    }
    let rows_per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (c, chunk) in out.chunks_mut(rows_per * width).enumerate() {
            s.spawn(move || rows(feats, d, c * rows_per, chunk));
        }
    });
}

/// Computes the rows starting at `first` into `out` (a whole number of output rows),
/// with AVX2 code generation when [`isa`](super::isa::isa) allows (same arithmetic order
/// either way).
fn rows(feats: &[&[f32]], d: usize, first: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::isa::isa() >= super::isa::Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (`isa` detected it).
        unsafe { rows_avx2(feats, d, first, out) };
        return;
    }
    rows_impl(feats, d, first, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(feats: &[&[f32]], d: usize, first: usize, out: &mut [f32]) {
    rows_impl(feats, d, first, out);
}

/// Dot products computed together (sharing the loads of `T_i`, independent add chains).
const J: usize = 4;

#[inline(always)]
fn rows_impl(feats: &[&[f32]], d: usize, first: usize, out: &mut [f32]) {
    let f = feats.len();
    let width = d + f * (f - 1) / 2;
    let mut t: Vec<&[f32]> = Vec::with_capacity(f);
    for (r, o) in out.chunks_exact_mut(width).enumerate() {
        let row = first + r;
        t.clear();
        t.extend(feats.iter().map(|feat| &feat[row * d..(row + 1) * d]));
        o[..d].copy_from_slice(t[0]);
        let mut k = d;
        for i in 1..f {
            let ti = t[i];
            let mut j = 0;
            while j + J <= i {
                let z = dots(ti, [t[j], t[j + 1], t[j + 2], t[j + 3]]);
                o[k..k + J].copy_from_slice(&z);
                k += J;
                j += J;
            }
            while j < i {
                o[k] = dots(ti, [t[j]])[0];
                k += 1;
                j += 1;
            }
        }
    }
}
