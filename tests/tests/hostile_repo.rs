//! A hostile model repository (issue 18) over real sockets: truncated and corrupt
//! safetensors, a header claiming huge tensors, dims whose products overflow, links that
//! lead outside the repository, and a model folder removed while serving. Each is refused
//! with a clear reason, in the load call's answer and in `/v2/repository/index`, without
//! an absolute path; the good model beside them keeps answering with the values an
//! in-process runtime over a clean copy of its weights computes.

use cohost_runtime::{InferRequest, TensorData};
use cohost_tests::*;
use serde_json::{Value, json};
use std::path::Path;

/// A safetensors file whose JSON header is `header` (padded to 8 bytes), then `data`.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut json = header.as_bytes().to_vec();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// Writes `<repo>/<name>/config.toml` and, if given, `<repo>/<name>/1/model.safetensors`.
fn model(repo: &Path, name: &str, config: &str, weights: Option<&[u8]>) {
    let dir = repo.join(name);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::fs::write(dir.join("config.toml"), config).unwrap();
    if let Some(w) = weights {
        std::fs::write(dir.join("1/model.safetensors"), w).unwrap();
    }
}

/// The f32 output of `model` for `inputs` over HTTP (JSON), or the error body.
async fn infer(s: &TestServer, model: &str, inputs: &[cohost_runtime::Tensor]) -> (u16, Value) {
    let body = json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
    s.post_json(&format!("/v2/models/{model}/infer"), &body)
        .await
}

/// `model` (a copy of mlp-tiny) answers with exactly what the reference runtime's mlp-tiny
/// computes.
async fn answers_correctly(s: &TestServer, reference: &cohost_runtime::Runtime, model: &str) {
    let (_, config) = reference.config("mlp-tiny", None).unwrap();
    for seed in 0..3 {
        let inputs = sample_inputs(&config, 3, seed);
        let (status, body) = infer(s, model, &inputs).await;
        assert_eq!(status, 200, "{model}: {body}");
        let want = reference
            .infer(
                "mlp-tiny",
                None,
                InferRequest {
                    inputs,
                    ..Default::default()
                },
            )
            .await
            .expect("reference infer");
        let TensorData::F32(want) = &want.outputs[0].data else {
            panic!("f32 output")
        };
        let got: Vec<f32> = body["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&got, want, "{model} seed {seed}");
    }
}

/// The repository index row of `name`.
async fn index_row(s: &TestServer, name: &str) -> Value {
    let (st, index) = s.post_json("/v2/repository/index", &json!({})).await;
    assert_eq!(st, 200, "{index}");
    index
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_repository_is_refused_model_by_model() {
    let repo = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let clean = tempfile::tempdir().unwrap();
    generate(repo.path(), "mlp-tiny", 1, 7);
    generate(clean.path(), "mlp-tiny", 1, 7);
    let reference = reference_runtime(clean.path());
    let config = std::fs::read_to_string(repo.path().join("mlp-tiny/config.toml")).unwrap();
    let weights = std::fs::read(repo.path().join("mlp-tiny/1/model.safetensors")).unwrap();

    // name, and what its refusal must say.
    let mut cases: Vec<(&str, Vec<&str>)> = Vec::new();

    model(
        repo.path(),
        "truncated",
        &config,
        Some(&weights[..weights.len() / 2]),
    );
    cases.push(("truncated", vec!["safetensors"]));

    let mut corrupt = weights.clone();
    corrupt[8..40].copy_from_slice(&[b'#'; 32]);
    model(repo.path(), "corrupt", &config, Some(&corrupt));
    cases.push(("corrupt", vec!["safetensors"]));

    // The header's length prefix says 1 TiB.
    let mut long_header = weights.clone();
    long_header[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    model(repo.path(), "long-header", &config, Some(&long_header));
    cases.push(("long-header", vec!["safetensors"]));

    // A tensor whose offsets claim 1 TiB of data the file does not have.
    let huge = safetensors(
        r#"{"layers.0.weight":{"dtype":"F32","shape":[262144,1048576],"data_offsets":[0,1099511627776]}}"#,
        &[0; 64],
    );
    model(repo.path(), "huge-tensor", &config, Some(&huge));
    cases.push(("huge-tensor", vec!["safetensors"]));

    // Dims whose product overflows u64 (and so every byte count).
    let overflow = safetensors(
        r#"{"layers.0.weight":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#,
        &[],
    );
    model(repo.path(), "overflow-dims", &config, Some(&overflow));
    cases.push(("overflow-dims", vec!["safetensors"]));

    // Config sizes whose byte estimates overflowed (rows * dim * 4, inp * out).
    let table_cfg = cohost_models::synth::preset("dlrm-tiny").unwrap();
    let mut big_table = table_cfg.clone();
    big_table.dlrm.as_mut().unwrap().table_sizes[0] = i64::MAX as usize;
    model(
        repo.path(),
        "overflow-table",
        &big_table.to_toml(),
        Some(&weights),
    );
    cases.push(("overflow-table", vec!["dlrm.table_sizes[0]", "at most"]));
    let wide = config.replace("layers = [", "layers = [8, 4611686018427387904, ");
    assert_ne!(wide, config, "the mlp-tiny config lists its layers");
    model(repo.path(), "overflow-width", &wide, Some(&weights));
    cases.push(("overflow-width", vec!["mlp.layers[1]", "at most"]));

    // A model folder that is a link to a folder outside the repository.
    model(outside.path(), "elsewhere", &config, Some(&weights));
    std::os::unix::fs::symlink(
        outside.path().join("elsewhere"),
        repo.path().join("linked-dir"),
    )
    .unwrap();
    cases.push(("linked-dir", vec!["outside the model repository"]));
    // A weights file that is a link to a (valid) file outside.
    model(repo.path(), "linked-weights", &config, None);
    std::os::unix::fs::symlink(
        outside.path().join("elsewhere/1/model.safetensors"),
        repo.path().join("linked-weights/1/model.safetensors"),
    )
    .unwrap();
    cases.push(("linked-weights", vec!["outside the model repository"]));

    // A good copy, to be removed while serving.
    model(repo.path(), "doomed", &config, Some(&weights));

    let s = TestServer::start_in(repo, |o| {
        o.model_control = ModelControlMode::Explicit;
        o.memory_budget = Some(1 << 30);
    })
    .await;
    let absolute = [
        s.repo.path().display().to_string(),
        outside.path().display().to_string(),
    ];
    let no_path = |what: &str, text: &str| {
        for a in &absolute {
            assert!(
                !text.contains(a.as_str()),
                "{what} shows an absolute path: {text}"
            );
        }
    };

    for (name, says) in &cases {
        // Refused at start: listed with its reason.
        let row = index_row(&s, name).await;
        assert_eq!(row["state"], "UNAVAILABLE", "{name}: {row}");
        let reason = row["reason"].as_str().unwrap_or_default();
        for want in says {
            assert!(
                reason.contains(want),
                "{name}: reason {reason:?} lacks {want:?}"
            );
        }
        no_path(name, reason);
        // Refused again on an explicit load, with the same reason.
        let (st, v) = s
            .post_json(&format!("/v2/repository/models/{name}/load"), &json!({}))
            .await;
        assert!(st == 400 || st == 404 || st == 500, "{name}: {st} {v}");
        let msg = v["error"].as_str().unwrap();
        for want in says {
            assert!(
                msg.contains(want),
                "{name}: load error {msg:?} lacks {want:?}"
            );
        }
        // The load call's own answer still names absolute paths: see
        // `load_errors_name_no_absolute_path` below.
        // Not served.
        let (st, _) = infer(&s, name, &sample_inputs(&table_cfg, 1, 0)).await;
        assert_eq!(st, 404, "{name} is served");
    }
    // Nothing else was affected.
    answers_correctly(&s, &reference, "mlp-tiny").await;
    answers_correctly(&s, &reference, "doomed").await;

    // The folder of a served model goes away: it keeps serving what it loaded, a reload is
    // refused with a clear reason, and the other model is untouched.
    std::fs::remove_dir_all(s.repo.path().join("doomed")).unwrap();
    let (st, v) = s
        .post_json("/v2/repository/models/doomed/load", &json!({}))
        .await;
    assert_eq!(st, 404, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("doomed") && msg.contains("not in the repository"),
        "{msg}"
    );
    let reason = index_row(&s, "doomed").await["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    no_path("doomed", &reason);
    answers_correctly(&s, &reference, "mlp-tiny").await;
    let (st, v) = s
        .post_json("/v2/repository/models/doomed/unload", &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        infer(&s, "doomed", &sample_inputs(&table_cfg, 1, 0))
            .await
            .0,
        404
    );
    answers_correctly(&s, &reference, "mlp-tiny").await;
}

/// A refused load's own answer (HTTP and gRPC), not only the index, names files relative to
/// the repository (failed before `Runtime::load_model` returned the stripped message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_errors_name_no_absolute_path() {
    let repo = tempfile::tempdir().unwrap();
    generate(repo.path(), "mlp-tiny", 1, 7);
    let config = std::fs::read_to_string(repo.path().join("mlp-tiny/config.toml")).unwrap();
    model(repo.path(), "truncated", &config, Some(&[1, 2, 3]));
    let s = TestServer::start_in(repo, |o| o.model_control = ModelControlMode::Explicit).await;
    let absolute = s.repo.path().display().to_string();
    for name in ["truncated", "absent"] {
        let (st, v) = s
            .post_json(&format!("/v2/repository/models/{name}/load"), &json!({}))
            .await;
        assert_ne!(st, 200);
        let msg = v["error"].as_str().unwrap();
        assert!(!msg.contains(&absolute), "{name}: {msg}");
    }
}
