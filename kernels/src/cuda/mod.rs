//! The CUDA backend: cuBLAS GEMM and NVRTC-compiled kernels (placeholder until it lands).

/// cuBLAS + NVRTC ops on the visible CUDA device.
#[derive(Debug)]
pub struct CudaOps;
