//! Calls for a controller that places models itself (ModelMesh): load a model folder from
//! anywhere under a name of the caller's choosing, unload and wait until the memory is
//! back, and what a model holds across its versions.

use super::Runtime;
use crate::{Error, Result, repository};
use cohost_models::WeightSource;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often [`Runtime::unload_model_and_wait`] looks whether the versions are gone.
const FREED_POLL: Duration = Duration::from_millis(1);

impl Runtime {
    /// Loads the model folder `dir` (`config.toml`, `<version>/model.safetensors`; it need
    /// not be in the repository) as `name`, every version its `version_policy` wants.
    /// Nothing stays loaded when it fails.
    ///
    /// # Blocking
    ///
    /// Reads and builds the model's weights, after any load in progress.
    pub fn load_model_dir(&self, name: &str, dir: &Path) -> Result<()> {
        repository::validate_model_name(name)?;
        let _guard = self.inner.load_lock.lock();
        let disk = repository::read_model_dir(dir, name)?;
        let available: Vec<u64> = disk.versions.keys().copied().collect();
        let wanted = repository::wanted_versions(&disk.config.version_policy, &available);
        if wanted.is_empty() {
            return Err(Error::not_found(format!(
                "model folder {} has no version folder with {} matching its version_policy",
                dir.display(),
                repository::WEIGHTS_FILE
            )));
        }
        let serving = self.hold_serving(name);
        let mut installed = Vec::new();
        for &v in &wanted {
            let path = &disk.versions[&v];
            let fp = repository::fingerprint(&[path]) ^ disk.config_fingerprint;
            if self.inner.registry.fingerprint(name, v) == Some(fp) {
                continue;
            }
            let weights = WeightSource::File(path);
            if let Err(e) = self.install(name, v, disk.config.clone(), weights, fp) {
                // All or nothing: versions this call already started go again.
                for v in installed {
                    self.retire(name, v);
                }
                return Err(e);
            }
            installed.push(v);
        }
        self.settle(name, serving, Some(wanted));
        Ok(())
    }

    /// Stops new requests to every version of `name`, then waits until the accepted ones
    /// finished and the versions' memory is back in the budget (at most `timeout`); true
    /// when it is back, false when `timeout` passed first.
    ///
    /// # Blocking
    ///
    /// Waits for any load in progress and for the versions to drain.
    pub fn unload_model_and_wait(&self, name: &str, timeout: Duration) -> Result<bool> {
        let gone: Vec<_> = {
            let _guard = self.inner.load_lock.lock();
            let versions = self.inner.registry.versions(name);
            if versions.is_empty() {
                return Err(Error::not_found(format!("model '{name}' is not loaded")));
            }
            self.cancel_transition(name);
            let weak = versions.iter().map(Arc::downgrade).collect();
            for q in versions {
                self.retire(name, q.version);
            }
            weak
        };
        let deadline = Instant::now() + timeout;
        loop {
            if gone.iter().all(|w| w.strong_count() == 0) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            // The lanes drop a drained queue on their next pass.
            self.inner.scheduler.notify();
            std::thread::sleep(FREED_POLL);
        }
    }

    /// The version numbers and weights files that [`Runtime::load_model_dir`] would load
    /// from `dir`, ascending (reads only `config.toml` and the folder listing).
    pub fn weights_in_dir(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
        let mut disk = repository::read_model_dir(dir, "")?;
        let available: Vec<u64> = disk.versions.keys().copied().collect();
        let wanted = repository::wanted_versions(&disk.config.version_policy, &available);
        Ok(wanted
            .into_iter()
            .filter_map(|v| disk.versions.remove(&v).map(|p| (v, p)))
            .collect())
    }

    /// Memory every loaded version of `name` holds: (device bytes, host bytes), summed.
    pub fn model_bytes(&self, name: &str) -> Result<(u64, u64)> {
        let versions = self.inner.registry.versions(name);
        if versions.is_empty() {
            return Err(Error::not_found(format!("model '{name}' is not loaded")));
        }
        Ok(versions.iter().fold((0, 0), |(d, h), q| {
            let m = q.model.memory();
            (d + m.device_bytes(), h + m.host_bytes())
        }))
    }
}
