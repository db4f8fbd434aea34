//! A sticky device fault resets the device: the faulted batch, the batches running beside
//! it and the queued requests get 503, the backend is rebuilt once however many lanes
//! report, every model is reloaded from the repository and serving resumes with exact
//! outputs. A transient fault resets nothing; a rebuild that fails leaves the models
//! unready with the reason and is retried with backoff, not in a hot loop.
//!
//! CPU backend; faults are injected through the runtime's batch-boundary hook
//! (`RuntimeOptions::boundary_hook`, feature `testing`), the seam the CUDA backend's own
//! boundary check plugs into.

mod common;

use cohost_kernels::{DeviceFault, FaultKind, Lane};
use cohost_models::{BackendHandle, Model, synth};
use cohost_runtime::testing::Boundary;
use cohost_runtime::{
    DeviceRebuild, ErrorKind, InferRequest, ModelState, ReopenBackend, Runtime, RuntimeOptions,
};
use common::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const MODELS: [&str; 2] = ["mlp-tiny-0", "mlp-tiny-1"];

/// A boundary hook that reports the armed faults, one per boundary; with `hold`, each
/// faulting lane waits in the hook until the test releases it.
#[derive(Default)]
struct Injector {
    state: Mutex<Armed>,
    moved: Condvar,
    fired: AtomicUsize,
}

#[derive(Default)]
struct Armed {
    faults: VecDeque<DeviceFault>,
    hold: bool,
    holding: usize,
}

impl Injector {
    fn arm(&self, kind: FaultKind, n: usize, hold: bool) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..n {
            s.faults.push_back(DeviceFault {
                kind,
                code: "INJECTED".into(),
                seen_at: "test injector",
            });
        }
        s.hold = hold;
    }

    /// Waits until `n` lanes wait in the hook.
    fn wait_holding(&self, n: usize) {
        let s = self.state.lock().unwrap();
        let (s, timeout) = self
            .moved
            .wait_timeout_while(s, HANG, |s| s.holding < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} lane(s) reached the boundary",
            s.holding
        );
    }

    fn release(&self) {
        self.state.lock().unwrap().hold = false;
        self.moved.notify_all();
    }

    fn boundary(self: &Arc<Self>) -> Boundary {
        let me = self.clone();
        Arc::new(move |_: &Lane| {
            let mut s = me.state.lock().unwrap();
            let Some(f) = s.faults.pop_front() else {
                return Ok(());
            };
            me.fired.fetch_add(1, Ordering::SeqCst);
            s.holding += 1;
            me.moved.notify_all();
            let (mut s, _) = me.moved.wait_timeout_while(s, HANG, |s| s.hold).unwrap();
            s.holding -= 1;
            Err(f)
        })
    }
}

/// The baseline rebuild, counted, failing while `fail` is set, waiting while `gate` is.
#[derive(Default)]
struct TestRebuild {
    calls: AtomicUsize,
    fail: AtomicBool,
    gate: Mutex<bool>,
    opened: Condvar,
}

impl TestRebuild {
    fn open_gate(&self) {
        *self.gate.lock().unwrap() = false;
        self.opened.notify_all();
    }
}

impl DeviceRebuild for TestRebuild {
    fn rebuild(
        &self,
        backend: &'static str,
        old: Option<BackendHandle>,
        lanes: usize,
    ) -> Result<(BackendHandle, Vec<Lane>), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let g = self.gate.lock().unwrap();
        drop(self.opened.wait_timeout_while(g, HANG, |g| *g).unwrap());
        if self.fail.load(Ordering::SeqCst) {
            return Err("no device today".into());
        }
        ReopenBackend {
            lane_priorities: true,
        }
        .rebuild(backend, old, lanes)
    }
}

struct Served {
    rt: Runtime,
    injector: Arc<Injector>,
    rebuild: Arc<TestRebuild>,
    references: Vec<Arc<dyn Model>>,
    _dir: tempfile::TempDir,
}

/// Two mlp-tiny models from a repository on a two-lane CPU runtime.
fn serve(rebuild: TestRebuild) -> Served {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "mlp-tiny", 2, 5, None, &mut |_, _| {}).unwrap();
    let injector = Arc::new(Injector::default());
    let rebuild = Arc::new(rebuild);
    let rt = Runtime::new(
        RuntimeOptions::default()
            .lanes(2)
            .repository(dir.path())
            .boundary_hook(injector.boundary())
            .device_rebuild(rebuild.clone()),
    )
    .unwrap();
    assert!(rt.load_all().is_empty());
    let references = MODELS
        .iter()
        .map(|m| reference_model(&dir.path().join(m)))
        .collect();
    Served {
        rt,
        injector,
        rebuild,
        references,
        _dir: dir,
    }
}

fn request(s: &Served, m: usize, seed: u64) -> InferRequest {
    random_request(s.references[m].config(), 2, &mut rng(seed))
}

/// Sends `n` requests to each model; every one must succeed with the reference's outputs.
async fn all_exact(s: &Served, n: u64) {
    for i in 0..n {
        for (m, name) in MODELS.iter().enumerate() {
            let req = request(s, m, i * 2 + m as u64);
            let want = reference_outputs(s.references[m].as_ref(), &req);
            let resp =
                s.rt.infer(name, None, req)
                    .await
                    .unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
            assert_eq!(resp.outputs.len(), want.len());
            for (o, w) in resp.outputs.iter().zip(&want) {
                assert_close(f32s(o), w, 1e-6);
            }
        }
    }
}

fn executions(rt: &Runtime, name: &str) -> u64 {
    rt.stats(Some(name), None).unwrap()[0].execution_count
}

fn assert_unavailable(r: cohost_runtime::Result<impl std::fmt::Debug>, needle: &str) {
    let e = r.expect_err("must fail while the device is down");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains(needle), "'{needle}' not in: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sticky_fault_on_two_lanes_resets_once_and_reloads_every_model() {
    let s = serve(TestRebuild::default());
    all_exact(&s, 5).await;
    assert!(executions(&s.rt, MODELS[0]) > 0);
    *s.rebuild.gate.lock().unwrap() = true;
    // Both lanes find the fault at once, and a third request waits in a queue meanwhile.
    s.injector.arm(FaultKind::Sticky, 2, true);
    let send = |m: usize, seed: u64| {
        let (rt, req) = (s.rt.clone(), request(&s, m, seed));
        tokio::spawn(async move { rt.infer(MODELS[m], None, req).await })
    };
    let (r0, r1) = (send(0, 100), send(1, 101));
    s.injector.wait_holding(2);
    let queued = send(0, 102);
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.injector.release();
    for r in [r0, r1] {
        assert_unavailable(r.await.unwrap(), "INJECTED");
    }
    assert_unavailable(queued.await.unwrap(), "INJECTED");
    // The rebuild is held: the runtime says it is resetting and why.
    until("the rebuild starts", || {
        s.rebuild.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(!s.rt.is_ready());
    assert!(!s.rt.model_ready(MODELS[1], None));
    assert_unavailable(
        s.rt.infer(MODELS[1], None, request(&s, 1, 7)).await,
        "reset",
    );
    s.rebuild.open_gate();
    until("the device is back", || s.rt.is_ready()).await;
    assert_eq!(s.injector.fired.load(Ordering::SeqCst), 2);
    assert_eq!(s.rebuild.calls.load(Ordering::SeqCst), 1, "one rebuild");
    assert_eq!(s.rt.device_resets(), (1, 0));
    assert_eq!(s.rt.device_generation(), 1);
    for name in MODELS {
        assert!(s.rt.model_ready(name, None), "{name} reloaded");
        assert_eq!(
            executions(&s.rt, name),
            0,
            "{name} is a freshly loaded version"
        );
    }
    all_exact(&s, 5).await;
    assert_eq!(s.rt.device_resets(), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_fault_resets_nothing() {
    let s = serve(TestRebuild::default());
    all_exact(&s, 2).await;
    s.injector.arm(FaultKind::Transient, 1, false);
    let e =
        s.rt.infer(MODELS[0], None, request(&s, 0, 1))
            .await
            .expect_err("the faulted batch fails");
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.rt.is_ready());
    assert_eq!(s.rt.device_resets(), (0, 0));
    assert_eq!(s.rt.device_generation(), 0);
    assert_eq!(s.rebuild.calls.load(Ordering::SeqCst), 0);
    assert!(
        executions(&s.rt, MODELS[1]) > 0,
        "the same versions serve on"
    );
    all_exact(&s, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_rebuild_leaves_models_unready_with_the_reason_and_backs_off() {
    let rebuild = TestRebuild::default();
    rebuild.fail.store(true, Ordering::SeqCst);
    let s = serve(rebuild);
    s.injector.arm(FaultKind::Sticky, 1, false);
    let r = s.rt.infer(MODELS[0], None, request(&s, 0, 1)).await;
    assert_unavailable(r, "INJECTED");
    until("a rebuild failed", || s.rt.device_resets().1 >= 1).await;
    assert!(!s.rt.is_ready());
    for name in MODELS {
        assert!(!s.rt.model_ready(name, None));
        let r = s.rt.infer(name, None, request(&s, 0, 2)).await;
        assert_unavailable(r, "no device today");
    }
    let index = s.rt.repository_index().unwrap();
    for name in MODELS {
        let e = index.iter().find(|e| e.name == name).unwrap();
        assert_eq!(e.state, ModelState::Unavailable);
        assert!(e.reason.contains("no device today"), "{}", e.reason);
    }
    // Backoff: 100 ms doubling, so about 4 attempts in the first second, not thousands.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let calls = s.rebuild.calls.load(Ordering::SeqCst);
    assert!((2..=6).contains(&calls), "{calls} rebuild attempts in ~1 s");
    s.rebuild.fail.store(false, Ordering::SeqCst);
    until("the device is back", || s.rt.is_ready()).await;
    let (ok, failed) = s.rt.device_resets();
    assert_eq!(ok, 1);
    assert!(
        failed >= calls as u64 - 1,
        "{failed} failed attempts counted"
    );
    assert_eq!(s.rt.device_generation(), 1);
    all_exact(&s, 3).await;
}
