//! The CUDA backend: cuBLAS GEMM plus CUDA C kernels compiled at start-up with NVRTC.
//!
//! Everything here compiles without CUDA (cudarc loads its libraries dynamically). cudarc
//! panics when a library is missing, so nothing touches CUDA before [`probe`] /
//! [`open_device`] has checked that the driver, NVRTC and cuBLAS libraries load.

mod mig;
pub mod nvrtc;
mod probe;

pub use mig::MigInfo;
pub use probe::{CudaInfo, Libraries, describe, nvrtc_present, nvrtc_version, open_device, probe};

/// cuBLAS + NVRTC ops on the visible CUDA device.
#[derive(Debug)]
pub struct CudaOps;
