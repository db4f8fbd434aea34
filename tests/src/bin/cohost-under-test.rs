//! The `cohost` binary, built by this package so that its end-to-end tests can run it as
//! a process (`CARGO_BIN_EXE_cohost-under-test`): the same `main` as `server/src/main.rs`.

fn main() -> std::process::ExitCode {
    cohost_server::cli::main()
}
