//! DLRM dot interaction over contiguous row-major slices.

/// Rows per thread below which the interaction runs on the calling thread only.
const ROWS_PER_THREAD: usize = 64;

/// Writes `[x, Z_flat]` per row into `out` (`n x (d + f(f-1)/2)`), where `feats[0]` is
/// `x` and `feats[1..]` the pooled embeddings, each `n x d`, and `Z_flat` holds
/// `T_i · T_j` for every `j < i`, ordered by `i` then `j`.
pub fn dot_interaction_rows(feats: &[&[f32]], d: usize, out: &mut [f32]) {
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
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
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

/// Computes the rows starting at `first` into `out` (a whole number of output rows).
fn rows(feats: &[&[f32]], d: usize, first: usize, out: &mut [f32]) {
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
            for j in 0..i {
                o[k] = dot(t[i], t[j]);
                k += 1;
            }
        }
    }
}

/// Dot product with eight independent accumulators so the loop vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
