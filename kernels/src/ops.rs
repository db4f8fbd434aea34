//! The backend seam: [`Ops`] and [`EmbeddingStore`] name each other (a backend makes its
//! resident tables; a table pools with its backend's ops), so they live together.

use crate::Result;
use crate::lane::Lane;
use crate::table::{TableMemory, TablePlacement};

/// The activation fused after a linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
}

/// A backend's ops over 2-D row-major f32 matrices; models are written once against it.
///
/// Weights are allocated once per device with [`Ops::weight`] and read from every lane;
/// per-batch data moves with [`Ops::upload`] / [`Ops::download`] on the batch's lane.
pub trait Ops: Send + Sync + 'static {
    /// A 2-D f32 matrix living on this backend's device.
    type Tensor: Send + Sync;

    /// Short backend name for logs and metadata ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// Allocates a `rows x cols` weight matrix once, shared by every lane.
    fn weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;

    /// Allocates a dense layer's `rows x cols` weight matrix, read only as [`Ops::linear`]'s
    /// `w`: the backend may store it in its product kernel's own layout (so other ops, and
    /// [`Ops::download`], need not accept it); the default is [`Ops::weight`].
    fn dense_weight(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor> {
        self.weight(data, rows, cols)
    }

    /// Allocates a `rows x cols` weight matrix stored as f16 where this backend can, read as
    /// f32 by [`Ops::linear`]; the default keeps f32.
    fn weight_f16(&self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor> {
        self.weight(data, rows, cols)
    }

    /// Copies a `rows x cols` host matrix to the device on `lane`.
    fn upload(&self, lane: &Lane, data: &[f32], rows: usize, cols: usize) -> Result<Self::Tensor>;

    /// Copies a device matrix back to the host (row-major), waiting for `lane`.
    fn download(&self, lane: &Lane, t: &Self::Tensor) -> Result<Vec<f32>>;

    /// `(rows, cols)` of a matrix.
    fn shape(&self, t: &Self::Tensor) -> (usize, usize);

    /// `act(x · wᵀ + b)` with `x: [n, in]`, `w: [out, in]` (PyTorch layout), `b: [1, out]`.
    fn linear(
        &self,
        lane: &Lane,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: &Self::Tensor,
        act: Activation,
    ) -> Result<Self::Tensor>;

    /// DLRM dot interaction: with `T = [x, e_0, .., e_{k-1}]` (each `[n, d]`), returns
    /// `[x, Z_flat]` where `Z_flat` holds `T_i · T_j` for every `j < i`, ordered by `i`
    /// then `j` (the reference DLRM's strict lower triangle, no diagonal).
    fn dot_interaction(
        &self,
        lane: &Lane,
        x: &Self::Tensor,
        pooled: &[Self::Tensor],
    ) -> Result<Self::Tensor>;

    /// DLRM dot interaction with self-products: as [`Ops::dot_interaction`] but `Z_flat`
    /// holds `T_i · T_j` for every `j <= i` (the reference DLRM's `arch_interaction_itself`).
    fn dot_interaction_itself(
        &self,
        lane: &Lane,
        x: &Self::Tensor,
        pooled: &[Self::Tensor],
    ) -> Result<Self::Tensor>;

    /// DLRM cat interaction: `[x, e_0, .., e_{k-1}]` side by side (each `[n, d]`), `[n, (k+1)·d]`.
    fn cat_interaction(
        &self,
        lane: &Lane,
        x: &Self::Tensor,
        pooled: &[Self::Tensor],
    ) -> Result<Self::Tensor>;

    /// One DCN cross layer's combine: `x0 ⊙ y + xl`, all three the same shape.
    fn cross(
        &self,
        lane: &Lane,
        x0: &Self::Tensor,
        y: &Self::Tensor,
        xl: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// Element-wise logistic sigmoid.
    fn sigmoid(&self, lane: &Lane, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// Places a `rows x dim` table wholly in device memory.
    fn resident_table(
        &self,
        name: &str,
        data: &[f32],
        rows: usize,
        dim: usize,
    ) -> Result<Box<dyn EmbeddingStore<Self>>>
    where
        Self: Sized;

    /// Places an offloaded `rows x dim` table the backend serves itself (CUDA: pinned,
    /// device-mapped host rows plus a device hot-row cache of `cache` rows); `Ok(None)`
    /// when the backend has no such table and the caller uses the generic offloaded table.
    fn offloaded_table(
        &self,
        _name: &str,
        _data: &[f32],
        _rows: usize,
        _dim: usize,
        _cache: crate::offload::CacheConfig,
    ) -> Result<Option<Box<dyn EmbeddingStore<Self>>>>
    where
        Self: Sized,
    {
        Ok(None)
    }
}

/// One embedding table of `rows x dim` f32 values, pooled with sum over fixed-size bags.
pub trait EmbeddingStore<O: Ops>: Send + Sync {
    /// Table name (used in error messages and metrics).
    fn name(&self) -> &str;
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Embedding dimension.
    fn dim(&self) -> usize;
    /// Where the rows live.
    fn placement(&self) -> TablePlacement;
    /// Sum-pools `bag` rows per output row: `indices.len() == n * bag`, result `[n, dim]`.
    /// Indices must already be validated against [`EmbeddingStore::rows`].
    fn bag_sum(&self, ops: &O, lane: &Lane, indices: &[i64], bag: usize) -> Result<O::Tensor>;
    /// Memory held and cache counters.
    fn memory(&self) -> TableMemory;
    /// Hints that these rows will be pooled soon, so a store that can start fetching them
    /// early may; indices outside the table are ignored. The default does nothing.
    fn prefetch(&self, _indices: &[i64]) {}
}
