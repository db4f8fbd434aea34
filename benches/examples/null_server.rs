//! The floor under issue 4 (d)'s overhead figure: a KServe-shaped HTTP server on the same
//! stack as `cohost serve` (tokio, axum, hyper; TCP_NODELAY) that answers every
//! `POST /v2/models/{m}/infer` with a fixed response and does no other work.
//!
//! Measured with the same client as cohost (`cohost bench --target http-json --url ...`),
//! its p50 at concurrency 1 is what the loopback round trip, the two runtimes' wake-ups and
//! the HTTP stack cost on this machine before any model server code runs:
//!
//! ```text
//! cargo run --release -p cohost-bench --example null_server -- 127.0.0.1:18090 &
//! cohost bench --target http-json --url http://127.0.0.1:18090 \
//!   --model-repository REPO --model mlp-tiny --concurrency 1 --warmup 1 --duration 5
//! ```
//!
//! `scripts/bench-policies.sh overhead` runs it next to the real server.

use axum::Router;
use axum::routing::{get, post};
use std::net::SocketAddr;

#[path = "null/runner.rs"]
mod runner;

/// The answer to every inference request: one FP32 output of 4 values, as cohost's
/// mlp-tiny answers (the client only checks the status and that a body arrived).
const RESPONSE: &str = r#"{"model_name":"null","model_version":"1","outputs":[{"name":"output","datatype":"FP32","shape":[1,4],"data":[0.0,0.0,0.0,0.0]}]}"#;

/// Arguments: the address (`127.0.0.1:18090`) and the tokio worker threads.
fn main() -> anyhow::Result<()> {
    runner::run("127.0.0.1:18090", serve)
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new()
        .route(
            "/v2/models/{model}/infer",
            post(|_body: axum::body::Bytes| async {
                ([("content-type", "application/json")], RESPONSE)
            }),
        )
        .route("/v2/health/ready", get(|| async { "" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("null server on http://{addr}");
    let listener = axum::serve::ListenerExt::tap_io(listener, |s| {
        let _ = s.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
