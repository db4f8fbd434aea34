//! The async forms of the blocking lifecycle calls (`Runtime::start`, `load_all_async`,
//! `load_model_async`, `load_model_from_async`, `load_model_instance_async`,
//! `unload_model_async`, `shutdown_async`) load real models that answer correctly, on a
//! single-threaded executor that a blocking call would hold up.

mod common;

use cohost_models::synth;
use cohost_runtime::{Device, ErrorKind, Runtime, RuntimeOptions};
use common::*;

#[tokio::test(flavor = "current_thread")]
async fn async_lifecycle_calls_load_models_that_answer() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "mlp-tiny", 1, 3, None, &mut |_, _| {}).unwrap();
    let options = RuntimeOptions::default()
        .repository(dir.path())
        .lanes(2)
        .device(Device::Cpu);
    let rt = Runtime::start(options).await.unwrap();
    assert_eq!(rt.lane_count(), 2);
    assert!(rt.load_all_async().await.is_empty());
    // Reloading an unchanged model is a no-op that still succeeds.
    rt.load_model_async("mlp-tiny").await.unwrap();

    let on_disk = reference_model(&dir.path().join("mlp-tiny"));
    let config = on_disk.config().clone();
    let req = random_request(&config, 3, &mut rng(1));
    let want = reference_outputs(on_disk.as_ref(), &req);
    let got = rt.infer("mlp-tiny", None, req).await.unwrap();
    assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);

    let weights = synth::random_weights(&config, 11);
    rt.load_model_from_async("inline", 1, config.clone(), weights)
        .await
        .unwrap();
    rt.load_model_instance_async("instance", 1, reference_model_of(&config, 12))
        .await
        .unwrap();
    for (name, seed) in [("inline", 11), ("instance", 12)] {
        let reference = reference_model_of(&config, seed);
        let req = random_request(&config, 2, &mut rng(seed));
        let want = reference_outputs(reference.as_ref(), &req);
        let got = rt.infer(name, None, req).await.unwrap();
        assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
    }

    rt.unload_model_async("inline").await.unwrap();
    let req = random_request(&config, 1, &mut rng(2));
    let e = rt.infer("inline", None, req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let e = rt.unload_model_async("inline").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");

    rt.shutdown_async().await;
    let req = random_request(&config, 1, &mut rng(3));
    let e = rt.infer("mlp-tiny", None, req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_load_reports_what_the_blocking_one_would() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::start(
        RuntimeOptions::default()
            .repository(dir.path())
            .lanes(1)
            .device(Device::Cpu),
    )
    .await
    .unwrap();
    let e = rt.load_model_async("absent").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(rt.load_all_async().await.is_empty());
    rt.shutdown_async().await;
}
