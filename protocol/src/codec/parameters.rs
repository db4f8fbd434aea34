//! The `parameters` objects of requests, tensors and outputs: typed look-ups that name
//! what carried a value of the wrong type.

use cohost_runtime::Error;
use serde_json::{Map, Value};

/// A `parameters` object as parsed (absent when the JSON has none).
pub(super) type Parameters = Option<Map<String, Value>>;

fn get<'a>(params: &'a Parameters, key: &str) -> Option<&'a Value> {
    params.as_ref().and_then(|p| p.get(key))
}

/// The boolean parameter `key` of `what`, if present.
pub(super) fn boolean(params: &Parameters, key: &str, what: &str) -> Result<Option<bool>, Error> {
    match get(params, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(Error::invalid(format!(
            "{what}: parameter '{key}' must be a boolean, got {v}"
        ))),
    }
}

/// The non-negative integer parameter `key` of `what` (a number or a decimal string), if
/// present.
pub(super) fn unsigned(params: &Parameters, key: &str, what: &str) -> Result<Option<u64>, Error> {
    match get(params, key) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(v) => Err(Error::invalid(format!(
            "{what}: parameter '{key}' must be a non-negative integer, got {v}"
        ))),
    }
}
