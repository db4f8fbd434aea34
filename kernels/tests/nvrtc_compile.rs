//! Compiles every CUDA C kernel in `kernels/cuda/` to PTX with NVRTC. Needs no GPU.
//!
//! Without libnvrtc the test prints "skipped: libnvrtc not found" and passes, unless
//! `COHOST_REQUIRE_NVRTC=1` is set (CI sets it after `scripts/install-nvrtc.sh`), in which
//! case a missing libnvrtc fails the test.

use cohost_kernels::cuda::nvrtc::{self, SOURCES};
use cudarc::nvrtc::compile_ptx_with_opts;
use std::path::PathBuf;

/// Virtual architectures every kernel must compile for: Turing, Ampere, Ada, Hopper.
const ARCHS: &[&str] = &["compute_75", "compute_80", "compute_89", "compute_90"];

fn cuda_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cuda")
}

/// The `.cu` files on disk, sorted, as `(file name, text)`.
fn cu_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(cuda_dir())
        .expect("kernels/cuda/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("kernel source is UTF-8");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// `true` when the test may go on; `false` (after printing why) when it is skipped.
fn nvrtc_or_skip() -> bool {
    if cohost_kernels::cuda::nvrtc_present() {
        return true;
    }
    let required = std::env::var("COHOST_REQUIRE_NVRTC").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "COHOST_REQUIRE_NVRTC is set but libnvrtc was not found; run \
         `export LD_LIBRARY_PATH=\"$(scripts/install-nvrtc.sh):$LD_LIBRARY_PATH\"`"
    );
    println!("skipped: libnvrtc not found (set LD_LIBRARY_PATH, see scripts/install-nvrtc.sh)");
    false
}

#[test]
fn every_cu_file_is_embedded_by_the_backend() {
    let on_disk: Vec<String> = cu_files().into_iter().map(|(name, _)| name).collect();
    let mut embedded: Vec<String> = SOURCES.iter().map(|s| s.file.to_string()).collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "kernels/cuda/*.cu and cuda::nvrtc::SOURCES differ"
    );
    for (name, text) in cu_files() {
        let source = SOURCES.iter().find(|s| s.file == name).unwrap();
        assert_eq!(source.src, text, "{name}: embedded text is stale");
        for entry in source.entries {
            assert!(
                text.contains(&format!("void {entry}(")),
                "{name}: kernel entry {entry} not defined"
            );
        }
    }
}

#[test]
fn every_kernel_compiles_to_ptx() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = cohost_kernels::cuda::nvrtc_version().expect("nvrtcVersion");
    println!("NVRTC {major}.{minor}");
    let files = cu_files();
    assert!(
        !files.is_empty(),
        "no .cu files in {}",
        cuda_dir().display()
    );
    let mut failures = Vec::new();
    for (name, text) in &files {
        for arch in ARCHS {
            match compile_ptx_with_opts(text, nvrtc::compile_options(name, Some(arch))) {
                Ok(ptx) => {
                    let ptx = ptx.to_src();
                    let entries = SOURCES.iter().find(|s| s.file == name).map(|s| s.entries);
                    for entry in entries.unwrap_or_default() {
                        assert!(
                            ptx.contains(&format!(".entry {entry}(")),
                            "{name} [{arch}]: PTX lacks entry {entry}"
                        );
                    }
                    println!("compiled {name} for {arch}: {} bytes of PTX", ptx.len());
                }
                Err(cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. }) => failures.push(
                    format!("{name} [{arch}] ({nvrtc:?}):\n{}", log.to_string_lossy()),
                ),
                Err(other) => failures.push(format!("{name} [{arch}]: {other:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "NVRTC failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_broken_kernel_is_reported_with_the_nvrtc_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let broken = nvrtc::KernelSource {
        file: "broken.cu",
        src: "extern \"C\" __global__ void broken(float* y) { y[0] = undeclared_name; }",
        entries: &["broken"],
    };
    let err = nvrtc::compile(&broken, Some("compute_80")).expect_err("must not compile");
    assert!(
        err.contains("undeclared_name"),
        "log missing from error: {err}"
    );
}

#[test]
fn arch_selection_prefers_the_device_then_the_newest_older() {
    let supported = [75, 80, 86, 89, 90];
    assert_eq!(nvrtc::arch_for((9, 0), &supported).unwrap(), "compute_90");
    assert_eq!(nvrtc::arch_for((12, 0), &supported).unwrap(), "compute_90");
    assert_eq!(nvrtc::arch_for((8, 7), &supported).unwrap(), "compute_86");
    assert!(nvrtc::arch_for((7, 0), &supported).is_err());
}
