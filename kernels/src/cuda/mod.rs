//! The CUDA backend: cuBLAS GEMM plus CUDA C kernels compiled at start-up with NVRTC.
//!
//! Everything here compiles without CUDA (cudarc loads its libraries dynamically). cudarc
//! panics when a library is missing, so nothing touches CUDA before [`probe`] /
//! [`open_device`] has checked that the driver, NVRTC and cuBLAS libraries load.
//! See `docs/CUDA.md` for the design and how to test it.

mod backend;
mod bag;
mod cached;
mod fault;
pub mod gemm;
pub mod grid;
mod lane;
mod launch;
mod mig;
pub mod nvrtc;
mod ops;
mod pinned;
mod probe;
mod ring;
mod table;
mod tensor;

pub use backend::CudaOps;
pub use cached::CachedMappedTable;
pub use fault::{classify, fault};
pub use mig::MigInfo;
pub use ops::MAX_FEATURES;
pub use pinned::{
    PINNED_BUDGET_VAR, PinnedBudget, PinnedRefusal, PinnedReservation, default_budget,
    parse_budget, pinned_budget,
};
pub use probe::{CudaInfo, Libraries, describe, nvrtc_present, nvrtc_version, open_device, probe};
pub use table::{MappedHostTable, ResidentTable};
pub use tensor::CudaTensor;

use crate::KernelError;

/// Maps a cudarc error to [`KernelError::Cuda`], naming the call that failed.
pub(crate) fn err<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> KernelError {
    move |e| KernelError::Cuda(format!("{what}: {e:?}"))
}
