//! The drain deadline of a graceful shutdown (`--drain-timeout`): a [`Cut`] fires once it
//! passes, and whatever is still running then is ended with a status instead of waited
//! for: HTTP requests get 503 with a KServe error body ([`cut_http`]), gRPC calls
//! UNAVAILABLE (`grpc::cut`), open `ModelStreamInfer` streams end with UNAVAILABLE.

use crate::http::errors::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Fires once when the drain deadline passes; clones share it.
#[derive(Debug, Clone)]
pub struct Cut {
    fired: Arc<watch::Sender<bool>>,
    timeout: Duration,
}

impl Default for Cut {
    fn default() -> Self {
        Cut::new(Duration::ZERO)
    }
}

impl Cut {
    /// A cut not fired yet, for a drain of `timeout` (named in the messages it causes).
    pub fn new(timeout: Duration) -> Self {
        Cut {
            fired: Arc::new(watch::channel(false).0),
            timeout,
        }
    }

    /// Fires the cut: everything waiting on [`Cut::fired`] resolves.
    pub fn fire(&self) {
        self.fired.send_replace(true);
    }

    /// True once fired.
    pub fn is_fired(&self) -> bool {
        *self.fired.borrow()
    }

    /// Resolves once the cut fires (never when it does not).
    pub fn fired(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.fired.subscribe();
        async move {
            if rx.wait_for(|fired| *fired).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// What a request or stream ended by the cut is told.
    pub fn message(&self) -> String {
        format!(
            "server is shutting down: the drain deadline (--drain-timeout {} s) passed before this request finished; retry on another replica",
            self.timeout.as_secs_f64()
        )
    }
}

/// HTTP middleware: a request still running when the cut fires is answered 503 with a
/// KServe `{"error": ...}` body (its handler is dropped).
pub async fn cut_http(State(cut): State<Cut>, request: Request, next: Next) -> Response {
    let fired = cut.fired();
    tokio::select! {
        response = next.run(request) => response,
        () = fired => {
            ApiError::from(cohost_runtime::Error::unavailable(cut.message())).into_response()
        }
    }
}
