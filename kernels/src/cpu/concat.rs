//! DLRM cat interaction over contiguous row-major slices.

/// Writes `[feats[0], feats[1], ..]` side by side per row into `out` (`n x (f·d)`), where
/// every feature is `n x d`.
pub fn cat_interaction_rows(feats: &[&[f32]], d: usize, out: &mut [f32]) {
    let width = feats.len() * d;
    if width == 0 {
        return;
    }
    let n = out.len() / width;
    assert_eq!(out.len(), n * width, "cat_interaction: output size");
    for feat in feats {
        assert_eq!(feat.len(), n * d, "cat_interaction: feature size");
    }
    for (r, o) in out.chunks_exact_mut(width).enumerate() {
        for (f, feat) in feats.iter().enumerate() {
            o[f * d..(f + 1) * d].copy_from_slice(&feat[r * d..(r + 1) * d]);
        }
    }
}
