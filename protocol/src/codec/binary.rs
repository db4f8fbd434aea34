//! The binary tensor extension: a body is a JSON header of `Inference-Header-Content-Length`
//! bytes followed by raw little-endian tensors, each sized by its `binary_data_size`.

use cohost_runtime::Error;
use serde::Serialize;

/// `{"binary_data_size": n}`: the parameters of a tensor sent as binary data.
#[derive(Serialize)]
pub(super) struct BinaryParameters {
    pub(super) binary_data_size: usize,
}

/// Splits a body into its JSON header and its binary part; `header_length` is the
/// `Inference-Header-Content-Length` value (none: the whole body is JSON).
pub(super) fn split<'a>(
    body: &'a [u8],
    header_length: Option<&str>,
) -> Result<(&'a [u8], Tail<'a>), Error> {
    let Some(h) = header_length else {
        return Ok((body, Tail::absent()));
    };
    let n: usize = h.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "Inference-Header-Content-Length '{h}' is not a non-negative integer"
        ))
    })?;
    if n > body.len() {
        return Err(Error::invalid(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes \
             (truncated binary payload?)",
            body.len()
        )));
    }
    let (json, rest) = body.split_at(n);
    Ok((
        json,
        Tail {
            rest,
            present: true,
        },
    ))
}

/// The binary part of a body, taken tensor by tensor in the order the JSON lists them.
pub(super) struct Tail<'a> {
    rest: &'a [u8],
    /// Whether the body declared a JSON header length at all.
    present: bool,
}

impl<'a> Tail<'a> {
    /// No binary part: the body had no `Inference-Header-Content-Length`.
    fn absent() -> Self {
        Tail {
            rest: &[],
            present: false,
        }
    }

    /// The next `size` bytes, for the tensor `what`.
    pub(super) fn take(&mut self, size: u64, what: &str) -> Result<&'a [u8], Error> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if !self.present {
            return Err(Error::invalid(format!(
                "{what}: binary_data_size given but the Inference-Header-Content-Length \
                 header is missing"
            )));
        }
        if size > self.rest.len() {
            return Err(Error::invalid(format!(
                "truncated binary payload: {what} declares binary_data_size {size} but \
                 only {} bytes remain",
                self.rest.len()
            )));
        }
        let (raw, rest) = self.rest.split_at(size);
        self.rest = rest;
        Ok(raw)
    }

    /// Checks every byte was taken; `whose` names the tensors (e.g. "input's").
    pub(super) fn finish(self, whose: &str) -> Result<(), Error> {
        if self.rest.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{} bytes after the JSON header are not claimed by any {whose} binary_data_size",
            self.rest.len()
        )))
    }
}
