//! A batch's rows: the requests' inputs concatenated into one batch, and the batch's
//! outputs split back into each request's rows.

use crate::queue::{ModelQueue, Pending, Reply};
use crate::{Error, Result, Tensor, TensorData};
use cohost_models::{Batch, InputData};
use std::time::Instant;

/// Concatenates the requests' inputs into one batch.
pub(super) fn gather(rows: usize, requests: &[Pending]) -> Batch {
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
pub(super) fn scatter(
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
