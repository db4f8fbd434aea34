//! What the null servers share: their arguments (address, tokio worker threads) and the
//! runtime they serve on.

use std::future::Future;
use std::net::SocketAddr;

/// Reads the arguments — the address (default `default_addr`) and the tokio worker threads
/// (default as `cohost serve --io-threads 0`: a quarter of the cores, at least one) — and
/// runs `serve` on that runtime.
pub fn run<F>(default_addr: &str, serve: impl FnOnce(SocketAddr) -> F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().as_deref().unwrap_or(default_addr).parse()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match args.next() {
        Some(t) => t.parse()?,
        None => (cores / 4).max(1),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(serve(addr))
}
