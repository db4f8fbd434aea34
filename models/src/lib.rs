//! Model families written once against [`cohost_kernels::Ops`] — MLP and DLRM — plus
//! model configuration (`config.toml`), safetensors weight loading and the synthetic
//! model generator behind `cohost gen`.

pub mod config;
pub mod dlrm;
pub mod import;
mod layers;
pub mod mlp;
mod model;
mod st_reader;
mod st_writer;
pub mod synth;
pub mod weights;

pub use config::{
    BatchingConfig, BatchingPolicyKind, ConfigError, DataType, DlrmParams, Family, InteractionKind,
    MlpParams, ModelConfig, TensorSpec, VersionPolicy, WeightPrecision,
};
pub use model::{
    BackendHandle, Batch, InputData, MemoryReport, Model, ModelError, PlacementOptions,
    WeightSource,
};
pub use weights::build_model;
