//! The three naming schemes a DLRM checkpoint may use, each tensor name mapped to the
//! part of the model it is (a bottom or top layer, a table, a cross-net layer).
//!
//! | part | reference (`dlrm_s_pytorch.py`) | TorchRec (`DLRM`, `DLRM_DCN`) | cohost |
//! |---|---|---|---|
//! | bottom layer | `bot_l.{k}.weight\|bias` | `dense_arch.model._mlp.{i}._linear.weight\|bias` | `bottom.{i}.weight\|bias` |
//! | top layer | `top_l.{k}.weight\|bias` | `over_arch.model.0._mlp.{i}._linear.weight\|bias`, last `over_arch.model.1.weight\|bias` | `top.{i}.weight\|bias` |
//! | table | `emb_l.{t}.weight` | `sparse_arch.embedding_bag_collection.embedding_bags.{name}.weight` | `embeddings.{t}.weight` |
//! | cross layer | | `inter_arch.crossnet.V_kernels.{l}`, `W_kernels.{l}`, `bias.{l}` | `crossnet.{l}.v\|w\|bias` |
//!
//! Every name may carry a wrapper prefix (MLPerf's `model.`, DataParallel's `module.`).

use super::{ImportError, Layout};

/// Which table a tensor is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TableKey {
    /// Numbered (reference, cohost): the table's position.
    Index(usize),
    /// Named (TorchRec): the `EmbeddingBagConfig` name.
    Name(String),
}

/// Which tensor of a cross-net layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CrossPart {
    /// `[low_rank, W]`.
    V,
    /// `[W, low_rank]`.
    W,
    /// `[W]`.
    Bias,
}

/// What one checkpoint tensor is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// A bottom MLP layer's weight or bias; `order` sorts the layers.
    Bottom { order: (usize, usize), bias: bool },
    /// A top MLP layer's weight or bias; `order` sorts the layers.
    Top { order: (usize, usize), bias: bool },
    /// An embedding table.
    Table(TableKey),
    /// A cross-net layer's tensor.
    Cross { layer: usize, part: CrossPart },
}

/// The first segments of each layout's names.
fn roots(layout: Layout) -> &'static [&'static str] {
    match layout {
        Layout::Reference => &["emb_l.", "bot_l.", "top_l."],
        Layout::Torchrec => &["sparse_arch.", "dense_arch.", "over_arch.", "inter_arch."],
        Layout::Cohost => &["embeddings.", "bottom.", "top.", "crossnet."],
        Layout::Auto => &[],
    }
}

/// The wrapper prefix before one of `layout`'s roots in `name`, if any root is there.
fn prefix_of(name: &str, layout: Layout) -> Option<&str> {
    (0..name.len())
        .filter(|&p| p == 0 || name.as_bytes()[p - 1] == b'.')
        .find(|&p| roots(layout).iter().any(|r| name[p..].starts_with(r)))
        .map(|p| &name[..p])
}

/// Picks the layout most names fit (`wanted` unless `Auto`) and the wrapper prefix.
pub(crate) fn detect<'a>(
    names: &[&'a str],
    wanted: Layout,
) -> Result<(Layout, &'a str), ImportError> {
    let candidates: &[Layout] = match wanted {
        Layout::Auto => &[Layout::Reference, Layout::Torchrec, Layout::Cohost],
        _ => std::slice::from_ref(&wanted),
    };
    let best = candidates
        .iter()
        .map(|&l| {
            let fit = names.iter().filter(|n| prefix_of(n, l).is_some()).count();
            (fit, l)
        })
        .max_by_key(|&(fit, l)| (fit, std::cmp::Reverse(l as u8)))
        .filter(|&(fit, _)| fit > 0);
    let Some((_, layout)) = best else {
        let some: Vec<&str> = names.iter().take(6).copied().collect();
        let what = match wanted {
            Layout::Auto => "no known layout (reference DLRM `emb_l./bot_l./top_l.`, TorchRec \
                             `sparse_arch./dense_arch./over_arch.`, cohost \
                             `embeddings./bottom./top.`)"
                .to_string(),
            l => format!("the {} layout (names starting {:?})", l.as_str(), roots(l)),
        };
        return Err(ImportError::UnknownLayout(format!(
            "the checkpoint's {} tensor names ({}{}) fit {what}",
            names.len(),
            some.join(", "),
            if names.len() > some.len() {
                ", …"
            } else {
                ""
            }
        )));
    };
    let prefix = names
        .iter()
        .find_map(|n| prefix_of(n, layout))
        .unwrap_or("");
    Ok((layout, prefix))
}

fn index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn weight_or_bias(s: &str) -> Option<bool> {
    match s {
        "weight" => Some(false),
        "bias" => Some(true),
        _ => None,
    }
}

/// What tensor `name` is under `layout` with `prefix`, or why it is not one.
pub(crate) fn slot(name: &str, layout: Layout, prefix: &str) -> Result<Slot, ImportError> {
    let unexpected = || ImportError::Tensor {
        tensor: name.to_string(),
        problem: format!(
            "not a tensor of the {} layout{} (expected {})",
            layout.as_str(),
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" under the prefix '{prefix}'")
            },
            expected_names(layout)
        ),
    };
    let Some(rest) = name.strip_prefix(prefix) else {
        return Err(unexpected());
    };
    let s: Vec<&str> = rest.split('.').collect();
    let found = match (layout, s.as_slice()) {
        (Layout::Reference, ["emb_l", t, "weight"]) => {
            index(t).map(|t| Slot::Table(TableKey::Index(t)))
        }
        (Layout::Reference, ["bot_l", k, p]) => {
            index(k)
                .zip(weight_or_bias(p))
                .map(|(k, bias)| Slot::Bottom {
                    order: (0, k),
                    bias,
                })
        }
        (Layout::Reference, ["top_l", k, p]) => {
            index(k).zip(weight_or_bias(p)).map(|(k, bias)| Slot::Top {
                order: (0, k),
                bias,
            })
        }
        (
            Layout::Torchrec,
            [
                "sparse_arch",
                "embedding_bag_collection",
                "embedding_bags",
                t,
                "weight",
            ],
        ) => Some(Slot::Table(TableKey::Name(t.to_string()))),
        (Layout::Torchrec, ["dense_arch", "model", "_mlp", i, "_linear", p]) => index(i)
            .zip(weight_or_bias(p))
            .map(|(i, bias)| Slot::Bottom {
                order: (0, i),
                bias,
            }),
        (Layout::Torchrec, ["over_arch", "model", "0", "_mlp", i, "_linear", p]) => {
            index(i).zip(weight_or_bias(p)).map(|(i, bias)| Slot::Top {
                order: (0, i),
                bias,
            })
        }
        (Layout::Torchrec, ["over_arch", "model", "1", p]) => {
            weight_or_bias(p).map(|bias| Slot::Top {
                order: (1, 0),
                bias,
            })
        }
        (Layout::Torchrec, ["inter_arch", "crossnet", kind, l]) => {
            let part = match *kind {
                "V_kernels" => Some(CrossPart::V),
                "W_kernels" => Some(CrossPart::W),
                "bias" => Some(CrossPart::Bias),
                _ => None,
            };
            part.zip(index(l))
                .map(|(part, layer)| Slot::Cross { layer, part })
        }
        (Layout::Cohost, ["embeddings", t, "weight"]) => {
            index(t).map(|t| Slot::Table(TableKey::Index(t)))
        }
        (Layout::Cohost, ["bottom", i, p]) => {
            index(i)
                .zip(weight_or_bias(p))
                .map(|(i, bias)| Slot::Bottom {
                    order: (0, i),
                    bias,
                })
        }
        (Layout::Cohost, ["top", i, p]) => {
            index(i).zip(weight_or_bias(p)).map(|(i, bias)| Slot::Top {
                order: (0, i),
                bias,
            })
        }
        (Layout::Cohost, ["crossnet", l, kind]) => {
            let part = match *kind {
                "v" => Some(CrossPart::V),
                "w" => Some(CrossPart::W),
                "bias" => Some(CrossPart::Bias),
                _ => None,
            };
            part.zip(index(l))
                .map(|(part, layer)| Slot::Cross { layer, part })
        }
        _ => None,
    };
    found.ok_or_else(unexpected)
}

/// The name `slot` has under `layout` with `prefix` (for naming a missing tensor).
pub(crate) fn name_of(slot: &Slot, layout: Layout, prefix: &str) -> String {
    let wb = |bias: bool| if bias { "bias" } else { "weight" };
    let rest = match (layout, slot) {
        (Layout::Reference, Slot::Table(TableKey::Index(t))) => format!("emb_l.{t}.weight"),
        (Layout::Reference, Slot::Bottom { order, bias }) => {
            format!("bot_l.{}.{}", order.1, wb(*bias))
        }
        (Layout::Reference, Slot::Top { order, bias }) => {
            format!("top_l.{}.{}", order.1, wb(*bias))
        }
        (Layout::Torchrec, Slot::Table(TableKey::Name(t))) => {
            format!("sparse_arch.embedding_bag_collection.embedding_bags.{t}.weight")
        }
        (Layout::Torchrec, Slot::Bottom { order, bias }) => {
            format!("dense_arch.model._mlp.{}._linear.{}", order.1, wb(*bias))
        }
        (
            Layout::Torchrec,
            Slot::Top {
                order: (1, _),
                bias,
            },
        ) => format!("over_arch.model.1.{}", wb(*bias)),
        (Layout::Torchrec, Slot::Top { order, bias }) => {
            format!("over_arch.model.0._mlp.{}._linear.{}", order.1, wb(*bias))
        }
        (Layout::Torchrec, Slot::Cross { layer, part }) => {
            let kind = match part {
                CrossPart::V => "V_kernels",
                CrossPart::W => "W_kernels",
                CrossPart::Bias => "bias",
            };
            format!("inter_arch.crossnet.{kind}.{layer}")
        }
        (_, Slot::Table(TableKey::Index(t))) => format!("embeddings.{t}.weight"),
        (_, Slot::Table(TableKey::Name(t))) => format!("embeddings.{t}.weight"),
        (_, Slot::Bottom { order, bias }) => format!("bottom.{}.{}", order.1, wb(*bias)),
        (_, Slot::Top { order, bias }) => format!("top.{}.{}", order.1, wb(*bias)),
        (_, Slot::Cross { layer, part }) => {
            let kind = match part {
                CrossPart::V => "v",
                CrossPart::W => "w",
                CrossPart::Bias => "bias",
            };
            format!("crossnet.{layer}.{kind}")
        }
    };
    format!("{prefix}{rest}")
}

fn expected_names(layout: Layout) -> &'static str {
    match layout {
        Layout::Reference => "emb_l.{t}.weight, bot_l.{k}.weight|bias, top_l.{k}.weight|bias",
        Layout::Torchrec => {
            "sparse_arch.embedding_bag_collection.embedding_bags.{table}.weight, \
             dense_arch.model._mlp.{i}._linear.weight|bias, \
             over_arch.model.0._mlp.{i}._linear.weight|bias, over_arch.model.1.weight|bias, \
             inter_arch.crossnet.{V_kernels|W_kernels|bias}.{l}"
        }
        Layout::Cohost | Layout::Auto => {
            "embeddings.{t}.weight, bottom.{i}.weight|bias, top.{i}.weight|bias, \
             crossnet.{l}.v|w|bias"
        }
    }
}
