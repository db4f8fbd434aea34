//! The ops cohost models are made of — linear (+bias, +activation), embedding-bag,
//! dot interaction, sigmoid — for the CPU (on candle) and for CUDA (cuBLAS + NVRTC).
//!
//! Models are written once against [`Ops`]; a backend supplies the tensor type and the
//! ops. Embedding tables sit behind [`EmbeddingStore`] so a model never knows whether
//! its rows are resident on the device or offloaded to host memory.

pub mod cpu;
pub mod cuda;
pub mod embedding;
mod error;
mod fault;
mod lane;
pub mod offload;
mod ops;
mod table;

pub use error::{KernelError, Result};
pub use fault::{DeviceFault, FaultKind};
pub use lane::{Lane, LaneKind, LanePriority};
pub use ops::{Activation, EmbeddingStore, Ops};
pub use table::{TableMemory, TablePlacement};
