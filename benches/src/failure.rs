//! Why a request failed, as the client saw it: the [`FailKind`] every target reports and
//! every report counts by.

use std::fmt;

/// Why one request failed, as the client saw it; the label keys the error counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailKind {
    /// The server answered with a non-success HTTP status.
    Http(u16),
    /// The server answered with a non-OK gRPC status (its code name).
    Grpc(String),
    /// The in-process runtime returned an error of this kind (its label).
    Runtime(&'static str),
    /// Connecting, sending or reading failed (no status).
    Transport,
    /// The client gave up waiting.
    Timeout,
    /// The client refused to send: too many requests outstanding (open loop only).
    ClientDrop,
}

impl FailKind {
    /// A stable label such as `http_503`, `grpc_unavailable`, `runtime_overloaded`.
    pub fn label(&self) -> String {
        match self {
            FailKind::Http(s) => format!("http_{s}"),
            FailKind::Grpc(c) => format!("grpc_{c}"),
            FailKind::Runtime(k) => format!("runtime_{k}"),
            FailKind::Transport => "transport".into(),
            FailKind::Timeout => "timeout".into(),
            FailKind::ClientDrop => "client_drop".into(),
        }
    }
}

impl fmt::Display for FailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}
