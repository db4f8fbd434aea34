use std::fmt;

/// The result type of every op.
pub type Result<T> = std::result::Result<T, KernelError>;

/// What can go wrong inside an op.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    /// Operand shapes do not fit together.
    Shape(String),
    /// An embedding index outside its table.
    IndexOutOfRange {
        table: String,
        index: i64,
        rows: usize,
    },
    /// The CPU backend (candle) failed.
    Cpu(String),
    /// A CUDA driver, NVRTC or cuBLAS call failed.
    Cuda(String),
    /// The backend cannot be used on this machine (library or device missing).
    Unavailable(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Shape(m) => write!(f, "shape mismatch: {m}"),
            KernelError::IndexOutOfRange { table, index, rows } => write!(
                f,
                "index {index} is outside embedding table '{table}' (valid: 0..{rows})"
            ),
            KernelError::Cpu(m) => write!(f, "cpu op failed: {m}"),
            KernelError::Cuda(m) => write!(f, "cuda op failed: {m}"),
            KernelError::Unavailable(m) => write!(f, "backend unavailable: {m}"),
        }
    }
}

impl std::error::Error for KernelError {}

impl From<candle_core::Error> for KernelError {
    fn from(e: candle_core::Error) -> Self {
        KernelError::Cpu(e.to_string())
    }
}
