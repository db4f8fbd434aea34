//! Lanes: the slice's execution contexts. On the CPU a lane is a worker thread; each
//! lane pulls batches from the scheduler and runs them, off the async runtime.
//!
//! A lane outlives panics. One in a model's `forward` fails that batch with the model's
//! message; one anywhere else while running a batch (gathering, splitting, statistics,
//! metrics, releasing it) answers each of the batch's requests with an internal error
//! and releases the batch's accounting once; one inside [`Scheduler::next`] that the
//! scheduler could not pin on a model is logged and retried after a growing pause.

use crate::panic::panic_message;
use crate::queue::{FormedBatch, ModelQueue, Pending, Reply};
use crate::scheduler::{Scheduler, Work};
use crate::{Error, Result, Tensor, TensorData};
use cohost_kernels::Lane;
use cohost_models::{Batch, InputData};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest pause of a lane between two scheduler panics in a row.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Starts one worker thread per lane; they exit when the scheduler shuts down.
pub fn spawn_lanes(lanes: Vec<Lane>, scheduler: Arc<Scheduler>) -> Vec<JoinHandle<()>> {
    lanes
        .into_iter()
        .map(|lane| {
            let sched = scheduler.clone();
            std::thread::Builder::new()
                .name(format!("cohost-lane-{}", lane.index))
                .spawn(move || serve(&lane, &sched))
                .expect("spawn lane thread")
        })
        .collect()
}

/// A lane's loop: runs the scheduler's batches until it shuts down, whatever panics.
fn serve(lane: &Lane, sched: &Scheduler) {
    let mut failures = 0u32;
    loop {
        // `run` answers and releases its batch itself; what lands here came from the
        // scheduler, whose state stays consistent (its mutex is released on unwind and a
        // queue's `take` is panic-safe).
        let step = catch_unwind(AssertUnwindSafe(|| {
            sched.next().map(|work| run(lane, work))
        }));
        match step {
            Ok(Some(())) => failures = 0,
            Ok(None) => return,
            Err(panic) => {
                // Pause, so a panic on every call cannot keep a core spinning.
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(1 << (failures - 1).min(7)).min(MAX_BACKOFF);
                tracing::error!(
                    lane = lane.index,
                    failures,
                    "lane panicked while scheduling: {}; retrying in {pause:?}",
                    panic_message(&*panic)
                );
                std::thread::sleep(pause);
            }
        }
    }
}

/// Runs one batch and answers each of its requests; never unwinds.
fn run(lane: &Lane, work: Work) {
    let Work { queue, batch } = work;
    let started = Instant::now();
    match catch_unwind(AssertUnwindSafe(|| execute(lane, &queue, &batch, started))) {
        Ok(replies) => {
            for (p, reply) in batch.requests.into_iter().zip(replies) {
                let _ = p.reply.send(reply);
            }
        }
        Err(panic) => fail(lane, &queue, batch, started, &*panic),
    }
    // No wake-up for the other lanes here: this lane asks the scheduler next and takes
    // whatever its finishing made ready (and `next` wakes another lane when more is
    // ready). Waking one would cost an idle lane two context switches per batch.
}

/// Gathers, runs and splits a batch, accounts for it and releases it; the replies, in
/// request order. The requests stay in `batch`, so a panic here loses none of them.
fn execute(
    lane: &Lane,
    queue: &ModelQueue,
    batch: &FormedBatch,
    started: Instant,
) -> Vec<Result<Reply>> {
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
            let msg = panic_message(&*panic);
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
    let replies = scatter(queue, outputs, &batch.requests, rows, t_infer);
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
    queue.finish(batch.id, batch.requests.len(), busy);
    replies
}

/// After a panic while running `batch`: releases it (unless [`execute`] already did),
/// then answers every request with an internal error naming the model.
#[cold]
fn fail(
    lane: &Lane,
    queue: &ModelQueue,
    batch: FormedBatch,
    started: Instant,
    panic: &(dyn Any + Send),
) {
    let msg = panic_message(panic);
    let busy = started.elapsed().as_secs_f64();
    let n = batch.requests.len();
    // `finish` releases before it touches metrics, so a panic in it leaves the batch released.
    let released = catch_unwind(AssertUnwindSafe(|| queue.finish(batch.id, n, busy)));
    let error = Error::internal(format!(
        "model '{}': internal error while running a batch: {msg}",
        queue.name
    ));
    for p in batch.requests {
        let _ = p.reply.send(Err(error.clone()));
    }
    tracing::error!(
        model = %queue.name,
        lane = lane.index,
        requests = n,
        released_here = matches!(released, Ok(true)),
        "lane panicked while running a batch: {msg}"
    );
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

/// Splits the batch's outputs back into each request's rows, in request order.
fn scatter(
    queue: &ModelQueue,
    outputs: Result<Vec<Vec<f32>>>,
    requests: &[Pending],
    rows: usize,
    now: Instant,
) -> Vec<Result<Reply>> {
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
    let mut replies = Vec::with_capacity(requests.len());
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
        replies.push(reply);
    }
    replies
}
