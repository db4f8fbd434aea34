//! Checks a request against its model's signature and converts its inputs, once, to
//! what the model consumes.

use crate::queue::ModelQueue;
use crate::{Error, InferRequest, Result, Tensor};
use cohost_models::InputData;

fn fmt_shape(s: &[i64]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Rows, converted inputs in the model's order, and indices of the outputs to return.
pub(crate) fn prepare(
    q: &ModelQueue,
    req: &InferRequest,
) -> Result<(usize, Vec<InputData>, Vec<usize>)> {
    let model = &q.name;
    let cfg = &q.config;
    for t in &req.inputs {
        if !cfg.inputs.iter().any(|s| s.name == t.name) {
            let names: Vec<&str> = cfg.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "model '{model}' has no input '{}' (inputs: {})",
                t.name,
                names.join(", ")
            )));
        }
    }
    let mut rows: Option<usize> = None;
    let mut inputs = Vec::with_capacity(cfg.inputs.len());
    for spec in &cfg.inputs {
        let mut found = req.inputs.iter().filter(|t| t.name == spec.name);
        let t: &Tensor = found.next().ok_or_else(|| {
            Error::invalid(format!("model '{model}': missing input '{}'", spec.name))
        })?;
        if found.next().is_some() {
            return Err(Error::invalid(format!(
                "model '{model}': input '{}' appears more than once",
                spec.name
            )));
        }
        let what = format!("input '{}'", spec.name);
        let shape_ok = t.shape.len() == spec.dims.len()
            && t.shape
                .iter()
                .zip(&spec.dims)
                .all(|(&g, &w)| if w < 0 { g >= 0 } else { g == w });
        if !shape_ok {
            return Err(Error::invalid(format!(
                "{what}: expected shape {}, got {}",
                fmt_shape(&spec.dims),
                fmt_shape(&t.shape)
            )));
        }
        let n = t.shape[0] as usize;
        if n == 0 || n > q.max_rows.max(cfg.max_batch_size) {
            return Err(Error::invalid(format!(
                "{what}: batch dimension {n} is outside 1..={} (the model's max_batch_size)",
                cfg.max_batch_size
            )));
        }
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(Error::invalid(format!(
                    "{what}: batch dimension {n} differs from the other inputs' {r}"
                )));
            }
            _ => {}
        }
        let expected = Tensor::shape_elements(&t.shape).unwrap_or(usize::MAX);
        if t.data.len() != expected {
            return Err(Error::invalid(format!(
                "{what}: shape {} needs {expected} elements, got {}",
                fmt_shape(&t.shape),
                t.data.len()
            )));
        }
        inputs.push(t.data.to_input(spec.datatype, &what).map_err(|e| {
            Error::invalid(format!("{} (model expects {})", e.message, spec.datatype))
        })?);
    }
    let outputs = if req.outputs.is_empty() {
        (0..cfg.outputs.len()).collect()
    } else {
        req.outputs
            .iter()
            .map(|name| {
                cfg.outputs
                    .iter()
                    .position(|s| &s.name == name)
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            cfg.outputs.iter().map(|s| s.name.as_str()).collect();
                        Error::invalid(format!(
                            "model '{model}' has no output '{name}' (outputs: {})",
                            names.join(", ")
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?
    };
    Ok((rows.unwrap_or(0), inputs, outputs))
}
