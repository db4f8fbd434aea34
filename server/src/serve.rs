//! The embeddable server: one `Runtime`, HTTP and gRPC listeners, optional metrics
//! port, ModelMesh SPI port and repository polling, and a graceful shutdown that drains
//! them all within a deadline.
//!
//! Shutdown, once the `shutdown` future resolves (or [`ServerHandle::shutdown`]): readiness
//! turns false and the listeners stop accepting connections; accepted requests run to
//! their answers. When `drain_timeout` passes first, the [`Cut`] fires: requests still
//! running get 503 / UNAVAILABLE and open streams end with UNAVAILABLE; the listeners get
//! [`CUT_GRACE`] more to close, then are dropped; the runtime gets [`LANE_GRACE`] to stop
//! its lanes (a lane stuck in a forward is reported and left behind).

use crate::drain::Cut;
use crate::grpc::{self, GrpcOptions};
use crate::http::admission::Admission;
use crate::http::auth::ControlToken;
use crate::http::{self, AppState};
use anyhow::Context;
use axum::serve::ListenerExt;
use cohost_runtime::{Device, Runtime, RuntimeOptions};
use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How models are loaded and unloaded while serving (Triton's `--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ModelControlMode {
    /// Everything in the repository is loaded at start; the control API is refused.
    #[default]
    None,
    /// The repository control API (`/v2/repository/models/{m}/load|unload`) is allowed.
    Explicit,
    /// The repository is re-scanned periodically; changed models are reloaded.
    Poll,
}

impl ModelControlMode {
    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelControlMode::None => "none",
            ModelControlMode::Explicit => "explicit",
            ModelControlMode::Poll => "poll",
        }
    }
}

/// Default of [`ServeOptions::max_inflight`].
pub const DEFAULT_MAX_INFLIGHT: usize = 1024;

/// Default of [`ServeOptions::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of [`ServeOptions::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the listeners may take to close once the drain deadline cut what was running.
pub const CUT_GRACE: Duration = Duration::from_secs(2);

/// How long the runtime's lanes may take to stop once the listeners are closed.
pub const LANE_GRACE: Duration = Duration::from_secs(2);

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Model repository folder (None: serve no models from disk).
    pub repository: Option<PathBuf>,
    /// Address to bind.
    pub host: IpAddr,
    /// HTTP port (0 = any free port).
    pub http_port: u16,
    /// gRPC port (0 = any free port).
    pub grpc_port: u16,
    /// Separate port for `/metrics` (it is always on the HTTP port too).
    pub metrics_port: Option<u16>,
    /// Model control mode.
    pub model_control: ModelControlMode,
    /// Repository scan interval in poll mode.
    pub poll_interval: Duration,
    /// Lanes (0 = derive from the device).
    pub lanes: usize,
    /// How long an idle lane spins for new work before it sleeps.
    pub lane_spin: Duration,
    /// Longest predicted batch run on the receiving thread instead of a lane (zero: none).
    pub caller_runs: Duration,
    /// Caller runs keep a waiting batch's timer on the receiving thread.
    pub caller_timers: bool,
    /// Lane priority classes on (one lane in four takes urgent work first) or off.
    pub lane_priorities: bool,
    /// Cross-model scheduling policy.
    pub schedule: cohost_runtime::ScheduleKind,
    /// Device memory budget in bytes.
    pub memory_budget: Option<u64>,
    /// Backend choice.
    pub device: Device,
    /// Largest HTTP body and gRPC message in bytes.
    pub max_body_bytes: usize,
    /// Requests admitted at once across HTTP and gRPC (health and metrics exempt); more
    /// are refused with 429 / RESOURCE_EXHAUSTED before their bodies are read.
    pub max_inflight: usize,
    /// Longest time an HTTP request body may take to arrive whole (then 408).
    pub body_timeout: Duration,
    /// Bearer token the repository control and index calls need (None: open).
    pub control_token: Option<String>,
    /// Form of the HTTP `endpoint-load-metrics` header when a request names none.
    pub load_report_format: crate::orca::Format,
    /// Port of ModelMesh's model-runtime SPI (`mmesh.ModelRuntime`; None: not served).
    pub modelmesh_port: Option<u16>,
    /// How long a graceful shutdown waits for accepted requests before it cuts them.
    pub drain_timeout: Duration,
    /// A batch running this many times its predicted time is reported as overrunning.
    pub overrun_factor: f64,
    /// Snapshot transition budget (None: a new version takes over at once).
    pub transition_budget: Option<f64>,
    /// How long a transition waits for the slice to drop below the budget.
    pub transition_max_wait: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            repository: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 8000,
            grpc_port: 8001,
            metrics_port: None,
            model_control: ModelControlMode::None,
            poll_interval: Duration::from_secs(5),
            lanes: 0,
            lane_spin: Duration::ZERO,
            caller_runs: cohost_runtime::DEFAULT_CALLER_RUNS,
            caller_timers: true,
            lane_priorities: true,
            schedule: cohost_runtime::ScheduleKind::default(),
            memory_budget: None,
            device: Device::Auto,
            max_body_bytes: 64 << 20,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            control_token: None,
            load_report_format: crate::orca::Format::Text,
            modelmesh_port: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            overrun_factor: cohost_runtime::DEFAULT_OVERRUN_FACTOR,
            transition_budget: None,
            transition_max_wait: cohost_runtime::DEFAULT_TRANSITION_MAX_WAIT,
        }
    }
}

/// A running server: its bound addresses, its runtime, and how to stop it.
pub struct ServerHandle {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where the separate metrics listener is, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Where ModelMesh's model-runtime SPI listens, if it is served.
    pub modelmesh_addr: Option<SocketAddr>,
    /// The runtime both transports share.
    pub runtime: Runtime,
    trigger: Arc<watch::Sender<bool>>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    cut: Cut,
    drain_timeout: Duration,
    admission: Admission,
}

impl ServerHandle {
    /// `http://host:port` of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Requests holding an in-flight permit now (`--max-inflight`), on both transports.
    pub fn requests_in_flight(&self) -> usize {
        self.admission.in_flight()
    }

    /// Starts a graceful shutdown (same as the `shutdown` future resolving).
    pub fn shutdown(&self) {
        self.trigger.send_replace(true);
    }

    /// Waits until shutdown was requested and every listener drained (or the drain
    /// deadline cut what was left), then stops the runtime.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let _ = self.trigger.subscribe().wait_for(|stop| *stop).await;
        let deadline = Instant::now() + self.drain_timeout;
        let mut tasks = std::mem::take(&mut self.tasks);
        let mut results: Vec<Option<anyhow::Result<()>>> = tasks.iter().map(|_| None).collect();
        let drained = collect(
            &mut tasks,
            &mut results,
            tokio::time::Instant::from_std(deadline),
        )
        .await;
        if !drained {
            let open = tasks.len() - results.iter().filter(|r| r.is_some()).count();
            tracing::warn!(
                listeners_open = open,
                "drain deadline ({:?}) passed: cutting the requests and streams still open",
                self.drain_timeout
            );
            self.cut.fire();
            let until = tokio::time::Instant::now() + CUT_GRACE;
            if !collect(&mut tasks, &mut results, until).await {
                for ((what, task), result) in tasks.iter().zip(&mut results) {
                    if result.is_none() {
                        tracing::warn!(
                            "{what}: connections still open after the cut; dropping them"
                        );
                        task.abort();
                        *result = Some(Ok(()));
                    }
                }
            }
        }
        let mut first_error = None;
        for ((what, _), result) in tasks.iter().zip(results) {
            if let Some(Err(e)) = result {
                tracing::error!("{what}: {e:#}");
                first_error.get_or_insert(e);
            }
        }
        // Accepted requests are answered by now (or cut): the lanes only finish what a
        // cut left behind.
        let stuck = self.runtime.shutdown_within_async(LANE_GRACE).await;
        if stuck.is_empty() {
            tracing::info!("runtime stopped");
        } else {
            tracing::warn!(lanes = ?stuck, "runtime stopped with lanes still running a batch");
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Shuts down and waits (for tests and embedders).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown();
        self.wait().await
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.trigger.send_replace(true);
        }
    }
}

/// Waits for the tasks without a result yet until `until`; true once every one has one.
async fn collect(
    tasks: &mut [(&'static str, JoinHandle<anyhow::Result<()>>)],
    results: &mut [Option<anyhow::Result<()>>],
    until: tokio::time::Instant,
) -> bool {
    for ((what, task), result) in tasks.iter_mut().zip(results.iter_mut()) {
        if result.is_some() {
            continue;
        }
        match tokio::time::timeout_at(until, task).await {
            Ok(Ok(r)) => *result = Some(r),
            Ok(Err(e)) => *result = Some(Err(anyhow::anyhow!("{what} task panicked: {e}"))),
            Err(_) => return false,
        }
    }
    true
}

/// Connections the kernel may hold for a listener before it is accepted (capped by
/// `net.core.somaxconn`). Tokio's `TcpListener::bind` asks for 128: a burst of new client
/// connections while the front end is busy overflowed it, and each dropped SYN cost its
/// request a 1 s retransmission (docs/BATCHING.md § Log, 2026-11-30 `01dd04a`..`5a6452b`).
const LISTEN_BACKLOG: u32 = 4096;

fn bind(host: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr = std::net::SocketAddr::new(host, port);
    let listen = || -> std::io::Result<TcpListener> {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As std's bind does on Unix: a restarted server can reuse a port in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().with_context(|| format!("cannot bind the {what} listener to {host}:{port}"))
}

fn set_nodelay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY on an accepted connection: {e}");
    }
}

async fn signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Builds the runtime, loads the repository, binds the listeners and serves until
/// `shutdown` resolves (or [`ServerHandle::shutdown`] is called).
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ServerHandle> {
    crate::metrics::install();
    let mut runtime_options = RuntimeOptions::default()
        .batch_overrun(
            options.overrun_factor,
            cohost_runtime::DEFAULT_OVERRUN_FLOOR,
        )
        .transition_budget(options.transition_budget)
        .transition_max_wait(options.transition_max_wait)
        .lanes(options.lanes)
        .lane_spin(options.lane_spin)
        .caller_runs(options.caller_runs)
        .caller_timers(options.caller_timers)
        .lane_priorities(options.lane_priorities)
        .schedule(options.schedule)
        .memory_budget(options.memory_budget)
        .device(options.device);
    if let Some(repository) = options.repository.clone() {
        runtime_options = runtime_options.repository(repository);
    }
    let runtime = tokio::task::spawn_blocking(move || {
        let runtime = Runtime::new(runtime_options)?;
        if runtime.repository().is_some() {
            for (model, e) in runtime.load_all() {
                tracing::warn!(model = %model, "failed to load: {e}");
            }
        }
        Ok::<_, cohost_runtime::Error>(runtime)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    tracing::info!(
        backend = runtime.backend_name(),
        lanes = runtime.lane_count(),
        "runtime started"
    );
    for m in runtime.models() {
        tracing::info!(model = %m.name, version = m.version, state = m.state.as_str(), "model");
    }

    let modelmesh = match options.modelmesh_port {
        Some(port) => Some((
            crate::modelmesh::ModelRuntimeService::new(runtime.clone())?,
            bind(options.host, port, "ModelMesh")?,
        )),
        None => None,
    };
    let http_listener = bind(options.host, options.http_port, "HTTP")?;
    let grpc_listener = bind(options.host, options.grpc_port, "gRPC")?;
    let metrics_listener = match options.metrics_port {
        Some(port) => Some(bind(options.host, port, "metrics")?),
        None => None,
    };
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let modelmesh_addr = modelmesh
        .as_ref()
        .map(|(_, l)| l.local_addr())
        .transpose()?;

    let (tx, rx) = watch::channel(false);
    let trigger = Arc::new(tx);
    let shutting_down = Arc::new(AtomicBool::new(false));
    let drain_timeout = options.drain_timeout;
    let cut = Cut::new(drain_timeout);
    {
        let trigger = trigger.clone();
        let flag = shutting_down.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => { trigger.send_replace(true); }
                _ = rx.wait_for(|stop| *stop) => {}
            }
            flag.store(true, Ordering::SeqCst);
            tracing::info!(
                "shutting down: readiness is false, draining accepted requests for up to {:?}",
                drain_timeout
            );
        });
    }

    let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
    // One in-flight limit for both transports, and one control token.
    let admission = Admission::new(options.max_inflight);
    let admission_handle = admission.clone();
    let control_token = ControlToken::new(options.control_token.as_deref());
    let load_reports = crate::orca::LoadReporter::new(runtime.clone(), options.load_report_format);
    let state = AppState {
        runtime: runtime.clone(),
        max_body_bytes: options.max_body_bytes,
        body_timeout: options.body_timeout,
        model_control: options.model_control,
        control_token: control_token.clone(),
        admission: admission.clone(),
        shutting_down,
        load_reports: load_reports.clone(),
    };
    let app = http::router(state.clone()).layer(axum::middleware::from_fn_with_state(
        cut.clone(),
        crate::drain::cut_http,
    ));
    // Responses are written whole, so Nagle's algorithm only ever delays them (as gRPC's
    // accepted sockets, HTTP ones get TCP_NODELAY).
    let http_listener = http_listener.tap_io(set_nodelay);
    let http_serve = axum::serve(http_listener, app).with_graceful_shutdown(signal(rx.clone()));
    tasks.push((
        "HTTP",
        tokio::spawn(async move { Ok(http_serve.into_future().await?) }),
    ));
    tracing::info!("HTTP (KServe v2) listening on http://{http_addr}");

    let grpc_options = GrpcOptions {
        max_message_size: options.max_body_bytes,
        explicit_model_control: options.model_control == ModelControlMode::Explicit,
        control_token,
        admission: Some(admission),
        load_reports: Some(load_reports),
        cut: cut.clone(),
    };
    let grpc_serve = grpc::serve(
        runtime.clone(),
        grpc_listener,
        grpc_options,
        signal(rx.clone()),
    );
    tasks.push(("gRPC", tokio::spawn(grpc_serve)));
    tracing::info!("gRPC (inference.GRPCInferenceService) listening on {grpc_addr}");

    if let Some(listener) = metrics_listener {
        let serve = axum::serve(listener.tap_io(set_nodelay), http::metrics_router(state))
            .with_graceful_shutdown(signal(rx.clone()));
        tasks.push((
            "metrics",
            tokio::spawn(async move { Ok(serve.into_future().await?) }),
        ));
        tracing::info!(
            "Prometheus metrics on http://{}/metrics",
            metrics_addr.expect("bound")
        );
    }

    if let Some((service, listener)) = modelmesh {
        let serve = crate::modelmesh::serve(service, listener, signal(rx.clone()));
        tasks.push(("ModelMesh", tokio::spawn(serve)));
        tracing::info!(
            "ModelMesh model runtime (mmesh.ModelRuntime) listening on {}",
            modelmesh_addr.expect("bound")
        );
    }

    if options.model_control == ModelControlMode::Poll {
        match options.repository.clone() {
            Some(repo) => {
                let poll = crate::poll::run(
                    runtime.clone(),
                    repo,
                    options.poll_interval,
                    signal(rx.clone()),
                );
                tasks.push((
                    "poll",
                    tokio::spawn(async move {
                        poll.await;
                        Ok(())
                    }),
                ));
            }
            None => {
                tracing::warn!("--model-control-mode poll without a repository: nothing to poll")
            }
        }
    }

    Ok(ServerHandle {
        http_addr,
        grpc_addr,
        metrics_addr,
        modelmesh_addr,
        runtime,
        trigger,
        tasks,
        cut,
        drain_timeout,
        admission: admission_handle,
    })
}
