//! The DLRM a checkpoint holds, inferred from its tensors' names and shapes (and the
//! flags for what they cannot say), with its tensors renamed (and, for TorchRec's dot
//! interaction, the top MLP's input columns reordered) to cohost's names.

use super::checkpoint::{Checkpoint, Raw, Stored};
use super::layout::{CrossPart, Slot, TableKey, name_of, slot};
use super::{ImportError, Interaction, Layout};
use std::collections::{BTreeMap, HashMap};

/// The flags that decide what the tensors cannot.
pub(crate) struct Hints<'a> {
    /// TorchRec table names in model order.
    pub tables: Option<&'a [String]>,
    /// Indices per bag: one for all tables or one per table.
    pub multi_hot: Option<&'a [usize]>,
    /// The dense feature count the caller expects.
    pub dense_features: Option<usize>,
    /// The interaction, when the top MLP's input width leaves a choice.
    pub interaction: Option<Interaction>,
    /// Keep fp16/bf16 tensors as stored.
    pub keep_half: bool,
}

/// The inferred model and its tensors under cohost's names, in write order.
pub(crate) struct Arch {
    pub dense_features: usize,
    pub bottom: Vec<usize>,
    pub top: Vec<usize>,
    pub embedding_dim: usize,
    pub table_sizes: Vec<usize>,
    pub multi_hot: Vec<usize>,
    pub interaction: Interaction,
    /// Cross-net layers and low rank (DCN only).
    pub dcn: Option<(usize, usize)>,
    /// Each table's name in the checkpoint, in cohost's table order.
    pub table_sources: Vec<String>,
    /// `(cohost name, tensor)`, in write order.
    pub tensors: Vec<(String, Raw)>,
}

fn tensor_err(tensor: &str, problem: impl Into<String>) -> ImportError {
    ImportError::Tensor {
        tensor: tensor.to_string(),
        problem: problem.into(),
    }
}

fn flag_err(flag: &str, problem: impl Into<String>) -> ImportError {
    ImportError::Flag {
        flag: flag.to_string(),
        problem: problem.into(),
    }
}

/// Checks `t`'s shape against `want`, naming what the dimensions are.
fn expect_shape(t: &Raw, want: &[usize], what: &str) -> Result<(), ImportError> {
    if t.shape == want {
        Ok(())
    } else {
        Err(tensor_err(
            &t.name,
            format!("shape {:?}; expected {want:?} ({what})", t.shape),
        ))
    }
}

/// One MLP's layers in order, each `(weight [out, in], bias [out])`, chained.
fn stack(
    which: &str,
    layers: BTreeMap<(usize, usize), (Option<Raw>, Option<Raw>)>,
    input: Option<usize>,
    layout: Layout,
    prefix: &str,
    top: bool,
) -> Result<Vec<(Raw, Raw)>, ImportError> {
    let slot = |order, bias| {
        if top {
            Slot::Top { order, bias }
        } else {
            Slot::Bottom { order, bias }
        }
    };
    if layers.is_empty() {
        return Err(tensor_err(
            &name_of(&slot((0, 0), false), layout, prefix),
            format!("missing: the checkpoint has no {which} MLP layer"),
        ));
    }
    let mut out = Vec::with_capacity(layers.len());
    let mut prev = input;
    for (order, (w, b)) in layers {
        let w = w.ok_or_else(|| {
            tensor_err(
                &name_of(&slot(order, false), layout, prefix),
                format!("missing: the {which} MLP layer has a bias but no weight"),
            )
        })?;
        let b = b.ok_or_else(|| {
            tensor_err(
                &name_of(&slot(order, true), layout, prefix),
                format!("missing: the {which} MLP layer has a weight but no bias"),
            )
        })?;
        if w.shape.len() != 2 {
            return Err(tensor_err(
                &w.name,
                format!("shape {:?}; expected [out, in] (a Linear weight)", w.shape),
            ));
        }
        let (o, i) = (w.shape[0], w.shape[1]);
        if let Some(p) = prev
            && i != p
        {
            return Err(tensor_err(
                &w.name,
                format!(
                    "shape {:?}; expected [{o}, {p}] (its input is the previous layer's {p} \
                     outputs)",
                    w.shape
                ),
            ));
        }
        expect_shape(&b, &[o], "one bias per output of the layer's weight")?;
        prev = Some(o);
        out.push((w, b));
    }
    Ok(out)
}

/// The top MLP's input width for `n` interacting vectors of dimension `d`.
pub(crate) fn interaction_width(i: Interaction, n: usize, d: usize) -> usize {
    match i {
        Interaction::Dot => d + n * (n - 1) / 2,
        Interaction::DotItself => d + n * (n + 1) / 2,
        Interaction::Cat | Interaction::Dcn => n * d,
    }
}

/// Reorders the interaction columns of TorchRec's first over-arch layer: TorchRec keeps the
/// pairs of the upper triangle row by row (`triu_indices(offset=1)`: (0,1), (0,2), .., (1,2),
/// ..), cohost the strict lower triangle row by row ((1,0), (2,0), (2,1), ..).
fn triu_to_tril(w: &mut Raw, d: usize, n: usize) {
    let (rows, cols) = (w.shape[0], w.shape[1]);
    let size = w.stored.size();
    let mut dest = vec![0usize; cols];
    (0..d).for_each(|c| dest[c] = c);
    let mut k = 0;
    for a in 0..n {
        for b in a + 1..n {
            dest[d + k] = d + b * (b - 1) / 2 + a;
            k += 1;
        }
    }
    let mut out = vec![0u8; w.bytes.len()];
    for r in 0..rows {
        for (c, &to) in dest.iter().enumerate() {
            let from = (r * cols + c) * size;
            let into = (r * cols + to) * size;
            out[into..into + size].copy_from_slice(&w.bytes[from..from + size]);
        }
    }
    w.bytes = out;
}

/// Widens `t` to f32 unless half precision is kept.
fn stored_as(mut t: Raw, keep_half: bool) -> Raw {
    if t.stored != Stored::F32 && !keep_half {
        t.bytes = t.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect();
        t.stored = Stored::F32;
    }
    t
}

/// Infers the model in `ck` under `layout` and `prefix`.
pub(crate) fn infer(
    ck: Checkpoint,
    layout: Layout,
    prefix: &str,
    hints: &Hints<'_>,
) -> Result<Arch, ImportError> {
    let ordered = ck.ordered;
    let mut bottom: BTreeMap<(usize, usize), (Option<Raw>, Option<Raw>)> = BTreeMap::new();
    let mut top: BTreeMap<(usize, usize), (Option<Raw>, Option<Raw>)> = BTreeMap::new();
    let mut tables: Vec<(TableKey, Raw)> = Vec::new();
    let mut cross: BTreeMap<usize, HashMap<CrossPart, Raw>> = BTreeMap::new();
    for t in ck.tensors {
        let s = slot(&t.name, layout, prefix)?;
        if let Stored::Other(dt) = &t.stored {
            return Err(tensor_err(
                &t.name,
                format!("dtype {dt}; expected F32, F16 or BF16"),
            ));
        }
        match s {
            Slot::Bottom { order, bias } | Slot::Top { order, bias } => {
                let map = if matches!(s, Slot::Top { .. }) {
                    &mut top
                } else {
                    &mut bottom
                };
                let e = map.entry(order).or_default();
                let place = if bias { &mut e.1 } else { &mut e.0 };
                if let Some(other) = place {
                    return Err(tensor_err(
                        &t.name,
                        format!("the same layer tensor as '{}'", other.name),
                    ));
                }
                *place = Some(t);
            }
            Slot::Table(key) => tables.push((key, t)),
            Slot::Cross { layer, part } => {
                cross.entry(layer).or_default().insert(part, t);
            }
        }
    }

    let bottom = stack("bottom", bottom, None, layout, prefix, false)?;
    let dense_features = bottom[0].0.shape[1];
    if let Some(n) = hints.dense_features
        && n != dense_features
    {
        return Err(flag_err(
            "--dense-features",
            format!(
                "{n}, but the checkpoint's first bottom layer '{}' takes {dense_features} \
                 inputs (shape {:?})",
                bottom[0].0.name, bottom[0].0.shape
            ),
        ));
    }
    let bottom_out = bottom.last().unwrap().0.shape[0];

    // Tables, in the model's order.
    let named = tables.iter().any(|(k, _)| matches!(k, TableKey::Name(_)));
    let tables: Vec<Raw> = if named {
        let order: Vec<String> = match hints.tables {
            Some(list) => {
                for name in list {
                    if !tables
                        .iter()
                        .any(|(k, _)| *k == TableKey::Name(name.clone()))
                    {
                        return Err(flag_err(
                            "--tables",
                            format!(
                                "names table '{name}', which the checkpoint does not have (it \
                                 has {})",
                                table_list(&tables)
                            ),
                        ));
                    }
                }
                list.to_vec()
            }
            None if ordered || tables.len() == 1 => tables
                .iter()
                .map(|(k, _)| match k {
                    TableKey::Name(n) => n.clone(),
                    TableKey::Index(i) => i.to_string(),
                })
                .collect(),
            None => {
                return Err(flag_err(
                    "--tables",
                    format!(
                        "needed: a safetensors file does not record the order of TorchRec's \
                         named tables ({}); pass --tables in the model's order (its \
                         EmbeddingBagConfig order) or --table-map",
                        table_list(&tables)
                    ),
                ));
            }
        };
        let mut by_name: HashMap<String, Raw> = tables
            .into_iter()
            .map(|(k, t)| match k {
                TableKey::Name(n) => (n, t),
                TableKey::Index(i) => (i.to_string(), t),
            })
            .collect();
        let mut out = Vec::with_capacity(order.len());
        for name in &order {
            let t = by_name
                .remove(name)
                .ok_or_else(|| flag_err("--tables", format!("names table '{name}' twice")))?;
            out.push(t);
        }
        if let Some((_, t)) = by_name.into_iter().min_by(|a, b| a.0.cmp(&b.0)) {
            return Err(tensor_err(
                &t.name,
                format!("not expected: its table is not among --tables {order:?}"),
            ));
        }
        out
    } else {
        let mut by_index: BTreeMap<usize, Raw> = BTreeMap::new();
        for (k, t) in tables {
            if let TableKey::Index(i) = k {
                by_index.insert(i, t);
            }
        }
        if by_index.is_empty() {
            return Err(tensor_err(
                &name_of(&Slot::Table(TableKey::Index(0)), layout, prefix),
                "missing: the checkpoint has no embedding table",
            ));
        }
        let mut out = Vec::with_capacity(by_index.len());
        for (expect, (i, t)) in by_index.into_iter().enumerate() {
            if i != expect {
                return Err(tensor_err(
                    &name_of(&Slot::Table(TableKey::Index(expect)), layout, prefix),
                    format!("missing: tables are numbered from 0 and table {i} is present"),
                ));
            }
            out.push(t);
        }
        if hints.tables.is_some() {
            return Err(flag_err(
                "--tables",
                format!(
                    "orders TorchRec's named tables; the {} layout numbers its tables and \
                     keeps their order",
                    layout.as_str()
                ),
            ));
        }
        out
    };
    let first = &tables[0];
    if first.shape.len() != 2 {
        return Err(tensor_err(
            &first.name,
            format!("shape {:?}; expected [rows, embedding_dim]", first.shape),
        ));
    }
    let dim = first.shape[1];
    if dim != bottom_out {
        return Err(tensor_err(
            &first.name,
            format!(
                "shape {:?}; expected [rows, {bottom_out}] (the embedding dim must equal the \
                 bottom MLP's output width, {bottom_out} in '{}')",
                first.shape,
                bottom.last().unwrap().0.name
            ),
        ));
    }
    for t in &tables {
        if t.shape.len() != 2 || t.shape[1] != dim || t.shape[0] == 0 {
            return Err(tensor_err(
                &t.name,
                format!(
                    "shape {:?}; expected [rows >= 1, {dim}] (every table has the same \
                     embedding dim)",
                    t.shape
                ),
            ));
        }
    }
    let table_sources: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let n = tables.len() + 1;

    // Cross net (DCN).
    let width = n * dim;
    let mut crossnet = Vec::new();
    let mut low_rank = 0;
    for (expect, (l, mut parts)) in std::mem::take(&mut cross).into_iter().enumerate() {
        let missing = |part| {
            tensor_err(
                &name_of(
                    &Slot::Cross {
                        layer: expect,
                        part,
                    },
                    layout,
                    prefix,
                ),
                format!("missing: cross-net layer {expect} needs V, W and bias"),
            )
        };
        if l != expect {
            return Err(missing(CrossPart::V));
        }
        let v = parts
            .remove(&CrossPart::V)
            .ok_or_else(|| missing(CrossPart::V))?;
        let w = parts
            .remove(&CrossPart::W)
            .ok_or_else(|| missing(CrossPart::W))?;
        let b = parts
            .remove(&CrossPart::Bias)
            .ok_or_else(|| missing(CrossPart::Bias))?;
        if l == 0 {
            low_rank = v.shape.first().copied().unwrap_or(0);
        }
        let w_what = format!("W = (tables + 1) x embedding_dim = {n} x {dim}");
        expect_shape(&v, &[low_rank, width], &format!("[low_rank, W], {w_what}"))?;
        expect_shape(&w, &[width, low_rank], &format!("[W, low_rank], {w_what}"))?;
        expect_shape(&b, &[width], &format!("[W], {w_what}"))?;
        crossnet.push((v, w, b));
    }

    // Interaction: from the cross net, the flag, or the top MLP's input width.
    let top_in = top
        .values()
        .next()
        .and_then(|(w, _)| w.as_ref())
        .filter(|w| w.shape.len() == 2)
        .map(|w| (w.shape[1], w.name.clone()));
    let choices: &[Interaction] = match layout {
        _ if !crossnet.is_empty() => &[Interaction::Dcn],
        Layout::Torchrec => &[Interaction::Dot],
        _ => &[Interaction::Dot, Interaction::DotItself, Interaction::Cat],
    };
    if let Some(i) = hints.interaction
        && !choices.contains(&i)
    {
        return Err(flag_err(
            "--interaction",
            format!(
                "{}, but a {} checkpoint{} has {}",
                i.as_str(),
                layout.as_str(),
                if crossnet.is_empty() {
                    ""
                } else {
                    " with a cross net"
                },
                choices
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    let interaction = match (hints.interaction, top_in) {
        (Some(i), _) => i,
        (None, Some((w, name))) => {
            let fits: Vec<Interaction> = choices
                .iter()
                .copied()
                .filter(|&i| interaction_width(i, n, dim) == w)
                .collect();
            match fits.as_slice() {
                [one] => *one,
                [] => {
                    let want: Vec<String> = choices
                        .iter()
                        .map(|&i| format!("{} for {}", interaction_width(i, n, dim), i.as_str()))
                        .collect();
                    return Err(tensor_err(
                        &name,
                        format!(
                            "input width {w}; expected {} ({} tables and the bottom output, \
                             dim {dim})",
                            want.join(" or "),
                            n - 1
                        ),
                    ));
                }
                many => {
                    return Err(flag_err(
                        "--interaction",
                        format!(
                            "needed: the top MLP's input width {w} fits {}",
                            many.iter()
                                .map(|i| i.as_str())
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ),
                    ));
                }
            }
        }
        (None, None) => Interaction::Dot,
    };
    let top = stack(
        "top",
        top,
        Some(interaction_width(interaction, n, dim)),
        layout,
        prefix,
        true,
    )?;
    let last = &top.last().unwrap().0;
    if last.shape[0] != 1 {
        return Err(tensor_err(
            &last.name,
            format!(
                "shape {:?}; expected [1, {}] (the last top layer gives the click logit)",
                last.shape, last.shape[1]
            ),
        ));
    }

    // Bags.
    let t_count = tables.len();
    let multi_hot = match hints.multi_hot {
        None => vec![1],
        Some(m) if m.len() != 1 && m.len() != t_count => {
            return Err(flag_err(
                "--multi-hot",
                format!(
                    "{} values; expected 1 (all tables) or {t_count} (one per table: {})",
                    m.len(),
                    table_sources.join(", ")
                ),
            ));
        }
        Some(m) if m.contains(&0) => {
            return Err(flag_err(
                "--multi-hot",
                format!("{m:?}: every bag needs at least 1 index"),
            ));
        }
        Some(m) => m.to_vec(),
    };

    let mut tensors = Vec::new();
    let keep = hints.keep_half;
    let bottom_w: Vec<usize> = bottom.iter().map(|l| l.0.shape[0]).collect();
    let top_w: Vec<usize> = top.iter().map(|l| l.0.shape[0]).collect();
    for (i, (w, b)) in bottom.into_iter().enumerate() {
        tensors.push((format!("bottom.{i}.weight"), stored_as(w, keep)));
        tensors.push((format!("bottom.{i}.bias"), stored_as(b, keep)));
    }
    for (i, (mut w, b)) in top.into_iter().enumerate() {
        if i == 0 && layout == Layout::Torchrec && interaction == Interaction::Dot {
            triu_to_tril(&mut w, dim, n);
        }
        tensors.push((format!("top.{i}.weight"), stored_as(w, keep)));
        tensors.push((format!("top.{i}.bias"), stored_as(b, keep)));
    }
    let table_sizes: Vec<usize> = tables.iter().map(|t| t.shape[0]).collect();
    for (t, raw) in tables.into_iter().enumerate() {
        tensors.push((format!("embeddings.{t}.weight"), stored_as(raw, keep)));
    }
    let dcn = (!crossnet.is_empty()).then_some((crossnet.len(), low_rank));
    for (l, (v, w, b)) in crossnet.into_iter().enumerate() {
        tensors.push((format!("crossnet.{l}.v"), stored_as(v, keep)));
        tensors.push((format!("crossnet.{l}.w"), stored_as(w, keep)));
        tensors.push((format!("crossnet.{l}.bias"), stored_as(b, keep)));
    }
    Ok(Arch {
        dense_features,
        bottom: bottom_w,
        top: top_w,
        embedding_dim: dim,
        table_sizes,
        multi_hot,
        interaction,
        dcn,
        table_sources,
        tensors,
    })
}

fn table_list(tables: &[(TableKey, Raw)]) -> String {
    let mut names: Vec<String> = tables
        .iter()
        .map(|(k, _)| match k {
            TableKey::Name(n) => n.clone(),
            TableKey::Index(i) => i.to_string(),
        })
        .collect();
    names.sort();
    names.join(", ")
}
