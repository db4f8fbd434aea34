//! Shared by the `faults_*` tests: the real `cohost` binary as a child process (built by
//! this package as `cohost-under-test`, the same `main`), its addresses read from its log,
//! its resident memory read from `/proc`, signals sent with `kill`, and raw HTTP/1.1 over
//! a TCP stream for clients that misbehave.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a test waits for the server to start or to answer.
pub const START: Duration = Duration::from_secs(60);

/// A `cohost serve` process on 127.0.0.1, ports chosen by the kernel.
pub struct Cohost {
    child: Child,
    /// Where HTTP listens.
    pub http: SocketAddr,
    /// Where gRPC listens.
    pub grpc: SocketAddr,
    /// Its log so far (stdout and stderr, one entry per line).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Cohost {
    /// Starts `cohost serve --model-repository REPO` with `args`, on the CPU with two
    /// lanes, and waits until both listeners are bound.
    pub fn start(repo: &Path, args: &[&str]) -> Cohost {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cohost-under-test"))
            .arg("serve")
            .arg("--model-repository")
            .arg(repo)
            .args(["--http-port", "0", "--grpc-port", "0", "--device", "cpu"])
            .args(["--lanes", "2"])
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the cohost binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let (mut http, mut grpc) = (None, None);
        let until = Instant::now() + START;
        while http.is_none() || grpc.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "cohost did not report its listeners within {START:?}:\n{}",
                        log.lock().unwrap().join("\n")
                    )
                }
            };
            if line.contains("HTTP (KServe v2) listening on http://") {
                http = address_after(&line, "listening on http://");
            } else if line.contains("gRPC (inference.GRPCInferenceService) listening on ") {
                grpc = address_after(&line, "listening on ");
            }
        }
        Cohost {
            child,
            http: http.unwrap(),
            grpc: grpc.unwrap(),
            log,
        }
    }

    /// `http://127.0.0.1:port` of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `http://127.0.0.1:port` of the gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in bytes (`VmRSS` of `/proc/PID/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// Sends `signal` (e.g. "TERM", "INT") with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The exit status, once the process exits within `limit` (None: still running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far, one string.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Cohost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host:port` right after `marker` in a log line.
fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A repository with mlp-tiny (seed 7) and dlrm-tiny (seed 11), as `tiny_repository`.
pub fn repository() -> tempfile::TempDir {
    cohost_tests::tiny_repository()
}

/// Makes the model in `model_dir` hold each request `delay_us` µs in a static batcher
/// before it runs (requests that stay in flight a while).
pub fn hold_batches(model_dir: &Path, delay_us: u64) {
    let path = model_dir.join("config.toml");
    let mut config = cohost_models::ModelConfig::from_file(&path).unwrap();
    config.batching.policy = cohost_models::BatchingPolicyKind::Static;
    config.batching.max_queue_delay_us = delay_us;
    std::fs::write(&path, config.to_toml()).unwrap();
}
