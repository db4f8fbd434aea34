//! The codec's tests: the `serde_json::Value`-tree decoder and encoder are kept here as the
//! references the streaming codec must match, plus nested data, errors and binary inputs.

use super::elements::{JsonData, json_data};
use super::oracle::old_json_data;
use super::*;
use cohost_runtime::{DataType, InferResponse, Tensor, TensorData};
use half::f16;
use serde_json::{Value, json};
use std::time::Duration;

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

struct OldEncoded {
    /// The body bytes.
    pub body: Vec<u8>,
    /// `Some(json_len)` when binary tensors follow the JSON.
    pub header_length: Option<usize>,
}

impl ResponseEncoding {
    /// The `Value`-tree encoder this file used to have: the oracle of `encode`.
    fn old_encode(&self, resp: &InferResponse) -> OldEncoded {
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
        OldEncoded {
            body,
            header_length,
        }
    }
}

#[test]
fn json_data_converts_as_the_value_tree_did() {
    let datas = [
        "[1, 2, 3]",
        "[[1, 2], [3, 4]]",
        "[[[0.5]], [[-1.25]]]",
        "7",
        "-3",
        "2.5",
        "[true, false]",
        "[1, true]",
        "[-129, 128, 255, 256, 65536]",
        "[-9223372036854775808, 9223372036854775807, 18446744073709551615]",
        "[18446744073709551616, 1e300, -1e-300, 0.1]",
        "[1.0, 2.0]",
        "[\"ab\", \"c\"]",
        "[\"x\", 1]",
        "[null, 1]",
        "[{\"a\": [1, 2]}, 3]",
        "[[], [1], []]",
        "[]",
        "{\"k\": 1}",
    ];
    let types = [
        DataType::BOOL,
        DataType::UINT8,
        DataType::UINT16,
        DataType::UINT32,
        DataType::UINT64,
        DataType::INT8,
        DataType::INT16,
        DataType::INT32,
        DataType::INT64,
        DataType::FP16,
        DataType::BF16,
        DataType::FP32,
        DataType::FP64,
        DataType::BYTES,
    ];
    for text in datas {
        let value: Value = serde_json::from_str(text).unwrap();
        let data: JsonData = serde_json::from_str(text).unwrap();
        for dt in types {
            let old = old_json_data(dt, &value, "input 'x'");
            let new = json_data(dt, &data, "input 'x'");
            match (old, new) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text} {dt}"),
                (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{text} {dt}"),
                (a, b) => panic!("{text} {dt}: {a:?} vs {b:?}"),
            }
        }
    }
    // `"data": null` is no data, as before.
    let m = err(
        r#"{"inputs":[{"name":"d","shape":[1],"datatype":"FP32","data":null}]}"#,
        None,
    );
    assert!(m.contains("neither"), "{m}");
}

#[test]
fn encode_writes_what_the_value_tree_wrote() {
    use half::{bf16, f16};
    let datas = vec![
        TensorData::Bool(vec![true, false]),
        TensorData::U8(vec![0, 255]),
        TensorData::U16(vec![65535]),
        TensorData::U32(vec![4_000_000_000]),
        TensorData::U64(vec![u64::MAX]),
        TensorData::I8(vec![-128, 127]),
        TensorData::I16(vec![-32768]),
        TensorData::I32(vec![i32::MIN, 0]),
        TensorData::I64(vec![i64::MIN, i64::MAX]),
        TensorData::F16(vec![f16::from_f32(0.1), f16::INFINITY, f16::NAN]),
        TensorData::BF16(vec![bf16::from_f32(-2.5)]),
        TensorData::F32(vec![0.1, -0.0, 1e-40, 3.4e38, f32::NAN, f32::NEG_INFINITY]),
        TensorData::F64(vec![0.1, 1e300, 5e-324, f64::NAN]),
        TensorData::Bytes(vec![b"ab".to_vec(), vec![0xff, b'"', b'\\'], vec![]]),
        TensorData::F32(vec![]),
    ];
    let outputs: Vec<Tensor> = datas
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let n = d.len() as i64;
            Tensor::new(format!("out{i}"), vec![1, n], d)
        })
        .collect();
    for id in [None, Some("req-\"7\"".to_string())] {
        let resp = InferResponse {
            model_name: "m\u{e9}".into(),
            model_version: 12,
            id,
            outputs: outputs.clone(),
            load: Default::default(),
        };
        let modes: [(Vec<(String, bool)>, bool); 4] = [
            (vec![], false),
            (vec![], true),
            (vec![("out3".into(), true), ("out11".into(), true)], false),
            (vec![("out0".into(), false)], true),
        ];
        for (binary_outputs, all_binary) in modes {
            let d = ResponseEncoding {
                binary_outputs,
                all_binary,
            };
            let (a, b) = (d.old_encode(&resp), d.encode(&resp));
            assert_eq!(
                String::from_utf8_lossy(&a.body),
                String::from_utf8_lossy(&b.body)
            );
            assert_eq!(a.body, b.body);
            assert_eq!(a.header_length, b.header_length);
        }
    }
}

fn err(body: &str, header: Option<&str>) -> String {
    match decode_request(body.as_bytes(), header) {
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
    let d = decode_request(body.as_bytes(), None).unwrap();
    let r = &d.request;
    assert_eq!(r.timeout, Some(Duration::from_micros(1500)));
    assert_eq!(
        r.inputs[0].data,
        TensorData::F16([1.0, 2.0, 3.0, 0.5].map(f16::from_f32).to_vec())
    );
    assert_eq!(r.inputs[1].data, TensorData::I8(vec![-1, 0, 127]));
}

/// Decimal numbers in JSON data read as the nearest float, as Rust's `str::parse` (correctly
/// rounded) reads them; serde_json's default fast path missed some by an ulp (4e-162, fuzz).
#[test]
fn json_floats_read_as_the_nearest_value() {
    let texts = [
        "4e-162",
        "2.2250738585072011e-308",
        "9007199254740993",
        "0.1",
        "1.7976931348623157e308",
        "5e-324",
        "3.0000000000000004",
        "1.00000017881393432617187499",
    ];
    for t in texts {
        let body = format!(
            r#"{{"inputs":[{{"name":"a","shape":[1],"datatype":"FP64","data":[{t}]}},
                {{"name":"b","shape":[1],"datatype":"FP32","data":[{t}]}}]}}"#
        );
        let d = decode_request(body.as_bytes(), None).unwrap();
        let want64: f64 = t.parse().unwrap();
        let want32 = want64 as f32;
        assert_eq!(
            d.request.inputs[0].data,
            TensorData::F64(vec![want64]),
            "{t}"
        );
        if want64.abs() <= f32::MAX as f64 {
            assert_eq!(
                d.request.inputs[1].data,
                TensorData::F32(vec![want32]),
                "{t}"
            );
        }
    }
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
    let d = decode_request(&body, Some(&n)).unwrap();
    assert_eq!(d.request.inputs[0].data, TensorData::I32(vec![1, 2]));
    body.push(9);
    let m = decode_request(&body, Some(&n)).err().unwrap().message;
    assert!(m.contains("1 bytes after the JSON header"), "{m}");
    let m = decode_request(head.as_bytes(), None).err().unwrap().message;
    assert!(m.contains("Inference-Header-Content-Length"), "{m}");
}
