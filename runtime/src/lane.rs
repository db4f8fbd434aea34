//! Lanes: the slice's execution contexts. On the CPU a lane is a worker thread; each
//! lane pulls batches from the scheduler and runs them, off the async runtime.

use crate::queue::{ModelQueue, Pending, Reply};
use crate::scheduler::{Scheduler, Work};
use crate::{Error, Result, Tensor, TensorData};
use cohost_kernels::Lane;
use cohost_models::{Batch, InputData};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Starts one worker thread per lane; they exit when the scheduler shuts down.
pub fn spawn_lanes(lanes: Vec<Lane>, scheduler: Arc<Scheduler>) -> Vec<JoinHandle<()>> {
    lanes
        .into_iter()
        .map(|lane| {
            let sched = scheduler.clone();
            std::thread::Builder::new()
                .name(format!("cohost-lane-{}", lane.index))
                .spawn(move || {
                    while let Some(work) = sched.next() {
                        run(&lane, &sched, work);
                    }
                })
                .expect("spawn lane thread")
        })
        .collect()
}

fn run(lane: &Lane, sched: &Scheduler, work: Work) {
    let Work { queue, batch } = work;
    let started = Instant::now();
    let n_requests = batch.requests.len();
    let rows = batch.rows;
    let input = gather(rows, &batch.requests);
    let t_input = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| queue.model.forward(lane, &input)));
    let t_infer = Instant::now();
    let infer_s = t_infer.duration_since(t_input).as_secs_f64();
    let outputs: Result<Vec<Vec<f32>>> = match result {
        Ok(Ok(outs)) => Ok(outs),
        Ok(Err(e)) => Err(Error::from(e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(model = %queue.name, lane = lane.index, "model panicked: {msg}");
            Err(Error::internal(format!(
                "model '{}' failed while running a batch: {msg}",
                queue.name
            )))
        }
    };
    if outputs.is_ok() {
        queue.latency.observe(rows, infer_s);
    }
    // Split first, account for the batch, then answer: a client that reads statistics or
    // the load counter right after its response sees its own batch counted.
    let replies = scatter(&queue, outputs, batch.requests, rows, t_infer);
    let done = Instant::now();
    let busy = done.duration_since(started).as_secs_f64();
    queue.stats.batch(
        rows as u64,
        t_input.duration_since(started).as_nanos() as u64,
        (infer_s * 1e9) as u64,
        done.duration_since(t_infer).as_nanos() as u64,
    );
    queue.metrics.execution_count.increment(1);
    queue.metrics.inference_count.increment(rows as u64);
    queue.metrics.batch_size.record(rows as f64);
    queue.metrics.compute_duration.record(infer_s);
    crate::metrics::lane_busy(lane.index, busy);
    queue.finish(batch.id, n_requests, busy);
    for (tx, reply) in replies {
        let _ = tx.send(reply);
    }
    sched.notify();
}

/// Concatenates the requests' inputs into one batch.
fn gather(rows: usize, requests: &[Pending]) -> Batch {
    let n_inputs = requests.first().map_or(0, |p| p.inputs.len());
    let inputs = (0..n_inputs)
        .map(|i| match &requests[0].inputs[i] {
            InputData::F32(_) => InputData::F32(
                requests
                    .iter()
                    .flat_map(|p| match &p.inputs[i] {
                        InputData::F32(v) => v.iter().copied(),
                        InputData::I64(_) => unreachable!("inputs converted per model signature"),
                    })
                    .collect(),
            ),
            InputData::I64(_) => InputData::I64(
                requests
                    .iter()
                    .flat_map(|p| match &p.inputs[i] {
                        InputData::I64(v) => v.iter().copied(),
                        InputData::F32(_) => unreachable!("inputs converted per model signature"),
                    })
                    .collect(),
            ),
        })
        .collect();
    Batch { rows, inputs }
}

/// A request's reply channel and what to send on it.
type Answer = (tokio::sync::oneshot::Sender<Result<Reply>>, Result<Reply>);

/// Splits the batch's outputs back into each request's rows.
fn scatter(
    queue: &ModelQueue,
    outputs: Result<Vec<Vec<f32>>>,
    requests: Vec<Pending>,
    rows: usize,
    now: Instant,
) -> Vec<Answer> {
    let specs = &queue.config.outputs;
    let widths: Vec<usize> = specs
        .iter()
        .map(|s| s.dims.iter().skip(1).product::<i64>().max(1) as usize)
        .collect();
    let outputs = outputs.and_then(|o| {
        let fits =
            o.len() == specs.len() && o.iter().zip(&widths).all(|(v, w)| v.len() == rows * w);
        if fits {
            Ok(o)
        } else {
            Err(Error::internal(format!(
                "model '{}' produced outputs that do not match its config's output dims",
                queue.name
            )))
        }
    });
    let mut row = 0;
    let mut answers = Vec::with_capacity(requests.len());
    for p in requests {
        let queue_seconds = now.duration_since(p.enqueued).as_secs_f64();
        let reply = match &outputs {
            Ok(outs) => Ok(Reply {
                outputs: p
                    .outputs
                    .iter()
                    .map(|&oi| {
                        let (spec, w) = (&specs[oi], widths[oi]);
                        let data = outs[oi][row * w..(row + p.rows) * w].to_vec();
                        let mut shape = vec![p.rows as i64];
                        shape.extend(spec.dims.iter().skip(1).copied());
                        Tensor::new(spec.name.clone(), shape, TensorData::F32(data))
                    })
                    .collect(),
                queue_seconds,
            }),
            Err(e) => Err(e.clone()),
        };
        row += p.rows;
        answers.push((p.reply, reply));
    }
    answers
}
