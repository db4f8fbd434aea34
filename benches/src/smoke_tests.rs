//! Smoke test against the real in-process runtime on a generated repository.

use crate::loadgen::{LoadMode, LoadSpec, measure};
use crate::prepared::prepare;
use crate::target::InProcessTarget;
use crate::workload::{BatchDist, ModelShare, Workload, read_config};
use crate::zipf::IndexDist;
use cohost_runtime::{Device, Runtime, RuntimeOptions};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_mlp_and_dlrm_serve_every_request() {
    let dir = tempfile::tempdir().unwrap();
    for preset in ["mlp-tiny", "dlrm-tiny"] {
        cohost_models::synth::generate(dir.path(), preset, 1, 7, None, &mut |_, _| {}).unwrap();
    }
    let runtime = Runtime::new(
        RuntimeOptions::default()
            .repository(dir.path().to_path_buf())
            .lanes(2)
            .device(Device::Cpu),
    )
    .unwrap();
    let failures = runtime.load_all();
    assert!(failures.is_empty(), "load failures: {failures:?}");
    let models = ["mlp-tiny", "dlrm-tiny"]
        .iter()
        .map(|n| ModelShare {
            name: n.to_string(),
            weight: 1.0,
            config: read_config(dir.path(), n).unwrap(),
        })
        .collect();
    let workload = Workload {
        models,
        batch: BatchDist::parse("1:0.7,8:0.3").unwrap(),
        index: IndexDist::Zipf(1.05),
        pool_size: 64,
        seed: 3,
    };
    let target = Arc::new(InProcessTarget::new(runtime.clone()));
    let prepared = Arc::new(prepare(target.as_ref(), &workload).unwrap());
    for mode in [
        LoadMode::Closed { concurrency: 4 },
        LoadMode::Open { rate: 200.0 },
    ] {
        let spec = LoadSpec::new(mode, Duration::from_millis(200), Duration::from_secs(1));
        let report = measure(target.clone(), prepared.clone(), &spec).await;
        for (name, s) in &report.models {
            assert!(s.ok > 0, "{mode:?} {name}: no successes");
            assert_eq!(
                s.errors, 0,
                "{mode:?} {name}: errors {:?}",
                s.errors_by_kind
            );
            assert!(
                s.rows_per_s > s.throughput,
                "{mode:?} {name}: batches of 8 carry rows"
            );
        }
    }
    runtime.shutdown();
}
