//! What a caught panic says: the message lanes, the scheduler and the queue log and
//! answer with when they recover from one.

use std::any::Any;

/// The message a panic carried (`&str` or `String` payloads), else "unknown panic".
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
