//! Fixed-order dot products shared by the dense layer's small-batch path and the DLRM
//! interaction.

/// Lanes per accumulator: one AVX2 register of f32.
pub(crate) const L: usize = 8;

/// `N` dot products of `a` with each of `bs` (all the same length), each summed over
/// `L` lane accumulators then the tail, in a fixed order.
#[inline(always)]
pub(crate) fn dots<const N: usize>(a: &[f32], bs: [&[f32]; N]) -> [f32; N] {
    let mut acc = [[0f32; L]; N];
    let full = a.len() / L * L;
    for c in (0..full).step_by(L) {
        let x = &a[c..c + L];
        for q in 0..N {
            let y = &bs[q][c..c + L];
            for l in 0..L {
                acc[q][l] += x[l] * y[l];
            }
        }
    }
    let mut out = [0f32; N];
    for q in 0..N {
        let mut s = acc[q].iter().sum::<f32>();
        for c in full..a.len() {
            s += a[c] * bs[q][c];
        }
        out[q] = s;
    }
    out
}
