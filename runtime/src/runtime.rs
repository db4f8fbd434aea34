//! [`Runtime`]: the embeddable API over registry, queues, scheduler and lanes.

use crate::lane::spawn_lanes;
use crate::queue::{MemoryLease, ModelQueue, Pending};
use crate::registry::Registry;
use crate::repository;
use crate::scheduler::{EdfFairShare, Scheduler};
use crate::{
    DeviceInfo, Error, ErrorKind, InferRequest, InferResponse, LoadReport, ModelConfig,
    ModelMetadata, ModelState, ModelStats, ModelStatus, RepositoryEntry, Result, Tensor,
};
use cohost_kernels::Lane;
use cohost_models::{BackendHandle, Batch, Family, PlacementOptions, WeightSource};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

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
    backend: BackendHandle,
    backend_name: &'static str,
    device: DeviceInfo,
    registry: Registry,
    scheduler: Arc<Scheduler>,
    lanes: Mutex<Vec<JoinHandle<()>>>,
    memory_used: Arc<AtomicU64>,
    load_lock: Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.scheduler.shutdown();
    }
}

/// The backend chosen at start-up and the lanes it offers.
struct Backend {
    handle: BackendHandle,
    name: &'static str,
    lanes: Vec<Lane>,
    device: DeviceInfo,
}

/// Headroom left free on a CUDA device when the budget defaults to its free memory.
const CUDA_HEADROOM: f64 = 0.10;

#[allow(clippy::default_constructed_unit_structs)] // CpuOps may gain fields
fn cpu_backend(lanes: usize, note: Option<String>) -> Backend {
    let lanes = if lanes == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        lanes
    };
    Backend {
        handle: BackendHandle::Cpu(Arc::new(cohost_kernels::cpu::CpuOps::default())),
        name: "cpu",
        lanes: (0..lanes).map(Lane::cpu).collect(),
        device: DeviceInfo {
            backend: "cpu",
            name: "cpu".into(),
            note,
            ..Default::default()
        },
    }
}

fn cuda_backend(lanes: usize) -> std::result::Result<Backend, String> {
    let info = cohost_kernels::cuda::probe()?;
    let ops = cohost_kernels::cuda::CudaOps::open().map_err(|e| e.to_string())?;
    // One stream per ~8 SMs keeps enough kernels in flight to fill the slice without
    // oversubscribing a small MIG instance.
    let lanes = if lanes == 0 {
        (info.sm_count as usize / 8).clamp(2, 16)
    } else {
        lanes
    };
    let lanes = (0..lanes)
        .map(|i| ops.lane(i, 0))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(Backend {
        handle: BackendHandle::Cuda(Arc::new(ops)),
        name: "cuda",
        lanes,
        device: DeviceInfo {
            backend: "cuda",
            name: info.name.clone(),
            sm_count: Some(info.sm_count),
            total_memory: Some(info.total_memory),
            free_memory: Some(info.free_memory),
            mig_profile: info.mig.profile.clone(),
            note: Some(info.to_string()),
        },
    })
}

fn choose_backend(device: Device, lanes: usize) -> Result<Backend> {
    match device {
        Device::Cpu => Ok(cpu_backend(lanes, None)),
        Device::Cuda => cuda_backend(lanes).map_err(|e| {
            Error::unavailable(format!("--device cuda: CUDA is not usable here: {e}"))
        }),
        Device::Auto => match cuda_backend(lanes) {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::info!("CUDA not usable ({e}); falling back to the CPU backend");
                Ok(cpu_backend(lanes, Some(format!("CUDA not usable: {e}"))))
            }
        },
    }
}

impl Runtime {
    /// Starts the lanes and the scheduler; loads nothing yet.
    pub fn new(mut options: RuntimeOptions) -> Result<Runtime> {
        let Backend {
            handle: backend,
            name: backend_name,
            lanes,
            device,
        } = choose_backend(options.device, options.lanes)?;
        options.lanes = lanes.len();
        if options.memory_budget.is_none() {
            options.memory_budget = device
                .free_memory
                .map(|free| (free as f64 * (1.0 - CUDA_HEADROOM)) as u64);
        }
        let scheduler = Arc::new(Scheduler::new(Box::new(EdfFairShare::default())));
        let handles = spawn_lanes(lanes, scheduler.clone());
        crate::metrics::device(&device, options.lanes, options.memory_budget);
        tracing::info!(
            backend = backend_name,
            device = %device.name,
            mig_profile = device.mig_profile.as_deref().unwrap_or("-"),
            memory_budget = options.memory_budget.unwrap_or(0),
            lanes = options.lanes,
            policy = scheduler.policy_name(),
            "runtime started"
        );
        Ok(Runtime {
            inner: Arc::new(Inner {
                options,
                backend,
                backend_name,
                device,
                registry: Registry::default(),
                scheduler,
                lanes: Mutex::new(handles),
                memory_used: Arc::new(AtomicU64::new(0)),
                load_lock: Mutex::new(()),
            }),
        })
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

    /// Loads every model found in the repository folder (blocking); returns the failures.
    pub fn load_all(&self) -> Vec<(String, Error)> {
        let names = match self.repo().and_then(repository::model_names) {
            Ok(n) => n,
            Err(e) => return vec![(String::new(), e)],
        };
        names
            .into_iter()
            .filter_map(|n| self.load_model(&n).err().map(|e| (n, e)))
            .collect()
    }

    /// Loads (or reloads) a model from the repository (blocking): new or changed versions
    /// start serving, versions no longer wanted drain and are freed.
    pub fn load_model(&self, name: &str) -> Result<()> {
        let _guard = self.inner.load_lock.lock();
        let result = self.load_model_locked(name);
        if let Err(e) = &result {
            self.inner.registry.set_failure(name, e.message.clone());
            tracing::warn!(model = name, "load failed: {e}");
        }
        result
    }

    fn load_model_locked(&self, name: &str) -> Result<()> {
        let repo = self.repo()?.to_path_buf();
        let disk = repository::read_model(&repo, name)?;
        let available: Vec<u64> = disk.versions.keys().copied().collect();
        let wanted = repository::wanted_versions(&disk.config.version_policy, &available);
        if wanted.is_empty() {
            return Err(Error::not_found(format!(
                "model '{name}' has no version folder with {} matching its version_policy",
                repository::WEIGHTS_FILE
            )));
        }
        for &v in &wanted {
            let path = &disk.versions[&v];
            let fp = repository::fingerprint(&[path]) ^ disk.config_fingerprint;
            if self.inner.registry.fingerprint(name, v) == Some(fp) {
                continue;
            }
            self.install(name, v, disk.config.clone(), WeightSource::File(path), fp)?;
        }
        for q in self.inner.registry.versions(name) {
            if !wanted.contains(&q.version) {
                self.retire(name, q.version);
            }
        }
        Ok(())
    }

    /// Loads one version of a model from a config and safetensors bytes given in code.
    pub fn load_model_from(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        safetensors: &[u8],
    ) -> Result<()> {
        repository::validate_name(name)?;
        config
            .validate(Path::new("<inline>"))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let _guard = self.inner.load_lock.lock();
        let fp = repository::fingerprint(&[]) ^ version ^ (safetensors.len() as u64);
        self.install(name, version, config, WeightSource::Bytes(safetensors), fp)
    }

    /// Serves a model built in code (any [`cohost_models::Model`], e.g. a custom family)
    /// as `name`/`version`; its config must describe its inputs and outputs.
    pub fn load_model_instance(
        &self,
        name: &str,
        version: u64,
        model: Arc<dyn cohost_models::Model>,
    ) -> Result<()> {
        repository::validate_name(name)?;
        let _guard = self.inner.load_lock.lock();
        let config = model.config().clone();
        let bytes = model.memory().device_bytes();
        let lease = MemoryLease::new(bytes, self.inner.memory_used.clone());
        let q = Arc::new(ModelQueue::new(
            name,
            version,
            config,
            model,
            self.lane_count(),
            lease,
        ));
        self.inner.scheduler.add(q.clone());
        if let Some(old) = self.inner.registry.insert(q, version) {
            old.close();
        }
        Ok(())
    }

    fn install(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        weights: WeightSource<'_>,
        fingerprint: u64,
    ) -> Result<()> {
        let used = self.memory_used();
        let remaining = self
            .inner
            .options
            .memory_budget
            .map(|b| b.saturating_sub(used));
        let device_budget = match (remaining, config.memory_budget) {
            (Some(r), Some(m)) => Some(r.min(m)),
            (r, m) => r.or(m),
        };
        let placement = PlacementOptions {
            device_budget,
            host_budget: self.inner.options.host_memory_budget,
        };
        let started = Instant::now();
        let model = cohost_models::build_model(&config, weights, &self.inner.backend, &placement)?;
        let bytes = model.memory().device_bytes();
        if let Some(budget) = device_budget.filter(|&b| bytes > b) {
            return Err(Error::invalid(format!(
                "model '{name}' needs {bytes} bytes of device memory but only {budget} remain in the budget"
            )));
        }
        let lease = MemoryLease::new(bytes, self.inner.memory_used.clone());
        let q = Arc::new(ModelQueue::new(
            name,
            version,
            config,
            model,
            self.lane_count(),
            lease,
        ));
        self.inner.scheduler.add(q.clone());
        if let Some(old) = self.inner.registry.insert(q, fingerprint) {
            old.close();
        }
        tracing::info!(
            model = name,
            version,
            device_bytes = bytes,
            ms = started.elapsed().as_millis() as u64,
            "model ready"
        );
        Ok(())
    }

    fn retire(&self, name: &str, version: u64) {
        if let Some(q) = self.inner.registry.remove(name, version) {
            q.close();
            tracing::info!(model = name, version, "model version unloading (draining)");
        }
        self.inner.scheduler.notify();
    }

    /// Stops new requests to every version of `name`; queued and running ones finish.
    pub fn unload_model(&self, name: &str) -> Result<()> {
        let _guard = self.inner.load_lock.lock();
        let versions = self.inner.registry.versions(name);
        if versions.is_empty() {
            return Err(Error::not_found(format!("model '{name}' is not loaded")));
        }
        for q in versions {
            self.retire(name, q.version);
        }
        Ok(())
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
        self.inner
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

    /// The model's load counter and the host's.
    pub fn load(&self, name: &str) -> Result<LoadReport> {
        let versions = self.inner.registry.versions(name);
        if versions.is_empty() {
            return Err(Error::not_found(format!("model '{name}' is not loaded")));
        }
        Ok(self.load_report(&versions))
    }

    fn load_report(&self, versions: &[Arc<ModelQueue>]) -> LoadReport {
        let mut work = 0.0;
        let (mut queued, mut in_flight) = (0, 0);
        let mut lanes = 1;
        for q in versions {
            work += q.outstanding_work();
            let (a, b) = q.counts();
            queued += a;
            in_flight += b;
            lanes = lanes.max(q.max_lanes);
        }
        let model_load = work / lanes as f64;
        let host_load = self.inner.scheduler.total_work() / self.lane_count().max(1) as f64;
        if let Some(q) = versions.first() {
            q.metrics.load.set(model_load);
        }
        crate::metrics::host_load(host_load);
        LoadReport {
            model_load,
            host_load,
            queued,
            in_flight,
        }
    }

    /// Runs one request through the model's queue, batcher and a lane.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<u64>,
        request: InferRequest,
    ) -> Result<InferResponse> {
        let arrived = Instant::now();
        let q = self.inner.registry.get(name, version)?;
        let id = request.id.clone();
        let result = self.submit(&q, request, arrived).await;
        let total = arrived.elapsed();
        let total_ns = total.as_nanos() as u64;
        match result {
            Ok((outputs, queue_seconds)) => {
                q.stats
                    .request(true, total_ns, (queue_seconds * 1e9) as u64);
                q.metrics.success.increment(1);
                q.metrics.request_duration.record(total.as_secs_f64());
                q.metrics.queue_duration.record(queue_seconds);
                Ok(InferResponse {
                    model_name: q.name.clone(),
                    model_version: q.version,
                    id,
                    outputs,
                    load: self.load_report(std::slice::from_ref(&q)),
                })
            }
            Err(e) => {
                q.stats.request(false, total_ns, 0);
                q.metrics.failure(e.kind.label());
                Err(e)
            }
        }
    }

    async fn submit(
        &self,
        q: &Arc<ModelQueue>,
        request: InferRequest,
        arrived: Instant,
    ) -> Result<(Vec<Tensor>, f64)> {
        let (rows, inputs, outputs) = crate::validate::prepare(q, &request)?;
        let batch = Batch { rows, inputs };
        q.model
            .check(&batch)
            .map_err(|e| Error::invalid(format!("model '{}': {e}", q.name)))?;
        let deadline = request.timeout.map(|t| arrived + t);
        if let (Some(d), true) = (deadline, q.latency.is_calibrated()) {
            let predicted = q.outstanding_work() / q.max_lanes as f64 + q.latency.predict(rows);
            let budget = d.saturating_duration_since(Instant::now()).as_secs_f64();
            if predicted > budget {
                return Err(Error::overloaded(format!(
                    "model '{}' cannot answer within the request's timeout: {:.2} ms of work is ahead, {:.2} ms remain",
                    q.name,
                    predicted * 1e3,
                    budget * 1e3
                )));
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        q.enqueue(Pending {
            rows,
            inputs: batch.inputs,
            outputs,
            enqueued: arrived,
            deadline,
            reply: tx,
        })?;
        self.inner.scheduler.notify();
        let reply = match deadline {
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, rx).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::DeadlineExceeded,
                            format!("request to model '{}' timed out", q.name),
                        ));
                    }
                }
            }
            None => rx.await,
        };
        let reply =
            reply.map_err(|_| Error::unavailable("the runtime shut down before answering"))??;
        Ok((reply.outputs, reply.queue_seconds))
    }

    /// Stops taking requests, lets accepted ones finish, then stops the lanes (blocking).
    pub fn shutdown(&self) {
        for q in self.inner.registry.all() {
            q.close();
        }
        self.inner.scheduler.shutdown();
        let handles: Vec<_> = std::mem::take(&mut *self.inner.lanes.lock());
        for h in handles {
            let _ = h.join();
        }
    }
}
