//! The one mapping from runtime errors to HTTP status, and the KServe error body.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cohost_runtime::{Error, ErrorKind, LoadReport};

/// Name of the load-report header (Open Request Cost Aggregation text form).
pub const LOAD_HEADER: &str = "endpoint-load-metrics";

/// Seconds a client told "overloaded" should wait before retrying.
const RETRY_AFTER_SECS: &str = "1";

/// The HTTP status for a runtime error kind (the only such mapping in the server).
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // A kind a newer runtime adds: answered as an internal error.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answered as `{"error": "..."}` with the mapped status.
#[derive(Debug)]
pub struct ApiError {
    /// Response status.
    pub status: StatusCode,
    /// The message clients see.
    pub message: String,
    /// The model's load, attached as a header when known.
    pub load: Option<LoadReport>,
}

impl ApiError {
    /// A 400 naming what is wrong with the request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::invalid(message).into()
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::not_found(message).into()
    }

    /// A 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "request body exceeds the limit of {limit} bytes (raise it with --max-body-bytes)"
            ),
            load: None,
        }
    }

    /// A 429: the server's in-flight limit is reached.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Error::overloaded(message).into()
    }

    /// A 408 for a body that did not arrive whole within `limit`.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "request body did not arrive within {:.3} s (raise it with --body-timeout-secs)",
                limit.as_secs_f64()
            ),
            load: None,
        }
    }

    /// A 401 for a control call without the right bearer token.
    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "this call needs 'Authorization: Bearer <token>' with the server's \
                      --control-token"
                .into(),
            load: None,
        }
    }

    /// Attaches a load report for the load header.
    pub fn with_load(mut self, load: Option<LoadReport>) -> Self {
        self.load = load;
        self
    }

    /// The metrics label of this error's class.
    pub fn reason(&self) -> &'static str {
        match self.status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound.label(),
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::Overloaded.label(),
            StatusCode::GATEWAY_TIMEOUT => ErrorKind::DeadlineExceeded.label(),
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable.label(),
            StatusCode::INTERNAL_SERVER_ERROR => ErrorKind::Internal.label(),
            _ => ErrorKind::InvalidArgument.label(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: status_for(e.kind),
            message: e.message,
            load: None,
        }
    }
}

/// Formats the load header's value.
pub fn load_header_value(load: &LoadReport) -> HeaderValue {
    HeaderValue::from_str(&crate::orca::load_text(load))
        .unwrap_or_else(|_| HeaderValue::from_static("TEXT"))
}

/// Adds the load header to `headers` when a report is known.
pub fn put_load(headers: &mut HeaderMap, load: Option<&LoadReport>) {
    if let Some(load) = load {
        headers.insert(LOAD_HEADER, load_header_value(load));
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        put_load(res.headers_mut(), self.load.as_ref());
        res
    }
}

/// Checks a model name from a URL with the repository's rule (nothing can escape it); the
/// refusal quotes at most the name's first [`QUOTED_NAME_CHARS`] characters.
pub fn check_model_name(name: &str) -> Result<(), ApiError> {
    cohost_runtime::validate_model_name(name)
        .map_err(|_| ApiError::invalid(invalid_name_message(name)))
}

/// How much of a client-given name an error message quotes.
pub const QUOTED_NAME_CHARS: usize = 64;

/// The message for a name the repository rule refuses, quoting a bounded prefix of it.
pub fn invalid_name_message(name: &str) -> String {
    format!(
        "invalid model name '{}': use 1 to 128 letters, digits, '-', '_' and '.', not starting with '.'",
        quoted(name)
    )
}

/// `text` escaped and cut to [`QUOTED_NAME_CHARS`] characters (with "..." when cut), for
/// error messages and logs.
pub fn quoted(text: &str) -> String {
    let mut out: String = text.chars().take(QUOTED_NAME_CHARS).collect::<String>();
    out = out.escape_debug().to_string();
    if text.chars().nth(QUOTED_NAME_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// Parses a version from a URL: a non-negative integer.
pub fn parse_version(version: &str) -> Result<u64, ApiError> {
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(format!(
            "invalid model version '{}': must be a non-negative integer",
            version.escape_debug()
        )));
    }
    version
        .parse()
        .map_err(|_| ApiError::invalid(format!("invalid model version '{version}': too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_once() {
        let cases = [
            (ErrorKind::NotFound, 404),
            (ErrorKind::InvalidArgument, 400),
            (ErrorKind::Overloaded, 429),
            (ErrorKind::DeadlineExceeded, 504),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            let e = ApiError::from(Error::new(kind, "m"));
            assert_eq!(e.status.as_u16(), status);
            assert_eq!(e.reason(), kind.label());
        }
    }

    #[test]
    fn overloaded_says_when_to_retry_and_carries_load() {
        let load = LoadReport {
            model_load: 0.5,
            host_load: 0.25,
            queued: 1,
            in_flight: 2,
        };
        let res = ApiError::from(Error::overloaded("queue full"))
            .with_load(Some(load))
            .into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            res.headers()[LOAD_HEADER],
            "TEXT named_metrics.model_load=0.5, named_metrics.host_load=0.25"
        );
    }

    #[test]
    fn names_and_versions() {
        assert!(check_model_name("dlrm-small").is_ok());
        for bad in ["..", "../etc", "a/b", ".x", "a\\b", ""] {
            assert_eq!(
                check_model_name(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert_eq!(parse_version("12").unwrap(), 12);
        for bad in ["", "-1", "1.0", "abc", "99999999999999999999999"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }
}
