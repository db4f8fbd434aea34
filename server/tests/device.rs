//! Device choice on a machine without CUDA: `auto` falls back to the CPU with one log
//! line, `cuda` refuses to start with a clear message. Skipped where CUDA is usable.

use std::process::Command;

fn cuda_usable() -> bool {
    cohost_runtime::Runtime::new(
        cohost_runtime::RuntimeOptions::default()
            .device(cohost_runtime::Device::Cuda)
            .lanes(1),
    )
    .is_ok()
}

#[test]
fn device_cuda_fails_clearly_and_auto_falls_back_to_the_cpu() {
    if cuda_usable() {
        eprintln!("skipped: CUDA is usable on this machine");
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cohost"))
        .args([
            "serve",
            "--device",
            "cuda",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--model-repository",
        ])
        .arg(repo.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "serve --device cuda started without CUDA"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--device cuda") && err.contains("CUDA"),
        "unclear message: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let rt = cohost_runtime::Runtime::new(
        cohost_runtime::RuntimeOptions::default()
            .device(cohost_runtime::Device::Auto)
            .lanes(1),
    )
    .expect("auto falls back to the CPU");
    assert_eq!(rt.backend_name(), "cpu");
    let note = rt.device().note.clone().unwrap_or_default();
    assert!(
        note.starts_with("CUDA not usable"),
        "fallback reason missing: {note}"
    );
    rt.shutdown();
}
