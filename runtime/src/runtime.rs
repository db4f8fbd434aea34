//! [`Runtime`]: the embeddable API over registry, queues, scheduler and lanes.

use crate::{
    Error, InferRequest, InferResponse, LoadReport, ModelConfig, ModelMetadata, ModelStats,
    ModelStatus, RepositoryEntry, Result,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which backend executes models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA when its libraries and a device are present, else the CPU.
    #[default]
    Auto,
    /// The CPU backend (candle), lanes are worker threads.
    Cpu,
    /// The CUDA backend, lanes are streams; fails if CUDA is unusable.
    Cuda,
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Number of lanes (CPU worker threads or CUDA streams); 0 = derive from the device.
    pub lanes: usize,
    /// Device memory budget in bytes for all models' weights and tables (None = unlimited).
    pub memory_budget: Option<u64>,
    /// Host memory budget in bytes for offloaded tables (None = unlimited).
    pub host_memory_budget: Option<u64>,
    /// Backend choice.
    pub device: Device,
    /// Model repository folder, if models are served from disk.
    pub repository: Option<PathBuf>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            lanes: 0,
            memory_budget: None,
            host_memory_budget: None,
            device: Device::Auto,
            repository: None,
        }
    }
}

/// The embeddable runtime; cheap to clone, all clones share one set of models and lanes.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    options: RuntimeOptions,
}

impl Runtime {
    /// Starts the lanes and the scheduler; loads nothing yet.
    pub fn new(options: RuntimeOptions) -> Result<Runtime> {
        let _ = options;
        todo!()
    }

    /// The options in effect (lanes resolved).
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Backend name ("cpu" or "cuda").
    pub fn backend_name(&self) -> &'static str {
        todo!()
    }

    /// Number of lanes.
    pub fn lane_count(&self) -> usize {
        todo!()
    }

    /// The repository folder, if any.
    pub fn repository(&self) -> Option<&Path> {
        self.inner.options.repository.as_deref()
    }

    /// Loads every model found in the repository folder; returns the failures by model.
    pub fn load_all(&self) -> Vec<(String, Error)> {
        todo!()
    }

    /// Loads (or reloads) a model from the repository: new versions start serving, versions
    /// no longer wanted drain and are freed.
    pub fn load_model(&self, name: &str) -> Result<()> {
        let _ = name;
        todo!()
    }

    /// Loads one version of a model from a config and safetensors bytes given in code.
    pub fn load_model_from(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        safetensors: &[u8],
    ) -> Result<()> {
        let _ = (name, version, config, safetensors);
        todo!()
    }

    /// Stops new requests to every version of `name`; queued and running ones finish.
    pub fn unload_model(&self, name: &str) -> Result<()> {
        let _ = name;
        todo!()
    }

    /// Every loaded model version and its state.
    pub fn models(&self) -> Vec<ModelStatus> {
        todo!()
    }

    /// The repository's models (on disk and loaded) with their states.
    pub fn repository_index(&self) -> Result<Vec<RepositoryEntry>> {
        todo!()
    }

    /// True when the version (or, with None, the default version) is ready.
    pub fn model_ready(&self, name: &str, version: Option<u64>) -> bool {
        let _ = (name, version);
        todo!()
    }

    /// Signature and versions.
    pub fn metadata(&self, name: &str, version: Option<u64>) -> Result<ModelMetadata> {
        let _ = (name, version);
        todo!()
    }

    /// The configuration a version was loaded with.
    pub fn config(&self, name: &str, version: Option<u64>) -> Result<(u64, ModelConfig)> {
        let _ = (name, version);
        todo!()
    }

    /// Statistics of one version, every version of one model, or every model (`name` None).
    pub fn stats(&self, name: Option<&str>, version: Option<u64>) -> Result<Vec<ModelStats>> {
        let _ = (name, version);
        todo!()
    }

    /// The model's load counter and the host's.
    pub fn load(&self, name: &str) -> Result<LoadReport> {
        let _ = name;
        todo!()
    }

    /// Runs one request through the model's queue, batcher and a lane.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<u64>,
        request: InferRequest,
    ) -> Result<InferResponse> {
        let _ = (name, version, request);
        todo!()
    }

    /// Stops taking requests, lets accepted ones finish, then stops the lanes.
    pub fn shutdown(&self) {
        todo!()
    }
}
