//! The oracle of the streaming JSON `data` decoder: the `serde_json::Value`-tree conversion
//! it replaced, for the differential tests and the `json_data_diff` fuzz target (feature
//! `oracle`).

use cohost_runtime::{DataType, Error, TensorData};
use half::{bf16, f16};
use serde_json::Value;

/// The `Value`-tree conversion of a tensor's JSON `data` that the streaming decoder
/// replaced, kept as its oracle.
pub fn old_json_data(dt: DataType, value: &Value, what: &str) -> Result<TensorData, Error> {
    fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
            other => out.push(other),
        }
    }
    let mut flat = Vec::new();
    flatten(value, &mut flat);
    let bad = |i: usize, v: &Value| {
        Error::invalid(format!(
            "{what}: element {i} ({v}) is not a valid {dt} value"
        ))
    };
    macro_rules! conv {
        ($variant:ident, $f:expr) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| $f(v).ok_or_else(|| bad(i, v)))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    let int = |v: &Value| v.as_i64();
    let uint = |v: &Value| v.as_u64();
    Ok(match dt {
        DataType::BOOL => conv!(Bool, |v: &Value| v.as_bool()),
        DataType::UINT8 => conv!(U8, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT16 => conv!(U16, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT32 => conv!(U32, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT64 => conv!(U64, uint),
        DataType::INT8 => conv!(I8, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT16 => conv!(I16, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT32 => conv!(I32, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT64 => conv!(I64, int),
        DataType::FP16 => conv!(F16, |v: &Value| v.as_f64().map(f16::from_f64)),
        DataType::BF16 => conv!(BF16, |v: &Value| v.as_f64().map(bf16::from_f64)),
        DataType::FP32 => conv!(F32, |v: &Value| v.as_f64().map(|x| x as f32)),
        DataType::FP64 => conv!(F64, |v: &Value| v.as_f64()),
        DataType::BYTES => conv!(Bytes, |v: &Value| v.as_str().map(|s| s.as_bytes().to_vec())),
    })
}
