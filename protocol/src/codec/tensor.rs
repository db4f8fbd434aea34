//! One tensor of a request's `inputs` or a response's `outputs`: parsed from JSON with its
//! data inline or in the binary part, and written back the same two ways.

use super::binary::{BinaryParameters, Tail};
use super::elements::{Elements, JsonData, json_data};
use super::parameters::{self, Parameters};
use cohost_runtime::{DataType, Error, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// A tensor as parsed: `data` inline, or a `binary_data_size` parameter.
#[derive(Deserialize)]
pub(super) struct TensorJson {
    pub(super) name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Parameters,
    #[serde(default)]
    data: Option<JsonData>,
}

impl TensorJson {
    /// The typed tensor, its binary data (if any) taken from `tail`; errors name `what`.
    pub(super) fn decode(self, what: &str, tail: &mut Tail<'_>) -> Result<Tensor, Error> {
        let datatype = DataType::parse(&self.datatype).ok_or_else(|| {
            Error::invalid(format!(
                "{what}: unknown datatype '{}' (expected one of BOOL, INT8..INT64, UINT8..UINT64, \
                 FP16, BF16, FP32, FP64, BYTES)",
                self.datatype
            ))
        })?;
        let expected = Tensor::shape_elements(&self.shape).ok_or_else(|| {
            Error::invalid(format!(
                "{what}: invalid shape {:?}: dims must be non-negative",
                self.shape
            ))
        })?;
        let size = parameters::unsigned(&self.parameters, "binary_data_size", what)?;
        let data = match (size, &self.data) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "{what}: has both 'data' and the 'binary_data_size' parameter"
                )));
            }
            (Some(size), None) => {
                TensorData::from_le_bytes(datatype, tail.take(size, what)?, what)?
            }
            (None, Some(value)) => json_data(datatype, value, what)?,
            (None, None) => {
                return Err(Error::invalid(format!(
                    "{what}: has neither 'data' nor a 'binary_data_size' parameter"
                )));
            }
        };
        if data.len() != expected {
            return Err(Error::invalid(format!(
                "{what}: shape {:?} implies {expected} elements but {} were given",
                self.shape,
                data.len()
            )));
        }
        Ok(Tensor::new(self.name, self.shape, data))
    }
}

/// A tensor as written. Keys in sorted order, as the `Value` maps this replaced wrote them
/// (clients may rely on byte-identical bodies).
#[derive(Serialize)]
pub(super) struct TensorHead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Elements<'a>>,
    datatype: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    shape: &'a [i64],
}

impl<'a> TensorHead<'a> {
    /// `t` with its data inline, or (given a binary part) appended to `tail` and sized.
    pub(super) fn new(t: &'a Tensor, tail: Option<&mut Vec<u8>>) -> Self {
        let parameters = tail.map(|tail| {
            let start = tail.len();
            t.data.write_le_bytes(tail);
            BinaryParameters {
                binary_data_size: tail.len() - start,
            }
        });
        TensorHead {
            data: parameters.is_none().then_some(Elements(&t.data)),
            datatype: t.datatype().as_str(),
            name: &t.name,
            parameters,
            shape: &t.shape,
        }
    }
}
