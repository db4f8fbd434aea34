//! Admission before work: one in-flight request limit shared by HTTP and gRPC. A request
//! over it is refused (429 / RESOURCE_EXHAUSTED) before its body is read or decoded; the
//! permit is held until its response is produced.

use super::errors::ApiError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;

/// Bodies above this many bytes are decoded on the blocking pool, so that one client
/// sending maximum-size bodies does not stall the async workers serving everyone else.
pub const BLOCKING_DECODE_BYTES: usize = 1 << 20;

/// The shared in-flight limit (`--max-inflight`).
#[derive(Clone, Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    /// A limit of `limit` requests at once (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits().min(self.limit)
    }

    /// A permit if one is free now (the gRPC edge holds it for the call).
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// The message a refused request gets.
    pub fn refusal(&self) -> String {
        format!(
            "server is at its limit of {} requests in flight (--max-inflight); retry later",
            self.limit
        )
    }

    /// `router`'s routes admitted by the limit (tower's global concurrency limit, shed
    /// instead of queued, the refusal answered as a KServe 429).
    pub fn guard<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let refusal = self.refusal();
        router.route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: tower::BoxError| {
                    let refusal = refusal.clone();
                    async move { ApiError::overloaded(refusal) }
                }))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                    self.permits.clone(),
                )),
        )
    }
}
