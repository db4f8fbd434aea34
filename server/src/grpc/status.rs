//! The one mapping from the runtime's [`ErrorKind`] to a gRPC status code.

use cohost_runtime::{Error, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code for a runtime error kind.
pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Overloaded => Code::ResourceExhausted,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
        // A kind a newer runtime adds: answered as an internal error.
        _ => Code::Internal,
    }
}

/// A runtime error as a gRPC status carrying the runtime's message.
pub fn to_status(err: Error) -> Status {
    Status::new(code_for(err.kind), err.message)
}

/// An INVALID_ARGUMENT status for a request the transport itself rejects.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_code() {
        let cases = [
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::Overloaded, Code::ResourceExhausted),
            (ErrorKind::DeadlineExceeded, Code::DeadlineExceeded),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in cases {
            let s = to_status(Error::new(kind, "m"));
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), "m");
        }
    }
}
