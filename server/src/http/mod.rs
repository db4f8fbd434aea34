//! KServe v2 over HTTP (axum): health, metadata, inference (JSON and binary), Triton's
//! configuration, statistics and repository extensions, `/metrics` and the load endpoint.

pub mod admission;
pub mod auth;
pub mod errors;
mod infer;
mod model_control;
mod routes;
mod triton;

use crate::ModelControlMode;
use crate::orca::LoadReporter;
use admission::Admission;
use auth::ControlToken;
use axum::Router;
use axum::routing::{get, post};
use cohost_runtime::Runtime;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The runtime all requests go to.
    pub runtime: Runtime,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request body may take to arrive whole.
    pub body_timeout: Duration,
    /// Whether repository load/unload is allowed.
    pub model_control: ModelControlMode,
    /// The token repository control and the index need.
    pub control_token: ControlToken,
    /// The in-flight request limit shared with gRPC.
    pub admission: Admission,
    /// Set once shutdown began: readiness turns false.
    pub shutting_down: Arc<AtomicBool>,
    /// The ORCA reporter behind every inference's `endpoint-load-metrics` header.
    pub load_reports: LoadReporter,
}

/// The KServe v2 router (plus `/metrics`): health, readiness and metrics are exempt from
/// the in-flight limit, every other route is admitted by it before its body is read.
pub fn router(state: AppState) -> Router {
    use routes::*;
    let admitted = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata))
        .route("/v2/models/{model}/config", get(model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(model_config),
        )
        .route("/v2/models/{model}/stats", get(model_stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(model_stats),
        )
        .route("/v2/models/{model}/load", get(model_load))
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer::infer),
        )
        .route("/v2/repository/index", post(model_control::index))
        .route(
            "/v2/repository/models/{model}/load",
            post(model_control::load),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(model_control::unload),
        );
    let admitted = state.admission.guard(admitted);
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/metrics", get(metrics))
        .merge(admitted)
        .fallback(not_found)
        .with_state(state)
}

/// A router serving only `/metrics` (for `--metrics-port`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .with_state(state)
}
