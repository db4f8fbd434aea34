//! The cuBLAS call of a linear layer, as a pure function of its shape.
//!
//! Row-major `Y[n, out] = X[n, in] · Wᵀ` is, read column-major, `Yᵀ = W · Xᵀ`: cuBLAS sees
//! the row-major `W [out, in]` as a column-major `[in, out]` matrix, so it is passed with
//! `op = T` (`lda = in`); `X` is a column-major `[in, n]` matrix with `op = N`
//! (`ldb = in`); the column-major result `[out, n]` (`ldc = out`) is exactly row-major `Y`.

use super::launch::to_i32;
use crate::Result;
use cudarc::cublas::{GemmConfig, sys::cublasOperation_t};

/// Whether cuBLAS reads an operand as stored (`N`) or transposed (`T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    /// As stored (`CUBLAS_OP_N`).
    N,
    /// Transposed (`CUBLAS_OP_T`).
    T,
}

/// The arguments of one column-major `C = op(A) · op(B)` (`cublasSgemm`, alpha 1, beta 0):
/// `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`; `ld*` are leading dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmArgs {
    /// How A is read.
    pub transa: Transpose,
    /// How B is read.
    pub transb: Transpose,
    /// Rows of `op(A)` and of C.
    pub m: i32,
    /// Columns of `op(B)` and of C.
    pub n: i32,
    /// Columns of `op(A)`, rows of `op(B)`.
    pub k: i32,
    /// Leading dimension of A as stored.
    pub lda: i32,
    /// Leading dimension of B as stored.
    pub ldb: i32,
    /// Leading dimension of C.
    pub ldc: i32,
}

/// The GEMM of a linear layer with `x: [n, k]`, `w: [out, k]`, `y: [n, out]` (all row-major),
/// with A = `w`, B = `x`, C = `y`. Leading dimensions are at least 1, as cuBLAS requires even
/// for `k = 0`.
pub fn linear_gemm_config(n: usize, k: usize, out: usize) -> Result<GemmArgs> {
    Ok(GemmArgs {
        transa: Transpose::T,
        transb: Transpose::N,
        m: to_i32(out)?,
        n: to_i32(n)?,
        k: to_i32(k)?,
        lda: to_i32(k.max(1))?,
        ldb: to_i32(k.max(1))?,
        ldc: to_i32(out.max(1))?,
    })
}

impl Transpose {
    fn cublas(self) -> cublasOperation_t {
        match self {
            Transpose::N => cublasOperation_t::CUBLAS_OP_N,
            Transpose::T => cublasOperation_t::CUBLAS_OP_T,
        }
    }
}

impl GemmArgs {
    /// The cudarc configuration of this call (alpha 1, beta 0).
    pub(crate) fn sgemm(self) -> GemmConfig<f32> {
        GemmConfig {
            transa: self.transa.cublas(),
            transb: self.transb.cublas(),
            m: self.m,
            n: self.n,
            k: self.k,
            alpha: 1.0,
            lda: self.lda,
            ldb: self.ldb,
            beta: 0.0,
            ldc: self.ldc,
        }
    }
}
