//! `cohost bench`: runs the separate `cohost-bench` binary with the same arguments, as
//! cargo runs `cargo-foo` for `cargo foo`, so the server does not link the load generator.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The harness binary's file name on this platform.
pub const HARNESS: &str = if cfg!(windows) {
    "cohost-bench.exe"
} else {
    "cohost-bench"
};

/// How to get the harness binary, for the error when none is found.
pub const BUILD_HINT: &str = "cargo build --release -p cohost-bench";

/// Where `cohost-bench` is: next to `exe` (the running `cohost`) first, then on `path`
/// (a `PATH`-style list); None when in neither.
pub fn find_harness(exe: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let beside = exe.and_then(Path::parent).map(|dir| dir.join(HARNESS));
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(HARNESS));
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Runs `cohost-bench args` in place of this process (on Unix it replaces it; elsewhere it
/// waits for it) and returns its exit status; an error when it is not found or won't start.
pub fn run(args: &[OsString]) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().ok();
    let Some(harness) = find_harness(exe.as_deref(), std::env::var_os("PATH").as_deref()) else {
        let beside = exe
            .as_deref()
            .and_then(Path::parent)
            .map_or_else(|| "cohost".into(), |p| p.display().to_string());
        anyhow::bail!(
            "`cohost bench` runs the {HARNESS} binary, which is neither in {beside} nor on PATH: build it with `{BUILD_HINT}` (or without --release for target/debug)"
        );
    };
    let mut command = std::process::Command::new(&harness);
    command.args(args);
    exec(command, &harness)
}

#[cfg(unix)]
fn exec(mut command: std::process::Command, harness: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    // Returns only when the exec failed.
    let e = command.exec();
    Err(anyhow::anyhow!("cannot run {}: {e}", harness.display()))
}

#[cfg(not(unix))]
fn exec(mut command: std::process::Command, harness: &Path) -> anyhow::Result<ExitCode> {
    let status = command
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", harness.display()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub(dir: &Path) -> PathBuf {
        let path = dir.join(HARNESS);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    #[test]
    fn the_harness_beside_the_executable_wins_over_path() {
        let (beside, on_path) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let exe = beside.path().join("cohost");
        let path = std::env::join_paths([on_path.path()]).unwrap();
        assert_eq!(find_harness(Some(&exe), Some(&path)), None);
        let found_on_path = stub(on_path.path());
        assert_eq!(find_harness(Some(&exe), Some(&path)), Some(found_on_path));
        let found_beside = stub(beside.path());
        assert_eq!(find_harness(Some(&exe), Some(&path)), Some(found_beside));
        assert_eq!(find_harness(None, None), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_cannot_be_executed_is_not_the_harness() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = stub(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_harness(Some(&dir.path().join("cohost")), None), None);
    }
}
