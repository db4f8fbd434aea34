//! Loading, reloading and unloading model versions: repository folders or code, memory
//! budget accounting, draining retired versions, and shutting the runtime down within a
//! deadline.

use super::{Reload, Runtime, off_executor};
use crate::queue::{MemoryLease, ModelQueue};
use crate::{Error, ModelConfig, Result, repository};
use cohost_models::{PlacementOptions, WeightSource};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long [`Runtime::shutdown`] waits for accepted requests and the lanes.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

impl Runtime {
    /// Loads every model found in the repository folder; returns the failures.
    ///
    /// # Blocking
    ///
    /// Reads and builds every model's weights; from async code use
    /// [`Runtime::load_all_async`].
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

    /// [`Runtime::load_all`] on a blocking thread of the tokio runtime, for async callers.
    pub async fn load_all_async(&self) -> Vec<(String, Error)> {
        let runtime = self.clone();
        off_executor(move || runtime.load_all()).await
    }

    /// Loads (or reloads) a model from the repository: new or changed versions start
    /// serving, versions no longer wanted drain and are freed.
    ///
    /// # Blocking
    ///
    /// Reads and builds the model's weights, after any load in progress; from async code
    /// use [`Runtime::load_model_async`].
    pub fn load_model(&self, name: &str) -> Result<()> {
        // An invalid name is refused before anything is stored or logged under it.
        repository::validate_model_name(name)?;
        let _guard = self.inner.load_lock.lock();
        let result = self.load_model_locked(name).map_err(|mut e| {
            // Reasons name files relative to the repository, not by absolute path: in the
            // index and in the load call's own answer alike.
            if let Some(repo) = self.repository() {
                e.message = e.message.replace(&format!("{}/", repo.display()), "");
            }
            e
        });
        if let Err(e) = &result {
            self.inner.registry.set_failure(name, e.message.clone());
            tracing::warn!(model = name, "load failed: {e}");
        }
        result
    }

    /// [`Runtime::load_model`] on a blocking thread of the tokio runtime, for async callers.
    pub async fn load_model_async(&self, name: &str) -> Result<()> {
        let (runtime, name) = (self.clone(), name.to_string());
        off_executor(move || runtime.load_model(&name)).await
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
        let serving = self.hold_serving(name);
        for &v in &wanted {
            let path = &disk.versions[&v];
            let fp = repository::fingerprint(&[path]) ^ disk.config_fingerprint;
            if self.inner.registry.fingerprint(name, v) == Some(fp) {
                continue;
            }
            self.install(name, v, disk.config.clone(), WeightSource::File(path), fp)?;
        }
        self.settle(name, serving, Some(wanted));
        Ok(())
    }

    /// Loads one version of a model from a config and safetensors bytes given in code.
    ///
    /// # Blocking
    ///
    /// Builds the model's weights, after any load in progress; from async code use
    /// [`Runtime::load_model_from_async`].
    pub fn load_model_from(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        safetensors: &[u8],
    ) -> Result<()> {
        repository::validate_model_name(name)?;
        config
            .validate(Path::new("<inline>"))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let _guard = self.inner.load_lock.lock();
        let fp = repository::fingerprint(&[]) ^ version ^ (safetensors.len() as u64);
        let serving = self.hold_serving(name);
        self.install(name, version, config, WeightSource::Bytes(safetensors), fp)?;
        self.settle(name, serving, None);
        Ok(())
    }

    /// The version unversioned requests to `name` go to now, if it is loaded.
    pub(super) fn serving(&self, name: &str) -> Option<u64> {
        self.inner.registry.get(name, None).ok().map(|q| q.version)
    }

    /// [`Runtime::serving`], pinned there under a transition budget, so a version installed
    /// by this load takes no unversioned request before [`Runtime::settle`] decides whether
    /// it may (a retired version drops its pin, so a failed load leaves nothing stale).
    pub(super) fn hold_serving(&self, name: &str) -> Option<u64> {
        let serving = self.serving(name);
        if self.inner.options.transition_budget.is_some() && serving.is_some() {
            self.inner.registry.pin(name, serving);
        }
        serving
    }

    /// [`Runtime::load_model_from`] on a blocking thread of the tokio runtime, for async
    /// callers (the bytes are moved there).
    pub async fn load_model_from_async(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        safetensors: Vec<u8>,
    ) -> Result<()> {
        let (runtime, name) = (self.clone(), name.to_string());
        off_executor(move || runtime.load_model_from(&name, version, config, &safetensors)).await
    }

    /// Serves a model built in code (any [`cohost_models::Model`], e.g. a custom family)
    /// as `name`/`version`; its config must describe its inputs and outputs.
    ///
    /// # Blocking
    ///
    /// Waits for any load in progress; from async code use
    /// [`Runtime::load_model_instance_async`].
    pub fn load_model_instance(
        &self,
        name: &str,
        version: u64,
        model: Arc<dyn cohost_models::Model>,
    ) -> Result<()> {
        repository::validate_model_name(name)?;
        let config = model.config().clone();
        config
            .validate(Path::new(&format!("<model instance '{name}'>")))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let _guard = self.inner.load_lock.lock();
        let budget = self.device_budget(&config);
        let serving = self.hold_serving(name);
        self.serve_version(name, version, config, model.clone(), budget, version)?;
        self.remember(name, version, Reload::Instance(model));
        self.settle(name, serving, None);
        Ok(())
    }

    /// [`Runtime::load_model_instance`] on a blocking thread of the tokio runtime, for
    /// async callers.
    pub async fn load_model_instance_async(
        &self,
        name: &str,
        version: u64,
        model: Arc<dyn cohost_models::Model>,
    ) -> Result<()> {
        let (runtime, name) = (self.clone(), name.to_string());
        off_executor(move || runtime.load_model_instance(&name, version, model)).await
    }

    /// Device bytes a new model may use: what the runtime's budget has left, capped by
    /// the model's own budget.
    pub(super) fn device_budget(&self, config: &ModelConfig) -> Option<u64> {
        let used = self.memory_used();
        let remaining = self
            .inner
            .options
            .memory_budget
            .map(|b| b.saturating_sub(used));
        match (remaining, config.memory_budget) {
            (Some(r), Some(m)) => Some(r.min(m)),
            (r, m) => r.or(m),
        }
    }

    /// Checks a built model against the budget, then routes new requests to it; the
    /// version it replaces drains.
    pub(super) fn serve_version(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        model: Arc<dyn cohost_models::Model>,
        budget: Option<u64>,
        fingerprint: u64,
    ) -> Result<()> {
        let bytes = model.memory().device_bytes();
        if let Some(budget) = budget.filter(|&b| bytes > b) {
            return Err(Error::invalid(format!(
                "model '{name}' needs {bytes} bytes of device memory but only {budget} remain in the budget"
            )));
        }
        let lease = MemoryLease::new(bytes, self.inner.memory_used.clone());
        let q = ModelQueue::new(name, version, config, model, self.lane_count(), lease);
        let q = Arc::new(q);
        self.inner.scheduler.add(q.clone());
        if let Some(old) = self.inner.registry.insert(q, fingerprint) {
            old.close();
        }
        tracing::info!(model = name, version, device_bytes = bytes, "model ready");
        Ok(())
    }

    pub(super) fn install(
        &self,
        name: &str,
        version: u64,
        config: ModelConfig,
        weights: WeightSource<'_>,
        fingerprint: u64,
    ) -> Result<()> {
        let device_budget = self.device_budget(&config);
        let placement = PlacementOptions {
            device_budget,
            host_budget: self.inner.options.host_memory_budget,
        };
        let started = Instant::now();
        let reload = match weights {
            WeightSource::File(path) => Reload::File {
                config: Box::new(config.clone()),
                path: path.to_path_buf(),
                fingerprint,
            },
            WeightSource::Bytes(_) => Reload::Bytes,
        };
        let backend = self.inner.slot.backend()?;
        let model = cohost_models::build_model(&config, weights, &backend, &placement)?;
        drop(backend);
        self.serve_version(name, version, config, model, device_budget, fingerprint)?;
        self.remember(name, version, reload);
        tracing::debug!(
            model = name,
            version,
            ms = started.elapsed().as_millis() as u64,
            "loaded"
        );
        Ok(())
    }

    pub(super) fn retire(&self, name: &str, version: u64) {
        self.inner
            .reloads
            .lock()
            .remove(&(name.to_string(), version));
        if let Some(q) = self.inner.registry.remove(name, version) {
            q.close();
            tracing::info!(model = name, version, "model version unloading (draining)");
        }
        self.inner.scheduler.notify();
    }

    /// Stops new requests to every version of `name`; queued and running ones finish.
    ///
    /// # Blocking
    ///
    /// Waits for any load in progress (not for the versions to drain); from async code use
    /// [`Runtime::unload_model_async`].
    pub fn unload_model(&self, name: &str) -> Result<()> {
        let _guard = self.inner.load_lock.lock();
        let versions = self.inner.registry.versions(name);
        if versions.is_empty() {
            return Err(Error::not_found(format!("model '{name}' is not loaded")));
        }
        self.cancel_transition(name);
        for q in versions {
            self.retire(name, q.version);
        }
        Ok(())
    }

    /// [`Runtime::unload_model`] on a blocking thread of the tokio runtime, for async
    /// callers.
    pub async fn unload_model_async(&self, name: &str) -> Result<()> {
        let (runtime, name) = (self.clone(), name.to_string());
        off_executor(move || runtime.unload_model(&name)).await
    }

    /// Stops taking requests, lets accepted ones finish, then stops the lanes, waiting
    /// at most [`DEFAULT_SHUTDOWN_TIMEOUT`]; see [`Runtime::shutdown_within`].
    ///
    /// # Blocking
    ///
    /// Waits for the accepted requests to run and joins the lane threads; from async code
    /// use [`Runtime::shutdown_async`].
    pub fn shutdown(&self) {
        self.shutdown_within(DEFAULT_SHUTDOWN_TIMEOUT);
    }

    /// [`Runtime::shutdown`] on a blocking thread of the tokio runtime, for async callers.
    pub async fn shutdown_async(&self) {
        let runtime = self.clone();
        off_executor(move || runtime.shutdown()).await
    }

    /// Stops taking requests, lets accepted ones finish and stops the lanes, for at most
    /// `timeout`; the indices of the lanes still running then (a forward that never
    /// returns), which are logged and left behind, not waited on. Requests still queued
    /// at the deadline are answered UNAVAILABLE; those in a stuck lane's batch stay
    /// unanswered (their callers' own deadlines apply).
    ///
    /// # Blocking
    ///
    /// Up to `timeout`; from async code use [`Runtime::shutdown_within_async`].
    pub fn shutdown_within(&self, timeout: Duration) -> Vec<usize> {
        let started = Instant::now();
        // A timeout too long to represent is a year.
        let deadline = started
            .checked_add(timeout)
            .unwrap_or_else(|| started + Duration::from_secs(365 * 86_400));
        for q in self.inner.registry.all() {
            q.close();
        }
        self.inner.scheduler.shutdown();
        let stuck = self.inner.lanes.join_until(deadline);
        if !stuck.is_empty() {
            let gone = Error::unavailable("the runtime shut down before answering");
            let mut failed = 0usize;
            for q in self.inner.scheduler.queues() {
                while q.fail_oldest(gone.clone()) {
                    failed += 1;
                }
            }
            tracing::warn!(
                lanes = ?stuck,
                queued_failed = failed,
                "shutdown: {} lane(s) still running a batch after {timeout:?}; not waiting for them",
                stuck.len()
            );
        }
        stuck
    }

    /// [`Runtime::shutdown_within`] on a blocking thread of the tokio runtime, for async
    /// callers.
    pub async fn shutdown_within_async(&self, timeout: Duration) -> Vec<usize> {
        let runtime = self.clone();
        off_executor(move || runtime.shutdown_within(timeout)).await
    }
}
