//! DLRM dot interaction with self-products (`arch_interaction_itself`) over contiguous
//! row-major slices.

/// Writes `[x, Z_flat]` per row into `out` (`n x (d + f(f+1)/2)`), where `feats[0]` is `x`
/// and `feats[1..]` the pooled embeddings, each `n x d`, and `Z_flat` holds `T_i · T_j` for
/// every `j <= i`, ordered by `i` then `j`.
pub fn dot_interaction_itself_rows(feats: &[&[f32]], d: usize, out: &mut [f32]) {
    let f = feats.len();
    let width = d + f * (f + 1) / 2;
    if f == 0 || d == 0 {
        return;
    }
    let n = out.len() / width;
    assert_eq!(out.len(), n * width, "dot_interaction_itself: output size");
    for feat in feats {
        assert_eq!(feat.len(), n * d, "dot_interaction_itself: feature size");
    }
    let mut t: Vec<&[f32]> = Vec::with_capacity(f);
    for (r, o) in out.chunks_exact_mut(width).enumerate() {
        t.clear();
        t.extend(feats.iter().map(|feat| &feat[r * d..(r + 1) * d]));
        o[..d].copy_from_slice(t[0]);
        let mut k = d;
        for i in 0..f {
            for j in 0..=i {
                o[k] = dot(t[i], t[j]);
                k += 1;
            }
        }
    }
}

/// `a · b` over eight lane accumulators (so it vectorises), then the tail.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 8;
    let mut acc = [0f32; L];
    let full = a.len() / L * L;
    for (x, y) in a[..full].chunks_exact(L).zip(b[..full].chunks_exact(L)) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for c in full..a.len() {
        s += a[c] * b[c];
    }
    s
}
