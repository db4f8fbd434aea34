//! The KServe v2 HTTP request bodies the harness sends: JSON tensors, and the binary
//! tensor extension (a JSON header, then the raw tensors).

use crate::workload::GenRequest;

/// The JSON body of a KServe v2 request with JSON tensors.
pub fn json_body(request: &GenRequest) -> serde_json::Value {
    use cohost_runtime::TensorData as D;
    let inputs: Vec<serde_json::Value> = request
        .inputs
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
    serde_json::json!({ "inputs": inputs })
}

/// The body of a KServe v2 binary-extension request: JSON header, then raw tensors.
pub fn binary_body(request: &GenRequest) -> (Vec<u8>, usize) {
    let mut raw = Vec::new();
    let inputs: Vec<serde_json::Value> = request
        .inputs
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
