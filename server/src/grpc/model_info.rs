//! Model metadata, Triton-shaped configuration, statistics and repository index as
//! protobuf messages.

use cohost_models::{BatchingPolicyKind, Family, VersionPolicy};
use cohost_protocol::inference as pb;
use cohost_runtime::{
    DataType, ModelConfig, ModelMetadata, ModelStats, RepositoryEntry, StatisticDuration,
    TensorSpec,
};
use std::collections::HashMap;

/// The model-configuration enum for a KServe datatype.
pub fn config_datatype(d: DataType) -> pb::DataType {
    match d {
        DataType::BOOL => pb::DataType::TypeBool,
        DataType::UINT8 => pb::DataType::TypeUint8,
        DataType::UINT16 => pb::DataType::TypeUint16,
        DataType::UINT32 => pb::DataType::TypeUint32,
        DataType::UINT64 => pb::DataType::TypeUint64,
        DataType::INT8 => pb::DataType::TypeInt8,
        DataType::INT16 => pb::DataType::TypeInt16,
        DataType::INT32 => pb::DataType::TypeInt32,
        DataType::INT64 => pb::DataType::TypeInt64,
        DataType::FP16 => pb::DataType::TypeFp16,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::FP32 => pb::DataType::TypeFp32,
        DataType::FP64 => pb::DataType::TypeFp64,
        DataType::BYTES => pb::DataType::TypeString,
    }
}

/// `ModelMetadataResponse` from the runtime's metadata (shapes keep the `-1` batch dim).
pub fn metadata(m: ModelMetadata) -> pb::ModelMetadataResponse {
    let tensor = |t: TensorSpec| pb::model_metadata_response::TensorMetadata {
        name: t.name,
        datatype: t.datatype.as_str().to_string(),
        shape: t.dims,
    };
    pb::ModelMetadataResponse {
        name: m.name,
        versions: m.versions.iter().map(u64::to_string).collect(),
        platform: m.platform,
        inputs: m.inputs.into_iter().map(tensor).collect(),
        outputs: m.outputs.into_iter().map(tensor).collect(),
    }
}

/// Dims without the leading batch dimension, as Triton's configuration lists them.
fn without_batch(dims: &[i64]) -> Vec<i64> {
    dims.get(1..).unwrap_or_default().to_vec()
}

/// Where the model's lanes run, for the configuration's instance group.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// The runtime's backend is CUDA.
    pub gpu: bool,
    /// Lanes of the runtime.
    pub lanes: usize,
}

/// Triton's `ModelConfig` for a cohost model: name, platform, max_batch_size, input and
/// output (dims without the batch dim), dynamic_batching when batching is on.
pub fn config(name: &str, platform: &str, cfg: &ModelConfig, at: Placement) -> pb::ModelConfig {
    let input = cfg
        .inputs
        .iter()
        .map(|t| pb::ModelInput {
            name: t.name.clone(),
            data_type: config_datatype(t.datatype) as i32,
            dims: without_batch(&t.dims),
            ..Default::default()
        })
        .collect();
    let output = cfg
        .outputs
        .iter()
        .map(|t| pb::ModelOutput {
            name: t.name.clone(),
            data_type: config_datatype(t.datatype) as i32,
            dims: without_batch(&t.dims),
            ..Default::default()
        })
        .collect();
    let scheduling_choice = match cfg.batching.policy {
        BatchingPolicyKind::None => None,
        BatchingPolicyKind::Static | BatchingPolicyKind::Adaptive => Some(
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                max_queue_delay_microseconds: cfg.batching.max_queue_delay_us,
                preferred_batch_size: vec![cfg.batch_limit() as i32],
                ..Default::default()
            }),
        ),
    };
    let version_policy = {
        use pb::model_version_policy::{All, Latest, PolicyChoice, Specific};
        let choice = match &cfg.version_policy {
            VersionPolicy::Latest(n) => PolicyChoice::Latest(Latest { num_versions: *n }),
            VersionPolicy::All(_) => PolicyChoice::All(All {}),
            VersionPolicy::Specific(v) => PolicyChoice::Specific(Specific {
                versions: v.iter().map(|&x| x as i64).collect(),
            }),
        };
        pb::ModelVersionPolicy {
            policy_choice: Some(choice),
        }
    };
    let kind = if at.gpu {
        pb::model_instance_group::Kind::Gpu
    } else {
        pb::model_instance_group::Kind::Cpu
    };
    let lanes = cfg.max_lanes.unwrap_or(at.lanes).min(at.lanes.max(1));
    let mut parameters = HashMap::new();
    let mut param = |k: &str, v: String| {
        parameters.insert(k.to_string(), pb::ModelParameter { string_value: v });
    };
    param(
        "family",
        match cfg.family {
            Family::Mlp => "mlp".into(),
            Family::Dlrm => "dlrm".into(),
        },
    );
    param(
        "batching_policy",
        format!("{:?}", cfg.batching.policy).to_lowercase(),
    );
    if let Some(p99) = cfg.batching.p99_target_ms {
        param("p99_target_ms", p99.to_string());
    }
    param("priority", cfg.priority.to_string());
    param("max_queue_len", cfg.max_queue_len.to_string());
    pb::ModelConfig {
        name: name.to_string(),
        platform: platform.to_string(),
        backend: "cohost".to_string(),
        version_policy: Some(version_policy),
        max_batch_size: i32::try_from(cfg.max_batch_size).unwrap_or(i32::MAX),
        input,
        output,
        instance_group: vec![pb::ModelInstanceGroup {
            name: format!("{name}_lanes"),
            count: lanes as i32,
            kind: kind as i32,
            ..Default::default()
        }],
        scheduling_choice,
        parameters,
        model_transaction_policy: Some(pb::ModelTransactionPolicy { decoupled: false }),
    }
}

fn duration(d: StatisticDuration) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

/// `ModelStatistics` for one model version.
pub fn statistics(s: ModelStats) -> pb::ModelStatistics {
    pb::ModelStatistics {
        name: s.name,
        version: s.version.to_string(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: duration(s.compute_input),
            compute_infer: duration(s.compute_infer),
            compute_output: duration(s.compute_output),
            cache_hit: duration(StatisticDuration::default()),
            cache_miss: duration(StatisticDuration::default()),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(b.compute_input),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(b.compute_output),
            })
            .collect(),
    }
}

/// One repository-index row.
pub fn index_entry(e: RepositoryEntry) -> pb::repository_index_response::ModelIndex {
    pb::repository_index_response::ModelIndex {
        name: e.name,
        version: e.version.map(|v| v.to_string()).unwrap_or_default(),
        state: e.state.as_str().to_string(),
        reason: e.reason,
    }
}
