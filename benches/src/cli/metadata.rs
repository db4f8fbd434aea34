//! A model's configuration from a server's metadata, for generating requests without its
//! repository (dense models only).

use anyhow::{Context, bail};
use cohost_models::{BatchingConfig, DataType, Family, ModelConfig, TensorSpec, VersionPolicy};

/// A config good enough for request generation from `GET /v2/models/{name}` (dense models).
pub async fn config_from_metadata(base: &str, name: &str) -> anyhow::Result<ModelConfig> {
    let url = format!("{}/v2/models/{name}", base.trim_end_matches('/'));
    let meta: serde_json::Value = reqwest::get(&url)
        .await?
        .error_for_status()?
        .json()
        .await
        .with_context(|| url.clone())?;
    let mut inputs = Vec::new();
    for i in meta["inputs"]
        .as_array()
        .context("metadata without inputs")?
    {
        let datatype =
            DataType::parse(i["datatype"].as_str().unwrap_or("")).context("input datatype")?;
        if datatype != DataType::FP32 {
            bail!(
                "model '{name}' has a {datatype} input: pass --model-repository DIR so indices fit its tables"
            );
        }
        let dims = i["shape"]
            .as_array()
            .context("input shape")?
            .iter()
            .filter_map(|d| d.as_i64())
            .collect();
        inputs.push(TensorSpec {
            name: i["name"].as_str().unwrap_or("").to_string(),
            datatype,
            dims,
        });
    }
    Ok(ModelConfig {
        family: Family::Mlp,
        inputs,
        outputs: Vec::new(),
        max_batch_size: usize::MAX,
        batching: BatchingConfig::default(),
        priority: 0,
        weight: 1.0,
        max_queue_len: 0,
        max_lanes: None,
        memory_budget: None,
        version_policy: VersionPolicy::default(),
        weight_precision: Default::default(),
        mlp: None,
        dlrm: None,
    })
}
