//! Model families written once against [`cohost_kernels::Ops`] — MLP and DLRM — plus
//! model configuration (`config.toml`), safetensors weight loading and the synthetic
//! model generator behind `cohost gen`.

pub mod config;
pub mod dlrm;
pub mod mlp;
mod model;
pub mod synth;
pub mod weights;

pub use config::{
    BatchingConfig, BatchingPolicyKind, ConfigError, DataType, DlrmParams, Family, MlpParams,
    ModelConfig, TensorSpec, VersionPolicy,
};
pub use model::{
    build_model, BackendHandle, Batch, InputData, MemoryReport, Model, ModelError, PlacementOptions,
    WeightSource,
};
