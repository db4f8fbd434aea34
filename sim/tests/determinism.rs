//! The simulator is deterministic (the same seed gives the same report, bit for bit) and
//! its runs mean what they say (values a wrong driver would miss).

use cohost_models::synth;
use cohost_runtime::ScheduleKind;
use cohost_sim::fleet::{self, FleetSpec, Freshness, Router};
use cohost_sim::{ArrivalKind, Batching, Cost, ModelSpec, SliceRun};

fn gpu_like() -> Cost {
    Cost {
        fixed_s: 1e-3,
        per_row_s: 5e-6,
        cv: 0.1,
        ..Cost::default()
    }
}

fn slice_run(batching: Batching, rate: f64, seed: u64) -> SliceRun {
    let base = batching.config(&synth::preset("dlrm-small").unwrap(), 10.0);
    let models = (0..2)
        .map(|i| ModelSpec {
            name: format!("m-{i}"),
            config: base.clone(),
            cost: gpu_like(),
        })
        .collect();
    SliceRun {
        models,
        rates: vec![rate / 2.0; 2],
        lanes: 2,
        schedule: ScheduleKind::EdfFair,
        arrivals: ArrivalKind::Poisson,
        rows: 1,
        timeout_s: Some(0.05),
        warmup_s: 0.2,
        duration_s: 0.5,
        reply_us: 0.0,
        host_us: 0.0,
        seed,
    }
}

#[test]
fn the_same_seed_gives_the_same_slice_report_bit_for_bit() {
    let run = |seed| {
        serde_json::to_string(&cohost_sim::run(&slice_run(
            Batching::Adaptive,
            4000.0,
            seed,
        )))
        .unwrap()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8), "another seed, other arrivals");
}

#[test]
fn the_same_seed_gives_the_same_fleet_report_bit_for_bit() {
    let spec = FleetSpec {
        hosts: 6,
        models: 8,
        lanes: 2,
        skew: 1.0,
        top_share: 0.5,
        min_replicas: 2,
        model_cost_cv: 0.5,
        host_speed_cv: 0.25,
        config: Batching::Adaptive.config(&synth::preset("dlrm-small").unwrap(), 20.0),
        cost: gpu_like(),
        schedule: ScheduleKind::EdfFair,
        timeout_s: 0.04,
        warmup_s: 0.2,
        duration_s: 0.4,
        seed: 3,
    };
    let placement = spec.placement();
    for router in [Router::Random, Router::P2cHost, Router::P2cModel] {
        let run =
            |f| serde_json::to_string(&fleet::run(&spec, &placement, router, f, 3000.0)).unwrap();
        assert_eq!(run(Freshness::Stale), run(Freshness::Stale), "{router:?}");
        assert_eq!(run(Freshness::Fresh), run(Freshness::Fresh), "{router:?}");
    }
}

#[test]
fn no_batching_runs_single_rows_and_lane_time_is_the_profiles() {
    // 500 req/s of 1 ms + 5 µs batches on 2 lanes: ~0.25 lanes busy, never a 2-row batch.
    let mut spec = slice_run(Batching::None, 500.0, 1);
    spec.duration_s = 4.0;
    for m in &mut spec.models {
        m.cost.cv = 0.0;
    }
    let r = cohost_sim::run(&spec);
    assert_eq!(r.overall.mean_batch, 1.0);
    assert!(
        (r.utilization - 500.0 * 1.005e-3 / 2.0).abs() < 0.02,
        "{}",
        r.utilization
    );
    // Nobody waits long at a quarter load: P50 is the batch itself (1.005 ms) or a bit more.
    assert!(
        r.overall.p50_ms >= 1.005 && r.overall.p50_ms < 1.5,
        "{}",
        r.overall.p50_ms
    );
    assert_eq!(r.overall.error_rate, 0.0);
}

#[test]
fn under_a_dominant_fixed_cost_adaptive_batches_and_beats_none() {
    // At 3,000 req/s, none needs 3 lanes of 1 ms batches and has 2: it falls behind and
    // times out; adaptive batches and keeps up within the target.
    let none = cohost_sim::run(&slice_run(Batching::None, 3000.0, 5));
    let adaptive = cohost_sim::run(&slice_run(Batching::Adaptive, 3000.0, 5));
    assert!(none.overall.error_rate > 0.1, "none: {:?}", none.overall);
    assert!(
        adaptive.overall.mean_batch > 1.5,
        "adaptive: {:?}",
        adaptive.overall
    );
    assert!(
        adaptive.overall.error_rate < 0.001,
        "adaptive: {:?}",
        adaptive.overall
    );
    assert!(
        adaptive.overall.p99_ms < 10.0,
        "adaptive: {:?}",
        adaptive.overall
    );
}

#[test]
fn front_end_cpu_on_the_lanes_cores_slows_the_lanes_by_its_share() {
    // 500 req/s × 2,000 µs of front-end CPU on 2 cores takes half of them: lanes at half pace,
    // so each 1.005 ms batch holds its lane for 2.01 ms and utilization doubles.
    let mut spec = slice_run(Batching::None, 500.0, 1);
    spec.duration_s = 4.0;
    spec.host_us = 2000.0;
    for m in &mut spec.models {
        m.cost.cv = 0.0;
    }
    assert!((cohost_sim::lane_speed(&spec) - 0.5).abs() < 1e-12);
    let r = cohost_sim::run(&spec);
    assert!(
        (r.utilization - 500.0 * 2.01e-3 / 2.0).abs() < 0.03,
        "{}",
        r.utilization
    );
    assert!(r.overall.p50_ms >= 2.01, "{}", r.overall.p50_ms);
}
