//! `cohost import`: a DLRM checkpoint — PyTorch `.pt`/`.pth` state_dict or safetensors, in
//! the reference DLRM's, TorchRec's or cohost's own names — into a model folder
//! (`config.toml` + `1/model.safetensors`) that `cohost serve` loads.
//!
//! The architecture comes from the tensors' names and shapes; what they cannot say (the
//! order of TorchRec's named tables in a safetensors file, indices per bag, the
//! interaction when widths are ambiguous) from [`ImportOptions`]. A mismatch is refused
//! naming the tensor or flag and what was expected; the folder is written beside its
//! target under a temporary name and renamed into place, so a failure leaves nothing.

mod arch;
mod checkpoint;
mod layout;

use crate::config::ModelConfig;
use std::fmt;
use std::path::{Path, PathBuf};

/// The naming scheme of a checkpoint's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Detect it from the names.
    Auto,
    /// facebookresearch/dlrm `dlrm_s_pytorch.py` (`emb_l`, `bot_l`, `top_l`).
    Reference,
    /// TorchRec `DLRM` / `DLRM_DCN` (`sparse_arch`, `dense_arch`, `over_arch`, `inter_arch`).
    Torchrec,
    /// cohost's own (`embeddings`, `bottom`, `top`, `crossnet`).
    Cohost,
}

impl Layout {
    /// The flag spelling ("torchrec").
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Auto => "auto",
            Layout::Reference => "reference",
            Layout::Torchrec => "torchrec",
            Layout::Cohost => "cohost",
        }
    }

    /// Parses the flag spelling.
    pub fn parse(s: &str) -> Option<Layout> {
        [
            Layout::Auto,
            Layout::Reference,
            Layout::Torchrec,
            Layout::Cohost,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// How the bottom output and the pooled embeddings meet before the top MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// Pairwise dot products, strict lower triangle (cohost's default).
    Dot,
    /// Pairwise dot products including each vector with itself (`interaction_itself`).
    DotItself,
    /// Concatenation.
    Cat,
    /// A low-rank cross net over the concatenation (TorchRec `DLRM_DCN`).
    Dcn,
}

impl Interaction {
    /// The flag spelling ("dot-itself").
    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Dot => "dot",
            Interaction::DotItself => "dot-itself",
            Interaction::Cat => "cat",
            Interaction::Dcn => "dcn",
        }
    }

    /// Parses the flag spelling.
    pub fn parse(s: &str) -> Option<Interaction> {
        [
            Interaction::Dot,
            Interaction::DotItself,
            Interaction::Cat,
            Interaction::Dcn,
        ]
        .into_iter()
        .find(|i| i.as_str() == s)
    }
}

/// What to import, where, and what the checkpoint cannot say.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The checkpoint (`.pt`/`.pth` zip state_dict, or safetensors).
    pub from: PathBuf,
    /// The model folder to create, `DIR/NAME` (must not exist).
    pub out: PathBuf,
    /// The naming scheme, or `Auto`.
    pub layout: Layout,
    /// TorchRec table names in the model's order (`--tables`).
    pub tables: Option<Vec<String>>,
    /// A TOML file with the table order and bag sizes (`--table-map`).
    pub table_map: Option<PathBuf>,
    /// Indices per bag: one value for all tables or one per table (default 1).
    pub multi_hot: Option<Vec<usize>>,
    /// Dense features the caller expects (checked against the checkpoint).
    pub dense_features: Option<usize>,
    /// The interaction, when the top MLP's input width fits more than one.
    pub interaction: Option<Interaction>,
    /// Keep fp16/bf16 tensors as stored (cohost widens them at load) instead of f32.
    pub keep_half: bool,
}

impl ImportOptions {
    /// Options with everything inferred: `from` into `out`.
    pub fn new(from: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        ImportOptions {
            from: from.into(),
            out: out.into(),
            layout: Layout::Auto,
            tables: None,
            table_map: None,
            multi_hot: None,
            dense_features: None,
            interaction: None,
            keep_half: false,
        }
    }
}

/// Why an import was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportError {
    /// The checkpoint or the table map cannot be read.
    Read(String),
    /// The tensor names fit no known layout (or not the one asked for).
    UnknownLayout(String),
    /// A tensor is missing, has the wrong shape or dtype, or is not expected.
    Tensor {
        /// The tensor, by its name in the checkpoint.
        tensor: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A flag contradicts the checkpoint or another flag, or is needed.
    Flag {
        /// The flag (`--multi-hot`).
        flag: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// The model folder cannot be written (or this cohost cannot serve what was read).
    Write(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Read(m) | ImportError::UnknownLayout(m) | ImportError::Write(m) => {
                f.write_str(m)
            }
            ImportError::Tensor { tensor, problem } => write!(f, "tensor '{tensor}': {problem}"),
            ImportError::Flag { flag, problem } => write!(f, "{flag}: {problem}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// A checkpoint converted to cohost's form, not yet written.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The layout the names were read in.
    pub layout: Layout,
    /// The wrapper prefix stripped from every name (`model.`), or empty.
    pub prefix: String,
    /// The `config.toml` text.
    pub config: String,
    /// Each table's tensor name in the checkpoint, in cohost's table order.
    pub table_sources: Vec<String>,
    /// `(cohost name, dtype, shape)` of every tensor, in file order.
    pub tensors: Vec<(String, safetensors::Dtype, Vec<usize>)>,
    weights: Vec<u8>,
}

impl Converted {
    /// The `model.safetensors` bytes.
    pub fn weights(&self) -> &[u8] {
        &self.weights
    }
}

/// The `--table-map` file: `[[table]]` entries in the model's order.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableMap {
    table: Vec<TableEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    name: String,
    multi_hot: Option<usize>,
}

/// Table order and indices per bag, as the flags and the table map give them.
type TableFlags = (Option<Vec<String>>, Option<Vec<usize>>);

/// `(tables, multi_hot)` from the flags and the table map.
fn table_flags(opts: &ImportOptions) -> Result<TableFlags, ImportError> {
    let Some(path) = &opts.table_map else {
        return Ok((opts.tables.clone(), opts.multi_hot.clone()));
    };
    let flag = |problem: String| ImportError::Flag {
        flag: "--table-map".into(),
        problem,
    };
    if opts.tables.is_some() {
        return Err(flag(
            "and --tables both give the table order; use one".into(),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ImportError::Read(format!("cannot read {}: {e}", path.display())))?;
    let map: TableMap = toml::from_str(&text).map_err(|e| {
        flag(format!(
            "{}: {} (expected [[table]] entries with `name` and optional `multi_hot`)",
            path.display(),
            e.to_string().trim().replace('\n', " ")
        ))
    })?;
    let tables = map.table.iter().map(|t| t.name.clone()).collect();
    let given: Vec<usize> = map.table.iter().filter_map(|t| t.multi_hot).collect();
    let multi_hot = match (given.len(), &opts.multi_hot) {
        (0, m) => m.clone(),
        (_, Some(_)) => {
            return Err(flag(format!(
                "{} gives multi_hot and so does --multi-hot; use one",
                path.display()
            )));
        }
        (n, None) if n == map.table.len() => Some(given),
        _ => {
            return Err(flag(format!(
                "{}: multi_hot is given for some tables but not all",
                path.display()
            )));
        }
    };
    Ok((Some(tables), multi_hot))
}

/// Reads and converts a checkpoint without writing anything.
pub fn convert(opts: &ImportOptions) -> Result<Converted, ImportError> {
    let (tables, multi_hot) = table_flags(opts)?;
    let ck = checkpoint::read(&opts.from)?;
    let names: Vec<&str> = ck.tensors.iter().map(|t| t.name.as_str()).collect();
    let (layout, prefix) = layout::detect(&names, opts.layout)?;
    let prefix = prefix.to_string();
    let hints = arch::Hints {
        tables: tables.as_deref(),
        multi_hot: multi_hot.as_deref(),
        dense_features: opts.dense_features,
        interaction: opts.interaction,
        keep_half: opts.keep_half,
    };
    let a = arch::infer(ck, layout, &prefix, &hints)?;
    let config = config_text(&a, opts, layout);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = a
        .tensors
        .iter()
        .map(|(name, t)| {
            let view =
                safetensors::tensor::TensorView::new(t.stored.dtype(), t.shape.clone(), &t.bytes)
                    .map_err(|e| ImportError::Tensor {
                    tensor: t.name.clone(),
                    problem: format!("its data does not match its shape {:?}: {e}", t.shape),
                })?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_, ImportError>>()?;
    let tensors = views
        .iter()
        .map(|(n, v)| (n.clone(), v.dtype(), v.shape().to_vec()))
        .collect();
    let weights = safetensors::serialize(views, None)
        .map_err(|e| ImportError::Write(format!("cannot encode the weights: {e}")))?;
    Ok(Converted {
        layout,
        prefix,
        config,
        table_sources: a.table_sources,
        tensors,
        weights,
    })
}

/// The `config.toml` for `a`: the `[dlrm]` keys, the interaction keys only when not the
/// default dot.
fn config_text(a: &arch::Arch, opts: &ImportOptions, layout: Layout) -> String {
    let list = |v: &[usize]| {
        let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        format!("[{}]", s.join(", "))
    };
    let sparse: usize = if a.multi_hot.len() == 1 {
        a.multi_hot[0] * a.table_sizes.len()
    } else {
        a.multi_hot.iter().sum()
    };
    let mut dlrm = format!(
        "dense_features = {}\nbottom = {}\ntop = {}\nembedding_dim = {}\ntable_sizes = {}\nmulti_hot = {}\n",
        a.dense_features,
        list(&a.bottom),
        list(&a.top),
        a.embedding_dim,
        list(&a.table_sizes),
        list(&a.multi_hot),
    );
    match a.interaction {
        Interaction::Dot => {}
        Interaction::DotItself => {
            dlrm.push_str("interaction = \"dot\"\ninteraction_itself = true\n")
        }
        Interaction::Cat => dlrm.push_str("interaction = \"cat\"\n"),
        Interaction::Dcn => {
            let (layers, rank) = a.dcn.unwrap_or((0, 0));
            dlrm.push_str(&format!(
                "interaction = \"dcn\"\ndcn_layers = {layers}\ndcn_low_rank = {rank}\n"
            ));
        }
    }
    let source = opts
        .from
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "# Written by `cohost import` from {source} ({} layout).\n\
         # Tables, in order: {}\n\
         family = \"dlrm\"\n\
         max_batch_size = 512\n\n\
         [[inputs]]\nname = \"dense\"\ndatatype = \"FP32\"\ndims = [-1, {}]\n\n\
         [[inputs]]\nname = \"sparse\"\ndatatype = \"INT64\"\ndims = [-1, {sparse}]\n\n\
         [[outputs]]\nname = \"prediction\"\ndatatype = \"FP32\"\ndims = [-1, 1]\n\n\
         [dlrm]\n{dlrm}",
        layout.as_str(),
        a.table_sources.join(", "),
        a.dense_features,
    )
}

/// Removes a temporary folder unless the import committed it.
struct Scratch(Option<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Converts the checkpoint and writes `opts.out` (`config.toml` + `1/model.safetensors`),
/// all or nothing.
pub fn import(opts: &ImportOptions) -> Result<Converted, ImportError> {
    let out = &opts.out;
    let (Some(name), parent) = (out.file_name(), out.parent()) else {
        return Err(ImportError::Write(format!(
            "--out {}: expected DIR/NAME, the model folder to create",
            out.display()
        )));
    };
    if out.exists() {
        return Err(ImportError::Write(format!(
            "{} exists; remove it or choose another model name",
            out.display()
        )));
    }
    let converted = convert(opts)?;
    let config_path = out.join("config.toml");
    ModelConfig::from_toml(&converted.config, &config_path).map_err(|e| {
        ImportError::Write(format!(
            "this cohost cannot serve the model read from {}: {e}",
            opts.from.display()
        ))
    })?;
    let dir = match parent {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write = |e: std::io::Error, what: &Path| {
        ImportError::Write(format!("cannot write {}: {e}", what.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| write(e, &dir))?;
    let tmp = dir.join(format!(
        ".{}.import-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut scratch = Scratch(Some(tmp.clone()));
    let version = tmp.join("1");
    std::fs::create_dir_all(&version).map_err(|e| write(e, &version))?;
    let put = |path: PathBuf, bytes: &[u8]| -> Result<(), ImportError> {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).map_err(|e| write(e, &path))?;
        f.write_all(bytes).map_err(|e| write(e, &path))?;
        f.sync_all().map_err(|e| write(e, &path))
    };
    put(tmp.join("config.toml"), converted.config.as_bytes())?;
    put(version.join("model.safetensors"), &converted.weights)?;
    std::fs::rename(&tmp, out).map_err(|e| write(e, out))?;
    scratch.0 = None;
    Ok(converted)
}
