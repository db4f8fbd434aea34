//! `mmesh.ModelRuntime` over a [`Runtime`]: the models ModelMesh loaded, and the RPCs.
//!
//! Every load and unload runs to its end on a blocking thread, whatever happens to the
//! call: ModelMesh may cancel a `loadModel` and send `unloadModel` at once, and that
//! unload then waits for the load and undoes it, so that no model stays loaded behind
//! ModelMesh's back.

use super::folder::{model_folder, model_name};
use crate::grpc::to_status;
use cohost_protocol::mmesh as pb;
use cohost_protocol::mmesh::model_runtime_server::ModelRuntime;
use cohost_runtime::{Error, ErrorKind, Runtime};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// `modelLoadingTimeoutMs` as a duration: how long ModelMesh lets a load take.
pub const LOADING_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `unloadModel` waits for a model's accepted requests before it answers
/// DEADLINE_EXCEEDED (the memory still returns once they finish).
pub const UNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// `defaultModelSizeInBytes` is the capacity divided by this.
pub const DEFAULT_SIZE_DIVISOR: u64 = 8;

/// How often a call waiting for another one's load or unload looks again.
const WAIT_POLL: Duration = Duration::from_millis(5);

type Res<T> = Result<Response<T>, Status>;

/// Where one ModelMesh model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `loadModel` is building it; `unload` says an `unloadModel` came meanwhile.
    Loading { unload: bool },
    /// Served.
    Loaded,
    /// `unloadModel` is draining it.
    Unloading,
}

/// Models loaded through the SPI, by cohost name (= model id): their folder and phase.
type Table = BTreeMap<String, (PathBuf, Phase)>;

/// The table, shared with the blocking threads that finish loads and unloads.
type Models = Arc<Mutex<Table>>;

/// The service state: the runtime and the models ModelMesh loaded on it.
#[derive(Clone)]
pub struct ModelRuntimeService {
    runtime: Runtime,
    models: Models,
    capacity_limit: u64,
}

impl ModelRuntimeService {
    /// A service over `runtime`; errors when the runtime has no memory budget, the figure
    /// ModelMesh packs models by.
    pub fn new(runtime: Runtime) -> anyhow::Result<Self> {
        let Some(capacity_limit) = runtime.options().memory_budget else {
            anyhow::bail!(
                "--modelmesh-port needs a memory budget (ModelMesh places models by the capacity it reports): pass --memory-budget"
            );
        };
        Ok(ModelRuntimeService {
            runtime,
            models: Models::default(),
            capacity_limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.models)
    }

    /// `capacityInBytes`: the budget less what models outside ModelMesh hold (the
    /// repository's), so that ModelMesh's own packing cannot overcommit the slice.
    pub fn capacity(&self) -> u64 {
        let mesh: u64 = self
            .lock()
            .keys()
            .filter_map(|name| self.runtime.model_bytes(name).ok())
            .map(|(device, _)| device)
            .sum();
        let others = self.runtime.memory_used().saturating_sub(mesh);
        self.capacity_limit.saturating_sub(others)
    }

    /// Unloads a ModelMesh model and answers once its memory is back; an unknown one at
    /// once. A load in progress is waited for, then undone.
    async fn unload(&self, name: &str) -> Result<(), Status> {
        loop {
            {
                let mut models = self.lock();
                let Some((_, phase)) = models.get_mut(name) else {
                    return Ok(());
                };
                match *phase {
                    Phase::Loaded => {
                        *phase = Phase::Unloading;
                        break;
                    }
                    Phase::Loading { .. } => *phase = Phase::Loading { unload: true },
                    Phase::Unloading => {}
                }
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
        let (runtime, models, name) = (self.runtime.clone(), self.models.clone(), name.to_string());
        let (freed, name) = tokio::task::spawn_blocking(move || {
            let freed = unload_now(&runtime, &name);
            lock(&models).remove(&name);
            (freed, name)
        })
        .await
        .map_err(|e| Status::internal(format!("model unload task failed: {e}")))?;
        if freed {
            tracing::info!(model = %name, "ModelMesh unload: memory returned");
            Ok(())
        } else {
            Err(Status::deadline_exceeded(format!(
                "model '{name}' is unloading but its accepted requests did not finish within {} s; its memory returns when they do",
                UNLOAD_TIMEOUT.as_secs()
            )))
        }
    }
}

/// The table, also after a panic elsewhere (its entries stay consistent: each is set whole).
fn lock(models: &Models) -> MutexGuard<'_, Table> {
    models
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Unloads `name` and waits for its memory; true when it is back, or when the model was
/// already gone (e.g. unloaded through the repository API: the only error there is).
fn unload_now(runtime: &Runtime, name: &str) -> bool {
    runtime
        .unload_model_and_wait(name, UNLOAD_TIMEOUT)
        .unwrap_or(true)
}

/// `sizeInBytes` of a loaded model: its device bytes plus its host-RAM bytes (offloaded
/// tables copied into RAM), so that the figure bounds the model's share of the budget
/// from above whichever tier the placement put its tables in.
pub fn model_size(runtime: &Runtime, name: &str) -> Result<u64, Error> {
    runtime
        .model_bytes(name)
        .map(|(device, host)| device.saturating_add(host))
}

/// A load's error as the SPI wants it: a model folder the runtime cannot find is the
/// request's fault (INVALID_ARGUMENT, like every failure before anything was loaded);
/// the rest keep the runtime's mapping.
fn load_status(e: Error) -> Status {
    match e.kind {
        ErrorKind::NotFound => Status::invalid_argument(e.message),
        _ => to_status(e),
    }
}

/// Ends a load on its blocking thread: records the model as loaded and sizes it, or
/// forgets it, or undoes it when an `unloadModel` came meanwhile.
fn finish_load(
    runtime: &Runtime,
    models: &Models,
    name: &str,
    loaded: Result<(), Error>,
) -> Result<u64, Status> {
    let unload = matches!(
        lock(models).get(name),
        Some((_, Phase::Loading { unload: true }))
    );
    match loaded {
        Err(e) => {
            lock(models).remove(name);
            tracing::warn!(model = name, "ModelMesh load failed: {e}");
            Err(load_status(e))
        }
        Ok(()) if unload => {
            unload_now(runtime, name);
            lock(models).remove(name);
            Err(Status::cancelled(format!(
                "model '{name}' was unloaded while it loaded"
            )))
        }
        Ok(()) => {
            // An unloadModel that arrives now sees Loaded and unloads it.
            let size = model_size(runtime, name).map_err(to_status);
            if let Some((_, phase)) = lock(models).get_mut(name) {
                *phase = Phase::Loaded;
            }
            size
        }
    }
}

/// `methodInfos`: the v2 inference methods ModelMesh forwards, each with the request
/// field (1: `model_name` / `name`) that it overwrites with the model id.
pub fn method_infos() -> HashMap<String, pb::runtime_status_response::MethodInfo> {
    ["ModelInfer", "ModelMetadata", "ModelReady"]
        .into_iter()
        .map(|m| {
            let info = pb::runtime_status_response::MethodInfo {
                id_injection_path: vec![1],
            };
            (format!("{}/{m}", cohost_protocol::SERVICE_NAME), info)
        })
        .collect()
}

/// The deprecated `numericRuntimeVersion`: major·10⁶ + minor·10³ + patch.
fn numeric_version() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    next() * 1_000_000 + next() * 1_000 + next()
}

#[tonic::async_trait]
impl ModelRuntime for ModelRuntimeService {
    async fn load_model(&self, req: Request<pb::LoadModelRequest>) -> Res<pb::LoadModelResponse> {
        let req = req.into_inner();
        let name = model_name(&req.model_id)?;
        let dir = model_folder(&req.model_path)?;
        {
            let mut models = self.lock();
            if let Some((path, phase)) = models.get(&name) {
                let what = match phase {
                    Phase::Loading { .. } => "is being loaded",
                    Phase::Loaded => "is already loaded",
                    Phase::Unloading => "is being unloaded",
                };
                return Err(Status::already_exists(format!(
                    "model '{name}' {what} (from {}); unload it first",
                    path.display()
                )));
            }
            if self.runtime.model_bytes(&name).is_ok() {
                return Err(Status::failed_precondition(format!(
                    "a model named '{name}' is already served from cohost's own repository; ModelMesh cannot load another under that id"
                )));
            }
            models.insert(
                name.clone(),
                (dir.clone(), Phase::Loading { unload: false }),
            );
        }
        tracing::info!(model = %name, path = %dir.display(), "ModelMesh load");
        let (runtime, models) = (self.runtime.clone(), self.models.clone());
        let size = tokio::task::spawn_blocking(move || {
            let loaded = runtime.load_model_dir(&name, &dir);
            finish_load(&runtime, &models, &name, loaded)
        })
        .await
        .map_err(|e| Status::internal(format!("model load task failed: {e}")))??;
        Ok(Response::new(pb::LoadModelResponse {
            size_in_bytes: size,
            max_concurrency: 0,
        }))
    }

    async fn unload_model(
        &self,
        req: Request<pb::UnloadModelRequest>,
    ) -> Res<pb::UnloadModelResponse> {
        let id = req.into_inner().model_id;
        // An id that is no cohost name was never loaded: answered at once, like any unknown id.
        if let Ok(name) = model_name(&id) {
            self.unload(&name).await?;
        }
        Ok(Response::new(pb::UnloadModelResponse {}))
    }

    async fn predict_model_size(
        &self,
        req: Request<pb::PredictModelSizeRequest>,
    ) -> Res<pb::PredictModelSizeResponse> {
        let req = req.into_inner();
        model_name(&req.model_id)?;
        let dir = model_folder(&req.model_path)?;
        let size = tokio::task::spawn_blocking(move || super::folder::estimate(&dir))
            .await
            .map_err(|e| Status::internal(format!("size estimate task failed: {e}")))??;
        Ok(Response::new(pb::PredictModelSizeResponse {
            size_in_bytes: size,
        }))
    }

    async fn model_size(&self, req: Request<pb::ModelSizeRequest>) -> Res<pb::ModelSizeResponse> {
        let name = model_name(&req.into_inner().model_id)?;
        let phase = self.lock().get(&name).map(|(_, phase)| *phase);
        if phase != Some(Phase::Loaded) {
            return Err(Status::not_found(format!(
                "model '{name}' is not loaded through ModelMesh{}",
                match phase {
                    Some(Phase::Loading { .. }) => " yet (it is loading)",
                    Some(Phase::Unloading) => " (it is unloading)",
                    _ => "",
                }
            )));
        }
        let size = model_size(&self.runtime, &name).map_err(to_status)?;
        Ok(Response::new(pb::ModelSizeResponse {
            size_in_bytes: size,
        }))
    }

    async fn runtime_status(
        &self,
        _: Request<pb::RuntimeStatusRequest>,
    ) -> Res<pb::RuntimeStatusResponse> {
        // The contract: purge every model loaded through the SPI before answering READY
        // (ModelMesh restarted and no longer knows them). The repository's stay.
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for name in &names {
            self.unload(name).await?;
        }
        if !names.is_empty() {
            tracing::info!(
                models = names.len(),
                "ModelMesh runtimeStatus purged its models"
            );
        }
        let capacity = self.capacity();
        Ok(Response::new(pb::RuntimeStatusResponse {
            status: pb::runtime_status_response::Status::Ready as i32,
            capacity_in_bytes: capacity,
            // The runtime builds one model at a time.
            max_loading_concurrency: 1,
            model_loading_timeout_ms: LOADING_TIMEOUT.as_millis() as u32,
            default_model_size_in_bytes: capacity / DEFAULT_SIZE_DIVISOR,
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            numeric_runtime_version: numeric_version(),
            method_infos: method_infos(),
            limit_model_concurrency: false,
            allow_any_method: false,
        }))
    }
}
