//! Differential: a tensor's JSON `data` through the streaming decoder
//! (`codec::elements`, reached through `decode_request`) against the
//! `serde_json::Value`-tree conversion it replaced (kept as the oracle in
//! `protocol/src/codec/tests.rs`, copied below). For every datatype both must accept the
//! same values with the same elements, or refuse with the same message.
#![no_main]

use cohost_protocol::codec::decode_request;
use cohost_runtime::{DataType, Error, TensorData};
use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The `Value`-based conversion `protocol/src/codec/tests.rs` keeps as the oracle.
fn old_json_data(dt: DataType, value: &Value, what: &str) -> Result<TensorData, Error> {
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Only texts that are one JSON value: embedded as `data` they cannot escape it.
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if value.is_null() {
        return; // `"data": null` is no data, refused before any conversion.
    }
    for dt in DataType::ALL {
        let old = old_json_data(dt, &value, "input 'x'");
        let shape = match &old {
            Ok(d) => d.len(),
            Err(_) => 1,
        };
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[{shape}],"datatype":"{dt}","data":{text}}}]}}"#
        );
        let new = decode_request(body.as_bytes(), None);
        match (old, new) {
            (Ok(a), Ok(b)) => {
                let b = &b.request.inputs[0].data;
                assert_eq!(a.datatype(), b.datatype());
                assert_eq!(a.to_le_bytes(), b.to_le_bytes(), "{dt} {text}");
            }
            (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{dt} {text}"),
            // Nested three levels deeper, the body can pass serde_json's recursion limit
            // where the value alone did not.
            (Ok(_), Err(b)) if b.message.contains("recursion limit") => {}
            (a, b) => panic!("{dt} {text}: old {a:?} new {:?}", b.map(|d| d.request)),
        }
    }
});
