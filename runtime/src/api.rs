//! Request, response and status types of the embeddable API.

use crate::{Tensor, TensorSpec};
use std::time::Duration;

/// One inference request: named input tensors and which outputs to return.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// Client-chosen id, echoed in the response.
    pub id: Option<String>,
    /// Inputs by name; every model input must be present once.
    pub inputs: Vec<Tensor>,
    /// Outputs to return, by name; empty means all.
    pub outputs: Vec<String>,
    /// Give up (with `DeadlineExceeded`) if no response within this time.
    pub timeout: Option<Duration>,
}

/// The answer to an [`InferRequest`].
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// Model that served it.
    pub model_name: String,
    /// Version that served it.
    pub model_version: u64,
    /// The request's id.
    pub id: Option<String>,
    /// Requested outputs, in the order asked (or the model's order).
    pub outputs: Vec<Tensor>,
    /// The model's and host's load right after this response.
    pub load: LoadReport,
}

/// A model's load: predicted seconds of work queued plus in flight, per usable lane.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadReport {
    /// This model's predicted seconds of outstanding work divided by its usable lanes.
    pub model_load: f64,
    /// The same over every model on the slice, divided by all lanes.
    pub host_load: f64,
    /// Requests waiting in the model's queue.
    pub queued: usize,
    /// Requests of this model executing now.
    pub in_flight: usize,
}

/// A model's signature and versions.
#[derive(Debug, Clone)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Ready versions, ascending.
    pub versions: Vec<u64>,
    /// Platform string, e.g. "cohost_dlrm".
    pub platform: String,
    /// Inputs with `-1` batch dims.
    pub inputs: Vec<TensorSpec>,
    /// Outputs with `-1` batch dims.
    pub outputs: Vec<TensorSpec>,
}

/// Life-cycle state of one model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Being loaded.
    Loading,
    /// Serving.
    Ready,
    /// Finishing the requests it had; takes no new ones.
    Unloading,
    /// Not loaded (unloaded, or its load failed).
    Unavailable,
}

impl ModelState {
    /// Triton's state name ("READY", "UNAVAILABLE", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loading => "LOADING",
            ModelState::Ready => "READY",
            ModelState::Unloading => "UNLOADING",
            ModelState::Unavailable => "UNAVAILABLE",
        }
    }
}

/// One model version's state, for listings.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// State.
    pub state: ModelState,
}

/// A row of the repository index: what is on disk and its state.
#[derive(Debug, Clone)]
pub struct RepositoryEntry {
    /// Model name (folder name).
    pub name: String,
    /// Version, when one is loaded or known.
    pub version: Option<u64>,
    /// State.
    pub state: ModelState,
    /// Why it is not ready, if it is not.
    pub reason: String,
}

/// The device a runtime executes on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    /// "cpu" or "cuda".
    pub backend: &'static str,
    /// Device name ("cpu", or the GPU's name).
    pub name: String,
    /// Streaming multiprocessors of the visible device or MIG slice.
    pub sm_count: Option<u32>,
    /// Device memory in bytes.
    pub total_memory: Option<u64>,
    /// Free device memory in bytes at start-up.
    pub free_memory: Option<u64>,
    /// MIG profile of the slice (e.g. "1g.10gb") when the device is a MIG instance.
    pub mig_profile: Option<String>,
    /// A one-line description, or why CUDA was not used.
    pub note: Option<String>,
}
