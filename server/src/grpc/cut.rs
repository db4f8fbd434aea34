//! The drain deadline on gRPC: a call whose response has not started when the [`Cut`]
//! fires is answered UNAVAILABLE (unary calls; open streams end in `service`).

use crate::drain::Cut;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tower::Service;

/// A gRPC service whose pending calls end UNAVAILABLE at the drain deadline.
#[derive(Clone)]
pub struct CutAtDeadline<S> {
    inner: S,
    cut: Cut,
}

impl<S> CutAtDeadline<S> {
    /// `inner`, cut by `cut`.
    pub fn new(inner: S, cut: Cut) -> Self {
        CutAtDeadline { inner, cut }
    }
}

impl<S: NamedService> NamedService for CutAtDeadline<S> {
    const NAME: &'static str = S::NAME;
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for CutAtDeadline<S>
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
        let call = self.inner.call(req);
        let cut = self.cut.clone();
        Box::pin(async move {
            let fired = cut.fired();
            tokio::select! {
                response = call => response,
                () = fired => Ok(Status::unavailable(cut.message()).into_http()),
            }
        })
    }
}
