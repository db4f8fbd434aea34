//! gRPC wire fix-ups that tonic does not offer, as one tower layer around a tonic server:
//!
//! * **Trailing metadata on success.** tonic sends a handler's response metadata as
//!   initial metadata (HTTP/2 headers) and has no API for trailers on a successful unary
//!   call. [`WireLayer`] moves the headers it is told about (e.g. `endpoint-load-metrics`)
//!   from the response headers into the trailers, where ORCA-style balancers read them.
//! * **RESOURCE_EXHAUSTED for oversized requests.** tonic refuses a request message larger
//!   than its decoding limit with OUT_OF_RANGE before any handler runs; gRPC (and Triton)
//!   use RESOURCE_EXHAUSTED. The layer rewrites that one status, with a message naming the
//!   size and the limit.
//! * **DEADLINE_EXCEEDED for an expired `grpc-timeout`.** tonic's own timer answers
//!   CANCELLED "Timeout expired"; the gRPC spec (and the runtime's own deadline) say
//!   DEADLINE_EXCEEDED.

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// gRPC status code of RESOURCE_EXHAUSTED.
const RESOURCE_EXHAUSTED: &str = "8";
/// gRPC status code of CANCELLED (what tonic uses when `grpc-timeout` expires).
const CANCELLED: &str = "1";
/// gRPC status code of DEADLINE_EXCEEDED.
const DEADLINE_EXCEEDED: &str = "4";
/// gRPC status code of OUT_OF_RANGE (what tonic uses for an oversized message).
const OUT_OF_RANGE: &str = "11";

/// The layer: which response headers become trailers, and the message limit to report.
#[derive(Clone, Debug)]
pub struct WireLayer {
    trailers: Arc<[HeaderName]>,
    max_message_size: usize,
}

impl WireLayer {
    /// Moves `trailers` from headers into trailers; reports `max_message_size` when refusing.
    pub fn new(trailers: Vec<HeaderName>, max_message_size: usize) -> Self {
        WireLayer {
            trailers: trailers.into(),
            max_message_size,
        }
    }
}

impl<S> tower::Layer<S> for WireLayer {
    type Service = WireService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WireService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`WireLayer`] wraps around a tonic router.
#[derive(Clone, Debug)]
pub struct WireService<S> {
    inner: S,
    layer: WireLayer,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for WireService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<TrailersBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let fut = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (mut parts, body) = fut.await?.into_parts();
            rewrite_oversized(&mut parts.headers, layer.max_message_size);
            rewrite_timeout(&mut parts.headers);
            let mut extra = HeaderMap::new();
            // A trailers-only response (an error status) already ends in these headers.
            let trailers_only = parts.headers.contains_key("grpc-status");
            for name in layer.trailers.iter().filter(|_| !trailers_only) {
                if let Some(v) = parts.headers.remove(name) {
                    extra.insert(name.clone(), v);
                }
            }
            let extra = (!extra.is_empty()).then_some(extra);
            Ok(Response::from_parts(
                parts,
                TrailersBody { inner: body, extra },
            ))
        })
    }
}

/// Rewrites tonic's OUT_OF_RANGE "message length too large" refusal to RESOURCE_EXHAUSTED.
fn rewrite_oversized(headers: &mut HeaderMap, limit: usize) {
    let is_oor = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == OUT_OF_RANGE.as_bytes());
    if !is_oor {
        return;
    }
    let msg = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    if !msg.contains("decoded message length too large") {
        return;
    }
    let found = msg
        .split("found ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or("?");
    let text = format!(
        "request message of {found} bytes exceeds the server's maximum gRPC message size of \
         {limit} bytes (raise it with --max-body-bytes)"
    );
    headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert("grpc-message", v);
    }
}

/// Rewrites tonic's CANCELLED "Timeout expired" (an expired `grpc-timeout`) to DEADLINE_EXCEEDED.
fn rewrite_timeout(headers: &mut HeaderMap) {
    let cancelled = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == CANCELLED.as_bytes());
    let expired = headers
        .get("grpc-message")
        .is_some_and(|v| percent_decode(v.as_bytes()) == "Timeout expired");
    if cancelled && expired {
        headers.insert("grpc-status", HeaderValue::from_static(DEADLINE_EXCEEDED));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "the request's grpc-timeout expired before its response was ready",
            ),
        );
    }
}

/// Decodes gRPC's percent-encoding of `grpc-message`.
fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(v))) = (b[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response body that adds `extra` to its trailers (or sends them as trailers at its end).
#[derive(Debug)]
pub struct TrailersBody<B> {
    inner: B,
    extra: Option<HeaderMap>,
}

impl<B: Body + Unpin> Body for TrailersBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    if let Some(extra) = this.extra.take() {
                        trailers.extend(extra);
                    }
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => Poll::Ready(this.extra.take().map(|t| Ok(Frame::trailers(t)))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.extra.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_tonic_oversized_status() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%20999%20bytes,%20the%20limit%20is:%2010%20bytes",
            ),
        );
        rewrite_oversized(&mut h, 10);
        assert_eq!(h["grpc-status"], "8");
        let m = h["grpc-message"].to_str().unwrap();
        assert!(m.contains("999 bytes") && m.contains("10 bytes"), "{m}");
    }

    #[test]
    fn rewrites_tonic_timeout_status() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("1"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("Timeout%20expired"),
        );
        rewrite_timeout(&mut h);
        assert_eq!(h["grpc-status"], "4");
    }

    #[test]
    fn leaves_other_statuses_alone() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("index%20out%20of%20range"),
        );
        rewrite_oversized(&mut h, 10);
        assert_eq!(h["grpc-status"], "11");
    }
}
