//! The rules a `config.toml` must satisfy, per family; each error names file and key.

use crate::config::bounds;
use crate::config::{ConfigError, DataType, Family, InteractionKind, ModelConfig, TensorSpec};
use std::fmt::Display;
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

    /// `value` at most `max` (a stated bound of [`bounds`]).
    fn at_most<T: PartialOrd + Display>(
        &self,
        value: T,
        max: T,
        key: impl Into<String>,
    ) -> Result<(), ConfigError> {
        self.require(
            value <= max,
            key,
            format!("must be at most {max}, got {value}"),
        )
    }

    fn widths(&self, key: &str, w: &[usize]) -> Result<(), ConfigError> {
        self.require(!w.is_empty(), key, "must list at least one layer width")?;
        self.require(
            w.len() <= bounds::LAYERS,
            key,
            format!(
                "must list at most {} layer widths, got {}",
                bounds::LAYERS,
                w.len()
            ),
        )?;
        self.require(
            !w.contains(&0),
            key,
            format!("every width must be at least 1, got {w:?}"),
        )?;
        match w.iter().position(|&x| x > bounds::WIDTH) {
            Some(i) => self.at_most(w[i], bounds::WIDTH, format!("{key}[{i}]")),
            None => Ok(()),
        }
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
    c.at_most(config.max_batch_size, bounds::BATCH_ROWS, "max_batch_size")?;
    if let Some(b) = config.batching.max_batch_size {
        c.require(
            b >= 1,
            "batching.max_batch_size",
            "must be at least 1, got 0",
        )?;
        c.at_most(b, bounds::BATCH_ROWS, "batching.max_batch_size")?;
    }
    c.at_most(
        config.batching.max_queue_delay_us,
        bounds::QUEUE_DELAY_US,
        "batching.max_queue_delay_us",
    )?;
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
    c.at_most(config.weight, bounds::WEIGHT, "weight")?;
    c.require(
        config.max_queue_len >= 1,
        "max_queue_len",
        "must be at least 1, got 0",
    )?;
    c.at_most(config.max_queue_len, bounds::QUEUE_LEN, "max_queue_len")?;
    if let Some(l) = config.max_lanes {
        c.require(l >= 1, "max_lanes", "must be at least 1, got 0")?;
        c.at_most(l, bounds::LANES, "max_lanes")?;
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
            c.at_most(p.dense_features, bounds::WIDTH, "dlrm.dense_features")?;
            c.require(
                p.embedding_dim >= 1,
                "dlrm.embedding_dim",
                "must be at least 1, got 0",
            )?;
            c.at_most(p.embedding_dim, bounds::EMBEDDING_DIM, "dlrm.embedding_dim")?;
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
            c.require(
                p.table_sizes.len() <= bounds::TABLES,
                "dlrm.table_sizes",
                format!(
                    "must list at most {} tables, got {}",
                    bounds::TABLES,
                    p.table_sizes.len()
                ),
            )?;
            if let Some(t) = p.table_sizes.iter().position(|&r| r == 0) {
                return c.fail(
                    format!("dlrm.table_sizes[{t}]"),
                    "a table needs at least 1 row",
                );
            }
            if let Some(t) = p.table_sizes.iter().position(|&r| r > bounds::TABLE_ROWS) {
                return c.at_most(
                    p.table_sizes[t],
                    bounds::TABLE_ROWS,
                    format!("dlrm.table_sizes[{t}]"),
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
            if let Some(t) = p.multi_hot.iter().position(|&h| h > bounds::MULTI_HOT) {
                return c.at_most(
                    p.multi_hot[t],
                    bounds::MULTI_HOT,
                    format!("dlrm.multi_hot[{t}]"),
                );
            }
            if let Some(r) = p.cache_rows {
                c.require(r >= 1, "dlrm.cache_rows", "must be at least 1, got 0")?;
                c.at_most(r, bounds::TABLE_ROWS, "dlrm.cache_rows")?;
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
                c.at_most(p.dcn_layers, bounds::DCN_LAYERS, "dlrm.dcn_layers")?;
                c.at_most(p.dcn_low_rank, bounds::WIDTH, "dlrm.dcn_low_rank")?;
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

#[cfg(test)]
mod tests {
    use crate::config::{InteractionKind, ModelConfig, bounds};
    use crate::synth::{preset, weight_bytes};
    use std::path::Path;

    fn refused(c: &ModelConfig) -> (String, String) {
        let e = c
            .validate(Path::new("config.toml"))
            .expect_err("an out-of-bounds config was accepted");
        (e.key, e.reason)
    }

    /// One past each bound is refused, naming the key and the bound; the bound itself is
    /// accepted.
    #[test]
    fn sizes_have_stated_upper_bounds() {
        type Edit = fn(&mut ModelConfig, usize);
        let mlp = preset("mlp-tiny").unwrap();
        let dlrm = preset("dlrm-tiny").unwrap();
        let cases: Vec<(&ModelConfig, Edit, &str, usize)> = vec![
            (
                &mlp,
                |c, v| c.max_batch_size = v,
                "max_batch_size",
                bounds::BATCH_ROWS,
            ),
            (
                &mlp,
                |c, v| c.batching.max_batch_size = Some(v),
                "batching.max_batch_size",
                bounds::BATCH_ROWS,
            ),
            (
                &mlp,
                |c, v| c.batching.max_queue_delay_us = v as u64,
                "batching.max_queue_delay_us",
                bounds::QUEUE_DELAY_US as usize,
            ),
            (
                &mlp,
                |c, v| c.max_queue_len = v,
                "max_queue_len",
                bounds::QUEUE_LEN,
            ),
            (
                &mlp,
                |c, v| c.max_lanes = Some(v),
                "max_lanes",
                bounds::LANES,
            ),
            (
                &mlp,
                |c, v| {
                    c.mlp.as_mut().unwrap().layers[1] = v;
                },
                "mlp.layers[1]",
                bounds::WIDTH,
            ),
            (
                &dlrm,
                |c, v| {
                    let p = c.dlrm.as_mut().unwrap();
                    p.dense_features = v;
                    c.inputs[0].dims[1] = v as i64;
                },
                "dlrm.dense_features",
                bounds::WIDTH,
            ),
            (
                &dlrm,
                |c, v| {
                    let p = c.dlrm.as_mut().unwrap();
                    p.embedding_dim = v;
                    *p.bottom.last_mut().unwrap() = v;
                },
                "dlrm.embedding_dim",
                bounds::EMBEDDING_DIM,
            ),
            (
                &dlrm,
                |c, v| c.dlrm.as_mut().unwrap().table_sizes[2] = v,
                "dlrm.table_sizes[2]",
                bounds::TABLE_ROWS,
            ),
            (
                &dlrm,
                |c, v| {
                    let p = c.dlrm.as_mut().unwrap();
                    p.multi_hot[1] = v;
                    let sparse: usize = p.multi_hot.iter().sum();
                    c.inputs[1].dims[1] = sparse as i64;
                },
                "dlrm.multi_hot[1]",
                bounds::MULTI_HOT,
            ),
            (
                &dlrm,
                |c, v| c.dlrm.as_mut().unwrap().cache_rows = Some(v),
                "dlrm.cache_rows",
                bounds::TABLE_ROWS,
            ),
            (
                &dlrm,
                |c, v| {
                    let p = c.dlrm.as_mut().unwrap();
                    p.interaction = InteractionKind::Dcn;
                    p.dcn_layers = v;
                },
                "dlrm.dcn_layers",
                bounds::DCN_LAYERS,
            ),
            (
                &dlrm,
                |c, v| {
                    let p = c.dlrm.as_mut().unwrap();
                    p.interaction = InteractionKind::Dcn;
                    p.dcn_low_rank = v;
                },
                "dlrm.dcn_low_rank",
                bounds::WIDTH,
            ),
        ];
        for (base, edit, key, bound) in cases {
            let mut at = base.clone();
            edit(&mut at, bound);
            at.validate(Path::new("config.toml"))
                .unwrap_or_else(|e| panic!("{key} = {bound} refused: {e}"));
            let mut over = base.clone();
            edit(&mut over, bound + 1);
            let (k, reason) = refused(&over);
            assert_eq!(k, key);
            assert!(
                reason.contains(&format!("at most {bound}")) && reason.contains("got"),
                "{key}: {reason}"
            );
        }
        let mut c = mlp.clone();
        c.weight = 2e6;
        assert_eq!(refused(&c).0, "weight");
    }

    /// Lists too long to estimate are refused by length.
    #[test]
    fn list_lengths_are_bounded() {
        let mut c = preset("mlp-tiny").unwrap();
        let p = c.mlp.as_mut().unwrap();
        p.layers = vec![8; bounds::LAYERS + 1];
        p.layers.push(4);
        let (key, reason) = refused(&c);
        assert_eq!(key, "mlp.layers");
        assert!(reason.contains(&bounds::LAYERS.to_string()), "{reason}");

        let mut c = preset("dlrm-tiny").unwrap();
        let p = c.dlrm.as_mut().unwrap();
        p.table_sizes = vec![10; bounds::TABLES + 1];
        p.multi_hot = vec![1];
        c.inputs[1].dims[1] = (bounds::TABLES + 1) as i64;
        let (key, reason) = refused(&c);
        assert_eq!(key, "dlrm.table_sizes");
        assert!(reason.contains(&bounds::TABLES.to_string()), "{reason}");
    }

    /// Sizes whose products overflowed (`rows * dim * 4`, `inp * out`) were accepted and
    /// then panicked (debug) or wrapped (release) in the estimates: now the config is
    /// refused, and the largest accepted config's estimates are exact.
    #[test]
    fn overflowing_sizes_are_refused_and_bounded_estimates_are_exact() {
        let mut c = preset("dlrm-tiny").unwrap();
        c.dlrm.as_mut().unwrap().table_sizes[0] = usize::MAX / 2;
        assert_eq!(refused(&c).0, "dlrm.table_sizes[0]");

        let mut c = preset("mlp-tiny").unwrap();
        c.mlp.as_mut().unwrap().layers = vec![8, 1 << 33, 1 << 33, 4];
        assert_eq!(refused(&c).0, "mlp.layers[1]");

        // At the bounds: every table at its largest, with the largest dimension.
        let mut c = preset("dlrm-tiny").unwrap();
        let p = c.dlrm.as_mut().unwrap();
        p.embedding_dim = bounds::EMBEDDING_DIM;
        *p.bottom.last_mut().unwrap() = bounds::EMBEDDING_DIM;
        p.table_sizes = vec![bounds::TABLE_ROWS; 3];
        c.validate(Path::new("config.toml")).unwrap();
        let tables = 3 * (bounds::TABLE_ROWS as u64) * (bounds::EMBEDDING_DIM as u64) * 4;
        assert!(weight_bytes(&c) > tables);
        assert!(weight_bytes(&c) < u64::MAX / 2);
        let p = c.dlrm.as_ref().unwrap();
        assert_eq!(crate::dlrm::table_bytes(p), tables);
    }
}
