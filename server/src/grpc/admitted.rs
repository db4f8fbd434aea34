//! The gRPC side of the in-flight limit shared with HTTP: every call but the health RPCs
//! takes a permit before tonic reads its message, and without one is answered
//! RESOURCE_EXHAUSTED at once.

use crate::http::admission::Admission;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tower::Service;

/// RPCs a health checker sends: never refused by the limit.
const EXEMPT: &[&str] = &["ServerLive", "ServerReady", "ModelReady"];

/// A gRPC service behind the in-flight limit (None: unlimited).
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Option<Admission>,
}

impl<S> Admitted<S> {
    /// `inner` behind `admission`.
    pub fn new(inner: S, admission: Option<Admission>) -> Self {
        Admitted { inner, admission }
    }
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for Admitted<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> CallFuture {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        let permit = match &self.admission {
            Some(a) if !EXEMPT.contains(&method) => match a.try_admit() {
                Some(permit) => Some(permit),
                None => {
                    let refused = Status::resource_exhausted(a.refusal()).into_http();
                    return Box::pin(async move { Ok(refused) });
                }
            },
            _ => None,
        };
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await;
            // Held while tonic reads and decodes the message and the handler runs.
            drop(permit);
            response
        })
    }
}
