//! The registry of loaded model versions that requests are routed to.

use crate::queue::ModelQueue;
use crate::{Error, Result};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most load failures remembered at once (names come from clients in explicit mode).
pub const MAX_FAILURES: usize = 1024;

/// One model's loaded versions and the version unversioned requests are held on, if any.
#[derive(Default)]
struct Versions {
    loaded: BTreeMap<u64, Arc<ModelQueue>>,
    /// A version that keeps the unversioned traffic while a newer one waits to take it
    /// (a transition budget); None: the highest loaded version takes it.
    pinned: Option<u64>,
}

/// Loaded model versions by name, plus why loads failed.
#[derive(Default)]
pub struct Registry {
    models: RwLock<BTreeMap<String, Versions>>,
    failures: Mutex<BTreeMap<String, String>>,
    fingerprints: Mutex<BTreeMap<(String, u64), u64>>,
}

impl Registry {
    /// The requested version, or when `version` is None the pinned version (see
    /// [`Registry::pin`]) or else the highest loaded one.
    pub fn get(&self, name: &str, version: Option<u64>) -> Result<Arc<ModelQueue>> {
        let models = self.models.read();
        let Some(entry) = models.get(name).filter(|v| !v.loaded.is_empty()) else {
            return Err(Error::not_found(format!("model '{name}' is not loaded")));
        };
        let versions = &entry.loaded;
        match version {
            None => Ok(entry
                .pinned
                .and_then(|p| versions.get(&p))
                .or_else(|| versions.values().next_back())
                .unwrap()
                .clone()),
            Some(v) => versions.get(&v).cloned().ok_or_else(|| {
                let ready: Vec<String> = versions.keys().map(|k| k.to_string()).collect();
                Error::not_found(format!(
                    "model '{name}' has no version {v} loaded (loaded: {})",
                    ready.join(", ")
                ))
            }),
        }
    }

    /// Every loaded version of `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<Arc<ModelQueue>> {
        self.models
            .read()
            .get(name)
            .map(|v| v.loaded.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The highest loaded version of `name`, pinned or not.
    pub fn highest(&self, name: &str) -> Option<u64> {
        self.models
            .read()
            .get(name)
            .and_then(|v| v.loaded.keys().next_back().copied())
    }

    /// Keeps unversioned requests to `name` on `version` (while it is loaded), whatever
    /// newer versions load; None: back to the highest loaded version.
    pub fn pin(&self, name: &str, version: Option<u64>) {
        if let Some(entry) = self.models.write().get_mut(name) {
            entry.pinned = version;
        }
    }

    /// Every loaded version of every model.
    pub fn all(&self) -> Vec<Arc<ModelQueue>> {
        self.models
            .read()
            .values()
            .flat_map(|v| v.loaded.values().cloned())
            .collect()
    }

    /// Starts routing to `q` (with the fingerprint of its files); returns the version it replaces.
    pub fn insert(&self, q: Arc<ModelQueue>, fingerprint: u64) -> Option<Arc<ModelQueue>> {
        self.failures.lock().remove(&q.name);
        self.fingerprints
            .lock()
            .insert((q.name.clone(), q.version), fingerprint);
        self.models
            .write()
            .entry(q.name.clone())
            .or_default()
            .loaded
            .insert(q.version, q)
    }

    /// Stops routing to one version.
    pub fn remove(&self, name: &str, version: u64) -> Option<Arc<ModelQueue>> {
        self.fingerprints
            .lock()
            .remove(&(name.to_string(), version));
        let mut models = self.models.write();
        let versions = models.get_mut(name)?;
        let q = versions.loaded.remove(&version);
        if versions.pinned == Some(version) {
            versions.pinned = None;
        }
        if versions.loaded.is_empty() {
            models.remove(name);
        }
        q
    }

    /// The fingerprint a loaded version was loaded with.
    pub fn fingerprint(&self, name: &str, version: u64) -> Option<u64> {
        self.fingerprints
            .lock()
            .get(&(name.to_string(), version))
            .copied()
    }

    /// Remembers why loading `name` failed (at most [`MAX_FAILURES`] names: the first in
    /// sort order is forgotten to make room).
    pub fn set_failure(&self, name: &str, reason: String) {
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_FAILURES && !failures.contains_key(name) {
            failures.pop_first();
        }
        failures.insert(name.to_string(), reason);
    }

    /// Why loading `name` failed, if it did.
    pub fn failure(&self, name: &str) -> Option<String> {
        self.failures.lock().get(name).cloned()
    }

    /// Names with a recorded failure.
    pub fn failed_names(&self) -> Vec<String> {
        self.failures.lock().keys().cloned().collect()
    }
}
