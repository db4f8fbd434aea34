//! Embedding offload seen from outside: a DLRM whose tables exceed its memory budget is
//! served with some tables in host RAM behind a hot-row cache; its metadata says where each
//! table lives, `/metrics` carries the cache counters, and answers equal the all-resident
//! model's.

use cohost_models::ModelConfig;
use cohost_tests::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offloaded_dlrm_serves_identical_answers_and_reports_its_tables() {
    let repo = tempfile::tempdir().unwrap();
    generate(repo.path(), "dlrm-tiny", 1, 11);
    let cfg_path = repo.path().join("dlrm-tiny/config.toml");
    let mut cfg = ModelConfig::from_file(&cfg_path).unwrap();
    let resident = reference_runtime(repo.path());
    // Room for the dense layers and the two small tables, not the 1000-row one.
    let table_bytes: u64 = cfg
        .dlrm
        .as_ref()
        .unwrap()
        .table_sizes
        .iter()
        .map(|&r| r as u64 * 8 * 4)
        .sum();
    cfg.memory_budget = Some(table_bytes / 2);
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();

    let mut s = TestServer::start_in(repo, |_| {}).await;
    let (status, md) = s.get_json("/v2/models/dlrm-tiny").await;
    assert_eq!(status, 200, "{md}");
    let tables = md["memory"]["tables"]
        .as_array()
        .expect("tables in metadata");
    assert_eq!(tables.len(), 3);
    let placements: Vec<&str> = tables
        .iter()
        .map(|t| t["placement"].as_str().unwrap())
        .collect();
    assert!(
        placements.contains(&"host"),
        "nothing offloaded: {placements:?}"
    );
    assert!(
        placements.contains(&"resident"),
        "nothing resident: {placements:?}"
    );
    let device = md["memory"]["device_bytes"].as_u64().unwrap();
    assert!(
        device <= table_bytes / 2,
        "device bytes {device} over the budget {}",
        table_bytes / 2
    );

    let (_, config) = resident.config("dlrm-tiny", None).unwrap();
    for seed in 0..20 {
        let inputs = sample_inputs(&config, 4, seed);
        let body = json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
        let res = s.post("/v2/models/dlrm-tiny/infer", &body).await;
        assert_eq!(res.status(), 200);
        let got: Value = res.json().await.unwrap();
        let want = resident
            .infer(
                "dlrm-tiny",
                None,
                cohost_runtime::InferRequest {
                    inputs,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let cohost_runtime::TensorData::F32(want) = &want.outputs[0].data else {
            unreachable!()
        };
        let got: Vec<f32> = got["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            &got, want,
            "offloaded answers differ from all-resident (seed {seed})"
        );
    }

    let text = s.get_text("/metrics").await;
    for name in [
        "cohost_embedding_cache_hits_total",
        "cohost_embedding_cache_misses_total",
        "cohost_embedding_hit_rate",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let (_, md) = s.get_json("/v2/models/dlrm-tiny").await;
    let lookups: u64 = md["memory"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["hits"].as_u64().unwrap() + t["misses"].as_u64().unwrap())
        .sum();
    assert!(lookups > 0, "the cache saw no lookups");
    s.stop().await;
}
