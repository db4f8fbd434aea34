//! cohost's embeddable runtime: one process hosts many models and co-schedules their
//! batches across the lanes of one accelerator slice.
//!
//! ```text
//! Runtime::infer ─▶ validate ─▶ model queue (bounded) ─▶ batcher (policy: when to close)
//!                ─▶ scheduler (which model's batch, which free lane) ─▶ lane runs forward
//!                ─▶ outputs split back per request
//! ```
//!
//! The embedding API is what this root exports: build a [`Runtime`] from
//! [`RuntimeOptions`] (with [`Runtime::start`] from async code), load models, send
//! [`InferRequest`]s. Queues, batching, scheduling and lanes are internal.

mod api;
mod batcher;
// The virtual clock is driven only through `testing` (by the simulator).
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
mod clock;
mod error;
mod lane;
mod latency_model;
mod metrics;
mod panic;
mod queue;
mod registry;
mod repository;
mod runtime;
mod scheduler;
mod size;
mod stats;
mod table_metrics;
mod tensor;
mod timer;
mod validate;

pub use api::{
    DeviceInfo, InferRequest, InferResponse, LoadReport, ModelMetadata, ModelState, ModelStatus,
    RepositoryEntry,
};
pub use cohost_models::{ModelConfig, TensorSpec};
pub use error::{Error, ErrorKind, Result};
pub use repository::validate_model_name;
pub use runtime::{
    BoundaryHook, DEFAULT_CALLER_RUNS, DEFAULT_OVERRUN_FACTOR, DEFAULT_OVERRUN_FLOOR,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TRANSITION_MAX_WAIT, Device, DeviceRebuild, RESET_BACKOFF,
    RESET_BACKOFF_MAX, RebuildSource, ReopenBackend, Runtime, RuntimeOptions, SliceUtilization,
    TRANSITION_TICK, TransitionOutcome, UtilizationSource, transition_decision,
};
pub use scheduler::ScheduleKind;
pub use size::parse_byte_size;
pub use stats::{BatchStats, ModelStats, StatisticDuration};
pub use table_metrics::{placement_label, record_table_metrics};
pub use tensor::{DataType, Tensor, TensorData};

/// The runtime's internals, for its own tests and the simulator (`cohost-sim`; cargo
/// feature `testing`; not a stable API): queues, batching and scheduling policies, the
/// scheduler and its lanes, built by hand, on the real clock or a virtual one.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::batcher::{
        AdaptiveBatching, BatchPolicy, Decision, NoBatching, QueueView, StaticBatching, policy_for,
    };
    pub use crate::clock::{Clock, VirtualClock};
    pub use crate::lane::{BatchBoundary, Boundary, spawn_lanes, spawn_lanes_checked};
    pub use crate::latency_model::LatencyModel;
    pub use crate::queue::FormedBatch;
    pub use crate::queue::{MemoryLease, ModelQueue, Pending, Reply};
    pub use crate::scheduler::{
        Candidate, Claimed, EdfFairShare, LaneRouting, Poll, SchedulePolicy, Scheduler, Work,
    };
}
