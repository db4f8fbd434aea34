//! cohost's embeddable runtime: one process hosts many models and co-schedules their
//! batches across the lanes of one accelerator slice.
//!
//! ```text
//! Runtime::infer ─▶ validate ─▶ model queue (bounded) ─▶ batcher (policy: when to close)
//!                ─▶ scheduler (which model's batch, which free lane) ─▶ lane runs forward
//!                ─▶ outputs split back per request
//! ```

mod api;
pub mod batcher;
mod error;
pub mod lane;
pub mod load;
pub mod metrics;
pub mod queue;
pub mod registry;
pub mod repository;
mod runtime;
pub mod scheduler;
mod size;
pub mod stats;
pub mod table_metrics;
mod tensor;
mod validate;

pub use api::{
    DeviceInfo, InferRequest, InferResponse, LoadReport, ModelMetadata, ModelState, ModelStatus,
    RepositoryEntry,
};
pub use cohost_models::{ModelConfig, TensorSpec};
pub use error::{Error, ErrorKind, Result};
pub use runtime::{Device, Runtime, RuntimeOptions};
pub use scheduler::ScheduleKind;
pub use size::parse_byte_size;
pub use stats::{BatchStats, Duration as StatDuration, ModelStats};
pub use tensor::{DataType, Tensor, TensorData};
