//! The `dlrm-v2` preset (MLPerf DLRM-v2's shape with the DCN interaction) generates, loads
//! and answers; its tables go through the offload tiers under a small budget; the DCN
//! config keys are validated; and, with a CUDA device, the DCN DLRM on CUDA matches the CPU.

mod common;

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::{Lane, TablePlacement};
use cohost_models::{
    BackendHandle, InteractionKind, Model, ModelConfig, PlacementOptions, WeightSource,
    build_model, synth,
};
use common::{cuda_or_skip, random_batch};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::sync::Arc;

fn cpu() -> BackendHandle {
    BackendHandle::Cpu(Arc::new(CpuOps::new()))
}

#[test]
fn the_preset_has_mlperf_dlrm_v2_shape() {
    let c = synth::preset("dlrm-v2").unwrap();
    c.validate(Path::new("dlrm-v2/config.toml")).unwrap();
    let p = c.dlrm.as_ref().unwrap();
    assert_eq!(p.dense_features, 13);
    assert_eq!(p.embedding_dim, 128);
    assert_eq!(p.bottom, vec![512, 256, 128]);
    assert_eq!(p.top, vec![1024, 1024, 512, 256, 1]);
    assert_eq!(p.multi_hot, synth::DLRM_V2_MULTI_HOT.to_vec());
    assert_eq!(p.multi_hot.iter().sum::<usize>(), 214);
    assert_eq!(
        (p.interaction, p.dcn_layers, p.dcn_low_rank),
        (InteractionKind::Dcn, 3, 512)
    );
    let capped: Vec<usize> = synth::DLRM_V2_TABLE_ROWS
        .iter()
        .map(|&r| r.min(synth::DLRM_V2_DEFAULT_ROWS))
        .collect();
    assert_eq!(p.table_sizes, capped);
    assert_eq!(p.table_sizes[5], 3, "small tables keep their MLPerf rows");
    assert_eq!(c.inputs[1].dims, vec![-1, 214]);
    // The config file names the interaction; the weights count the cross net.
    let toml = c.to_toml();
    assert!(toml.contains("interaction = \"dcn\""), "{toml}");
    let back = ModelConfig::from_toml(&toml, Path::new("x")).unwrap();
    assert_eq!(back.dlrm, c.dlrm);
    let w = 27 * 128u64;
    let crossnet = 3 * 4 * (2 * w * 512 + w);
    assert!(synth::weight_bytes(&c) > crossnet);
}

#[test]
fn a_small_rows_dlrm_v2_generates_loads_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = synth::generate(dir.path(), "dlrm-v2", 1, 3, Some(40), &mut |_, _| {}).unwrap();
    let config = ModelConfig::from_file(&dirs[0].join("config.toml")).unwrap();
    let p = config.dlrm.as_ref().unwrap();
    // `--rows` caps MLPerf's row counts rather than replacing them.
    let want: Vec<usize> = synth::DLRM_V2_TABLE_ROWS
        .iter()
        .map(|&r| r.min(40))
        .collect();
    assert_eq!(p.table_sizes, want);
    let file = dirs[0].join("1/model.safetensors");
    let model = build_model(
        &config,
        WeightSource::File(&file),
        &cpu(),
        &PlacementOptions::default(),
    )
    .unwrap();
    let lane = Lane::cpu(0);
    let batch = random_batch(&config, 5, &mut StdRng::seed_from_u64(4));
    model.check(&batch).unwrap();
    let out = model.forward(&lane, &batch).unwrap().remove(0);
    assert_eq!(out.len(), 5);
    // Scaled init: probabilities, neither saturated nor constant.
    assert!(out.iter().all(|&v| v > 0.01 && v < 0.99), "{out:?}");
    assert!(out.iter().any(|&v| (v - out[0]).abs() > 1e-5), "{out:?}");
    // The dense layers and the cross net count in the weights.
    let bottom = 4 * (13 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128) as u64;
    let top = 4
        * (3456 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 256 + 256 + 257)
            as u64;
    let crossnet = 3 * 4 * (2 * 3456 * 512 + 3456) as u64 + 4 * 512;
    assert_eq!(model.memory().weight_bytes, bottom + top + crossnet);
    assert!(model.flops_per_row() > 2 * 3 * 2 * 3456 * 512);
}

#[test]
fn under_a_small_budget_dlrm_v2_tables_are_offloaded() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = synth::generate(dir.path(), "dlrm-v2", 1, 5, Some(2000), &mut |_, _| {}).unwrap();
    let config = ModelConfig::from_file(&dirs[0].join("config.toml")).unwrap();
    let dense = 4
        * (13 * 512
            + 512 * 256
            + 256 * 128
            + 3456 * 1024
            + 1024 * 1024
            + 1024 * 512
            + 512 * 256
            + 256
            + 3 * 2 * 3456 * 512) as u64;
    // Room for the dense layers and a little more: the big tables cannot all stay resident.
    let placement = PlacementOptions {
        device_budget: Some(dense + (4 << 20)),
        host_budget: Some(2 << 20),
    };
    let file = dirs[0].join("1/model.safetensors");
    let model = build_model(&config, WeightSource::File(&file), &cpu(), &placement).unwrap();
    let tiers: Vec<TablePlacement> = model.memory().tables.iter().map(|t| t.1).collect();
    assert!(
        tiers.iter().any(|&t| t != TablePlacement::Resident),
        "{tiers:?}"
    );
    let batch = random_batch(&config, 3, &mut StdRng::seed_from_u64(6));
    let lane = Lane::cpu(0);
    let resident = build_model(
        &config,
        WeightSource::File(&file),
        &cpu(),
        &PlacementOptions::default(),
    )
    .unwrap();
    let a = model.forward(&lane, &batch).unwrap().remove(0);
    let b = resident.forward(&lane, &batch).unwrap().remove(0);
    assert_eq!(a, b, "offloaded tables answer as resident ones");
}

#[test]
fn dcn_keys_are_validated_by_name() {
    let check = |f: &dyn Fn(&mut cohost_models::DlrmParams), key: &str, part: &str| {
        let mut c = synth::preset("dlrm-v2").unwrap();
        f(c.dlrm.as_mut().unwrap());
        let e = c.validate(Path::new("m/config.toml")).unwrap_err();
        assert_eq!(e.key, key, "{}", e.reason);
        assert!(e.reason.contains(part), "{}", e.reason);
    };
    check(
        &|p| p.interaction_itself = true,
        "dlrm.interaction_itself",
        "\"dcn\"",
    );
    check(&|p| p.dcn_layers = 0, "dlrm.dcn_layers", "at least 1");
    check(&|p| p.dcn_low_rank = 0, "dlrm.dcn_low_rank", "at least 1");
    let bad = "family = \"dlrm\"\n[dlrm]\ninteraction = \"dlrm\"\n";
    assert!(ModelConfig::from_toml(bad, Path::new("m/config.toml")).is_err());
    // Omitted keys keep today's dot interaction.
    let c = synth::preset("dlrm-tiny").unwrap();
    assert!(!c.to_toml().contains("interaction"), "{}", c.to_toml());
    let p = c.dlrm.as_ref().unwrap();
    assert_eq!(
        (p.interaction, p.interaction_itself),
        (InteractionKind::Dot, false)
    );
}

/// `dlrm-tiny` with a DCN interaction of 2 layers, rank 5.
fn tiny_dcn() -> ModelConfig {
    let mut c = synth::preset("dlrm-tiny").unwrap();
    let p = c.dlrm.as_mut().unwrap();
    p.interaction = InteractionKind::Dcn;
    p.dcn_layers = 2;
    p.dcn_low_rank = 5;
    c
}

/// The three interactions on CUDA against the CPU model (skips without a device).
#[test]
fn interactions_on_cuda_match_the_cpu() {
    let Some(ops) = cuda_or_skip() else {
        return;
    };
    let lane = ops.lane(0, 0).unwrap();
    let gpu = BackendHandle::Cuda(ops);
    let mut itself = synth::preset("dlrm-tiny").unwrap();
    itself.dlrm.as_mut().unwrap().interaction_itself = true;
    let mut cat = synth::preset("dlrm-tiny").unwrap();
    cat.dlrm.as_mut().unwrap().interaction = InteractionKind::Cat;
    let mut v2 = synth::preset("dlrm-v2").unwrap();
    v2.dlrm
        .as_mut()
        .unwrap()
        .table_sizes
        .iter_mut()
        .for_each(|r| *r = (*r).min(64));
    for (name, config) in [
        ("dcn", tiny_dcn()),
        ("itself", itself),
        ("cat", cat),
        ("dlrm-v2", v2),
    ] {
        let bytes = synth::random_weights(&config, 7);
        let build = |b: &BackendHandle| -> Arc<dyn Model> {
            build_model(
                &config,
                WeightSource::Bytes(&bytes),
                b,
                &PlacementOptions::default(),
            )
            .unwrap()
        };
        let (g, c) = (build(&gpu), build(&cpu()));
        let mut rng = StdRng::seed_from_u64(8);
        for n in [1, 7, 32, 512.min(config.max_batch_size)] {
            let batch = random_batch(&config, n, &mut rng);
            let got = g.forward(&lane, &batch).unwrap().remove(0);
            let want = c.forward(&Lane::cpu(0), &batch).unwrap().remove(0);
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(0.1),
                    "{name} batch {n}[{i}]: cuda {a}, cpu {b}"
                );
            }
        }
    }
}
