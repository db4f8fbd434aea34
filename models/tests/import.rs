//! `cohost import` against checkpoints written by the real PyTorch code
//! (`scripts/make-import-fixtures.sh`: torch, TorchRec's `DLRM`/`DLRM_DCN`, the reference
//! `DLRM_Net`): each is imported, loaded on the CPU backend, run on PyTorch's inputs and
//! compared to PyTorch's outputs (`|got - want| <= 1e-5 * max(|want|, 0.1)`); then one test
//! per kind of refusal.

use cohost_kernels::Lane;
use cohost_kernels::cpu::CpuOps;
use cohost_models::import::{ImportError, ImportOptions, Interaction, Layout, convert, import};
use cohost_models::{
    BackendHandle, Batch, InputData, ModelConfig, PlacementOptions, WeightSource, build_model,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

struct Fixture {
    checkpoint: PathBuf,
    doc: serde_json::Value,
}

fn fixture(name: &str) -> Fixture {
    let dir = fixtures();
    let checkpoint = ["pt", "safetensors"]
        .iter()
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no checkpoint for fixture {name}"));
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
    Fixture {
        checkpoint,
        doc: serde_json::from_str(&text).unwrap(),
    }
}

/// The options the fixture's flags give, importing into `out`.
fn options(f: &Fixture, out: &Path) -> ImportOptions {
    let mut o = ImportOptions::new(&f.checkpoint, out);
    let flags = &f.doc["flags"];
    o.multi_hot = flags["multi_hot"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect());
    o.tables = flags["tables"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect());
    o
}

fn rows_f64(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// Imports `name`, loads the result, runs PyTorch's inputs, compares PyTorch's outputs.
fn check(name: &str, tweak: impl FnOnce(&mut ImportOptions)) {
    let f = fixture(name);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("repo").join(name);
    let mut opts = options(&f, &out);
    tweak(&mut opts);
    import(&opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = ModelConfig::from_file(&out.join("config.toml")).unwrap();
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let model = build_model(
        &config,
        WeightSource::File(&out.join("1/model.safetensors")),
        &backend,
        &PlacementOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let dense = rows_f64(&f.doc["dense"]);
    let sparse = rows_f64(&f.doc["sparse"]);
    let want = rows_f64(&f.doc["prediction"]);
    let batch = Batch {
        rows: dense.len(),
        inputs: vec![
            InputData::F32(dense.iter().flatten().map(|&v| v as f32).collect()),
            InputData::I64(sparse.iter().flatten().map(|&v| v as i64).collect()),
        ],
    };
    model.check(&batch).unwrap();
    let got = model.forward(&Lane::cpu(0), &batch).unwrap().remove(0);
    assert_eq!(got.len(), want.len(), "{name}");
    for (r, (g, w)) in got.iter().zip(&want).enumerate() {
        let w = w[0];
        assert!(
            (*g as f64 - w).abs() <= 1e-5 * w.abs().max(0.1),
            "{name} row {r}: cohost {g}, PyTorch {w}"
        );
    }
}

#[test]
fn reference_dot_matches_pytorch() {
    check("reference-dot", |_| {});
}

#[test]
fn reference_fp16_widened_matches_pytorch() {
    check("reference-fp16", |_| {});
}

#[test]
fn reference_fp16_kept_half_matches_pytorch() {
    check("reference-fp16", |o| o.keep_half = true);
    let f = fixture("reference-fp16");
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(&f, &tmp.path().join("m"));
    o.keep_half = true;
    let c = convert(&o).unwrap();
    assert!(c.tensors.iter().all(|t| t.1 == safetensors::Dtype::F16));
    o.keep_half = false;
    let c = convert(&o).unwrap();
    assert!(c.tensors.iter().all(|t| t.1 == safetensors::Dtype::F32));
}

#[test]
fn torchrec_dlrm_with_model_prefix_matches_pytorch() {
    check("torchrec-dlrm", |_| {});
}

#[test]
fn torchrec_dlrm_pt_keeps_the_state_dict_table_order() {
    // The .pt state_dict records the EmbeddingBagCollection's order: no --tables needed.
    check("torchrec-dlrm", |o| o.tables = None);
}

#[test]
fn torchrec_dlrm_safetensors_without_prefix_matches_pytorch() {
    check("torchrec-dlrm-plain", |o| o.layout = Layout::Torchrec);
}

#[test]
fn torchrec_table_map_file_gives_order_and_bags() {
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("tables.toml");
    std::fs::write(
        &map,
        "[[table]]\nname = \"t_user\"\nmulti_hot = 1\n[[table]]\nname = \"t_item\"\nmulti_hot = 3\n\
         [[table]]\nname = \"t_ad\"\nmulti_hot = 2\n",
    )
    .unwrap();
    check("torchrec-dlrm-plain", |o| {
        o.tables = None;
        o.multi_hot = None;
        o.table_map = Some(map.clone());
    });
}

/// The config written for the interactions this branch's DLRM does not run yet.
fn converted_config(name: &str) -> String {
    let f = fixture(name);
    let tmp = tempfile::tempdir().unwrap();
    convert(&options(&f, &tmp.path().join("m"))).unwrap().config
}

#[test]
fn reference_itself_cat_and_dcn_emit_the_interaction_keys() {
    let itself = converted_config("reference-itself");
    assert!(
        itself.contains("interaction = \"dot\"\ninteraction_itself = true\n"),
        "{itself}"
    );
    assert!(itself.contains("top = [6, 1]"), "{itself}");
    let cat = converted_config("reference-cat");
    assert!(cat.contains("interaction = \"cat\"\n"), "{cat}");
    let dcn = converted_config("torchrec-dcn");
    assert!(
        dcn.contains("interaction = \"dcn\"\ndcn_layers = 2\ndcn_low_rank = 3\n"),
        "{dcn}"
    );
    let f = fixture("torchrec-dcn");
    let tmp = tempfile::tempdir().unwrap();
    let c = convert(&options(&f, &tmp.path().join("m"))).unwrap();
    let shape = |n: &str| c.tensors.iter().find(|t| t.0 == n).unwrap().2.clone();
    assert_eq!(shape("crossnet.1.v"), vec![3, 16]);
    assert_eq!(shape("crossnet.1.w"), vec![16, 3]);
    assert_eq!(shape("crossnet.1.bias"), vec![16]);
}

#[test]
fn reference_itself_matches_pytorch() {
    check("reference-itself", |_| {});
}

#[test]
fn reference_cat_matches_pytorch() {
    check("reference-cat", |_| {});
}

#[test]
fn torchrec_dcn_matches_pytorch() {
    check("torchrec-dcn", |_| {});
}

// ---- refusals ----

/// A safetensors checkpoint with these tensors (f32 zeros).
fn write_st(dir: &Path, tensors: &[(&str, Vec<usize>)]) -> PathBuf {
    let bufs: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bufs)
        .map(|((n, s), b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
            (n.to_string(), v.unwrap())
        })
        .collect();
    let path = dir.join("ckpt.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

/// A small, valid reference-layout DLRM: 4 dense, dim 2, 2 tables, top [3, 1].
fn reference_tensors() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("emb_l.0.weight", vec![5, 2]),
        ("emb_l.1.weight", vec![3, 2]),
        ("bot_l.0.weight", vec![2, 4]),
        ("bot_l.0.bias", vec![2]),
        ("top_l.0.weight", vec![3, 5]),
        ("top_l.0.bias", vec![3]),
        ("top_l.2.weight", vec![1, 3]),
        ("top_l.2.bias", vec![1]),
    ]
}

fn refused(
    tensors: Vec<(&str, Vec<usize>)>,
    tweak: impl FnOnce(&mut ImportOptions),
) -> ImportError {
    let tmp = tempfile::tempdir().unwrap();
    let ck = write_st(tmp.path(), &tensors);
    let repo = tmp.path().join("repo");
    let mut o = ImportOptions::new(ck, repo.join("m"));
    tweak(&mut o);
    let e = import(&o).unwrap_err();
    // Nothing is left behind: no model folder, no temporary folder.
    if repo.exists() {
        let left: Vec<_> = std::fs::read_dir(&repo).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    e
}

#[test]
fn the_small_reference_checkpoint_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = write_st(tmp.path(), &reference_tensors());
    let c = import(&ImportOptions::new(ck, tmp.path().join("repo/m"))).unwrap();
    assert_eq!(c.layout, Layout::Reference);
    assert!(tmp.path().join("repo/m/1/model.safetensors").exists());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("repo")).unwrap().count(),
        1
    );
}

#[test]
fn missing_tensor_is_named() {
    let mut t = reference_tensors();
    t.retain(|(n, _)| *n != "top_l.2.bias");
    let e = refused(t, |_| {});
    match &e {
        ImportError::Tensor { tensor, problem } => {
            assert_eq!(tensor, "top_l.2.bias", "{e}");
            assert!(problem.contains("missing"), "{e}");
        }
        _ => panic!("{e}"),
    }
    let mut t = reference_tensors();
    t.retain(|(n, _)| *n != "emb_l.0.weight");
    let e = refused(t, |_| {});
    assert!(
        matches!(&e, ImportError::Tensor { tensor, .. } if tensor == "emb_l.0.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_named_with_the_expected_shape() {
    let mut t = reference_tensors();
    t[4].1 = vec![3, 7]; // top_l.0.weight: 7 inputs; dot gives 5, with itself 8, cat 6
    let e = refused(t, |_| {});
    match &e {
        ImportError::Tensor { tensor, problem } => {
            assert_eq!(tensor, "top_l.0.weight");
            assert!(
                problem.contains("input width 7") && problem.contains("5 for dot"),
                "{e}"
            );
        }
        _ => panic!("{e}"),
    }
    let mut t = reference_tensors();
    t[1].1 = vec![3, 3]; // emb_l.1.weight: dim 3, the others 2
    let e = refused(t, |_| {});
    assert!(
        matches!(&e, ImportError::Tensor { tensor, problem } if tensor == "emb_l.1.weight" && problem.contains("[rows >= 1, 2]")),
        "{e}"
    );
    let mut t = reference_tensors();
    t[3].1 = vec![3]; // bot_l.0.bias
    let e = refused(t, |_| {});
    assert!(
        matches!(&e, ImportError::Tensor { tensor, problem } if tensor == "bot_l.0.bias" && problem.contains("expected [2]")),
        "{e}"
    );
}

#[test]
fn unexpected_extra_tensor_is_named() {
    let mut t = reference_tensors();
    t.push(("emb_l.0.proj", vec![2, 2]));
    let e = refused(t, |_| {});
    assert!(
        matches!(&e, ImportError::Tensor { tensor, problem } if tensor == "emb_l.0.proj" && problem.contains("not a tensor of the reference layout")),
        "{e}"
    );
}

#[test]
fn unknown_layout_is_refused() {
    let e = refused(
        vec![
            ("encoder.layer.0.weight", vec![2, 2]),
            ("head.bias", vec![2]),
        ],
        |_| {},
    );
    assert!(
        matches!(&e, ImportError::UnknownLayout(m) if m.contains("encoder.layer.0.weight")),
        "{e}"
    );
    // A layout asked for that the names do not fit.
    let e = refused(reference_tensors(), |o| o.layout = Layout::Torchrec);
    assert!(
        matches!(&e, ImportError::UnknownLayout(m) if m.contains("torchrec")),
        "{e}"
    );
}

#[test]
fn bad_flags_are_refused() {
    let e = refused(reference_tensors(), |o| o.multi_hot = Some(vec![1, 2, 3]));
    assert!(
        matches!(&e, ImportError::Flag { flag, .. } if flag == "--multi-hot"),
        "{e}"
    );
    let e = refused(reference_tensors(), |o| o.dense_features = Some(13));
    assert!(
        matches!(&e, ImportError::Flag { flag, problem } if flag == "--dense-features" && problem.contains("takes 4")),
        "{e}"
    );
    let e = refused(reference_tensors(), |o| o.tables = Some(vec!["a".into()]));
    assert!(
        matches!(&e, ImportError::Flag { flag, .. } if flag == "--tables"),
        "{e}"
    );
    let e = refused(reference_tensors(), |o| {
        o.interaction = Some(Interaction::Dcn)
    });
    assert!(
        matches!(&e, ImportError::Flag { flag, .. } if flag == "--interaction"),
        "{e}"
    );
}

#[test]
fn torchrec_tables_in_safetensors_need_an_order() {
    let f = fixture("torchrec-dlrm-plain");
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(&f, &tmp.path().join("repo/m"));
    o.tables = None;
    let e = import(&o).unwrap_err();
    assert!(
        matches!(&e, ImportError::Flag { flag, problem } if flag == "--tables" && problem.contains("t_ad, t_item, t_user")),
        "{e}"
    );
    o.tables = Some(vec!["t_user".into(), "t_item".into(), "t_nope".into()]);
    let e = import(&o).unwrap_err();
    assert!(
        matches!(&e, ImportError::Flag { problem, .. } if problem.contains("t_nope")),
        "{e}"
    );
    o.tables = Some(vec!["t_user".into(), "t_item".into()]);
    let e = import(&o).unwrap_err();
    assert!(
        matches!(&e, ImportError::Tensor { tensor, .. } if tensor.ends_with("embedding_bags.t_ad.weight")),
        "{e}"
    );
    assert!(!tmp.path().join("repo").exists());
}

#[test]
fn failures_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("other")).unwrap();
    let ck = write_st(tmp.path(), &reference_tensors());
    // An existing model folder is not overwritten.
    let e = import(&ImportOptions::new(&ck, repo.join("other"))).unwrap_err();
    assert!(
        matches!(&e, ImportError::Write(m) if m.contains("exists")),
        "{e}"
    );
    // A checkpoint that is neither zip nor safetensors.
    let junk = tmp.path().join("junk.pt");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    let e = import(&ImportOptions::new(&junk, repo.join("m"))).unwrap_err();
    assert!(matches!(&e, ImportError::Read(_)), "{e}");
    // A model this cohost cannot serve (its config is refused) is refused before writing.
    let f = fixture("reference-cat");
    match import(&options(&f, &repo.join("cat"))) {
        Err(e) => assert!(matches!(e, ImportError::Write(_)), "{e}"),
        Ok(_) => std::fs::remove_dir_all(repo.join("cat")).unwrap(),
    }
    let names: Vec<String> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["other".to_string()]);
    assert_eq!(std::fs::read_dir(repo.join("other")).unwrap().count(), 0);
}
