//! The element-wise combine of a DCN cross layer over contiguous slices.

/// Writes `out[i] = x0[i] * y[i] + xl[i]` (TorchRec `LowRankCrossNet`'s `x_0 ⊙ (W V x_l + b)
/// + x_l` once the two products and the bias are in `y`); all four slices the same length.
pub fn cross_rows(x0: &[f32], y: &[f32], xl: &[f32], out: &mut [f32]) {
    assert!(
        x0.len() == out.len() && y.len() == out.len() && xl.len() == out.len(),
        "cross: operand sizes"
    );
    for (((o, &a), &b), &c) in out.iter_mut().zip(x0).zip(y).zip(xl) {
        *o = a * b + c;
    }
}
