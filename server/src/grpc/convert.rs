//! Tensors at the gRPC edge: `ModelInferRequest` → [`InferRequest`] (typed
//! `InferTensorContents` or `raw_input_contents`) and [`InferResponse`] →
//! `ModelInferResponse` (raw or typed, mirroring the request).

use super::status::invalid;
use cohost_protocol::inference as pb;
use cohost_runtime::{DataType, InferRequest, InferResponse, Tensor, TensorData};
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::InferInputTensor;
use pb::model_infer_response::InferOutputTensor;
use std::collections::HashMap;
use std::time::Duration;
use tonic::Status;

/// A decoded request: the version asked for, the runtime request, and the output form.
#[derive(Debug)]
pub struct Decoded {
    /// The requested version (None: the model's default).
    pub version: Option<u64>,
    /// The runtime request.
    pub request: InferRequest,
    /// Answer with `raw_output_contents` (else typed contents).
    pub raw_outputs: bool,
}

/// Parses a version string ("" = default version).
pub fn parse_version(model: &str, version: &str) -> Result<Option<u64>, Status> {
    if version.is_empty() {
        return Ok(None);
    }
    version.parse::<u64>().map(Some).map_err(|_| {
        invalid(format!(
            "model '{model}': version '{version}' is not a non-negative integer"
        ))
    })
}

/// Parses a `grpc-timeout` header value ("100m", "5S", "250000u", ...) as the gRPC
/// HTTP/2 protocol defines it: 1 to 8 ASCII digits and one of the units H M S m u n.
/// Anything else is None (malformed).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    // Only ASCII can match, and splitting a multi-byte last character would panic.
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most 99_999_999, so no unit overflows a Duration.
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Decodes a `ModelInferRequest`; `header_timeout` comes from `grpc-timeout`.
pub fn decode_request(
    req: pb::ModelInferRequest,
    header_timeout: Option<Duration>,
) -> Result<Decoded, Status> {
    let model = req.model_name.as_str();
    let version = parse_version(model, &req.model_version)?;
    let param_timeout = timeout_param(model, &req.parameters)?;
    let timeout = match (param_timeout, header_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let raw = !req.raw_input_contents.is_empty();
    if raw && req.raw_input_contents.len() != req.inputs.len() {
        return Err(invalid(format!(
            "model '{model}': {} raw_input_contents entries for {} inputs; send one per input, in order",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    let raw_outputs = match req
        .parameters
        .get("binary_data_output")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        Some(ParameterChoice::BoolParam(b)) => *b,
        _ => raw,
    };
    let mut inputs = Vec::with_capacity(req.inputs.len());
    let mut raw_contents = req.raw_input_contents.into_iter();
    for input in req.inputs {
        let bytes = raw_contents.next();
        inputs.push(decode_input(input, bytes.as_deref())?);
    }
    let request = InferRequest {
        id: (!req.id.is_empty()).then_some(req.id),
        inputs,
        outputs: req.outputs.into_iter().map(|o| o.name).collect(),
        timeout,
    };
    Ok(Decoded {
        version,
        request,
        raw_outputs,
    })
}

/// The request's `timeout` parameter in microseconds (0 or absent: none, as Triton reads
/// it, and as the HTTP transport does).
fn timeout_param(
    model: &str,
    params: &HashMap<String, pb::InferParameter>,
) -> Result<Option<Duration>, Status> {
    let us = match params
        .get("timeout")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => return Ok(None),
        Some(ParameterChoice::Int64Param(v)) if *v >= 0 => *v as u64,
        Some(ParameterChoice::Uint64Param(v)) => *v,
        Some(other) => {
            return Err(invalid(format!(
                "model '{model}': parameter 'timeout' must be a non-negative int64 of microseconds, got {other:?}"
            )));
        }
    };
    Ok((us > 0).then(|| Duration::from_micros(us)))
}

/// Decodes one input tensor from its typed contents or its raw bytes.
fn decode_input(t: InferInputTensor, raw: Option<&[u8]>) -> Result<Tensor, Status> {
    let name = t.name;
    let what = format!("input '{name}'");
    let datatype = DataType::parse(&t.datatype)
        .ok_or_else(|| invalid(format!("{what}: unknown datatype '{}'", t.datatype)))?;
    let elements = Tensor::shape_elements(&t.shape).ok_or_else(|| {
        invalid(format!(
            "{what}: shape {:?} has a negative or too large dimension",
            t.shape
        ))
    })?;
    let data = match raw {
        Some(bytes) => {
            if t.contents.is_some() {
                return Err(invalid(format!(
                    "{what}: both contents and raw_input_contents are set; use one form for all inputs"
                )));
            }
            if let Some(size) = datatype.size() {
                let want = elements.saturating_mul(size);
                if bytes.len() != want {
                    return Err(invalid(format!(
                        "{what}: raw_input_contents holds {} bytes but shape {:?} of {datatype} needs {want} bytes",
                        bytes.len(),
                        t.shape
                    )));
                }
            }
            TensorData::from_le_bytes(datatype, bytes, &what).map_err(super::status::to_status)?
        }
        None => typed(datatype, t.contents.unwrap_or_default(), &what)?,
    };
    if data.len() != elements {
        return Err(invalid(format!(
            "{what}: {} elements given but shape {:?} needs {elements}",
            data.len(),
            t.shape
        )));
    }
    Ok(Tensor::new(name, t.shape, data))
}

/// Which typed-contents fields hold data, by protocol field name.
fn filled(c: &pb::InferTensorContents) -> Vec<&'static str> {
    let mut v = Vec::new();
    let fields = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    for (name, len) in fields {
        if len > 0 {
            v.push(name);
        }
    }
    v
}

/// The typed-contents field a datatype travels in (None: raw only).
fn field_for(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::BOOL => "bool_contents",
        DataType::INT8 | DataType::INT16 | DataType::INT32 => "int_contents",
        DataType::INT64 => "int64_contents",
        DataType::UINT8 | DataType::UINT16 | DataType::UINT32 => "uint_contents",
        DataType::UINT64 => "uint64_contents",
        DataType::FP32 => "fp32_contents",
        DataType::FP64 => "fp64_contents",
        DataType::BYTES => "bytes_contents",
        DataType::FP16 | DataType::BF16 => return None,
    })
}

/// Narrows 32-bit typed contents to a smaller integer type, naming the first bad value.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    v: Vec<S>,
    what: &str,
    datatype: DataType,
) -> Result<Vec<T>, Status> {
    v.into_iter()
        .map(|x| {
            T::try_from(x)
                .map_err(|_| invalid(format!("{what}: value {x} is out of range for {datatype}")))
        })
        .collect()
}

/// Decodes typed contents of `datatype`.
fn typed(datatype: DataType, c: pb::InferTensorContents, what: &str) -> Result<TensorData, Status> {
    let present = filled(&c);
    let Some(field) = field_for(datatype) else {
        return Err(invalid(format!(
            "{what}: {datatype} has no typed contents field; send it in raw_input_contents"
        )));
    };
    if let Some(wrong) = present.iter().find(|f| **f != field) {
        return Err(invalid(format!(
            "{what}: datatype {datatype} is carried in {field}, but {wrong} was set"
        )));
    }
    Ok(match datatype {
        DataType::BOOL => TensorData::Bool(c.bool_contents),
        DataType::INT8 => TensorData::I8(narrow(c.int_contents, what, datatype)?),
        DataType::INT16 => TensorData::I16(narrow(c.int_contents, what, datatype)?),
        DataType::INT32 => TensorData::I32(c.int_contents),
        DataType::INT64 => TensorData::I64(c.int64_contents),
        DataType::UINT8 => TensorData::U8(narrow(c.uint_contents, what, datatype)?),
        DataType::UINT16 => TensorData::U16(narrow(c.uint_contents, what, datatype)?),
        DataType::UINT32 => TensorData::U32(c.uint_contents),
        DataType::UINT64 => TensorData::U64(c.uint64_contents),
        DataType::FP32 => TensorData::F32(c.fp32_contents),
        DataType::FP64 => TensorData::F64(c.fp64_contents),
        DataType::BYTES => TensorData::Bytes(c.bytes_contents),
        DataType::FP16 | DataType::BF16 => unreachable!("no typed field"),
    })
}

/// True when `data`'s datatype has a typed-contents field (all but FP16 and BF16).
fn has_typed_field(data: &TensorData) -> bool {
    !matches!(data, TensorData::F16(_) | TensorData::BF16(_))
}

/// Typed contents holding `data` (moved, not copied, where the field's type matches);
/// only for datatypes with a typed field (see [`has_typed_field`]).
fn contents(data: TensorData) -> pb::InferTensorContents {
    let mut c = pb::InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::I8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I32(v) => c.int_contents = v,
        TensorData::I64(v) => c.int64_contents = v,
        TensorData::U8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U32(v) => c.uint_contents = v,
        TensorData::U64(v) => c.uint64_contents = v,
        TensorData::F32(v) => c.fp32_contents = v,
        TensorData::F64(v) => c.fp64_contents = v,
        TensorData::Bytes(v) => c.bytes_contents = v,
        TensorData::F16(_) | TensorData::BF16(_) => unreachable!("no typed field"),
    }
    c
}

/// Encodes a response; typed contents unless `raw` or an output has no typed field.
pub fn encode_response(resp: InferResponse, raw: bool) -> pb::ModelInferResponse {
    let typed = !raw && resp.outputs.iter().all(|t| has_typed_field(&t.data));
    let mut out = pb::ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version.to_string(),
        id: resp.id.unwrap_or_default(),
        outputs: Vec::with_capacity(resp.outputs.len()),
        ..Default::default()
    };
    for t in resp.outputs {
        let datatype = t.data.datatype().as_str().to_string();
        let c = if typed {
            Some(contents(t.data))
        } else {
            out.raw_output_contents.push(t.data.to_le_bytes());
            None
        };
        out.outputs.push(InferOutputTensor {
            name: t.name,
            datatype,
            shape: t.shape,
            parameters: HashMap::new(),
            contents: c,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<pb::InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape,
            contents,
            ..Default::default()
        }
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse_grpc_timeout("0m"), Some(Duration::ZERO));
        for bad in [
            "10000000000000000000S",
            "123456789m",
            "S",
            "+5S",
            "-5S",
            "5s",
            "5",
            " 5S",
            "5 S",
            // Found by the grpc_timeout fuzz target: a multi-byte last character panicked.
            "x\u{6d8}",
            "5\u{e9}",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn typed_and_raw_agree() {
        let c = pb::InferTensorContents {
            fp32_contents: vec![1.0, 2.5],
            ..Default::default()
        };
        let a = decode_input(input("FP32", vec![1, 2], Some(c)), None).unwrap();
        let raw: Vec<u8> = [1.0f32, 2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = decode_input(input("FP32", vec![1, 2], None), Some(&raw)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn wrong_field_truncated_raw_and_ranges_are_named() {
        let c = pb::InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        };
        let e = decode_input(input("INT64", vec![1, 1], Some(c)), None).unwrap_err();
        assert!(e.message().contains("int64_contents") && e.message().contains("fp32_contents"));
        let e = decode_input(input("FP32", vec![1, 2], None), Some(&[0u8; 7])).unwrap_err();
        assert!(
            e.message().contains("7 bytes") && e.message().contains("8 bytes"),
            "{}",
            e.message()
        );
        let c = pb::InferTensorContents {
            int_contents: vec![300],
            ..Default::default()
        };
        let e = decode_input(input("INT8", vec![1], Some(c)), None).unwrap_err();
        assert!(e.message().contains("300"));
        let e = decode_input(input("FP16", vec![1], Some(Default::default())), None).unwrap_err();
        assert!(e.message().contains("raw_input_contents"));
        let e = decode_input(input("FP99", vec![1], None), None).unwrap_err();
        assert!(e.message().contains("FP99"));
    }

    #[test]
    fn typed_contents_carry_every_value() {
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: 3,
            id: Some("r".into()),
            outputs: vec![
                Tensor::new("a", vec![2], TensorData::I8(vec![-1, 2])),
                Tensor::new("b", vec![1], TensorData::U16(vec![65535])),
                Tensor::new("c", vec![2], TensorData::F32(vec![0.5, -1.0])),
                Tensor::new("d", vec![1], TensorData::Bytes(vec![b"x".to_vec()])),
            ],
            load: Default::default(),
        };
        let out = encode_response(resp.clone(), false);
        assert!(out.raw_output_contents.is_empty());
        assert_eq!((out.model_version.as_str(), out.id.as_str()), ("3", "r"));
        let c: Vec<_> = out
            .outputs
            .iter()
            .map(|o| o.contents.clone().unwrap())
            .collect();
        assert_eq!(c[0].int_contents, vec![-1, 2]);
        assert_eq!(c[1].uint_contents, vec![65535]);
        assert_eq!(c[2].fp32_contents, vec![0.5, -1.0]);
        assert_eq!(c[3].bytes_contents, vec![b"x".to_vec()]);
        let names: Vec<_> = out.outputs.iter().map(|o| o.datatype.as_str()).collect();
        assert_eq!(names, ["INT8", "UINT16", "FP32", "BYTES"]);
        let raw = encode_response(resp.clone(), true);
        let want: Vec<Vec<u8>> = resp.outputs.iter().map(|t| t.data.to_le_bytes()).collect();
        assert_eq!(raw.raw_output_contents, want);
    }

    #[test]
    fn fp16_outputs_force_raw() {
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: 1,
            id: None,
            outputs: vec![
                Tensor::new("a", vec![1], TensorData::F32(vec![1.0])),
                Tensor::new("b", vec![1], TensorData::F16(vec![half::f16::ONE])),
            ],
            load: Default::default(),
        };
        let out = encode_response(resp, false);
        assert_eq!(out.raw_output_contents.len(), 2);
        assert!(out.outputs.iter().all(|o| o.contents.is_none()));
    }
}
