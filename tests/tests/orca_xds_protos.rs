//! cohost's ORCA reports decoded by implementations cohost did not write: Python's
//! `xds-protos` (cncf/xds's `OrcaLoadReport` and `OpenRcaService`) for the gRPC trailer
//! (received here: grpcio keeps it for its balancer), the out-of-band stream over `grpcio`
//! and the HTTP headers, whose TEXT form is parsed by Envoy's grammar
//! (`scripts/python/orca_peer_check.py`).
//!
//! Needs Python 3 with `venv` and PyPI the first time (the venv, `target/orca-venv` or
//! `COHOST_ORCA_VENV`, is reused after), so it runs only with `COHOST_ORCA_TESTS=1`
//! (`scripts/test.sh` sets it); otherwise it prints "skipped" and passes.

mod grpc_common;

use cohost_models::Family;
use cohost_tests::{TestServer, json_input, sample_inputs};
use grpc_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions the check was written against (they install together on CPython 3.11).
const PINS: &[&str] = &["xds-protos==1.85.0", "grpcio==1.85.1"];

/// The venv's python, created with [`PINS`] unless it already imports them.
fn venv(root: &Path) -> PathBuf {
    let dir = std::env::var_os("COHOST_ORCA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/orca-venv"));
    let python = dir.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import grpc, xds.service.orca.v3.orca_pb2"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let run = |cmd: &mut Command| {
            let status = cmd.status().expect("runs");
            assert!(status.success(), "{cmd:?}: {status}");
        };
        run(Command::new("python3").arg("-m").arg("venv").arg(&dir));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(PINS));
        assert!(
            ready(&python),
            "the venv at {} imports xds-protos",
            dir.display()
        );
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_protos_decodes_the_trailer_the_stream_and_the_headers() {
    if std::env::var("COHOST_ORCA_TESTS").as_deref() != Ok("1") {
        println!("skipped: set COHOST_ORCA_TESTS=1 to decode with Python's xds-protos");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = venv(root);
    let mut server = TestServer::start(|_| {}).await;
    let model = server.model_of(Family::Mlp);
    let (_, cfg) = server.handle().runtime.config(&model, None).unwrap();
    let inputs = sample_inputs(&cfg, 2, 9);
    let work = tempfile::tempdir().unwrap();
    // gRPC: grpcio keeps `endpoint-load-metrics-bin` to itself (its balancer reads it), so
    // the trailers are received here and decoded by xds-protos.
    let mut c = client(&server).await;
    let trailer = |m: &tonic::metadata::MetadataMap| {
        m.get_bin("endpoint-load-metrics-bin")
            .expect("endpoint-load-metrics-bin")
            .to_bytes()
            .unwrap()
    };
    let good = infer_request(&model, &inputs, true);
    for _ in 0..20 {
        c.model_infer(good.clone()).await.unwrap();
    }
    // Reports are sampled at most every 100 ms: the next sample comes after the burst.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let resp = c.model_infer(good.clone()).await.unwrap();
    std::fs::write(work.path().join("trailer.bin"), trailer(resp.metadata())).unwrap();
    // A shape the model refuses (one column too many), data consistent with it.
    let mut bad = infer_request(&model, &inputs, false);
    let t = &mut bad.inputs[0];
    t.shape[1] += 1;
    let rows = t.shape[0] as usize;
    let contents = t.contents.as_mut().unwrap();
    contents
        .fp32_contents
        .extend(std::iter::repeat_n(0.0, rows));
    let e = c.model_infer(bad).await.unwrap_err();
    std::fs::write(work.path().join("error_trailer.bin"), trailer(e.metadata())).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let resp = c.model_infer(good).await.unwrap();
    std::fs::write(
        work.path().join("after_error.bin"),
        trailer(resp.metadata()),
    )
    .unwrap();
    let body = serde_json::json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
    std::fs::write(work.path().join("infer.json"), body.to_string()).unwrap();

    let handle = server.handle();
    let (http, grpc) = (handle.http_addr.to_string(), handle.grpc_addr.to_string());
    let script = root.join("scripts/python/orca_peer_check.py");
    let work_dir = work.path().to_path_buf();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--http", &http, "--grpc", &grpc, "--model", &model])
            .arg("--work")
            .arg(work_dir)
            .status()
            .expect("runs orca_peer_check.py")
    })
    .await
    .unwrap();
    assert!(status.success(), "orca_peer_check.py failed: {status}");
    server.stop().await;
}
