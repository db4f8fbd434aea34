//! The one error type of the runtime; protocol layers map [`ErrorKind`] once each.

use std::fmt;

/// What class of failure an [`Error`] is, for mapping to HTTP status and gRPC code.
///
/// New kinds may be added: a protocol layer's `match` needs a wildcard arm (map it as
/// [`ErrorKind::Internal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The model, version or tensor does not exist.
    NotFound,
    /// The request is malformed or does not fit the model's signature.
    InvalidArgument,
    /// A queue is full or a deadline cannot be met: retry later or elsewhere.
    Overloaded,
    /// The request's own deadline passed before it could be served.
    DeadlineExceeded,
    /// The model or runtime is not ready (loading, unloading, shutting down, device lost).
    Unavailable,
    /// A failure inside the runtime or a model's execution.
    Internal,
}

impl ErrorKind {
    /// A short stable label for metrics (`reason="overloaded"`).
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A runtime error: a kind a protocol can map and a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What went wrong, naming the model, tensor or key involved.
    pub message: String,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// Not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Invalid argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    /// Overloaded.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }
    /// Unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Internal.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl From<cohost_models::ModelError> for Error {
    fn from(e: cohost_models::ModelError) -> Self {
        use cohost_models::ModelError as M;
        match e {
            M::Config(_) | M::Weights(_) | M::Memory(_) => Error::invalid(e.to_string()),
            M::Input(m) => Error::invalid(m),
            M::Kernel(k) => match k {
                cohost_kernels::KernelError::IndexOutOfRange { .. } => {
                    Error::invalid(k.to_string())
                }
                cohost_kernels::KernelError::Unavailable(_) => Error::unavailable(k.to_string()),
                _ => Error::internal(k.to_string()),
            },
        }
    }
}
