//! The client-side codec against the server side: requests the client encodes decode to the
//! same typed request on the server, responses the server encodes decode to the same typed
//! response on the client, and the bodies are byte-identical to the harness's hand-built ones.

use super::*;
use cohost_runtime::{InferRequest, InferResponse, Tensor, TensorData};
use half::{bf16, f16};
use serde_json::Value;
use std::time::Duration;

/// One tensor per datatype, with values JSON carries exactly (finite, UTF-8 strings).
fn every_datatype() -> Vec<Tensor> {
    let datas = vec![
        TensorData::Bool(vec![true, false, true]),
        TensorData::U8(vec![0, 1, 255]),
        TensorData::U16(vec![0, 65535]),
        TensorData::U32(vec![4_000_000_000]),
        TensorData::U64(vec![0, u64::MAX]),
        TensorData::I8(vec![-128, 0, 127]),
        TensorData::I16(vec![-32768, 32767]),
        TensorData::I32(vec![i32::MIN, -1, i32::MAX]),
        TensorData::I64(vec![i64::MIN, 0, i64::MAX]),
        TensorData::F16(vec![
            f16::from_f32(0.1),
            f16::MAX,
            f16::MIN_POSITIVE,
            -f16::ONE,
        ]),
        TensorData::BF16(vec![bf16::from_f32(-2.5), bf16::MAX, bf16::from_f32(1e-30)]),
        TensorData::F32(vec![0.1, -0.0, 1e-40, 3.4e38, f32::MIN_POSITIVE]),
        TensorData::F64(vec![
            0.1,
            -2.5,
            1e300,
            1.7976931348623157e308,
            2.2250738585072014e-308,
        ]),
        TensorData::Bytes(vec![
            b"ab".to_vec(),
            "\u{e9}\"\\".as_bytes().to_vec(),
            vec![],
        ]),
        TensorData::F32(vec![]),
    ];
    datas
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let n = d.len() as i64;
            Tensor::new(format!("t{i}"), vec![1, n], d)
        })
        .collect()
}

/// Bytes only the binary extension carries: non-UTF-8 strings and non-finite floats' bits.
fn binary_only() -> Vec<Tensor> {
    vec![
        Tensor::new(
            "raw",
            vec![2],
            TensorData::Bytes(vec![vec![0xff, 0x00], vec![0x80]]),
        ),
        Tensor::new(
            "inf",
            vec![2],
            TensorData::F32(vec![f32::INFINITY, f32::NEG_INFINITY]),
        ),
    ]
}

const ENCODINGS: [RequestEncoding; 4] = [
    RequestEncoding {
        binary_inputs: false,
        binary_outputs: false,
    },
    RequestEncoding {
        binary_inputs: false,
        binary_outputs: true,
    },
    RequestEncoding {
        binary_inputs: true,
        binary_outputs: false,
    },
    RequestEncoding {
        binary_inputs: true,
        binary_outputs: true,
    },
];

fn header(e: &Encoded) -> Option<String> {
    e.header_length.map(|n| n.to_string())
}

/// `benches/src/target.rs::json_body` as it is today (over the inputs alone): the body the
/// harness sends with JSON tensors.
fn harness_json_body(inputs: &[Tensor]) -> Vec<u8> {
    use cohost_runtime::TensorData as D;
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let data = match &t.data {
                D::F32(v) => serde_json::json!(v),
                D::I64(v) => serde_json::json!(v),
                D::I32(v) => serde_json::json!(v),
                other => serde_json::json!(other.to_f32_lossless("").unwrap_or_default()),
            };
            serde_json::json!({
                "name": t.name,
                "datatype": t.datatype().as_str(),
                "shape": t.shape,
                "data": data,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "inputs": inputs })).unwrap()
}

/// `benches/src/target.rs::binary_body` as it is today: the harness's binary-extension body.
fn harness_binary_body(inputs: &[Tensor]) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let bytes = t.data.to_le_bytes();
            let value = serde_json::json!({
                "name": t.name,
                "datatype": t.datatype().as_str(),
                "shape": t.shape,
                "parameters": { "binary_data_size": bytes.len() },
            });
            raw.extend_from_slice(&bytes);
            value
        })
        .collect();
    let header = serde_json::json!({
        "inputs": inputs,
        "parameters": { "binary_data_output": true },
    });
    let mut body = serde_json::to_vec(&header).expect("json serialises");
    let header_len = body.len();
    body.extend_from_slice(&raw);
    (body, header_len)
}

#[test]
fn request_bodies_match_the_harness_bytes() {
    // The harness writes JSON data exactly for the datatypes its workloads use.
    let json_inputs = vec![
        Tensor::new(
            "dense",
            vec![2, 3],
            TensorData::F32(vec![0.1, -0.0, 1e-40, 3.4e38, f32::NAN, 7.0]),
        ),
        Tensor::new("ids", vec![2], TensorData::I64(vec![i64::MIN, 42])),
        Tensor::new("i\"d\u{e9}", vec![1], TensorData::I32(vec![-7])),
        Tensor::new("none", vec![0], TensorData::F32(vec![])),
    ];
    let request = InferRequest {
        inputs: json_inputs,
        ..Default::default()
    };
    let ours = encode_request(&request, RequestEncoding::default());
    let theirs = harness_json_body(&request.inputs);
    assert_eq!(
        String::from_utf8_lossy(&ours.body),
        String::from_utf8_lossy(&theirs)
    );
    assert_eq!(ours.header_length, None);

    let mut inputs = every_datatype();
    inputs.extend(binary_only());
    let request = InferRequest {
        inputs,
        ..Default::default()
    };
    let ours = encode_request(
        &request,
        RequestEncoding {
            binary_inputs: true,
            binary_outputs: true,
        },
    );
    let (body, header_len) = harness_binary_body(&request.inputs);
    assert_eq!(
        String::from_utf8_lossy(&ours.body[..header_len]),
        String::from_utf8_lossy(&body[..header_len])
    );
    assert_eq!(ours.body, body);
    assert_eq!(ours.header_length, Some(header_len));
}

#[test]
fn requests_decode_to_what_the_client_encoded() {
    let requests = [
        InferRequest {
            inputs: every_datatype(),
            ..Default::default()
        },
        InferRequest {
            id: Some("req-\"7\"".into()),
            inputs: every_datatype(),
            outputs: vec!["out0".into(), "out\u{e9}".into()],
            timeout: Some(Duration::from_micros(1500)),
        },
    ];
    for request in &requests {
        for encoding in ENCODINGS {
            let mut request = request.clone();
            if encoding.binary_inputs {
                request.inputs.extend(binary_only());
            }
            let body = encode_request(&request, encoding);
            assert_eq!(body.header_length.is_some(), encoding.binary_inputs);
            let decoded = decode_request(&body.body, header(&body).as_deref())
                .unwrap_or_else(|e| panic!("{encoding:?}: {}", e.message));
            let got = &decoded.request;
            assert_eq!(got.id, request.id, "{encoding:?}");
            assert_eq!(got.inputs, request.inputs, "{encoding:?}");
            assert_eq!(got.outputs, request.outputs, "{encoding:?}");
            assert_eq!(got.timeout, request.timeout, "{encoding:?}");
            let expected = ResponseEncoding {
                binary_outputs: request
                    .outputs
                    .iter()
                    .map(|n| (n.clone(), encoding.binary_outputs))
                    .collect(),
                all_binary: encoding.binary_outputs,
            };
            assert_eq!(decoded.encoding, expected, "{encoding:?}");
        }
    }
}

#[test]
fn responses_decode_to_what_the_server_encoded() {
    let json_outputs = every_datatype();
    let mut binary_outputs = every_datatype();
    binary_outputs.extend(binary_only());
    let encoding = |named: &[(&str, bool)], all_binary| ResponseEncoding {
        binary_outputs: named.iter().map(|&(n, b)| (n.to_string(), b)).collect(),
        all_binary,
    };
    // Outputs with non-finite floats and non-UTF-8 bytes only where they travel as binary.
    let modes: [(ResponseEncoding, &[Tensor]); 4] = [
        (encoding(&[], false), &json_outputs),
        (encoding(&[], true), &binary_outputs),
        (
            encoding(&[("t3", true), ("t11", true)], false),
            &json_outputs,
        ),
        (encoding(&[("t0", false)], true), &binary_outputs),
    ];
    for id in [None, Some("req-\"7\"".to_string())] {
        for (encoding, outputs) in &modes {
            let resp = InferResponse {
                model_name: "m\u{e9}".into(),
                model_version: 12,
                id: id.clone(),
                outputs: outputs.to_vec(),
                load: Default::default(),
            };
            let body = encoding.encode(&resp);
            let got = decode_response(&body.body, header(&body).as_deref())
                .unwrap_or_else(|e| panic!("{encoding:?}: {}", e.message));
            assert_eq!(got.model_name, resp.model_name);
            assert_eq!(got.model_version, resp.model_version);
            assert_eq!(got.id, resp.id);
            assert_eq!(got.outputs, resp.outputs, "{encoding:?}");
            assert_eq!(got.load, resp.load);
        }
    }
}

#[test]
fn response_problems_are_named() {
    let resp = InferResponse {
        model_name: "m".into(),
        model_version: 1,
        id: None,
        outputs: vec![Tensor::new("y", vec![2], TensorData::I32(vec![1, 2]))],
        load: Default::default(),
    };
    let encoding = ResponseEncoding {
        binary_outputs: vec![],
        all_binary: true,
    };
    let body = encoding.encode(&resp);
    let n = header(&body).unwrap();
    let cut = &body.body[..body.body.len() - 1];
    let m = decode_response(cut, Some(&n)).unwrap_err().message;
    assert!(m.contains("output 'y'") && m.contains("truncated"), "{m}");
    let mut long = body.body.clone();
    long.push(0);
    let m = decode_response(&long, Some(&n)).unwrap_err().message;
    assert!(m.contains("1 bytes after the JSON header"), "{m}");
    let m = decode_response(
        b"{\"model_name\":\"m\",\"model_version\":\"x\",\"outputs\":[]}",
        None,
    )
    .unwrap_err()
    .message;
    assert!(m.contains("model_version 'x'"), "{m}");
    let m = decode_response(b"{\"outputs\":[]}", None)
        .unwrap_err()
        .message;
    assert!(m.contains("malformed inference response JSON"), "{m}");
}
