//! `cohost bench` runs the separate `cohost-bench` binary: the one beside `cohost` first,
//! else the one on PATH, with every argument and its exit status; none found is an error
//! that says how to build it.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh folder under cargo's scratch space for integration tests (same filesystem as
/// the binary, so it can be hard-linked).
fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-exec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `cohost` placed in `dir` (a hard link, or a copy), so that it looks beside itself there.
fn cohost_in(dir: &Path) -> PathBuf {
    let to = dir.join("cohost");
    let from = env!("CARGO_BIN_EXE_cohost");
    if std::fs::hard_link(from, &to).is_err() {
        std::fs::copy(from, &to).unwrap();
    }
    to
}

/// A stand-in `cohost-bench` in `dir` that prints its arguments and exits 7.
fn stub_in(dir: &Path) {
    let path = dir.join("cohost-bench");
    std::fs::write(&path, "#!/bin/sh\necho \"stub got: $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn bench(cohost: &Path, path: &Path, args: &[&str]) -> Output {
    Command::new(cohost)
        .arg("bench")
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn bench_runs_the_harness_beside_then_on_path_or_says_how_to_build_it() {
    let (alone, beside, on_path, empty) = (
        folder("alone"),
        folder("beside"),
        folder("on-path"),
        folder("empty"),
    );

    // Beside cohost: every argument handed over (--help included), its status returned.
    let cohost = cohost_in(&beside);
    stub_in(&beside);
    let out = bench(&cohost, &empty, &["--help", "--model", "m"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(stdout.trim(), "stub got: --help --model m");

    // Not beside it: the one on PATH.
    let cohost = cohost_in(&alone);
    stub_in(&on_path);
    let out = bench(&cohost, &on_path, &["--duration", "3"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "stub got: --duration 3"
    );

    // Nowhere: a failure naming the binary and the command that builds it.
    let out = bench(&cohost, &empty, &["--help"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("cohost-bench") && stderr.contains("cargo build --release -p cohost-bench"),
        "{stderr}"
    );

    for dir in [alone, beside, on_path, empty] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
