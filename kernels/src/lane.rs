//! Lanes: the execution contexts (CPU threads, CUDA streams) a batch's ops are issued on.

use std::sync::Arc;

/// What executes a lane's work.
#[derive(Clone)]
pub enum LaneKind {
    /// A CPU worker thread (ops run on candle, which may fan out to rayon).
    Cpu,
    /// A CUDA stream in the visible device's context.
    Cuda(Arc<cudarc::driver::CudaStream>),
}

/// One execution context of the slice: every op of a batch is issued on its lane.
#[derive(Clone)]
pub struct Lane {
    /// Position of this lane among the runtime's lanes.
    pub index: usize,
    /// CPU thread or CUDA stream.
    pub kind: LaneKind,
}

impl Lane {
    /// A CPU lane with the given index.
    pub fn cpu(index: usize) -> Self {
        Lane {
            index,
            kind: LaneKind::Cpu,
        }
    }
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            LaneKind::Cpu => "cpu",
            LaneKind::Cuda(_) => "cuda",
        };
        write!(f, "Lane({kind}#{})", self.index)
    }
}
