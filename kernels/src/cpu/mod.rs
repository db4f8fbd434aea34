//! The CPU backend: ops on candle (placeholder until the CPU ops land).

/// candle-backed ops on the host.
#[derive(Debug, Default)]
pub struct CpuOps;
