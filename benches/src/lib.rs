//! cohost's load generator and reports (placeholder).

/// `cohost bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {}

/// Runs `cohost bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let _ = args;
    Ok(())
}
