//! Triton's model-repository extension: index, load, unload.

use super::AppState;
use super::errors::{ApiError, check_model_name};
use super::infer::read_body;
use crate::ModelControlMode;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

/// Refuses a call without the control token (when one is configured).
fn require_token(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if st.control_token.admits(given) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// `POST /v2/repository/index` (`{"ready": true}` lists only ready models).
pub async fn index(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_token(&st, &headers)?;
    let body = read_body(&headers, body, st.max_body_bytes, st.body_timeout).await?;
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("malformed repository index JSON: {e}")))?;
        v.get("ready").and_then(Value::as_bool).unwrap_or(false)
    };
    let rows: Vec<Value> = st
        .runtime
        .repository_index()?
        .into_iter()
        .filter(|e| !ready_only || e.state == cohost_runtime::ModelState::Ready)
        .map(|e| {
            let mut row = json!({ "name": e.name, "state": e.state.as_str(), "reason": e.reason });
            if let Some(v) = e.version {
                row["version"] = Value::from(v.to_string());
            }
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

fn require_explicit(st: &AppState, action: &str) -> Result<(), ApiError> {
    match st.model_control {
        ModelControlMode::Explicit => Ok(()),
        mode => Err(ApiError::invalid(format!(
            "cannot {action} models: model control mode is '{}'; start the server with \
             --model-control-mode explicit to load and unload models through the API",
            mode.as_str()
        ))),
    }
}

async fn control(
    st: AppState,
    headers: HeaderMap,
    model: String,
    load: bool,
) -> Result<StatusCode, ApiError> {
    require_token(&st, &headers)?;
    // The name is checked before anything is stored or logged.
    check_model_name(&model)?;
    require_explicit(&st, if load { "load" } else { "unload" })?;
    let runtime = st.runtime.clone();
    let name = model.clone();
    let result = tokio::task::spawn_blocking(move || {
        if load {
            runtime.load_model(&name)
        } else {
            runtime.unload_model(&name)
        }
    })
    .await
    .map_err(|e| {
        ApiError::from(cohost_runtime::Error::internal(format!(
            "model control task failed: {e}"
        )))
    })?;
    result?;
    tracing::info!(model = %model, "{}", if load { "loaded via API" } else { "unloaded via API" });
    Ok(StatusCode::OK)
}

/// `POST /v2/repository/models/{m}/load`.
pub async fn load(
    State(st): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    control(st, headers, model, true).await
}

/// `POST /v2/repository/models/{m}/unload`.
pub async fn unload(
    State(st): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    control(st, headers, model, false).await
}
