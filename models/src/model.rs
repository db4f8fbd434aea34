//! The object-safe face of a loaded model that the runtime schedules.

use crate::config::{ConfigError, ModelConfig};
use cohost_kernels::{KernelError, Lane, TableMemory, TablePlacement};
use std::fmt;
use std::path::Path;

/// One input of a batch, already converted to the type the family consumes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputData {
    /// Row-major f32 values (dense features).
    F32(Vec<f32>),
    /// Row-major i64 values (sparse indices).
    I64(Vec<i64>),
}

impl InputData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            InputData::F32(v) => v.len(),
            InputData::I64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `rows` rows of every input, in the config's input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of rows (the batch dimension).
    pub rows: usize,
    /// One entry per configured input, each `rows x width` row-major.
    pub inputs: Vec<InputData>,
}

/// Memory a loaded model holds, as really allocated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryReport {
    /// Bytes of dense weights (MLP layers) on the device.
    pub weight_bytes: u64,
    /// Per embedding table: name, placement and memory.
    pub tables: Vec<(String, TablePlacement, TableMemory)>,
}

impl MemoryReport {
    /// Device bytes: weights + resident tables + caches.
    pub fn device_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|(_, _, m)| m.resident_bytes.saturating_add(m.cache_bytes))
            .fold(self.weight_bytes, u64::saturating_add)
    }

    /// Host bytes held for offloaded tables.
    pub fn host_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|(_, _, m)| m.host_bytes)
            .fold(0, u64::saturating_add)
    }
}

/// Why a model could not be built or run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The weights file is missing, unreadable or does not match the config.
    Weights(String),
    /// The request's data is invalid for this model (e.g. an index outside its table).
    Input(String),
    /// The model does not fit its memory budget.
    Memory(String),
    /// An op failed while running a batch.
    Kernel(KernelError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(e) => write!(f, "{e}"),
            ModelError::Weights(m) => write!(f, "weights: {m}"),
            ModelError::Input(m) => write!(f, "{m}"),
            ModelError::Memory(m) => write!(f, "memory: {m}"),
            ModelError::Kernel(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<KernelError> for ModelError {
    fn from(e: KernelError) -> Self {
        ModelError::Kernel(e)
    }
}

impl From<ConfigError> for ModelError {
    fn from(e: ConfigError) -> Self {
        ModelError::Config(e)
    }
}

/// A loaded model: weights allocated once, runnable from any lane.
pub trait Model: Send + Sync {
    /// The validated configuration it was built from.
    fn config(&self) -> &ModelConfig;

    /// Checks one request's converted inputs (e.g. embedding indices in range) before it
    /// is queued, so a bad request fails alone instead of failing its batch.
    fn check(&self, batch: &Batch) -> Result<(), ModelError>;

    /// Runs a batch on `lane`; returns one row-major f32 buffer per configured output.
    fn forward(&self, lane: &Lane, batch: &Batch) -> Result<Vec<Vec<f32>>, ModelError>;

    /// Memory held, as allocated.
    fn memory(&self) -> MemoryReport;

    /// Floating-point operations of one row (for load prediction before measurements).
    fn flops_per_row(&self) -> u64;
}

/// Where a model's weights come from.
pub enum WeightSource<'a> {
    /// A `model.safetensors` file (may be memory-mapped for offloaded tables).
    File(&'a Path),
    /// Safetensors bytes already in memory.
    Bytes(&'a [u8]),
}

/// The backend a model is built for.
#[derive(Clone)]
pub enum BackendHandle {
    /// candle on the CPU.
    Cpu(std::sync::Arc<cohost_kernels::cpu::CpuOps>),
    /// cuBLAS + NVRTC on the visible CUDA device.
    Cuda(std::sync::Arc<cohost_kernels::cuda::CudaOps>),
}

/// Options that decide where a model's tables are placed.
#[derive(Debug, Clone, Default)]
pub struct PlacementOptions {
    /// Device bytes this model may use (None = unlimited).
    pub device_budget: Option<u64>,
    /// Host bytes offloaded tables may copy into RAM before falling back to mmap.
    pub host_budget: Option<u64>,
}
