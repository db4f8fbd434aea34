//! KServe v2 inference request/response bodies: JSON tensors and the binary tensor
//! extension (`Inference-Header-Content-Length`, `binary_data_size`, little-endian data).

use super::errors::ApiError;
use cohost_runtime::{DataType, InferRequest, InferResponse, Tensor, TensorData};
use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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
    data: Option<JsonData>,
}

/// One element of a JSON `data` array, as parsed: the scalars a tensor can hold without a
/// `Value` each, anything else (strings, null, objects) as the `Value` it is.
#[derive(Debug)]
enum Scalar {
    Bool(bool),
    /// A non-negative integer (what `Value` keeps as a positive integer).
    U64(u64),
    /// A negative integer.
    I64(i64),
    F64(f64),
    Other(Value),
}

impl Scalar {
    fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// As `Value::as_i64`: integers in range, never floats.
    fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::U64(u) => i64::try_from(u).ok(),
            Scalar::I64(i) => Some(i),
            _ => None,
        }
    }

    /// As `Value::as_u64`: non-negative integers, never floats.
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::U64(u) => Some(u),
            _ => None,
        }
    }

    /// As `Value::as_f64`: any number.
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(u) => Some(u as f64),
            Scalar::I64(i) => Some(i as f64),
            Scalar::F64(f) => Some(f),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Other(v) => v.as_str(),
            _ => None,
        }
    }

    /// The element as `Value` displays it (for error messages).
    fn to_value(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::from(*b),
            Scalar::U64(u) => Value::from(*u),
            Scalar::I64(i) => Value::from(*i),
            Scalar::F64(f) => Value::from(*f),
            Scalar::Other(v) => v.clone(),
        }
    }
}

/// A tensor's JSON `data`, nested arrays flattened row-major while parsing (no `Value`
/// tree); a lone scalar is one element, as before.
#[derive(Debug, Default)]
struct JsonData(Vec<Scalar>);

impl<'de> Deserialize<'de> for JsonData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        d.deserialize_any(Flatten(&mut out))?;
        Ok(JsonData(out))
    }
}

/// Appends one JSON value's scalars to the vector (recursing into arrays).
struct Flatten<'a>(&'a mut Vec<Scalar>);

impl<'de> serde::de::DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("tensor data (a value or nested arrays of values)")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push(Scalar::Bool(v));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(Scalar::U64(v));
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        // serde_json hands non-negative integers to visit_u64; keep `Value`'s split anyway.
        self.0.push(match u64::try_from(v) {
            Ok(u) => Scalar::U64(u),
            Err(_) => Scalar::I64(v),
        });
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // As `Value`: a float JSON cannot represent would be null.
        self.0.push(if v.is_finite() {
            Scalar::F64(v)
        } else {
            Scalar::Other(Value::Null)
        });
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(Scalar::Other(Value::String(v.to_owned())));
        Ok(())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.0.push(Scalar::Other(Value::String(v)));
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.push(Scalar::Other(Value::Null));
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.reserve(n);
        }
        while seq.next_element_seed(Flatten(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.0.push(Scalar::Other(v));
        Ok(())
    }
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
            (None, Some(value)) => json_data(datatype, value, &what)?,
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

/// Converts flattened JSON `data` into typed elements.
fn json_data(dt: DataType, data: &JsonData, what: &str) -> Result<TensorData, ApiError> {
    let flat = &data.0;
    let bad = |i: usize, v: &Scalar| {
        ApiError::invalid(format!(
            "{what}: element {i} ({}) is not a valid {dt} value",
            v.to_value()
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
    let int = |v: &Scalar| v.as_i64();
    let uint = |v: &Scalar| v.as_u64();
    Ok(match dt {
        DataType::BOOL => conv!(Bool, |v: &Scalar| v.as_bool()),
        DataType::UINT8 => conv!(U8, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT16 => conv!(U16, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT32 => conv!(U32, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT64 => conv!(U64, uint),
        DataType::INT8 => conv!(I8, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT16 => conv!(I16, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT32 => conv!(I32, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT64 => conv!(I64, int),
        DataType::FP16 => conv!(F16, |v: &Scalar| v.as_f64().map(f16::from_f64)),
        DataType::BF16 => conv!(BF16, |v: &Scalar| v.as_f64().map(bf16::from_f64)),
        DataType::FP32 => conv!(F32, |v: &Scalar| v.as_f64().map(|x| x as f32)),
        DataType::FP64 => conv!(F64, |v: &Scalar| v.as_f64()),
        DataType::BYTES => conv!(Bytes, |v: &Scalar| v
            .as_str()
            .map(|s| s.as_bytes().to_vec())),
    })
}

/// A tensor's elements as a JSON array, written straight to the output (no `Value` per
/// element); numbers print exactly as `serde_json::Value` would print them.
struct Elements<'a>(&'a TensorData);

impl Serialize for Elements<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn seq<S: serde::Serializer, T: Copy, U: Serialize>(
            s: S,
            v: &[T],
            f: impl Fn(T) -> U,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|&x| f(x)))
        }
        match self.0 {
            TensorData::Bool(v) => seq(s, v, |x| x),
            TensorData::U8(v) => seq(s, v, u64::from),
            TensorData::U16(v) => seq(s, v, u64::from),
            TensorData::U32(v) => seq(s, v, u64::from),
            TensorData::U64(v) => seq(s, v, |x| x),
            TensorData::I8(v) => seq(s, v, i64::from),
            TensorData::I16(v) => seq(s, v, i64::from),
            TensorData::I32(v) => seq(s, v, i64::from),
            TensorData::I64(v) => seq(s, v, |x| x),
            // serde_json writes a non-finite float as null, as `Value::from(f64)` does.
            TensorData::F16(v) => seq(s, v, |x| x.to_f64()),
            TensorData::BF16(v) => seq(s, v, |x| x.to_f64()),
            TensorData::F32(v) => seq(s, v, f64::from),
            TensorData::F64(v) => seq(s, v, |x| x),
            TensorData::Bytes(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

/// `{"binary_data_size": n}`.
#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// One output in the response JSON. Keys in sorted order, as the `Value` maps this
/// replaced wrote them (clients may rely on byte-identical bodies).
#[derive(Serialize)]
struct OutputHead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Elements<'a>>,
    datatype: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    shape: &'a [i64],
}

/// The response JSON (keys sorted, see [`OutputHead`]).
#[derive(Serialize)]
struct ResponseHead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    model_name: &'a str,
    model_version: String,
    outputs: Vec<OutputHead<'a>>,
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
        let mut tail: Vec<u8> = Vec::new();
        let outputs = resp
            .outputs
            .iter()
            .map(|t| {
                let binary = self.wants_binary(&t.name);
                let parameters = binary.then(|| {
                    let start = tail.len();
                    t.data.write_le_bytes(&mut tail);
                    BinaryParameters {
                        binary_data_size: tail.len() - start,
                    }
                });
                OutputHead {
                    data: (!binary).then_some(Elements(&t.data)),
                    datatype: t.datatype().as_str(),
                    name: &t.name,
                    parameters,
                    shape: &t.shape,
                }
            })
            .collect();
        let head = ResponseHead {
            id: resp.id.as_deref(),
            model_name: &resp.model_name,
            model_version: resp.model_version.to_string(),
            outputs,
        };
        let mut body = Vec::with_capacity(256 + tail.len());
        serde_json::to_writer(&mut body, &head).expect("the response head serialises");
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
mod tests;
