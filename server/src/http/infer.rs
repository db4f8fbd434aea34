//! `POST /v2/models/{m}[/versions/{v}]/infer`: body limit, decode, run, encode.

use super::AppState;
use super::admission::BLOCKING_DECODE_BYTES;
use super::errors::{ApiError, LOAD_HEADER};
use super::routes::ModelPath;
use crate::orca::{self, Format};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cohost_protocol::codec::{self, HEADER_LENGTH};
use cohost_runtime::LoadReport;
use std::time::Duration;

/// Reads the body up to `limit` bytes within `timeout`: more is a 413, slower a 408.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    // A total deadline, not an idle one: a body trickling a byte at a time stays busy.
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::body_timeout(timeout))?;
    read.map_err(|e| {
        let over_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid(format!("could not read the request body: {e}"))
        }
    })
}

/// The inference handler (takes the whole request: a `HeaderMap` extractor would copy the
/// headers).
pub async fn infer(
    State(st): State<AppState>,
    Path(p): Path<ModelPath>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    match run(&st, &p, &parts.headers, body).await {
        Ok(res) => res,
        Err(e) => {
            let e = if e.load.is_none() {
                e.with_load(st.runtime.load(&p.model).ok())
            } else {
                e
            };
            let load = e.load;
            let mut res = e.into_response();
            if let Some(load) = load {
                put_report(&st, &parts.headers, res.headers_mut(), &load);
            }
            res
        }
    }
}

/// Sets `endpoint-load-metrics` to the ORCA report of a call whose model's load was
/// `load`, in the form the request asks for (`endpoint-load-metrics-format`) or the
/// server's `--load-report-format`.
fn put_report(st: &AppState, request: &HeaderMap, response: &mut HeaderMap, load: &LoadReport) {
    let format = Format::requested(request, st.load_reports.format());
    let report = st.load_reports.report(Some(load));
    response.insert(LOAD_HEADER, orca::header_value(&report, format));
}

async fn run(
    st: &AppState,
    p: &ModelPath,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, version) = p.parse()?;
    // The model is looked up before any work on the body, and before any labelled metric
    // is touched: an unknown model or version is a 404, and cannot create metric series.
    if !st.runtime.model_ready(name, version) {
        st.runtime.metadata(name, version)?;
    }
    // Refusals before the runtime sees the request are counted here; the runtime counts its own.
    // Only for models that exist, so arbitrary names in URLs cannot create metric series.
    let edge = |e: ApiError| {
        if let Ok(load) = st.runtime.load(name) {
            crate::metrics::edge_failure(name, version, e.reason());
            return e.with_load(Some(load));
        }
        e
    };
    let bytes = read_body(headers, body, st.max_body_bytes, st.body_timeout)
        .await
        .map_err(edge)?;
    // A full queue refuses before the payload is decoded, the costly part of a refusal.
    st.runtime.refuse_if_full(name, version)?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            edge(ApiError::invalid(
                "Inference-Header-Content-Length is not valid text",
            ))
        })?),
    };
    let decoded = if bytes.len() > BLOCKING_DECODE_BYTES {
        let header_length = header_length.map(str::to_owned);
        tokio::task::spawn_blocking(move || codec::decode_request(&bytes, header_length.as_deref()))
            .await
            .map_err(|e| {
                ApiError::from(cohost_runtime::Error::internal(format!(
                    "request decoding task failed: {e}"
                )))
            })?
    } else {
        let decoded = codec::decode_request(&bytes, header_length);
        drop(bytes);
        decoded
    }
    .map_err(|e| edge(ApiError::from(e)))?;
    let resp = st.runtime.infer(name, version, decoded.request).await?;
    let encoded = decoded.encoding.encode(&resp);
    let mut res = (StatusCode::OK, encoded.body).into_response();
    let h = res.headers_mut();
    match encoded.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    put_report(st, headers, h, &resp.load);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn chunked_body_over_the_limit_is_413() {
        let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1000])));
        let body = Body::from_stream(futures::stream::iter(chunks));
        let e = read_body(&HeaderMap::new(), body, 4096, T)
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", e.message);
        let ok = read_body(&HeaderMap::new(), Body::from("{}"), 4096, T)
            .await
            .unwrap();
        assert_eq!(&ok[..], b"{}");
    }
}
