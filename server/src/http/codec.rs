//! KServe v2 inference request/response bodies: JSON tensors and the binary tensor
//! extension (`Inference-Header-Content-Length`, `binary_data_size`, little-endian data).

use super::errors::ApiError;
use cohost_runtime::{DataType, InferRequest, InferResponse, Tensor, TensorData};
use half::{bf16, f16};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// A decoded request plus how each output should be returned.
pub struct Decoded {
    /// The request for the runtime.
    pub request: InferRequest,
    /// Outputs to return as binary data, by name; `all_binary` covers the unnamed ones.
    binary_outputs: Vec<(String, bool)>,
    all_binary: bool,
}

fn param<'a>(params: &'a Option<Map<String, Value>>, key: &str) -> Option<&'a Value> {
    params.as_ref().and_then(|p| p.get(key))
}

fn param_bool(
    params: &Option<Map<String, Value>>,
    key: &str,
    what: &str,
) -> Result<Option<bool>, ApiError> {
    match param(params, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::invalid(format!(
            "{what}: parameter '{key}' must be a boolean, got {v}"
        ))),
    }
}

fn param_u64(
    params: &Option<Map<String, Value>>,
    key: &str,
    what: &str,
) -> Result<Option<u64>, ApiError> {
    match param(params, key) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(v) => Err(ApiError::invalid(format!(
            "{what}: parameter '{key}' must be a non-negative integer, got {v}"
        ))),
    }
}

/// Decodes a request body: JSON, or JSON header plus binary tensors when
/// `header_length` (the `Inference-Header-Content-Length` value) is given.
pub fn decode(body: &[u8], header_length: Option<&str>) -> Result<Decoded, ApiError> {
    let (json_part, mut binary) = match header_length {
        None => (body, &[][..]),
        Some(h) => {
            let n: usize = h.trim().parse().map_err(|_| {
                ApiError::invalid(format!(
                    "Inference-Header-Content-Length '{h}' is not a non-negative integer"
                ))
            })?;
            if n > body.len() {
                return Err(ApiError::invalid(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes \
                     (truncated binary payload?)",
                    body.len()
                )));
            }
            body.split_at(n)
        }
    };
    let req: RequestJson = serde_json::from_slice(json_part)
        .map_err(|e| ApiError::invalid(format!("malformed inference request JSON: {e}")))?;

    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let what = format!("input '{}'", input.name);
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            ApiError::invalid(format!(
                "{what}: unknown datatype '{}' (expected one of BOOL, INT8..INT64, UINT8..UINT64, \
                 FP16, BF16, FP32, FP64, BYTES)",
                input.datatype
            ))
        })?;
        let expected = Tensor::shape_elements(&input.shape).ok_or_else(|| {
            ApiError::invalid(format!(
                "{what}: invalid shape {:?}: dims must be non-negative",
                input.shape
            ))
        })?;
        let data = match (
            param_u64(&input.parameters, "binary_data_size", &what)?,
            &input.data,
        ) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(format!(
                    "{what}: has both 'data' and the 'binary_data_size' parameter"
                )));
            }
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if header_length.is_none() {
                    return Err(ApiError::invalid(format!(
                        "{what}: binary_data_size given but the Inference-Header-Content-Length \
                         header is missing"
                    )));
                }
                if size > binary.len() {
                    return Err(ApiError::invalid(format!(
                        "truncated binary payload: {what} declares binary_data_size {size} but \
                         only {} bytes remain",
                        binary.len()
                    )));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_le_bytes(datatype, raw, &what)?
            }
            (None, Some(value)) => json_data(datatype, value, &what, expected)?,
            (None, None) => {
                return Err(ApiError::invalid(format!(
                    "{what}: has neither 'data' nor a 'binary_data_size' parameter"
                )));
            }
        };
        if data.len() != expected {
            return Err(ApiError::invalid(format!(
                "{what}: shape {:?} implies {expected} elements but {} were given",
                input.shape,
                data.len()
            )));
        }
        inputs.push(Tensor::new(input.name.clone(), input.shape.clone(), data));
    }
    if !binary.is_empty() {
        return Err(ApiError::invalid(format!(
            "{} bytes after the JSON header are not claimed by any input's binary_data_size",
            binary.len()
        )));
    }

    let timeout = param_u64(&req.parameters, "timeout", "request")?.map(Duration::from_micros);
    let all_binary = param_bool(&req.parameters, "binary_data_output", "request")?.unwrap_or(false);
    let mut binary_outputs = Vec::new();
    let mut outputs = Vec::new();
    for out in req.outputs.unwrap_or_default() {
        let what = format!("output '{}'", out.name);
        let b = param_bool(&out.parameters, "binary_data", &what)?.unwrap_or(all_binary);
        binary_outputs.push((out.name.clone(), b));
        outputs.push(out.name);
    }
    Ok(Decoded {
        request: InferRequest {
            id: req.id,
            inputs,
            outputs,
            timeout,
        },
        binary_outputs,
        all_binary,
    })
}

/// Flattens nested or flat JSON `data` into typed elements.
fn json_data(dt: DataType, value: &Value, what: &str, hint: usize) -> Result<TensorData, ApiError> {
    let mut flat = Vec::with_capacity(hint);
    flatten(value, &mut flat);
    let bad = |i: usize, v: &Value| {
        ApiError::invalid(format!(
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

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

fn json_elements(data: &TensorData) -> Value {
    fn arr<T: Copy>(v: &[T], f: impl Fn(T) -> Value) -> Value {
        Value::Array(v.iter().map(|&x| f(x)).collect())
    }
    match data {
        TensorData::Bool(v) => arr(v, Value::from),
        TensorData::U8(v) => arr(v, Value::from),
        TensorData::U16(v) => arr(v, Value::from),
        TensorData::U32(v) => arr(v, Value::from),
        TensorData::U64(v) => arr(v, Value::from),
        TensorData::I8(v) => arr(v, Value::from),
        TensorData::I16(v) => arr(v, Value::from),
        TensorData::I32(v) => arr(v, Value::from),
        TensorData::I64(v) => arr(v, Value::from),
        TensorData::F16(v) => arr(v, |x| Value::from(x.to_f64())),
        TensorData::BF16(v) => arr(v, |x| Value::from(x.to_f64())),
        TensorData::F32(v) => arr(v, |x| Value::from(x as f64)),
        TensorData::F64(v) => arr(v, Value::from),
        TensorData::Bytes(v) => Value::Array(
            v.iter()
                .map(|b| Value::from(String::from_utf8_lossy(b)))
                .collect(),
        ),
    }
}

/// An encoded response body and, for the binary extension, its JSON header length.
pub struct Encoded {
    /// The body bytes.
    pub body: Vec<u8>,
    /// `Some(json_len)` when binary tensors follow the JSON.
    pub header_length: Option<usize>,
}

impl Decoded {
    fn wants_binary(&self, name: &str) -> bool {
        self.binary_outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| *b)
            .unwrap_or(self.all_binary)
    }

    /// Encodes the runtime's response the way this request asked for.
    pub fn encode(&self, resp: &InferResponse) -> Encoded {
        let mut tail = Vec::new();
        let outputs: Vec<Value> = resp
            .outputs
            .iter()
            .map(|t| {
                let mut o = json!({
                    "name": t.name,
                    "datatype": t.datatype().as_str(),
                    "shape": t.shape,
                });
                if self.wants_binary(&t.name) {
                    let raw = t.data.to_le_bytes();
                    o["parameters"] = json!({ "binary_data_size": raw.len() });
                    tail.extend_from_slice(&raw);
                } else {
                    o["data"] = json_elements(&t.data);
                }
                o
            })
            .collect();
        let mut head = json!({
            "model_name": resp.model_name,
            "model_version": resp.model_version.to_string(),
            "outputs": outputs,
        });
        if let Some(id) = &resp.id {
            head["id"] = Value::from(id.as_str());
        }
        let mut body = serde_json::to_vec(&head).expect("JSON values serialise");
        let header_length = if tail.is_empty()
            && !self.binary_outputs.iter().any(|(_, b)| *b)
            && !self.all_binary
        {
            None
        } else {
            let n = body.len();
            body.extend_from_slice(&tail);
            Some(n)
        };
        Encoded {
            body,
            header_length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str, header: Option<&str>) -> String {
        match decode(body.as_bytes(), header) {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn nested_and_typed_json_data() {
        let body = r#"{"inputs":[
            {"name":"a","shape":[2,2],"datatype":"FP16","data":[[1,2],[3,0.5]]},
            {"name":"b","shape":[3],"datatype":"INT8","data":[-1,0,127]}],
            "parameters":{"timeout":1500}}"#;
        let d = decode(body.as_bytes(), None).unwrap();
        let r = &d.request;
        assert_eq!(r.timeout, Some(Duration::from_micros(1500)));
        assert_eq!(
            r.inputs[0].data,
            TensorData::F16([1.0, 2.0, 3.0, 0.5].map(f16::from_f32).to_vec())
        );
        assert_eq!(r.inputs[1].data, TensorData::I8(vec![-1, 0, 127]));
    }

    #[test]
    fn problems_are_named() {
        let m = err(
            r#"{"inputs":[{"name":"b","shape":[1],"datatype":"INT8","data":[300]}]}"#,
            None,
        );
        assert!(
            m.contains("input 'b'") && m.contains("300") && m.contains("INT8"),
            "{m}"
        );
        let m = err(
            r#"{"inputs":[{"name":"c","shape":[-1],"datatype":"FP32","data":[]}]}"#,
            None,
        );
        assert!(m.contains("input 'c'") && m.contains("non-negative"), "{m}");
        let m = err(
            r#"{"inputs":[{"name":"d","shape":[1],"datatype":"FP32"}]}"#,
            None,
        );
        assert!(m.contains("neither"), "{m}");
        let m = err(r#"{"inputs":[],"parameters":{"timeout":"soon"}}"#, None);
        assert!(m.contains("timeout"), "{m}");
    }

    #[test]
    fn binary_inputs_must_account_for_every_byte() {
        let head = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = head.as_bytes().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let n = head.len().to_string();
        let d = decode(&body, Some(&n)).unwrap();
        assert_eq!(d.request.inputs[0].data, TensorData::I32(vec![1, 2]));
        body.push(9);
        let m = decode(&body, Some(&n)).err().unwrap().message;
        assert!(m.contains("1 bytes after the JSON header"), "{m}");
        let m = decode(head.as_bytes(), None).err().unwrap().message;
        assert!(m.contains("Inference-Header-Content-Length"), "{m}");
    }
}
