//! Triton's JSON shapes for the model-configuration and statistics extensions.

use cohost_models::{BatchingPolicyKind, VersionPolicy};
use cohost_runtime::{BatchStats, ModelConfig, ModelStats, StatisticDuration, TensorSpec};
use serde_json::{Value, json};

/// Dims as Triton lists them: without the batch dimension when the model batches.
fn dims(spec: &TensorSpec, batching: bool) -> Vec<i64> {
    let skip = usize::from(batching && !spec.dims.is_empty());
    spec.dims[skip..].to_vec()
}

/// `GET /v2/models/{m}/config` in Triton's `ModelConfig` JSON shape.
pub fn config_json(
    name: &str,
    platform: &str,
    config: &ModelConfig,
    lanes: usize,
    backend: &str,
) -> Value {
    let batching = config.max_batch_size > 0;
    let input: Vec<Value> = config
        .inputs
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "data_type": t.datatype.triton_name(),
                "format": "FORMAT_NONE",
                "dims": dims(t, batching),
                "is_shape_tensor": false,
                "allow_ragged_batch": false,
                "optional": false,
            })
        })
        .collect();
    let output: Vec<Value> = config
        .outputs
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "data_type": t.datatype.triton_name(),
                "dims": dims(t, batching),
                "label_filename": "",
                "is_shape_tensor": false,
            })
        })
        .collect();
    let version_policy = match &config.version_policy {
        VersionPolicy::Latest(n) => json!({ "latest": { "num_versions": n } }),
        VersionPolicy::Specific(v) => json!({ "specific": { "versions": v } }),
        VersionPolicy::All(_) => json!({ "all": {} }),
    };
    let policy = match config.batching.policy {
        BatchingPolicyKind::None => "none",
        BatchingPolicyKind::Static => "static",
        BatchingPolicyKind::Adaptive => "adaptive",
    };
    let mut out = json!({
        "name": name,
        "platform": platform,
        "backend": "cohost",
        "version_policy": version_policy,
        "max_batch_size": config.max_batch_size,
        "input": input,
        "output": output,
        "instance_group": [{
            "name": format!("{name}_lanes"),
            "kind": if backend == "cuda" { "KIND_GPU" } else { "KIND_CPU" },
            "count": config.max_lanes.unwrap_or(lanes).min(lanes.max(1)),
        }],
        "parameters": {
            "cohost_batching_policy": { "string_value": policy },
            "cohost_priority": { "string_value": config.priority.to_string() },
            "cohost_max_queue_len": { "string_value": config.max_queue_len.to_string() },
        },
    });
    if config.batching.policy != BatchingPolicyKind::None {
        out["dynamic_batching"] = json!({
            "preferred_batch_size": [config.batch_limit()],
            "max_queue_delay_microseconds": config.batching.max_queue_delay_us,
            "preserve_ordering": false,
            "priority_levels": 0,
            "default_priority_level": 0,
        });
    }
    if let Some(p99) = config.batching.p99_target_ms {
        out["parameters"]["cohost_p99_target_ms"] = json!({ "string_value": p99.to_string() });
    }
    out
}

fn dur(d: &StatisticDuration) -> Value {
    json!({ "count": d.count, "ns": d.ns })
}

fn batch(b: &BatchStats) -> Value {
    json!({
        "batch_size": b.batch_size,
        "compute_input": dur(&b.compute_input),
        "compute_infer": dur(&b.compute_infer),
        "compute_output": dur(&b.compute_output),
    })
}

/// `GET /v2/models[/{m}[/versions/{v}]]/stats` in Triton's statistics JSON shape.
pub fn stats_json(stats: &[ModelStats]) -> Value {
    let zero = StatisticDuration::default();
    let models: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "version": s.version.to_string(),
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": dur(&s.success),
                    "fail": dur(&s.fail),
                    "queue": dur(&s.queue),
                    "compute_input": dur(&s.compute_input),
                    "compute_infer": dur(&s.compute_infer),
                    "compute_output": dur(&s.compute_output),
                    "cache_hit": dur(&zero),
                    "cache_miss": dur(&zero),
                },
                "batch_stats": s.batch_stats.iter().map(batch).collect::<Vec<_>>(),
                "memory_usage": [],
            })
        })
        .collect();
    json!({ "model_stats": models })
}
