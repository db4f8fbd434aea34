//! The snapshot transition budget: a new version waits while the slice is at or above the
//! budget, takes over below it, and no request fails during a transition under load.

mod common;

use cohost_models::synth;
use cohost_runtime::{Runtime, RuntimeOptions, SliceUtilization, TransitionOutcome};
use common::{f32s, random_request, reference_outputs, rng, until_blocking};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A utilization the test sets.
#[derive(Default)]
struct Dial(AtomicU64);

impl Dial {
    fn set(&self, u: f64) {
        self.0.store(u.to_bits(), Ordering::SeqCst);
    }
}

impl SliceUtilization for Dial {
    fn utilization(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::SeqCst))
    }
}

/// A repository with `mlp-tiny` version 1 (seed 3); version 2 (seed 4) is added later.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "mlp-tiny", 1, 3, None, &mut |_, _| {}).unwrap();
    dir
}

/// Adds version 2 of `mlp-tiny` with other weights (seed 4).
fn add_version_2(repo: &Path) {
    let other = tempfile::tempdir().unwrap();
    synth::generate(other.path(), "mlp-tiny", 1, 4, None, &mut |_, _| {}).unwrap();
    let to = repo.join("mlp-tiny/2");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(
        other.path().join("mlp-tiny/1/model.safetensors"),
        to.join("model.safetensors"),
    )
    .unwrap();
}

/// The version of `mlp-tiny` in `repo`, built outside the runtime.
fn reference(repo: &Path, version: u64) -> Arc<dyn cohost_models::Model> {
    let dir = repo.join("mlp-tiny");
    let config = cohost_runtime::ModelConfig::from_file(&dir.join("config.toml")).unwrap();
    cohost_models::build_model(
        &config,
        cohost_models::WeightSource::File(&dir.join(format!("{version}/model.safetensors"))),
        &cohost_models::BackendHandle::Cpu(Arc::new(cohost_kernels::cpu::CpuOps::default())),
        &cohost_models::PlacementOptions::default(),
    )
    .unwrap()
}

fn runtime(repo: &Path, dial: &Arc<Dial>, max_wait: Duration) -> Runtime {
    let rt = Runtime::new(
        RuntimeOptions::default()
            .lanes(2)
            .repository(repo)
            .transition_budget(Some(0.5))
            .transition_max_wait(max_wait)
            .utilization_source(dial.clone()),
    )
    .unwrap();
    rt.load_model("mlp-tiny").unwrap();
    rt
}

fn loaded_versions(rt: &Runtime) -> Vec<u64> {
    rt.models().iter().map(|s| s.version).collect()
}

async fn served_version(rt: &Runtime) -> u64 {
    let config = rt.config("mlp-tiny", None).unwrap().1;
    let req = random_request(&config, 1, &mut rng(1));
    rt.infer("mlp-tiny", None, req).await.unwrap().model_version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_budget_the_old_version_keeps_the_traffic_and_below_it_the_new_one_takes_over() {
    let dir = repo();
    let dial = Arc::new(Dial::default());
    let rt = runtime(dir.path(), &dial, Duration::from_secs(3600));
    dial.set(0.9);
    add_version_2(dir.path());
    rt.load_model("mlp-tiny").unwrap();
    // (1) Waiting: both loaded, unversioned requests on version 1, version 2 by name.
    assert_eq!(rt.transitions_waiting(), 1);
    assert_eq!(loaded_versions(&rt), vec![1, 2]);
    for _ in 0..5 {
        assert_eq!(served_version(&rt).await, 1);
    }
    let config = rt.config("mlp-tiny", Some(2)).unwrap().1;
    let named = rt
        .infer("mlp-tiny", Some(2), random_request(&config, 1, &mut rng(2)))
        .await
        .unwrap();
    assert_eq!(named.model_version, 2);
    // Still waiting many supervisor ticks later.
    std::thread::sleep(cohost_runtime::TRANSITION_TICK * 5);
    assert_eq!(rt.transitions_waiting(), 1);
    assert_eq!(served_version(&rt).await, 1);
    // (2) Below the budget: version 2 takes over, version 1 drains and is unloaded.
    dial.set(0.1);
    until_blocking("the transition ends", || rt.transitions_waiting() == 0);
    assert_eq!(served_version(&rt).await, 2);
    until_blocking("version 1 is unloaded", || loaded_versions(&rt) == vec![2]);
    assert_eq!(
        rt.transitions_finished(),
        vec![("mlp-tiny".to_string(), TransitionOutcome::BelowBudget)]
    );
}

#[test]
fn a_saturated_slice_still_rolls_over_after_the_maximum_wait() {
    let dir = repo();
    let dial = Arc::new(Dial::default());
    let rt = runtime(dir.path(), &dial, Duration::from_millis(100));
    dial.set(1.0);
    add_version_2(dir.path());
    rt.load_model("mlp-tiny").unwrap();
    assert_eq!(rt.transitions_waiting(), 1);
    until_blocking("version 1 is unloaded", || loaded_versions(&rt) == vec![2]);
    assert_eq!(rt.transitions_waiting(), 0);
    assert_eq!(
        rt.transitions_finished(),
        vec![("mlp-tiny".to_string(), TransitionOutcome::MaxWait)]
    );
}

#[test]
fn without_a_budget_or_below_it_a_new_version_takes_over_at_once() {
    let dir = repo();
    let dial = Arc::new(Dial::default());
    let rt = runtime(dir.path(), &dial, Duration::from_secs(3600));
    dial.set(0.2);
    add_version_2(dir.path());
    rt.load_model("mlp-tiny").unwrap();
    assert_eq!(rt.transitions_waiting(), 0);
    assert_eq!(rt.config("mlp-tiny", None).unwrap().0, 2);
    let plain = Runtime::new(RuntimeOptions::default().lanes(1).repository(dir.path())).unwrap();
    plain.load_model("mlp-tiny").unwrap();
    assert_eq!(loaded_versions(&plain), vec![2]);
    assert!(Runtime::new(RuntimeOptions::default().transition_budget(Some(1.5))).is_err());
    assert!(Runtime::new(RuntimeOptions::default().transition_budget(Some(0.0))).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_during_a_transition_under_load() {
    let dir = repo();
    let dial = Arc::new(Dial::default());
    let rt = runtime(dir.path(), &dial, Duration::from_secs(3600));
    add_version_2(dir.path());
    let refs = [reference(dir.path(), 1), reference(dir.path(), 2)];
    let config = rt.config("mlp-tiny", None).unwrap().1;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut clients = Vec::new();
    for c in 0..6u64 {
        let (rt, config, stop, served) = (rt.clone(), config.clone(), stop.clone(), served.clone());
        let refs = refs.clone();
        clients.push(tokio::spawn(async move {
            let mut r = rng(100 + c);
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let req = random_request(&config, 1 + (c as usize % 3), &mut r);
                match rt.infer("mlp-tiny", None, req.clone()).await {
                    Ok(resp) => {
                        let v = resp.model_version as usize;
                        let want = reference_outputs(&*refs[v - 1], &req);
                        common::assert_close(f32s(&resp.outputs[0]), &want[0], 1e-5);
                        served[v - 1].fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    let count = |v: usize| served[v - 1].load(Ordering::SeqCst);
    until_blocking("version 1 serves 50 requests", || count(1) >= 50);
    dial.set(0.9);
    let loader = rt.clone();
    tokio::task::spawn_blocking(move || loader.load_model("mlp-tiny").unwrap())
        .await
        .unwrap();
    assert_eq!(rt.transitions_waiting(), 1);
    let before = count(1);
    until_blocking("version 1 serves 50 more", || count(1) >= before + 50);
    assert_eq!(
        count(2),
        0,
        "version 2 took unversioned traffic while waiting"
    );
    dial.set(0.0);
    until_blocking("version 1 is unloaded", || loaded_versions(&rt) == vec![2]);
    until_blocking("version 2 serves 50 requests", || count(2) >= 50);
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}
