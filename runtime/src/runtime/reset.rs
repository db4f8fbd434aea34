//! Rebuilding the device after a sticky fault: the lanes stop running batches, every
//! request queued or running on the lost context is answered 503, the backend is rebuilt
//! through a [`DeviceRebuild`], every loaded model version is loaded again on it, and
//! serving resumes. A rebuild that fails is retried with a growing pause, models unready
//! meanwhile.
//!
//! Queued requests are answered 503 at once rather than kept for after the rebuild: they
//! sit in queues whose models hold device state of the lost context, and reloading every
//! model (weights re-uploaded, kernels recompiled) takes seconds to minutes for large
//! tables, past most requests' deadlines; a 503 lets the client retry elsewhere now.

use super::{Inner, Runtime};
use crate::lane::{BatchBoundary, Boundary, backend_boundary};
use crate::queue::ModelQueue;
use crate::{Error, ModelConfig};
use cohost_kernels::{DeviceFault, Lane};
use cohost_models::{BackendHandle, Model, WeightSource};
use parking_lot::{Condvar, Mutex, RwLock};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// First pause before a failed rebuild is tried again; it doubles up to [`RESET_BACKOFF_MAX`].
pub const RESET_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between two failed rebuilds.
pub const RESET_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Longest wait for the lost context's batches to finish before the backend is rebuilt.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Builds a fresh backend and its lanes after the old one lost its context.
pub trait DeviceRebuild: Send + Sync {
    /// A new `backend` ("cpu" or "cuda") and `lanes` lanes on it, replacing `old`, which no
    /// model holds any more (None when an earlier attempt of this reset already had it).
    fn rebuild(
        &self,
        backend: &'static str,
        old: Option<BackendHandle>,
        lanes: usize,
    ) -> std::result::Result<(BackendHandle, Vec<Lane>), String>;
}

/// The baseline [`DeviceRebuild`]: the same backend kind opened again (CPU: a fresh
/// `CpuOps`; CUDA: `CudaOps::reopen`, a new context, streams and kernel build).
pub struct ReopenBackend {
    /// Lanes in priority classes (one in four High), as [`RuntimeOptions::lane_priorities`](super::RuntimeOptions::lane_priorities).
    pub lane_priorities: bool,
}

impl DeviceRebuild for ReopenBackend {
    fn rebuild(
        &self,
        backend: &'static str,
        old: Option<BackendHandle>,
        lanes: usize,
    ) -> std::result::Result<(BackendHandle, Vec<Lane>), String> {
        super::backend::reopen(backend, old, lanes, self.lane_priorities)
    }
}

/// An optional [`DeviceRebuild`] in [`RuntimeOptions`](super::RuntimeOptions) (None:
/// [`ReopenBackend`]).
#[derive(Clone, Default)]
pub struct RebuildSource(pub Option<Arc<dyn DeviceRebuild>>);

impl std::fmt::Debug for RebuildSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "RebuildSource(custom)"
        } else {
            "RebuildSource(reopen)"
        })
    }
}

/// An extra batch-boundary check run after the backend's (tests inject faults with it).
#[derive(Clone, Default)]
pub struct BoundaryHook(pub Option<Boundary>);

impl std::fmt::Debug for BoundaryHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BoundaryHook(set)"
        } else {
            "BoundaryHook(none)"
        })
    }
}

/// How a loaded version is loaded again after a rebuild.
#[derive(Clone)]
pub(super) enum Reload {
    /// From its weights file (repository or model folder).
    File {
        config: Box<ModelConfig>,
        path: PathBuf,
        fingerprint: u64,
    },
    /// The same instance served again (a model built in code; see docs/CUDA.md).
    Instance(Arc<dyn Model>),
    /// Loaded from bytes given in code, not kept: it must be loaded again by its owner.
    Bytes,
}

/// The sticky fault that started a reset and where it was found.
#[derive(Clone)]
struct Cause {
    fault: DeviceFault,
    model: String,
    version: u64,
    lane: usize,
    since: Instant,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (found after a batch of model '{}' version {} on lane {})",
            self.fault, self.model, self.version, self.lane
        )
    }
}

enum Phase {
    Serving,
    Resetting(Cause),
    Failed(Cause, String),
}

/// The device the lanes run on, swapped by a reset, and the reset's state.
pub(super) struct DeviceSlot {
    backend: RwLock<Option<BackendHandle>>,
    check: RwLock<Boundary>,
    hook: Option<Boundary>,
    /// The lanes after the latest rebuild, by index (empty before the first).
    lanes: RwLock<Vec<Lane>>,
    generation: AtomicU64,
    down: AtomicBool,
    phase: Mutex<Phase>,
    wake: Condvar,
    stop: AtomicBool,
    /// Versions taken out of service by the reset in progress, to load again.
    released: Mutex<Option<Vec<(String, u64, Reload)>>>,
    resets_ok: AtomicU64,
    resets_failed: AtomicU64,
}

impl DeviceSlot {
    /// The slot of `backend`, with `hook` checked after the backend's own boundary.
    pub(super) fn new(backend: BackendHandle, hook: Option<Boundary>) -> DeviceSlot {
        DeviceSlot {
            check: RwLock::new(backend_boundary(&backend)),
            backend: RwLock::new(Some(backend)),
            hook,
            lanes: RwLock::new(Vec::new()),
            generation: AtomicU64::new(0),
            down: AtomicBool::new(false),
            phase: Mutex::new(Phase::Serving),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            released: Mutex::new(None),
            resets_ok: AtomicU64::new(0),
            resets_failed: AtomicU64::new(0),
        }
    }

    /// The backend models are built on now; unavailable while it is being rebuilt.
    pub(super) fn backend(&self) -> crate::Result<BackendHandle> {
        self.backend
            .read()
            .clone()
            .ok_or_else(|| Error::unavailable("the device is being rebuilt"))
    }

    /// Successful rebuilds so far (0 before the first reset).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Resets that succeeded and rebuild attempts that failed.
    pub(super) fn resets(&self) -> (u64, u64) {
        (
            self.resets_ok.load(Ordering::SeqCst),
            self.resets_failed.load(Ordering::SeqCst),
        )
    }

    /// True while a reset is in progress or its rebuild keeps failing.
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Stops the reset thread (the runtime is going away).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _phase = self.phase.lock();
        self.wake.notify_all();
    }

    /// Starts the thread that runs resets for the runtime behind `inner`.
    pub(super) fn supervise(self: &Arc<Self>, inner: Weak<Inner>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("cohost-device-reset".into())
            .spawn(move || me.run(inner))
            .map(drop)
    }

    fn run(&self, inner: Weak<Inner>) {
        let mut pause = RESET_BACKOFF;
        loop {
            let cause = {
                let mut phase = self.phase.lock();
                loop {
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    match &*phase {
                        Phase::Serving => self.wake.wait(&mut phase),
                        Phase::Resetting(c) | Phase::Failed(c, _) => break c.clone(),
                    }
                }
            };
            // Only a weak link between attempts: a runtime dropped meanwhile goes away.
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let outcome = Runtime { inner }.reset(&cause);
            match outcome {
                Ok(()) => pause = RESET_BACKOFF,
                Err(_) => {
                    let mut phase = self.phase.lock();
                    if !self.stop.load(Ordering::SeqCst) {
                        self.wake.wait_for(&mut phase, pause);
                    }
                    pause = (pause * 2).min(RESET_BACKOFF_MAX);
                }
            }
        }
    }
}

impl BatchBoundary for DeviceSlot {
    fn check(&self, lane: &Lane) -> std::result::Result<(), DeviceFault> {
        let check = self.check.read().clone();
        check(lane)?;
        match &self.hook {
            Some(hook) => hook(lane),
            None => Ok(()),
        }
    }

    fn sticky(&self, fault: &DeviceFault, model: &str, version: u64, lane: usize) {
        let mut phase = self.phase.lock();
        // Lanes reporting while a reset is under way cause no second one.
        if !matches!(*phase, Phase::Serving) {
            return;
        }
        self.down.store(true, Ordering::SeqCst);
        *phase = Phase::Resetting(Cause {
            fault: fault.clone(),
            model: model.to_string(),
            version,
            lane,
            since: Instant::now(),
        });
        self.wake.notify_all();
    }

    fn refuse(&self) -> Option<Error> {
        if !self.down.load(Ordering::SeqCst) {
            return None;
        }
        Some(match &*self.phase.lock() {
            Phase::Serving => Error::unavailable("the device is being rebuilt"),
            Phase::Resetting(c) => Error::unavailable(format!(
                "the device is being reset after a {c}; retry shortly"
            )),
            Phase::Failed(c, why) => Error::unavailable(format!(
                "the device could not be rebuilt after a {c}: {why}; retrying"
            )),
        })
    }

    fn current(&self, lane: &Lane) -> Option<Lane> {
        if self.generation.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.lanes.read().get(lane.index).cloned()
    }
}

impl Runtime {
    /// One reset attempt after `cause`: takes every loaded version out of service (once
    /// per reset), rebuilds the backend and loads the versions again.
    fn reset(&self, cause: &Cause) -> std::result::Result<(), String> {
        let slot = &self.inner.slot;
        let _guard = self.inner.load_lock.lock();
        let first = slot.released.lock().is_none();
        if first {
            tracing::error!(
                fault = %cause.fault,
                model = %cause.model,
                version = cause.version,
                lane = cause.lane,
                "sticky device fault: resetting the device; queued and running requests get 503"
            );
            let released = self.release_models(cause);
            *slot.released.lock() = Some(released);
        }
        let old = slot.backend.write().take();
        let rebuilt = slot.rebuild_with(self, old);
        let (backend, lanes) = match rebuilt {
            Ok(b) => b,
            Err(why) => return Err(self.rebuild_failed(cause, why)),
        };
        *slot.check.write() = backend_boundary(&backend);
        *slot.lanes.write() = lanes;
        *slot.backend.write() = Some(backend);
        slot.generation.fetch_add(1, Ordering::SeqCst);
        let released = slot.released.lock().take().unwrap_or_default();
        let (mut reloaded, mut failed) = (0usize, 0usize);
        for (name, version, reload) in released {
            match self.reload(&name, version, reload) {
                Ok(()) => reloaded += 1,
                Err(e) => {
                    failed += 1;
                    let why = format!("not reloaded after the device reset: {e}");
                    tracing::warn!(model = %name, version, "{why}");
                    self.inner.registry.set_failure(&name, why);
                }
            }
        }
        {
            let mut phase = slot.phase.lock();
            *phase = Phase::Serving;
            slot.down.store(false, Ordering::SeqCst);
        }
        slot.resets_ok.fetch_add(1, Ordering::SeqCst);
        crate::metrics::device_reset("ok");
        tracing::warn!(
            fault = %cause.fault,
            model = %cause.model,
            version = cause.version,
            lane = cause.lane,
            reloaded,
            failed,
            ms = cause.since.elapsed().as_millis() as u64,
            "device reset done; serving again"
        );
        self.inner.scheduler.notify();
        Ok(())
    }

    /// Unregisters every loaded version, answers its queued requests 503 and waits (a
    /// while) until the lost context's running batches finished and the queues are gone.
    fn release_models(&self, cause: &Cause) -> Vec<(String, u64, Reload)> {
        let queues = self.inner.registry.all();
        let mut released = Vec::new();
        for q in &queues {
            self.inner.registry.remove(&q.name, q.version);
            q.close();
            let reload = self
                .inner
                .reloads
                .lock()
                .remove(&(q.name.clone(), q.version))
                .unwrap_or(Reload::Bytes);
            released.push((q.name.clone(), q.version, reload));
            let gone = Error::unavailable(format!(
                "model '{}': the device is being reset after a {cause}",
                q.name
            ));
            while q.fail_oldest(gone.clone()) {}
        }
        released.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let weak: Vec<Weak<ModelQueue>> = queues.iter().map(Arc::downgrade).collect();
        drop(queues);
        let deadline = Instant::now() + RELEASE_WAIT;
        while weak.iter().any(|w| w.strong_count() > 0) && Instant::now() < deadline {
            // The lanes drop a drained queue on their next pass.
            self.inner.scheduler.notify();
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = weak.iter().filter(|w| w.strong_count() > 0).count();
        if held > 0 {
            tracing::warn!(
                versions = held,
                "device reset: {held} version(s) still running after {RELEASE_WAIT:?}; rebuilding anyway"
            );
        }
        released
    }

    /// Records a failed rebuild: models unready with the reason; the message returned.
    fn rebuild_failed(&self, cause: &Cause, why: String) -> String {
        let slot = &self.inner.slot;
        slot.resets_failed.fetch_add(1, Ordering::SeqCst);
        crate::metrics::device_reset("failed");
        tracing::error!(
            fault = %cause.fault,
            ms = cause.since.elapsed().as_millis() as u64,
            "device reset: rebuilding the backend failed ({why}); retrying with backoff"
        );
        if let Some(released) = &*slot.released.lock() {
            for (name, _, _) in released {
                let reason = format!("the device could not be rebuilt after a {cause}: {why}");
                self.inner.registry.set_failure(name, reason);
            }
        }
        *slot.phase.lock() = Phase::Failed(cause.clone(), why.clone());
        why
    }

    /// Loads one released version again on the rebuilt backend.
    fn reload(&self, name: &str, version: u64, reload: Reload) -> crate::Result<()> {
        match reload {
            Reload::File {
                config,
                path,
                fingerprint,
            } => self.install(
                name,
                version,
                *config,
                WeightSource::File(&path),
                fingerprint,
            ),
            Reload::Instance(model) => {
                let config = model.config().clone();
                let budget = self.device_budget(&config);
                self.serve_version(name, version, config, model.clone(), budget, version)
                    .map(|()| self.remember(name, version, Reload::Instance(model)))
            }
            Reload::Bytes => Err(Error::unavailable(format!(
                "model '{name}' version {version} was loaded from bytes in code; load it again"
            ))),
        }
    }

    /// Keeps how `name`/`version` is loaded again after a device reset.
    pub(super) fn remember(&self, name: &str, version: u64, reload: Reload) {
        self.inner
            .reloads
            .lock()
            .insert((name.to_string(), version), reload);
    }

    /// Why models are unavailable now (a device reset in progress or failing), if so.
    pub fn device_unavailable(&self) -> Option<Error> {
        self.inner.slot.refuse()
    }

    /// True unless a device reset is in progress or its rebuild keeps failing.
    pub fn is_ready(&self) -> bool {
        !self.inner.slot.is_down()
    }

    /// Device resets that succeeded and rebuild attempts that failed since the start.
    pub fn device_resets(&self) -> (u64, u64) {
        self.inner.slot.resets()
    }

    /// How many times the backend was rebuilt (0: still the one opened at start-up).
    pub fn device_generation(&self) -> u64 {
        self.inner.slot.generation()
    }
}

impl DeviceSlot {
    fn rebuild_with(
        &self,
        rt: &Runtime,
        old: Option<BackendHandle>,
    ) -> std::result::Result<(BackendHandle, Vec<Lane>), String> {
        let (lanes, name) = (rt.lane_count(), rt.backend_name());
        // The old lanes' streams go first (a CUDA context is rebuilt without them).
        self.lanes.write().clear();
        let rebuilt = match &rt.inner.options.rebuild.0 {
            Some(custom) => custom.rebuild(name, old, lanes),
            None => ReopenBackend {
                lane_priorities: rt.inner.options.lane_priorities,
            }
            .rebuild(name, old, lanes),
        }?;
        if rebuilt.1.len() != lanes {
            return Err(format!(
                "the rebuilt backend offers {} lanes, not {lanes}",
                rebuilt.1.len()
            ));
        }
        Ok(rebuilt)
    }
}
