//! The transition-budget experiment: deterministic, and its switch follows the runtime's
//! decision (at once without a budget; in the quiet phase, or at the maximum wait, with one).

use cohost_models::synth;
use cohost_runtime::ScheduleKind;
use cohost_sim::transition::{TransitionRun, run};
use cohost_sim::{Batching, Cost, ModelSpec};

/// 1 ms + 5 µs per row, 2 lanes; 8,000 req/s until 1 s, then 200 req/s until 3 s;
/// version 2 arrives at 0.8 s, its first 10 batches 3x slower.
fn spec(budget: Option<f64>, max_wait_s: f64, seed: u64) -> TransitionRun {
    let config = Batching::Adaptive.config(&synth::preset("dlrm-small").unwrap(), 10.0);
    TransitionRun {
        model: ModelSpec {
            name: "m".into(),
            config,
            cost: Cost {
                fixed_s: 1e-3,
                per_row_s: 5e-6,
                cv: 0.1,
                ..Cost::default()
            },
        },
        lanes: 2,
        schedule: ScheduleKind::EdfFair,
        phases: vec![(1.0, 8000.0), (3.0, 200.0)],
        arrive_s: 0.8,
        cold_batches: 10,
        cold_factor: 3.0,
        budget,
        max_wait_s,
        timeout_s: 0.02,
        seed,
    }
}

#[test]
fn the_same_seed_gives_the_same_transition_report_bit_for_bit() {
    let json = |s| serde_json::to_string(&run(&s).unwrap()).unwrap();
    let a = json(spec(Some(0.5), 60.0, 3));
    assert_eq!(a, json(spec(Some(0.5), 60.0, 3)));
    assert_ne!(
        a,
        json(spec(Some(0.5), 60.0, 4)),
        "another seed, other arrivals"
    );
}

#[test]
fn without_a_budget_it_switches_at_the_load_and_with_one_only_below_it() {
    let none = run(&spec(None, 60.0, 1)).unwrap();

    assert_eq!(none.switched_s, Some(0.8));
    assert_eq!(none.outcome, "no_budget");
    // Every one of version 2's cold batches ran: its answers were counted.
    assert!(none.cold.offered > 0);

    let budget = run(&spec(Some(0.25), 60.0, 1)).unwrap();
    assert_eq!(budget.outcome, "below_budget");
    let at = budget.switched_s.expect("switched in the quiet phase");
    assert!(at > 1.0, "switched at {at} s, inside the busy phase");
    assert!(budget.utilization_at_switch < 0.25);
    // Version 1 ran the busy phase at above the budget: the runtime's figure there is not low.
    assert!(none.utilization_at_switch >= 0.25, "{none:?}");
    // A tick is 10 ms: the switch lands on one.
    let ticks = (at - 0.8) / 0.01;
    assert!((ticks - ticks.round()).abs() < 1e-6, "{ticks} ticks");

    let forced = run(&spec(Some(0.01), 0.1, 1)).unwrap();
    assert_eq!(forced.outcome, "max_wait");
    assert!((forced.switched_s.unwrap() - 0.9).abs() < 1e-9);
}

#[test]
fn a_bad_spec_is_an_error_not_a_panic() {
    assert!(run(&spec(Some(0.0), 60.0, 1)).is_err());
    assert!(run(&spec(Some(1.5), 60.0, 1)).is_err());
    let mut late = spec(None, 60.0, 1);
    late.arrive_s = 5.0;
    assert!(run(&late).is_err());
}
