//! The `cohost` binary: parses the command line and runs it ([`cohost_server::cli::main`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    cohost_server::cli::main()
}
