//! The host harness of `cuda_host.rs`: builds the `.cu` kernels with the shim and the
//! driver (plain and under sanitizers), runs one launch, and compares against f64.

use cohost_kernels::cuda::grid::Launch;
use cohost_kernels::cuda::nvrtc::SOURCES;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const TOL: f64 = 1e-5;

/// The SM count the launch shapes are computed for: at most 32 blocks per launch.
pub const SMS: u32 = 1;

/// One build of the driver.
pub struct Build {
    name: &'static str,
    exe: PathBuf,
    env: Env,
}

/// Environment variables a build runs with.
pub type Env = &'static [(&'static str, &'static str)];

/// `(name, flags, environment)` of each build; the first must succeed.
pub const VARIANTS: &[(&str, &[&str], Env)] = &[
    ("plain", &["-O2"], &[]),
    (
        "asan+ubsan",
        &[
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
        ],
        &[("ASAN_OPTIONS", "detect_leaks=0")],
    ),
    (
        "tsan",
        &["-O1", "-g", "-fsanitize=thread"],
        &[("TSAN_OPTIONS", "halt_on_error=1")],
    ),
];

pub fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| !v.is_empty() && v != "0")
}

/// The first C++ compiler that answers `--version`.
pub fn compiler() -> Option<String> {
    let candidates = std::env::var("CXX")
        .into_iter()
        .chain(["c++", "g++", "clang++"].map(String::from));
    candidates.into_iter().find(|cxx| {
        Command::new(cxx)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A kernel source as C++: its one `extern __shared__ T name[];` line (dynamic shared
/// memory, which C++ cannot declare) becomes `COHOST_DYNAMIC_SHARED(T, name);`.
pub fn host_source(file: &str, src: &str) -> (String, usize) {
    let mut rewritten = 0;
    let mut out = format!("#line 1 \"{file}\"\n");
    for line in src.lines() {
        match line.trim().strip_prefix("extern __shared__ ") {
            Some(decl) => {
                let decl = decl
                    .strip_suffix("[];")
                    .unwrap_or_else(|| panic!("{file}: unexpected shared declaration: {line}"));
                let (ty, name) = decl.rsplit_once(' ').expect("type and name");
                out.push_str(&format!("COHOST_DYNAMIC_SHARED({ty}, {name});\n"));
                rewritten += 1;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    (out, rewritten)
}

pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh `target/tmp/cuda-host/<pid>` (cargo's test scratch space), after removing those
/// of test processes that are gone.
pub fn build_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda-host");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let pid = e.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = root.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("build directory under target/tmp");
    dir
}

/// Compiles the driver once per test process; `None` when no C++ compiler exists.
pub fn builds() -> Option<&'static [Build]> {
    static BUILDS: OnceLock<Option<Vec<Build>>> = OnceLock::new();
    BUILDS.get_or_init(compile_all).as_deref()
}

pub fn compile_all() -> Option<Vec<Build>> {
    let Some(cxx) = compiler() else {
        assert!(
            env_flag("COHOST_REQUIRE_CXX") != Some(true),
            "COHOST_REQUIRE_CXX is set but no C++ compiler (CXX, c++, g++, clang++) runs"
        );
        return None;
    };
    let dir = build_dir();
    let mut program = String::from("#include \"host_shim.h\"\n");
    let mut shared_decls = 0;
    for s in SOURCES {
        let (text, n) = host_source(s.file, s.src);
        program.push_str(&text);
        shared_decls += n;
    }
    assert_eq!(
        shared_decls, 1,
        "interaction.cu declares one dynamic shared array"
    );
    program.push_str("#line 1 \"driver.cpp\"\n#include \"driver.cpp\"\n");
    let main = dir.join("kernels_host.cpp");
    std::fs::write(&main, program).expect("write the host program");
    let sanitizers = env_flag("COHOST_HOST_SANITIZERS") != Some(false);
    let jobs: Vec<_> = VARIANTS
        .iter()
        .filter(|(name, ..)| sanitizers || *name == "plain")
        .map(|&(name, flags, env)| {
            let exe = dir.join(format!("driver-{}", name.replace('+', "-")));
            let child = Command::new(&cxx)
                .args(["-std=c++17", "-pthread", "-Wall"])
                .args(flags)
                .arg("-I")
                .arg(manifest().join("cuda"))
                .arg("-I")
                .arg(manifest().join("tests/cuda_host"))
                .arg(&main)
                .arg("-o")
                .arg(&exe)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the C++ compiler");
            (name, env, exe, child)
        })
        .collect();
    let mut builds = Vec::new();
    for (name, env, exe, child) in jobs {
        let out = child.wait_with_output().expect("C++ compiler");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            assert!(
                name != "plain",
                "the kernels do not compile under the host shim ({cxx}):\n{log}"
            );
            println!("note: {name} build unavailable ({cxx}), skipped:\n{log}");
            continue;
        }
        let build = Build { name, exe, env };
        // A sanitizer runtime that cannot start here (e.g. TSan and the kernel's memory
        // layout) is the toolchain's problem, not the kernels'.
        if name != "plain"
            && let Err(e) = try_run(&build, "sigmoid_f32 1 32 0 1", &[Arr::F32(&[0.5])])
        {
            println!("note: {name} build does not run here, skipped:\n{e}");
            continue;
        }
        builds.push(build);
    }
    println!(
        "host shim builds ({cxx}): {:?}",
        builds.iter().map(|b| b.name).collect::<Vec<_>>()
    );
    Some(builds)
}

/// One input array of a launch.
pub enum Arr<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

pub fn try_run(build: &Build, header: &str, arrays: &[Arr]) -> Result<Vec<f32>, String> {
    let mut input = format!("{header}\n").into_bytes();
    for a in arrays {
        let (n, bytes): (usize, Vec<u8>) = match a {
            Arr::F32(v) => (v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Arr::I64(v) => (v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        input.extend((n as u64).to_le_bytes());
        input.extend(bytes);
    }
    let mut child = Command::new(&build.exe)
        .envs(build.env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", build.exe.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "[{}] `{header}` failed ({}):\n{}",
            build.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Runs one launch of `kernel` on the plain build and, when `sanitized`, on the sanitizer
/// builds too (they are 10x slower, so they get the backend's launches only); returns each
/// build's output.
pub fn run(
    kernel: &str,
    l: Launch,
    sanitized: bool,
    scalars: &str,
    arrays: &[Arr],
) -> Vec<(&'static str, Vec<f32>)> {
    let header = format!("{kernel} {} {} {} {scalars}", l.grid, l.block, l.smem);
    builds()
        .expect("checked by the caller")
        .iter()
        .filter(|b| sanitized || b.name == "plain")
        .map(|b| {
            (
                b.name,
                try_run(b, &header, arrays).unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect()
}

/// `false` (after printing why) when there is no C++ compiler.
pub fn ready() -> bool {
    if builds().is_some() {
        return true;
    }
    println!("skipped: no C++ compiler (set CXX or install g++)");
    false
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= TOL * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The backend's launch on a 1-SM device (`true`: run under the sanitizers too), then the
/// same with 1 and 3 blocks.
pub fn launches(backend: Launch) -> [(Launch, bool); 3] {
    [
        (backend, true),
        (Launch { grid: 1, ..backend }, false),
        (Launch { grid: 3, ..backend }, false),
    ]
}
