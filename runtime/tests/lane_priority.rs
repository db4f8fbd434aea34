//! Lane priority classes: with one `High` and one `Normal` lane, urgent batches (a model
//! priority above the others', or a deadline at risk) go to the High lane while it is free
//! and the flood's to the Normal one; the class-blind baseline ignores the classes; a High
//! lane still takes ordinary work when nothing is urgent. Driven by `Scheduler::poll_for`
//! on a virtual clock, plus one run on real lane threads.

mod common;

use cohost_kernels::{Lane, LanePriority};
use cohost_models::{BatchingPolicyKind, InputData, ModelConfig, synth};
use cohost_runtime::testing::{
    Clock, EdfFairShare, LaneRouting, MemoryLease, ModelQueue, Pending, Poll, Scheduler,
    VirtualClock, spawn_lanes,
};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

const HANG: Duration = Duration::from_secs(30);
const HIGH: usize = 0;
const NORMAL: usize = 1;

/// One model's config: mlp-tiny's shape, every request its own batch, `priority`.
fn config(priority: i32) -> ModelConfig {
    let mut c = synth::preset("mlp-tiny").unwrap();
    c.batching.policy = BatchingPolicyKind::None;
    c.priority = priority;
    c
}

/// A scheduler over lanes of `classes` with `routing`, on `clock` (if any), serving queues
/// named `names` with priorities `prios`.
struct Slice {
    sched: Arc<Scheduler>,
    queues: Vec<Arc<ModelQueue>>,
    clock: Option<Arc<VirtualClock>>,
    _answers: Vec<common::Answer>,
}

impl Slice {
    fn new(classes: &[LanePriority], routing: LaneRouting, prios: &[i32], virt: bool) -> Self {
        let clock = virt.then(|| Arc::new(VirtualClock::new()));
        let policy = EdfFairShare {
            share_cap: None,
            ..EdfFairShare::default()
        };
        let mut sched = Scheduler::new(Box::new(policy), classes.len())
            .with_lane_classes(classes.to_vec())
            .with_routing(routing);
        if let Some(c) = &clock {
            sched = sched.with_clock(Clock::Virtual(c.clone()));
        }
        let sched = Arc::new(sched);
        let queues = prios
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let config = config(p);
                let model = common::Echo::new(config.clone(), Duration::from_micros(200));
                let lease = MemoryLease::new(0, Arc::new(AtomicU64::new(0)));
                let mut q = ModelQueue::new(&format!("m{i}"), 1, config, model, 2, lease);
                if let Some(c) = &clock {
                    q = q.with_clock(Clock::Virtual(c.clone()));
                }
                let q = Arc::new(q);
                sched.add(q.clone());
                q
            })
            .collect();
        Slice {
            sched,
            queues,
            clock,
            _answers: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.clock.as_ref().map_or_else(Instant::now, |c| c.now())
    }

    /// Queues one 1-row request on model `m` (deadline `deadline` from now, if any).
    fn enqueue(&mut self, m: usize, deadline: Option<Duration>) -> common::Answer {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now = self.now();
        self.queues[m]
            .enqueue(Pending {
                rows: 1,
                inputs: vec![InputData::F32(vec![0.5; common::ECHO_IN])],
                outputs: vec![0],
                enqueued: now,
                deadline: deadline.map(|d| now + d),
                reply: tx,
            })
            .unwrap();
        self.sched.notify_queue(&self.queues[m]);
        rx
    }

    /// Queues `n` requests on model `m`, keeping their reply channels open.
    fn flood(&mut self, m: usize, n: usize) {
        for _ in 0..n {
            let rx = self.enqueue(m, None);
            self._answers.push(rx);
        }
    }

    /// Lane `lane` polls: which model's batch it took (None: idle). The batch ends at once.
    fn poll(&self, lane: usize) -> Option<usize> {
        match self.sched.poll_for(lane) {
            Poll::Work(w) => {
                let m = self.queues.iter().position(|q| Arc::ptr_eq(q, &w.queue));
                w.queue.finish(w.batch.id, w.batch.requests.len(), 1e-4);
                m
            }
            Poll::Idle(_) | Poll::Closed => None,
        }
    }
}

const CLASSES: [LanePriority; 2] = [LanePriority::High, LanePriority::Normal];

#[test]
fn the_priority_model_runs_on_the_high_lane_and_the_flood_on_the_normal_one() {
    let mut s = Slice::new(&CLASSES, LaneRouting::default(), &[0, 10], true);
    // Both lanes idle; the flood and the critical model queue at the same instant.
    assert_eq!(s.poll(HIGH), None);
    assert_eq!(s.poll(NORMAL), None);
    s.flood(0, 20);
    let _crit = s.enqueue(1, None);
    // The Normal lane asks first, with the High lane idle: it leaves the critical batch
    // (which the policy would pick: same deadline, higher priority) and takes the flood's.
    assert_eq!(s.poll(NORMAL), Some(0));
    assert_eq!(s.poll(HIGH), Some(1));
    // Rounds: one critical request each; the High lane (free first) takes it.
    for round in 0..5 {
        let _crit = s.enqueue(1, None);
        assert_eq!(s.poll(HIGH), Some(1), "round {round}");
        assert_eq!(s.poll(NORMAL), Some(0), "round {round}");
    }
    // Nothing urgent queued: the High lane takes the flood's work (nothing starves).
    assert_eq!(s.poll(HIGH), Some(0));
    assert_eq!(s.poll(NORMAL), Some(0));
}

#[test]
fn a_normal_lane_takes_urgent_work_when_no_high_lane_is_idle() {
    let mut s = Slice::new(&CLASSES, LaneRouting::default(), &[0, 10], true);
    s.flood(0, 4);
    let _crit = s.enqueue(1, None);
    // The High lane has not asked yet (busy, as far as the scheduler knows): the Normal
    // lane takes the policy's pick, the critical batch.
    assert_eq!(s.poll(NORMAL), Some(1));
    // Only urgent work, the High lane idle: the Normal lane leaves it and waits briefly.
    assert_eq!(s.poll(HIGH), Some(0));
    assert_eq!(s.poll(HIGH), Some(0));
    assert_eq!(s.poll(HIGH), Some(0));
    assert_eq!(s.poll(HIGH), Some(0));
    assert_eq!(s.poll(HIGH), None);
    let _crit = s.enqueue(1, None);
    match s.sched.poll_for(NORMAL) {
        Poll::Idle(Some(again)) => assert!(again > s.now(), "it looks again later"),
        Poll::Idle(None) => panic!("a deferring lane must look again"),
        Poll::Work(_) | Poll::Closed => panic!("the Normal lane took work left to the High lane"),
    }
    assert_eq!(s.poll(HIGH), Some(1));
}

#[test]
fn a_deadline_at_risk_goes_to_the_high_lane() {
    // Equal priorities: only the deadline makes a batch urgent.
    let mut s = Slice::new(&CLASSES, LaneRouting::default(), &[0, 0], true);
    assert_eq!(s.poll(HIGH), None);
    s.flood(0, 4);
    let clock = s.clock.clone().unwrap();
    clock.set(clock.nanos() + 1_000_000);
    // A deadline 10 µs away: slack below twice the predicted batch time (~50 µs or more).
    let _late = s.enqueue(1, Some(Duration::from_micros(10)));
    let slack = Duration::from_micros(10).as_secs_f64();
    let predicted = s.queues[1].latency().predict(1);
    assert!(slack < 2.0 * predicted, "the test's deadline is at risk");
    // EDF would pick it for any lane; the Normal lane leaves it to the idle High lane.
    assert_eq!(s.poll(NORMAL), Some(0));
    assert_eq!(s.poll(HIGH), Some(1));
    // A far deadline is not at risk: with the High lane idle again, a Normal lane takes
    // it (the policy's pick: the earlier deadline) instead of leaving it.
    while s.poll(HIGH).is_some() {}
    s.flood(0, 1);
    let _far = s.enqueue(1, Some(Duration::from_secs(60)));
    assert_eq!(s.poll(NORMAL), Some(1));
}

/// The sequence of models the lanes take for a fixed poll order, with lane `high` High.
fn picks(routing: LaneRouting, classes: &[LanePriority]) -> Vec<Option<usize>> {
    let mut s = Slice::new(classes, routing, &[0, 10], true);
    let mut got = vec![s.poll(0), s.poll(1)];
    s.flood(0, 10);
    for _ in 0..4 {
        let _crit = s.enqueue(1, None);
        got.push(s.poll(1));
        got.push(s.poll(0));
    }
    got
}

#[test]
fn the_class_blind_baseline_uses_both_classes_alike() {
    let blind = LaneRouting::ClassBlind;
    let swapped = [LanePriority::Normal, LanePriority::High];
    let a = picks(blind, &CLASSES);
    let b = picks(blind, &swapped);
    assert_eq!(
        a, b,
        "the baseline's choices do not depend on the lanes' classes"
    );
    // Lane 1 asks first each round and takes the critical batch (the policy's pick).
    assert_eq!(&a[2..], &[Some(1), Some(0)].repeat(4)[..]);
    // The urgency routing differs exactly there: a Normal lane 1 leaves it to lane 0.
    let urgent = picks(LaneRouting::default(), &CLASSES);
    assert_eq!(&urgent[2..4], &[Some(0), Some(1)]);
}

#[test]
fn real_lanes_serve_a_flood_and_a_priority_model_without_starving_either() {
    let mut s = Slice::new(&CLASSES, LaneRouting::default(), &[0, 10], false);
    let lanes = vec![
        Lane::cpu(HIGH).with_priority(LanePriority::High),
        Lane::cpu(NORMAL),
    ];
    let handles = spawn_lanes(lanes, s.sched.clone());
    let until = Instant::now() + HANG;
    let mut answers = Vec::new();
    for i in 0..200 {
        answers.push(s.enqueue(0, None));
        if i % 10 == 0 {
            answers.push(s.enqueue(1, None));
        }
    }
    for rx in answers {
        let left = until.saturating_duration_since(Instant::now());
        let reply = common::answer_within(rx, left).expect("every request is answered");
        assert_eq!(reply.outputs[0].shape, vec![1, common::ECHO_OUT as i64]);
    }
    s.sched.shutdown();
    for h in handles {
        h.join().unwrap();
    }
}
