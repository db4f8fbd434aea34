//! `config.toml` rules: every error names the file and the offending key.

use cohost_models::{ConfigError, ModelConfig, synth};
use std::path::Path;

const FILE: &str = "repo/ctr/config.toml";

fn err_of(config: &ModelConfig) -> ConfigError {
    config
        .validate(Path::new(FILE))
        .expect_err("config should be rejected")
}

fn assert_err(config: &ModelConfig, key: &str, reason_part: &str) {
    let e = err_of(config);
    assert_eq!(e.file, Path::new(FILE));
    assert_eq!(e.key, key, "wrong key; reason was: {}", e.reason);
    assert!(
        e.reason.contains(reason_part),
        "reason {:?} lacks {:?}",
        e.reason,
        reason_part
    );
    let shown = e.to_string();
    assert!(
        shown.contains(FILE) && shown.contains(key),
        "display {shown:?}"
    );
}

fn dlrm() -> ModelConfig {
    synth::preset("dlrm-tiny").unwrap()
}

fn mlp() -> ModelConfig {
    synth::preset("mlp-tiny").unwrap()
}

#[test]
fn every_preset_validates_and_round_trips_through_toml() {
    for name in synth::preset_names() {
        let c = synth::preset(name).unwrap();
        c.validate(Path::new(FILE))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = ModelConfig::from_toml(&c.to_toml(), Path::new(FILE)).unwrap();
        assert_eq!(back, c, "{name}");
    }
    assert!(synth::preset("nope").is_none());
}

#[test]
fn bottom_last_width_must_equal_embedding_dim() {
    let mut c = synth::preset("dlrm-small").unwrap();
    c.dlrm.as_mut().unwrap().bottom = vec![512, 256, 32];
    let e = err_of(&c);
    assert_eq!(e.key, "dlrm.bottom");
    assert_eq!(e.reason, "last width must equal embedding_dim (64), got 32");
}

#[test]
fn max_batch_size_zero_is_rejected() {
    let mut c = dlrm();
    c.max_batch_size = 0;
    assert_err(&c, "max_batch_size", "at least 1");
}

#[test]
fn wrong_input_count_dims_and_datatype_are_rejected() {
    let mut c = dlrm();
    c.inputs.pop();
    assert_err(&c, "inputs", "expected 2");

    let mut c = dlrm();
    c.inputs[0].dims = vec![-1, 5];
    assert_err(&c, "inputs[0].dims", "[-1, 4]");

    let mut c = dlrm();
    c.inputs[1].dims = vec![-1, 3]; // 1 + 3 + 2 = 6 indices per row
    assert_err(&c, "inputs[1].dims", "[-1, 6]");

    let mut c = dlrm();
    c.inputs[1].datatype = cohost_models::DataType::INT32;
    assert_err(&c, "inputs[1].datatype", "INT64");

    let mut c = mlp();
    c.outputs[0].dims = vec![-1, 3];
    assert_err(&c, "outputs[0].dims", "[-1, 4]");

    let mut c = dlrm();
    c.inputs[1].name = c.inputs[0].name.clone();
    assert_err(&c, "inputs[1].name", "used twice");
}

#[test]
fn multi_hot_must_have_one_value_or_one_per_table() {
    let mut c = dlrm();
    c.dlrm.as_mut().unwrap().multi_hot = vec![1, 2];
    assert_err(&c, "dlrm.multi_hot", "one per table (3), got 2");
    c.dlrm.as_mut().unwrap().multi_hot = vec![1, 0, 1];
    assert_err(&c, "dlrm.multi_hot", "at least 1 index");
}

#[test]
fn family_tables_must_match_the_family() {
    let mut c = mlp();
    c.mlp = None;
    assert_err(&c, "mlp", "[mlp]");

    let mut c = dlrm();
    c.dlrm = None;
    assert_err(&c, "dlrm", "[dlrm]");

    let mut c = dlrm();
    c.mlp = mlp().mlp;
    assert_err(&c, "mlp", "only allowed");
}

#[test]
fn layer_and_table_sizes_must_be_positive() {
    let mut c = mlp();
    c.mlp.as_mut().unwrap().layers = vec![8];
    assert_err(&c, "mlp.layers", "at least input and output");

    let mut c = mlp();
    c.mlp.as_mut().unwrap().layers = vec![8, 0, 4];
    assert_err(&c, "mlp.layers", "at least 1");

    let mut c = dlrm();
    c.dlrm.as_mut().unwrap().table_sizes[2] = 0;
    assert_err(&c, "dlrm.table_sizes[2]", "at least 1 row");

    let mut c = dlrm();
    c.dlrm.as_mut().unwrap().top = vec![16, 2];
    assert_err(&c, "dlrm.top", "must be 1, got 2");
}

#[test]
fn toml_parse_errors_name_the_file() {
    let e = ModelConfig::from_toml("family = \"cnn\"", Path::new(FILE)).unwrap_err();
    assert_eq!(e.file, Path::new(FILE));
    assert!(e.key.is_empty());
    let text = dlrm()
        .to_toml()
        .replace("max_batch_size = 32", "max_batch_size = 0");
    let e = ModelConfig::from_toml(&text, Path::new(FILE)).unwrap_err();
    assert_eq!(e.key, "max_batch_size");
}

#[test]
fn weight_precision_parses_fp16_defaults_to_fp32_and_refuses_others() {
    use cohost_models::WeightPrecision;
    let text = mlp().to_toml();
    assert!(text.contains("weight_precision = \"fp32\""), "{text}");
    let absent = text.replace("weight_precision = \"fp32\"\n", "");
    let c = ModelConfig::from_toml(&absent, Path::new(FILE)).unwrap();
    assert_eq!(c.weight_precision, WeightPrecision::Fp32);
    let fp16 = text.replace("\"fp32\"", "\"fp16\"");
    let c = ModelConfig::from_toml(&fp16, Path::new(FILE)).unwrap();
    assert_eq!(c.weight_precision, WeightPrecision::Fp16);
    let e =
        ModelConfig::from_toml(&text.replace("\"fp32\"", "\"fp8\""), Path::new(FILE)).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains(FILE) && shown.contains("fp8") && shown.contains("fp16"),
        "{shown}"
    );
}
