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

/// A lane's priority class: the scheduler routes urgent batches to `High` lanes first.
///
/// On CUDA a `High` lane is a stream at the device's most urgent stream priority and a
/// `Normal` one at its least urgent; on the CPU the class only steers routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum LanePriority {
    /// Takes urgent work first (and ordinary work when nothing is urgent).
    High,
    /// Ordinary lane: leaves urgent work to an idle `High` lane.
    #[default]
    Normal,
}

impl LanePriority {
    /// The class of lane `index` of `lanes` when priorities are on: one in four lanes
    /// (at least one, never all of two or more) is `High`, the first ones.
    pub fn split(index: usize, lanes: usize) -> LanePriority {
        let high = if lanes < 2 { 0 } else { lanes.div_ceil(4) };
        if index < high {
            LanePriority::High
        } else {
            LanePriority::Normal
        }
    }
}

/// One execution context of the slice: every op of a batch is issued on its lane.
#[derive(Clone)]
pub struct Lane {
    /// Position of this lane among the runtime's lanes.
    pub index: usize,
    /// CPU thread or CUDA stream.
    pub kind: LaneKind,
    /// Priority class the scheduler routes by (set at creation).
    pub priority: LanePriority,
}

impl Lane {
    /// A CPU lane with the given index, of the `Normal` class.
    pub fn cpu(index: usize) -> Self {
        Lane {
            index,
            kind: LaneKind::Cpu,
            priority: LanePriority::Normal,
        }
    }

    /// The same lane in priority class `priority`.
    pub fn with_priority(mut self, priority: LanePriority) -> Self {
        self.priority = priority;
        self
    }
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            LaneKind::Cpu => "cpu",
            LaneKind::Cuda(_) => "cuda",
        };
        let class = match self.priority {
            LanePriority::High => "+high",
            LanePriority::Normal => "",
        };
        write!(f, "Lane({kind}#{}{class})", self.index)
    }
}
