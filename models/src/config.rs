//! `config.toml`: what a model is (family, inputs, outputs, hyper-parameters) and how it
//! is served (batching, priority, queue bound, versions).

mod rules;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Upper bounds of a config's sizes, checked by [`ModelConfig::validate`]: far above any
/// model this server runs, low enough that every byte and parameter estimate derived
/// from them (rows × dim × 4 summed over tables, in × out per layer, the cross net) fits
/// in a `u64` with room to spare.
pub mod bounds {
    /// Largest `max_batch_size` and `batching.max_batch_size`, in rows.
    pub const BATCH_ROWS: usize = 1 << 20;
    /// Largest `max_queue_len`, in requests.
    pub const QUEUE_LEN: usize = 1 << 20;
    /// Largest `batching.max_queue_delay_us`: one hour.
    pub const QUEUE_DELAY_US: u64 = 3_600_000_000;
    /// Largest `max_lanes`.
    pub const LANES: usize = 4096;
    /// Largest `weight` (fair share).
    pub const WEIGHT: f64 = 1e6;
    /// Most widths in `mlp.layers`, `dlrm.bottom` and `dlrm.top`.
    pub const LAYERS: usize = 1024;
    /// Largest layer width, `dlrm.dense_features` and `dlrm.dcn_low_rank`.
    pub const WIDTH: usize = 1 << 20;
    /// Largest `dlrm.embedding_dim`.
    pub const EMBEDDING_DIM: usize = 1 << 16;
    /// Most embedding tables (`dlrm.table_sizes` entries).
    pub const TABLES: usize = 1024;
    /// Largest table (`dlrm.table_sizes[t]`) and `dlrm.cache_rows`, in rows.
    pub const TABLE_ROWS: usize = 1 << 34;
    /// Largest bag (`dlrm.multi_hot[t]`), in indices.
    pub const MULTI_HOT: usize = 1 << 16;
    /// Most cross layers (`dlrm.dcn_layers`).
    pub const DCN_LAYERS: usize = 1024;
}

/// A KServe v2 tensor datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    BOOL,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    INT8,
    INT16,
    INT32,
    INT64,
    FP16,
    BF16,
    FP32,
    FP64,
    BYTES,
}

impl DataType {
    /// Every datatype, in the order the protocol lists them.
    pub const ALL: [DataType; 14] = [
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

    /// The protocol name ("FP32").
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::BOOL => "BOOL",
            DataType::UINT8 => "UINT8",
            DataType::UINT16 => "UINT16",
            DataType::UINT32 => "UINT32",
            DataType::UINT64 => "UINT64",
            DataType::INT8 => "INT8",
            DataType::INT16 => "INT16",
            DataType::INT32 => "INT32",
            DataType::INT64 => "INT64",
            DataType::FP16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::FP32 => "FP32",
            DataType::FP64 => "FP64",
            DataType::BYTES => "BYTES",
        }
    }

    /// Parses a protocol name.
    pub fn parse(s: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Bytes per element, `None` for BYTES.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::BOOL | DataType::UINT8 | DataType::INT8 => 1,
            DataType::UINT16 | DataType::INT16 | DataType::FP16 | DataType::BF16 => 2,
            DataType::UINT32 | DataType::INT32 | DataType::FP32 => 4,
            DataType::UINT64 | DataType::INT64 | DataType::FP64 => 8,
            DataType::BYTES => return None,
        })
    }

    /// Triton's model-configuration name ("TYPE_FP32"; BYTES is "TYPE_STRING").
    pub fn triton_name(self) -> &'static str {
        match self {
            DataType::BOOL => "TYPE_BOOL",
            DataType::UINT8 => "TYPE_UINT8",
            DataType::UINT16 => "TYPE_UINT16",
            DataType::UINT32 => "TYPE_UINT32",
            DataType::UINT64 => "TYPE_UINT64",
            DataType::INT8 => "TYPE_INT8",
            DataType::INT16 => "TYPE_INT16",
            DataType::INT32 => "TYPE_INT32",
            DataType::INT64 => "TYPE_INT64",
            DataType::FP16 => "TYPE_FP16",
            DataType::BF16 => "TYPE_BF16",
            DataType::FP32 => "TYPE_FP32",
            DataType::FP64 => "TYPE_FP64",
            DataType::BYTES => "TYPE_STRING",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which model family a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// dense → (Linear+ReLU)* → Linear (→ sigmoid).
    Mlp,
    /// The reference DLRM: bottom MLP, embedding-bags, dot interaction, top MLP, sigmoid.
    Dlrm,
}

/// A named input or output: datatype and dims, `-1` for the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name as clients send it.
    pub name: String,
    /// KServe datatype name ("FP32", "INT64").
    pub datatype: DataType,
    /// Full shape including the leading batch dimension (`-1`).
    pub dims: Vec<i64>,
}

/// How requests are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchingPolicyKind {
    /// Every request runs on its own.
    None,
    /// Close a batch at `max_batch_size` rows or after `max_queue_delay_us` (Triton-like).
    #[default]
    Static,
    /// SLO-aware: close when waiting longer would break `p99_target_ms`.
    Adaptive,
}

/// The `[batching]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Which policy closes batches.
    pub policy: BatchingPolicyKind,
    /// Largest batch in rows (defaults to the model's `max_batch_size`).
    pub max_batch_size: Option<usize>,
    /// Longest a request waits for company, in microseconds (static policy).
    pub max_queue_delay_us: u64,
    /// Latency target for the adaptive policy and for deadline admission.
    pub p99_target_ms: Option<f64>,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            policy: BatchingPolicyKind::Static,
            max_batch_size: None,
            max_queue_delay_us: 500,
            p99_target_ms: None,
        }
    }
}

/// Which versions of a model are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    /// The `n` highest-numbered versions.
    Latest(u32),
    /// Exactly these versions.
    Specific(Vec<u64>),
    /// Every version present.
    All(bool),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

/// MLP hyper-parameters (`[mlp]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpParams {
    /// Layer widths including input and output: `[in, h1, .., out]`.
    pub layers: Vec<usize>,
    /// Apply a sigmoid to the output.
    #[serde(default)]
    pub sigmoid: bool,
}

/// DLRM hyper-parameters (`[dlrm]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlrmParams {
    /// Number of dense features (input width of the bottom MLP).
    pub dense_features: usize,
    /// Bottom MLP widths after the input, the last equal to `embedding_dim`.
    pub bottom: Vec<usize>,
    /// Top MLP widths after the interaction, the last is the output width (1).
    pub top: Vec<usize>,
    /// Embedding dimension of every table.
    pub embedding_dim: usize,
    /// Rows of each table.
    pub table_sizes: Vec<usize>,
    /// Indices per bag for each table (1 = one-hot); one value applies to all tables.
    pub multi_hot: Vec<usize>,
    /// Allow tables to be offloaded to host memory when they do not fit the budget.
    #[serde(default = "default_true")]
    pub offload: bool,
    /// Rows of the device-side hot-row cache per offloaded table (default: 10% of rows).
    #[serde(default)]
    pub cache_rows: Option<usize>,
    /// Row storage of each offloaded table's cache in bytes (instead of `cache_rows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// Eviction policy of the hot-row caches: `"lru"` (default) or `"lfu"`.
    #[serde(default)]
    pub cache_policy: CachePolicyKind,
    /// How the bottom output and pooled embeddings meet: `"dot"` (default), `"dcn"`, `"cat"`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub interaction: InteractionKind,
    /// Dot interaction only: keep the self-products (the Gram matrix's diagonal) too.
    #[serde(default, skip_serializing_if = "is_default")]
    pub interaction_itself: bool,
    /// DCN only: cross layers.
    #[serde(
        default = "default_dcn_layers",
        skip_serializing_if = "is_default_dcn_layers"
    )]
    pub dcn_layers: usize,
    /// DCN only: rank of each cross layer's `W_l V_l` factorisation.
    #[serde(
        default = "default_dcn_low_rank",
        skip_serializing_if = "is_default_dcn_low_rank"
    )]
    pub dcn_low_rank: usize,
}

/// The DLRM feature interaction (`dlrm.interaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionKind {
    /// Pairwise dot products of `[bottom out, pooled..]` after the bottom output.
    #[default]
    Dot,
    /// TorchRec's `LowRankCrossNet` over the concatenated features.
    Dcn,
    /// The concatenated features.
    Cat,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_dcn_layers() -> usize {
    3
}

fn is_default_dcn_layers(v: &usize) -> bool {
    *v == default_dcn_layers()
}

fn default_dcn_low_rank() -> usize {
    512
}

fn is_default_dcn_low_rank(v: &usize) -> bool {
    *v == default_dcn_low_rank()
}

impl DlrmParams {
    /// Per table `(offset, bag)` inside one sparse row, from `multi_hot`.
    pub(crate) fn bag_layout(&self) -> Vec<(usize, usize)> {
        let mut off = 0;
        (0..self.table_sizes.len())
            .map(|t| {
                let h = if self.multi_hot.len() == 1 {
                    self.multi_hot[0]
                } else {
                    self.multi_hot[t]
                };
                off += h;
                (off - h, h)
            })
            .collect()
    }

    /// Width of the interaction output (= input width of the top MLP); saturates at
    /// `usize::MAX` (a validated config stays far below).
    pub(crate) fn interaction_width(&self) -> usize {
        let f = self.table_sizes.len() + 1;
        match self.interaction {
            InteractionKind::Dot if self.interaction_itself => {
                (self.embedding_dim).saturating_add(f.saturating_mul(f + 1) / 2)
            }
            InteractionKind::Dot => {
                (self.embedding_dim).saturating_add(f.saturating_mul(f - 1) / 2)
            }
            InteractionKind::Dcn | InteractionKind::Cat => f.saturating_mul(self.embedding_dim),
        }
    }

    /// Bytes of the DCN cross net's weights and biases (f32, with the `[1, low_rank]` zero
    /// bias of its `V` products); 0 for other interactions. Saturates at `u64::MAX`.
    pub(crate) fn crossnet_bytes(&self) -> u64 {
        if self.interaction != InteractionKind::Dcn {
            return 0;
        }
        let w = self.interaction_width() as u64;
        let r = self.dcn_low_rank as u64;
        let per_layer = w.saturating_mul(r).saturating_mul(2).saturating_add(w);
        (self.dcn_layers as u64)
            .saturating_mul(4)
            .saturating_mul(per_layer)
            .saturating_add(r.saturating_mul(4))
    }
}

/// Storage precision of the dense layers' weight matrices (`weight_precision`); biases,
/// activations and sums stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightPrecision {
    /// IEEE f32, as the weights file stores them.
    #[default]
    Fp32,
    /// IEEE f16, rounded to nearest at load and widened to f32 in the products: half the
    /// bytes each batch streams (CPU backend; the CUDA backend keeps f32).
    Fp16,
}

impl WeightPrecision {
    /// Bytes of one stored weight.
    pub fn bytes(self) -> u64 {
        match self {
            WeightPrecision::Fp32 => 4,
            WeightPrecision::Fp16 => 2,
        }
    }
}

/// Eviction policy of an offloaded table's hot-row cache (`dlrm.cache_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicyKind {
    /// Least recently used.
    #[default]
    Lru,
    /// Least frequently used (ties: least recently used).
    Lfu,
}

fn default_true() -> bool {
    true
}

/// A model's `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model family.
    pub family: Family,
    /// Inputs, in the order the family consumes them.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the order the family produces them.
    pub outputs: Vec<TensorSpec>,
    /// Largest number of rows one request or one batch may carry.
    pub max_batch_size: usize,
    /// Batching policy.
    #[serde(default)]
    pub batching: BatchingConfig,
    /// Scheduling priority (higher runs first among equal deadlines).
    #[serde(default)]
    pub priority: i32,
    /// Weight of this model's fair share of the lanes.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Bound of the model's request queue, in requests.
    #[serde(default = "default_queue_len")]
    pub max_queue_len: usize,
    /// Most lanes this model may occupy at once (default: all).
    #[serde(default)]
    pub max_lanes: Option<usize>,
    /// Memory budget for this model in bytes (default: the runtime's).
    #[serde(default)]
    pub memory_budget: Option<u64>,
    /// Which versions are served.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Storage precision of the dense layers' weights (default f32).
    #[serde(default)]
    pub weight_precision: WeightPrecision,
    /// MLP hyper-parameters, when `family = "mlp"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp: Option<MlpParams>,
    /// DLRM hyper-parameters, when `family = "dlrm"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlrm: Option<DlrmParams>,
}

fn default_weight() -> f64 {
    1.0
}

fn default_queue_len() -> usize {
    1024
}

/// An invalid `config.toml`: which file, which key, why.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file (or "<inline>" for configs built in code).
    pub file: PathBuf,
    /// Dotted key path (`dlrm.bottom`), empty when the file as a whole is wrong.
    pub key: String,
    /// What is wrong and what would be right.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{}: key '{}': {}",
                self.file.display(),
                self.key,
                self.reason
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl ModelConfig {
    /// Reads and validates a `config.toml`.
    pub fn from_file(path: &Path) -> Result<ModelConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `file` is only used in error messages.
    pub fn from_toml(text: &str, file: &Path) -> Result<ModelConfig, ConfigError> {
        let cfg: ModelConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            key: String::new(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Largest batch in rows the batcher may form.
    pub fn batch_limit(&self) -> usize {
        self.batching
            .max_batch_size
            .unwrap_or(self.max_batch_size)
            .min(self.max_batch_size)
            .max(1)
    }

    /// Checks every key against the family's needs; `file` names the source in errors.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        rules::validate(self, file)
    }
}
