//! Health, server and model metadata, readiness, configuration, statistics, load, metrics.

use super::AppState;
use super::errors::{ApiError, check_model_name, parse_version};
use super::triton;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// Extensions this server implements, as listed by `GET /v2`.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "parameters",
    "model_configuration",
    "model_repository",
    "statistics",
    "load_metrics",
];

/// Path parameters of the model routes.
#[derive(Deserialize)]
pub struct ModelPath {
    /// Model name.
    pub model: String,
    /// Version, when the route has one.
    pub version: Option<String>,
}

impl ModelPath {
    /// The validated name and parsed version.
    pub fn parse(&self) -> Result<(&str, Option<u64>), ApiError> {
        check_model_name(&self.model)?;
        let version = self.version.as_deref().map(parse_version).transpose()?;
        Ok((&self.model, version))
    }
}

/// `GET /v2/health/live`.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: 503 once shutdown began or while the device is being reset.
pub async fn ready(State(st): State<AppState>) -> Response {
    if st.shutting_down.load(Ordering::SeqCst) {
        ApiError::from(cohost_runtime::Error::unavailable(
            "server is shutting down",
        ))
        .into_response()
    } else if let Some(e) = st.runtime.device_unavailable() {
        // A device reset is in progress or its rebuild keeps failing.
        ApiError::from(e).into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

/// `GET /v2`.
pub async fn server_metadata(State(st): State<AppState>) -> Json<Value> {
    let d = st.runtime.device();
    Json(json!({
        "name": "cohost",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
        // cohost's own addition: what the models run on (ignored by KServe clients).
        "device": {
            "backend": d.backend,
            "name": d.name,
            "lanes": st.runtime.lane_count(),
            "sm_count": d.sm_count,
            "total_memory": d.total_memory,
            "memory_budget": st.runtime.options().memory_budget,
            "mig_profile": d.mig_profile,
            "note": d.note,
        },
    }))
}

/// `GET /v2/models/{m}[/versions/{v}]`.
pub async fn model_metadata(
    State(st): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let (name, version) = p.parse()?;
    let md = st.runtime.metadata(name, version)?;
    let spec = |t: &cohost_runtime::TensorSpec| json!({ "name": t.name, "datatype": t.datatype.as_str(), "shape": t.dims });
    let mem = st.runtime.memory(name, version)?;
    let tables: Vec<Value> = mem
        .tables
        .iter()
        .map(|(table, placement, m)| {
            json!({
                "name": table,
                "placement": cohost_runtime::placement_label(*placement),
                "resident_bytes": m.resident_bytes,
                "cache_bytes": m.cache_bytes,
                "cache_rows": m.cache_capacity_rows,
                "host_bytes": m.host_bytes,
                "mapped_bytes": m.mapped_bytes,
                "hits": m.hits,
                "misses": m.misses,
                "evictions": m.evictions,
                "hit_rate": m.hit_rate(),
            })
        })
        .collect();
    Ok(Json(json!({
        "name": md.name,
        "versions": md.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": md.platform,
        "inputs": md.inputs.iter().map(spec).collect::<Vec<_>>(),
        "outputs": md.outputs.iter().map(spec).collect::<Vec<_>>(),
        // cohost's own addition: where this model's memory lives (ignored by KServe clients).
        "memory": {
            "device_bytes": mem.device_bytes(),
            "host_bytes": mem.host_bytes(),
            "weight_bytes": mem.weight_bytes,
            "tables": tables,
        },
    })))
}

/// `GET /v2/models/{m}[/versions/{v}]/ready`: 200 or 503.
pub async fn model_ready(
    State(st): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<StatusCode, ApiError> {
    let (name, version) = p.parse()?;
    if st.runtime.model_ready(name, version) {
        return Ok(StatusCode::OK);
    }
    let v = version.map(|v| format!(" version {v}")).unwrap_or_default();
    Err(ApiError::from(cohost_runtime::Error::unavailable(format!(
        "model '{name}'{v} is not ready"
    ))))
}

/// `GET /v2/models/{m}[/versions/{v}]/config` (Triton's shape).
pub async fn model_config(
    State(st): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let (name, version) = p.parse()?;
    let (v, config) = st.runtime.config(name, version)?;
    let platform = st
        .runtime
        .metadata(name, Some(v))
        .map(|m| m.platform)
        .unwrap_or_default();
    Ok(Json(triton::config_json(
        name,
        &platform,
        &config,
        st.runtime.lane_count(),
        st.runtime.backend_name(),
    )))
}

/// `GET /v2/models/stats`.
pub async fn all_stats(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(triton::stats_json(&st.runtime.stats(None, None)?)))
}

/// `GET /v2/models/{m}[/versions/{v}]/stats`.
pub async fn model_stats(
    State(st): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let (name, version) = p.parse()?;
    Ok(Json(triton::stats_json(
        &st.runtime.stats(Some(name), version)?,
    )))
}

/// `GET /v2/models/{m}/load`: the load counter as JSON.
pub async fn model_load(
    State(st): State<AppState>,
    Path(p): Path<ModelPath>,
) -> Result<Json<Value>, ApiError> {
    let (name, _) = p.parse()?;
    let load = st.runtime.load(name)?;
    Ok(Json(json!({
        "model": name,
        "model_load": load.model_load,
        "host_load": load.host_load,
        "queued": load.queued,
        "in_flight": load.in_flight,
    })))
}

/// `GET /metrics`: Prometheus text (per-table embedding series refreshed first).
pub async fn metrics(State(st): State<AppState>) -> Response {
    cohost_runtime::record_table_metrics(&st.runtime);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&st.runtime),
    )
        .into_response()
}

/// Any other path: 404 naming it.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}
