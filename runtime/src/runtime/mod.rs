//! [`Runtime`]: the embeddable API over registry, queues, scheduler and lanes.

use crate::lane::{LanePool, Overrun};
use crate::registry::Registry;
use crate::repository;
use crate::scheduler::{ScheduleKind, Scheduler};
use crate::{
    DeviceInfo, Error, ModelConfig, ModelMetadata, ModelState, ModelStats, ModelStatus,
    RepositoryEntry, Result,
};
use cohost_models::{BackendHandle, Family};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// How to build a [`Runtime`]: start from `RuntimeOptions::default()` and chain the
/// setters, e.g. `RuntimeOptions::default().repository("models").lanes(2)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Cross-model scheduling policy.
    pub schedule: ScheduleKind,
    /// How long an idle lane spins for new work before it sleeps (zero: sleeps at once).
    /// Spinning saves a sleeping thread's wake-up per request at low load, and costs the
    /// CPU it spins on.
    pub lane_spin: Duration,
    /// On the CPU backend, a request whose batch is ready as it is queued and predicted to
    /// take at most this long runs on the calling thread, as a sleeping lane, instead of
    /// waking a lane thread and being woken for the answer (zero: always on a lane thread).
    pub caller_runs: Duration,
    /// With caller runs, a quick batch that waits for company (a batching delay) keeps its
    /// timer on the caller's tokio runtime instead of a lane thread's, saving the lane two
    /// wake-ups a batch. Needs `infer` awaited on a tokio runtime with its I/O driver on
    /// (`enable_io` or `enable_all`), and Linux; off by default (the server turns it on).
    pub caller_timers: bool,
    /// Lane priority classes on: one lane in four is `High` (on CUDA a stream at the most
    /// urgent priority) and urgent batches go there first; off: all lanes equal.
    pub lane_priorities: bool,
    /// A batch running longer than this multiple of its predicted time (the model's
    /// latency fit) is reported as overrunning (metric and log).
    pub overrun_factor: f64,
    /// No batch counts as overrunning before it has run this long.
    pub overrun_floor: Duration,
    /// Snapshot transition budget, 0 < f ≤ 1: a new version of a model that already
    /// serves takes the unversioned traffic only while the slice's utilization
    /// ([`Runtime::utilization`]) is below it; the old version serves meanwhile, then
    /// drains and is unloaded. None: a new version takes over at once.
    pub transition_budget: Option<f64>,
    /// A transition waiting this long proceeds even with the slice at or above the budget.
    pub transition_max_wait: Duration,
    /// Where the transition budget reads the slice's utilization (default: the scheduler).
    pub utilization: UtilizationSource,
    /// How the backend is rebuilt after a sticky device fault (default: opened again).
    pub rebuild: RebuildSource,
    /// An extra batch-boundary check after the backend's (tests inject device faults here).
    #[cfg(feature = "testing")]
    pub boundary_hook: BoundaryHook,
}

/// Default of [`RuntimeOptions::caller_runs`]: a few microseconds' forward runs in place.
pub const DEFAULT_CALLER_RUNS: Duration = Duration::from_micros(100);

/// Default of [`RuntimeOptions::overrun_factor`].
pub const DEFAULT_OVERRUN_FACTOR: f64 = 10.0;

/// Default of [`RuntimeOptions::overrun_floor`].
pub const DEFAULT_OVERRUN_FLOOR: Duration = Duration::from_secs(1);

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            lanes: 0,
            memory_budget: None,
            host_memory_budget: None,
            device: Device::Auto,
            repository: None,
            schedule: ScheduleKind::default(),
            lane_spin: Duration::ZERO,
            caller_runs: DEFAULT_CALLER_RUNS,
            caller_timers: false,
            lane_priorities: true,
            overrun_factor: DEFAULT_OVERRUN_FACTOR,
            overrun_floor: DEFAULT_OVERRUN_FLOOR,
            transition_budget: None,
            transition_max_wait: DEFAULT_TRANSITION_MAX_WAIT,
            utilization: UtilizationSource::default(),
            rebuild: RebuildSource::default(),
            #[cfg(feature = "testing")]
            boundary_hook: BoundaryHook::default(),
        }
    }
}

impl RuntimeOptions {
    /// Sets [`RuntimeOptions::lanes`] (0: derive from the device).
    pub fn lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes;
        self
    }

    /// Sets [`RuntimeOptions::memory_budget`] in bytes (None: unlimited).
    pub fn memory_budget(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.memory_budget = bytes.into();
        self
    }

    /// Sets [`RuntimeOptions::host_memory_budget`] in bytes (None: unlimited).
    pub fn host_memory_budget(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.host_memory_budget = bytes.into();
        self
    }

    /// Sets [`RuntimeOptions::device`].
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets [`RuntimeOptions::repository`]: serve models from this folder.
    pub fn repository(mut self, dir: impl Into<PathBuf>) -> Self {
        self.repository = Some(dir.into());
        self
    }

    /// Sets [`RuntimeOptions::schedule`].
    pub fn schedule(mut self, schedule: ScheduleKind) -> Self {
        self.schedule = schedule;
        self
    }

    /// Sets [`RuntimeOptions::caller_runs`] (zero: every batch runs on a lane thread).
    pub fn caller_runs(mut self, max: Duration) -> Self {
        self.caller_runs = max;
        self
    }

    /// Sets [`RuntimeOptions::caller_timers`].
    pub fn caller_timers(mut self, on: bool) -> Self {
        self.caller_timers = on;
        self
    }

    /// Sets [`RuntimeOptions::lane_spin`] (zero: idle lanes sleep at once).
    pub fn lane_spin(mut self, spin: Duration) -> Self {
        self.lane_spin = spin;
        self
    }

    /// Sets [`RuntimeOptions::lane_priorities`] (off: every lane equal, the baseline).
    pub fn lane_priorities(mut self, on: bool) -> Self {
        self.lane_priorities = on;
        self
    }

    /// Sets [`RuntimeOptions::overrun_factor`] and [`RuntimeOptions::overrun_floor`].
    pub fn batch_overrun(mut self, factor: f64, floor: Duration) -> Self {
        self.overrun_factor = factor;
        self.overrun_floor = floor;
        self
    }

    /// Sets [`RuntimeOptions::transition_budget`] (None: switch versions at once).
    pub fn transition_budget(mut self, budget: Option<f64>) -> Self {
        self.transition_budget = budget;
        self
    }

    /// Sets [`RuntimeOptions::transition_max_wait`].
    pub fn transition_max_wait(mut self, wait: Duration) -> Self {
        self.transition_max_wait = wait;
        self
    }

    /// Sets [`RuntimeOptions::utilization`]: the transition budget reads `source`.
    pub fn utilization_source(mut self, source: Arc<dyn SliceUtilization>) -> Self {
        self.utilization = UtilizationSource(Some(source));
        self
    }

    /// Sets [`RuntimeOptions::rebuild`]: rebuild the backend with `rebuild` after a sticky fault.
    pub fn device_rebuild(mut self, rebuild: Arc<dyn DeviceRebuild>) -> Self {
        self.rebuild = RebuildSource(Some(rebuild));
        self
    }

    /// Sets [`RuntimeOptions::boundary_hook`]: `hook` runs after the backend's boundary check.
    #[cfg(feature = "testing")]
    pub fn boundary_hook(mut self, hook: crate::lane::Boundary) -> Self {
        self.boundary_hook = BoundaryHook(Some(hook));
        self
    }

    fn overrun(&self) -> Overrun {
        Overrun {
            factor: self.overrun_factor,
            floor: self.overrun_floor,
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
    /// The backend, swapped by a device reset, and the reset's state.
    slot: Arc<DeviceSlot>,
    /// How each loaded version is loaded again after a device reset.
    reloads: Mutex<HashMap<(String, u64), Reload>>,
    backend_name: &'static str,
    device: DeviceInfo,
    registry: Registry,
    scheduler: Arc<Scheduler>,
    lanes: LanePool,
    memory_used: Arc<AtomicU64>,
    load_lock: Mutex<()>,
    transitions: Arc<Transitions>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.transitions.stop();
        self.slot.stop();
        self.scheduler.shutdown();
    }
}

mod backend;
mod infer;
mod lifecycle;
mod managed;
mod reset;
mod transition;

use backend::{Backend, CUDA_HEADROOM, choose_backend};
pub use lifecycle::DEFAULT_SHUTDOWN_TIMEOUT;
pub use reset::{
    BoundaryHook, DeviceRebuild, RESET_BACKOFF, RESET_BACKOFF_MAX, RebuildSource, ReopenBackend,
};
use reset::{DeviceSlot, Reload};
use transition::Transitions;
pub use transition::{
    DEFAULT_TRANSITION_MAX_WAIT, SliceUtilization, TRANSITION_TICK, TransitionOutcome,
    UtilizationSource, transition_decision,
};

/// Runs `f` on the async runtime's blocking threads and returns what it returns (a panic
/// in it resumes here), so that a blocking lifecycle call does not hold up an executor.
async fn off_executor<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a blocking runtime call was cancelled: {e}"),
        },
    }
}

impl Runtime {
    /// Starts the lanes and the scheduler; loads nothing yet.
    ///
    /// # Blocking
    ///
    /// Probes and opens the device and starts one thread per lane; from async code use
    /// [`Runtime::start`].
    pub fn new(mut options: RuntimeOptions) -> Result<Runtime> {
        if let Some(b) = options.transition_budget
            && !(b > 0.0 && b <= 1.0)
        {
            return Err(Error::invalid(format!(
                "transition budget must be a fraction above 0 and at most 1, not {b}"
            )));
        }
        let Backend {
            handle: backend,
            name: backend_name,
            lanes,
            device,
        } = choose_backend(options.device, options.lanes, options.lane_priorities)?;
        options.lanes = lanes.len();
        if options.memory_budget.is_none() {
            options.memory_budget = device
                .free_memory
                .map(|free| (free as f64 * (1.0 - CUDA_HEADROOM)) as u64);
        }
        let scheduler = Arc::new(
            Scheduler::new(options.schedule.policy(), lanes.len())
                .with_spin(options.lane_spin)
                .with_caller_runs(match backend {
                    // A CUDA lane is a stream its own thread issues on: batches stay there.
                    BackendHandle::Cpu(_) => options.caller_runs,
                    BackendHandle::Cuda(_) => Duration::ZERO,
                })
                .with_caller_timers(options.caller_timers && crate::timer::SUPPORTED)
                .with_lane_classes(lanes.iter().map(|l| l.priority).collect()),
        );
        crate::metrics::device(&device, options.lanes, options.memory_budget);
        crate::metrics::supervision_started(options.lanes);
        #[cfg(feature = "testing")]
        let hook = options.boundary_hook.0.clone();
        #[cfg(not(feature = "testing"))]
        let hook = None;
        let slot = Arc::new(DeviceSlot::new(backend, hook));
        let lanes = LanePool::start(lanes, scheduler.clone(), options.overrun(), slot.clone());
        tracing::info!(
            backend = backend_name,
            device = %device.name,
            mig_profile = device.mig_profile.as_deref().unwrap_or("-"),
            memory_budget = options.memory_budget.unwrap_or(0),
            lanes = options.lanes,
            policy = scheduler.policy_name(),
            lane_spin_us = options.lane_spin.as_micros() as u64,
            caller_runs_us = options.caller_runs.as_micros() as u64,
            "runtime started"
        );
        let budget = options.transition_budget;
        let runtime = Runtime {
            inner: Arc::new(Inner {
                options,
                slot,
                reloads: Mutex::new(HashMap::new()),
                backend_name,
                device,
                registry: Registry::default(),
                scheduler,
                lanes,
                memory_used: Arc::new(AtomicU64::new(0)),
                load_lock: Mutex::new(()),
                transitions: Arc::default(),
            }),
        };
        runtime
            .inner
            .slot
            .supervise(Arc::downgrade(&runtime.inner))
            .map_err(|e| Error::internal(format!("cannot start the device-reset thread: {e}")))?;
        if budget.is_some() {
            let inner = Arc::downgrade(&runtime.inner);
            runtime.inner.transitions.supervise(inner).map_err(|e| {
                Error::internal(format!("cannot start the transition supervisor: {e}"))
            })?;
        }
        Ok(runtime)
    }

    /// [`Runtime::new`] on a blocking thread of the tokio runtime, for async callers.
    pub async fn start(options: RuntimeOptions) -> Result<Runtime> {
        off_executor(move || Runtime::new(options)).await
    }

    /// The options in effect (lanes resolved).
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// Backend name ("cpu" or "cuda").
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend_name
    }

    /// What the backend runs on (device name, SMs, memory, MIG profile).
    pub fn device(&self) -> &DeviceInfo {
        &self.inner.device
    }

    /// How many times a lane looked at the queues for work: once when it becomes free and
    /// once per wake-up (lanes woken for nothing show as passes beyond two per batch).
    pub fn scheduler_passes(&self) -> u64 {
        self.inner.scheduler.passes()
    }

    /// Wake-ups sent to the lanes so far: for new work, or for none (a waste a test can see).
    pub fn lane_wakes(&self) -> u64 {
        self.inner.scheduler.wakes()
    }

    /// Spins for new work begun by idle lanes so far (see [`RuntimeOptions::lane_spin`]).
    pub fn lane_spins(&self) -> u64 {
        self.inner.scheduler.spins()
    }

    /// Lanes spinning for new work right now (see [`RuntimeOptions::lane_spin`]).
    pub fn lanes_spinning(&self) -> usize {
        self.inner.scheduler.lanes_spinning()
    }

    /// Lane threads that died and were respawned since the start.
    pub fn lane_restarts(&self) -> u64 {
        self.inner.lanes.restarts()
    }

    /// Batches reported as overrunning (see [`RuntimeOptions::overrun_factor`]) so far.
    pub fn batch_overruns(&self) -> u64 {
        self.inner.lanes.overruns()
    }

    /// Number of lanes.
    pub fn lane_count(&self) -> usize {
        self.inner.options.lanes
    }

    /// Device bytes held by loaded models (weights, resident tables, caches).
    pub fn memory_used(&self) -> u64 {
        self.inner.memory_used.load(Ordering::SeqCst)
    }

    /// The repository folder, if any.
    pub fn repository(&self) -> Option<&Path> {
        self.inner.options.repository.as_deref()
    }

    fn repo(&self) -> Result<&Path> {
        self.repository()
            .ok_or_else(|| Error::unavailable("this runtime has no model repository"))
    }

    /// Every model version known to the scheduler and its state.
    pub fn models(&self) -> Vec<ModelStatus> {
        let mut out: Vec<ModelStatus> = self
            .inner
            .scheduler
            .queues()
            .iter()
            .map(|q| ModelStatus {
                name: q.name.clone(),
                version: q.version,
                state: if q.is_open() {
                    ModelState::Ready
                } else {
                    ModelState::Unloading
                },
            })
            .collect();
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        out
    }

    /// The repository's models (on disk and loaded) with their states.
    pub fn repository_index(&self) -> Result<Vec<RepositoryEntry>> {
        let mut names = match self.repository() {
            Some(r) => repository::model_names(r)?,
            None => Vec::new(),
        };
        for s in self.models() {
            names.push(s.name);
        }
        names.extend(self.inner.registry.failed_names());
        names.sort();
        names.dedup();
        let statuses = self.models();
        let mut out = Vec::new();
        for name in names {
            let mine: Vec<&ModelStatus> = statuses.iter().filter(|s| s.name == name).collect();
            if mine.is_empty() {
                let reason = self
                    .inner
                    .registry
                    .failure(&name)
                    .unwrap_or_else(|| "not loaded".into());
                out.push(RepositoryEntry {
                    name,
                    version: None,
                    state: ModelState::Unavailable,
                    reason,
                });
            } else {
                for s in mine {
                    out.push(RepositoryEntry {
                        name: name.clone(),
                        version: Some(s.version),
                        state: s.state,
                        reason: String::new(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// True when the version (or, with None, the default version) is ready.
    pub fn model_ready(&self, name: &str, version: Option<u64>) -> bool {
        self.is_ready()
            && self
                .inner
                .registry
                .get(name, version)
                .is_ok_and(|q| q.is_open())
    }

    /// Signature and versions.
    pub fn metadata(&self, name: &str, version: Option<u64>) -> Result<ModelMetadata> {
        let q = self.inner.registry.get(name, version)?;
        let versions = match version {
            Some(v) => vec![v],
            None => self
                .inner
                .registry
                .versions(name)
                .iter()
                .map(|q| q.version)
                .collect(),
        };
        Ok(ModelMetadata {
            name: name.to_string(),
            versions,
            platform: match q.config.family {
                Family::Mlp => "cohost_mlp".into(),
                Family::Dlrm => "cohost_dlrm".into(),
            },
            inputs: q.config.inputs.clone(),
            outputs: q.config.outputs.clone(),
        })
    }

    /// The configuration a version was loaded with, and that version.
    pub fn config(&self, name: &str, version: Option<u64>) -> Result<(u64, ModelConfig)> {
        let q = self.inner.registry.get(name, version)?;
        Ok((q.version, q.config.clone()))
    }

    /// Memory a loaded version holds, as allocated.
    pub fn memory(&self, name: &str, version: Option<u64>) -> Result<cohost_models::MemoryReport> {
        Ok(self.inner.registry.get(name, version)?.model.memory())
    }

    /// Statistics of one version, every version of one model, or every model (`name` None).
    pub fn stats(&self, name: Option<&str>, version: Option<u64>) -> Result<Vec<ModelStats>> {
        let queues = match (name, version) {
            (None, _) => self.inner.registry.all(),
            (Some(n), Some(v)) => vec![self.inner.registry.get(n, Some(v))?],
            (Some(n), None) => {
                let v = self.inner.registry.versions(n);
                if v.is_empty() {
                    return Err(Error::not_found(format!("model '{n}' is not loaded")));
                }
                v
            }
        };
        Ok(queues
            .iter()
            .map(|q| q.stats.snapshot(&q.name, q.version))
            .collect())
    }
}
