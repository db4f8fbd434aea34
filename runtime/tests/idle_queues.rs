//! Idle models cost the request path nothing: with many queues loaded and one receiving
//! requests, neither the scheduler's passes nor the host load counter (`total_work`) lock
//! an idle queue, and a wake-up that names no queue still finds work and drops queues that
//! closed while idle.

mod common;

use cohost_kernels::Lane;
use cohost_models::synth;
use cohost_runtime::testing::{EdfFairShare, ModelQueue, Scheduler, spawn_lanes};
use common::{Answer, HANG, answer_within, enqueue, scheduled_queue, until_blocking};
use std::sync::Arc;

const LANES: usize = 2;
const IDLE: usize = 50;

/// The answer's rows of 4 outputs, failing the test without one within [`HANG`].
fn answer(rx: Answer) -> usize {
    let reply = answer_within(rx, HANG).expect("the request succeeds");
    assert_eq!(reply.outputs.len(), 1);
    reply.outputs[0].shape[0] as usize
}

#[test]
fn serving_one_model_locks_no_idle_queue() {
    let config = synth::preset("mlp-tiny").unwrap();
    let model = common::reference_model_of(&config, 7);
    let sched = Arc::new(Scheduler::new(Box::new(EdfFairShare::default()), LANES));
    let queue = |name: &str| scheduled_queue(&sched, name, &config, model.clone(), LANES);
    let busy = queue("busy");
    let idle: Vec<Arc<ModelQueue>> = (0..IDLE).map(|i| queue(&format!("idle-{i}"))).collect();
    let handles = spawn_lanes((0..LANES).map(Lane::cpu).collect(), sched.clone());

    let idle_before: Vec<u64> = idle.iter().map(|q| q.state_locks()).collect();
    let busy_before = busy.state_locks();
    let mut rows_answered = 0;
    for round in 0..60 {
        // One request at a time, then a few at once (a lane finishing a batch finds more).
        let n = if round % 2 == 0 { 1 } else { 6 };
        let answers: Vec<Answer> = (0..n)
            .map(|i| {
                let rx = enqueue(&busy, 1 + i % 3);
                sched.notify_queue(&busy);
                rx
            })
            .collect();
        // The load counter every response carries.
        assert!(sched.total_work() >= 0.0);
        rows_answered += answers.into_iter().map(answer).sum::<usize>();
    }
    assert_eq!(rows_answered, 30 + 30 * (1 + 2 + 3 + 1 + 2 + 3));
    let idle_after: Vec<u64> = idle.iter().map(|q| q.state_locks()).collect();
    assert_eq!(
        idle_after, idle_before,
        "idle queues were locked while another model was served"
    );
    assert!(
        busy.state_locks() > busy_before + 200,
        "the busy queue's own locks are counted ({} -> {})",
        busy_before,
        busy.state_locks()
    );

    // A wake-up that names no queue (a queue closed, requests queued by hand) looks at
    // every queue once: the request queued without naming its queue is answered, and a
    // queue that closed while idle leaves the scheduler.
    idle[0].close();
    let rx = enqueue(&idle[1], 2);
    sched.notify();
    assert_eq!(answer(rx), 2);
    until_blocking("the closed idle queue leaves the scheduler", || {
        sched.queues().len() == IDLE
    });
    assert!(!sched.queues().iter().any(|q| Arc::ptr_eq(q, &idle[0])));

    sched.shutdown();
    for h in handles {
        h.join().expect("lanes never unwind");
    }
}
