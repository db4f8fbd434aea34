//! The rules a `config.toml` must satisfy, per family; each error names file and key.

use crate::config::{ConfigError, DataType, Family, InteractionKind, ModelConfig, TensorSpec};
use std::path::Path;

struct Check<'a> {
    file: &'a Path,
}

impl Check<'_> {
    fn fail(&self, key: impl Into<String>, reason: impl Into<String>) -> Result<(), ConfigError> {
        Err(ConfigError {
            file: self.file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        })
    }

    fn require(
        &self,
        ok: bool,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<(), ConfigError> {
        if ok { Ok(()) } else { self.fail(key, reason) }
    }

    /// Exactly `want` tensors with these datatypes and dims, unique non-empty names.
    fn tensors(
        &self,
        key: &str,
        got: &[TensorSpec],
        want: &[(DataType, Vec<i64>, &str)],
    ) -> Result<(), ConfigError> {
        let what: Vec<&str> = want.iter().map(|w| w.2).collect();
        self.require(
            got.len() == want.len(),
            key,
            format!(
                "expected {} ({}), got {}",
                want.len(),
                what.join(", "),
                got.len()
            ),
        )?;
        for (i, (spec, (dt, dims, what))) in got.iter().zip(want).enumerate() {
            self.require(
                !spec.name.is_empty(),
                format!("{key}[{i}].name"),
                "must not be empty",
            )?;
            self.require(
                !got[..i].iter().any(|o| o.name == spec.name),
                format!("{key}[{i}].name"),
                format!("'{}' is used twice", spec.name),
            )?;
            self.require(
                spec.datatype == *dt,
                format!("{key}[{i}].datatype"),
                format!("{what} must be {dt}, got {}", spec.datatype),
            )?;
            self.require(
                spec.dims == *dims,
                format!("{key}[{i}].dims"),
                format!("{what} must have dims {dims:?}, got {:?}", spec.dims),
            )?;
        }
        Ok(())
    }

    fn widths(&self, key: &str, w: &[usize]) -> Result<(), ConfigError> {
        self.require(!w.is_empty(), key, "must list at least one layer width")?;
        self.require(
            !w.contains(&0),
            key,
            format!("every width must be at least 1, got {w:?}"),
        )
    }
}

/// Checks the serving keys and the family's keys.
pub(crate) fn validate(config: &ModelConfig, file: &Path) -> Result<(), ConfigError> {
    let c = Check { file };
    c.require(
        config.max_batch_size >= 1,
        "max_batch_size",
        "must be at least 1, got 0",
    )?;
    if let Some(b) = config.batching.max_batch_size {
        c.require(
            b >= 1,
            "batching.max_batch_size",
            "must be at least 1, got 0",
        )?;
    }
    if let Some(t) = config.batching.p99_target_ms {
        c.require(
            t.is_finite() && t > 0.0 && t <= 3_600_000.0,
            "batching.p99_target_ms",
            format!("must be a positive number of milliseconds up to one hour, got {t}"),
        )?;
    }
    c.require(
        config.weight.is_finite() && config.weight > 0.0,
        "weight",
        format!("must be positive, got {}", config.weight),
    )?;
    c.require(
        config.max_queue_len >= 1,
        "max_queue_len",
        "must be at least 1, got 0",
    )?;
    if let Some(l) = config.max_lanes {
        c.require(l >= 1, "max_lanes", "must be at least 1, got 0")?;
    }
    match config.family {
        Family::Mlp => {
            c.require(
                config.dlrm.is_none(),
                "dlrm",
                "only allowed when family = \"dlrm\"",
            )?;
            let Some(p) = &config.mlp else {
                return c.fail("mlp", "family \"mlp\" needs an [mlp] table with `layers`");
            };
            c.require(
                p.layers.len() >= 2,
                "mlp.layers",
                format!("needs at least input and output widths, got {:?}", p.layers),
            )?;
            c.widths("mlp.layers", &p.layers)?;
            let (inp, out) = (p.layers[0] as i64, *p.layers.last().unwrap() as i64);
            c.tensors(
                "inputs",
                &config.inputs,
                &[(DataType::FP32, vec![-1, inp], "the dense input")],
            )?;
            c.tensors(
                "outputs",
                &config.outputs,
                &[(DataType::FP32, vec![-1, out], "the output")],
            )
        }
        Family::Dlrm => {
            c.require(
                config.mlp.is_none(),
                "mlp",
                "only allowed when family = \"mlp\"",
            )?;
            let Some(p) = &config.dlrm else {
                return c.fail("dlrm", "family \"dlrm\" needs a [dlrm] table");
            };
            c.require(
                p.dense_features >= 1,
                "dlrm.dense_features",
                "must be at least 1, got 0",
            )?;
            c.require(
                p.embedding_dim >= 1,
                "dlrm.embedding_dim",
                "must be at least 1, got 0",
            )?;
            c.widths("dlrm.bottom", &p.bottom)?;
            let last = *p.bottom.last().unwrap();
            c.require(
                last == p.embedding_dim,
                "dlrm.bottom",
                format!(
                    "last width must equal embedding_dim ({}), got {last}",
                    p.embedding_dim
                ),
            )?;
            c.widths("dlrm.top", &p.top)?;
            let last = *p.top.last().unwrap();
            c.require(
                last == 1,
                "dlrm.top",
                format!("last width is the click probability and must be 1, got {last}"),
            )?;
            c.require(
                !p.table_sizes.is_empty(),
                "dlrm.table_sizes",
                "must list at least one table",
            )?;
            if let Some(t) = p.table_sizes.iter().position(|&r| r == 0) {
                return c.fail(
                    format!("dlrm.table_sizes[{t}]"),
                    "a table needs at least 1 row",
                );
            }
            let tables = p.table_sizes.len();
            c.require(
                p.multi_hot.len() == 1 || p.multi_hot.len() == tables,
                "dlrm.multi_hot",
                format!(
                    "needs 1 value (all tables) or one per table ({tables}), got {}",
                    p.multi_hot.len()
                ),
            )?;
            c.require(
                !p.multi_hot.contains(&0),
                "dlrm.multi_hot",
                format!("every bag needs at least 1 index, got {:?}", p.multi_hot),
            )?;
            if let Some(r) = p.cache_rows {
                c.require(r >= 1, "dlrm.cache_rows", "must be at least 1, got 0")?;
            }
            c.require(
                !p.interaction_itself || p.interaction == InteractionKind::Dot,
                "dlrm.interaction_itself",
                format!(
                    "applies only to interaction = \"dot\", got interaction = \"{}\"",
                    match p.interaction {
                        InteractionKind::Dot => "dot",
                        InteractionKind::Dcn => "dcn",
                        InteractionKind::Cat => "cat",
                    }
                ),
            )?;
            if p.interaction == InteractionKind::Dcn {
                c.require(
                    p.dcn_layers >= 1,
                    "dlrm.dcn_layers",
                    "interaction = \"dcn\" needs at least 1 cross layer, got 0",
                )?;
                c.require(
                    p.dcn_low_rank >= 1,
                    "dlrm.dcn_low_rank",
                    "interaction = \"dcn\" needs a low rank of at least 1, got 0",
                )?;
            }
            debug_assert!(p.interaction_width() > 0);
            let sparse: usize = p.bag_layout().iter().map(|b| b.1).sum();
            c.tensors(
                "inputs",
                &config.inputs,
                &[
                    (
                        DataType::FP32,
                        vec![-1, p.dense_features as i64],
                        "the dense input",
                    ),
                    (
                        DataType::INT64,
                        vec![-1, sparse as i64],
                        "the sparse input (sum of multi_hot)",
                    ),
                ],
            )?;
            c.tensors(
                "outputs",
                &config.outputs,
                &[(DataType::FP32, vec![-1, 1], "the prediction")],
            )
        }
    }
}
