//! A tensor's elements as JSON, both ways: the `data` array parsed straight into typed
//! elements (no `serde_json::Value` tree), and typed elements written as a `data` array.

use cohost_runtime::{DataType, Error, TensorData};
use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One element of a JSON `data` array, as parsed: the scalars a tensor can hold without a
/// `Value` each, anything else (strings, null, objects) as the `Value` it is.
#[derive(Debug)]
enum Scalar {
    Bool(bool),
    /// A non-negative integer (what `Value` keeps as a positive integer).
    U64(u64),
    /// A negative integer.
    I64(i64),
    F64(f64),
    Other(Value),
}

impl Scalar {
    fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// As `Value::as_i64`: integers in range, never floats.
    fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::U64(u) => i64::try_from(u).ok(),
            Scalar::I64(i) => Some(i),
            _ => None,
        }
    }

    /// As `Value::as_u64`: non-negative integers, never floats.
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::U64(u) => Some(u),
            _ => None,
        }
    }

    /// As `Value::as_f64`: any number.
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(u) => Some(u as f64),
            Scalar::I64(i) => Some(i as f64),
            Scalar::F64(f) => Some(f),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Other(v) => v.as_str(),
            _ => None,
        }
    }

    /// The element as `Value` displays it (for error messages).
    fn to_value(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::from(*b),
            Scalar::U64(u) => Value::from(*u),
            Scalar::I64(i) => Value::from(*i),
            Scalar::F64(f) => Value::from(*f),
            Scalar::Other(v) => v.clone(),
        }
    }
}

/// A tensor's JSON `data`, nested arrays flattened row-major while parsing (no `Value`
/// tree); a lone scalar is one element.
#[derive(Debug, Default)]
pub(super) struct JsonData(Vec<Scalar>);

impl<'de> Deserialize<'de> for JsonData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        d.deserialize_any(Flatten(&mut out))?;
        Ok(JsonData(out))
    }
}

/// Appends one JSON value's scalars to the vector (recursing into arrays).
struct Flatten<'a>(&'a mut Vec<Scalar>);

impl<'de> serde::de::DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("tensor data (a value or nested arrays of values)")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push(Scalar::Bool(v));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(Scalar::U64(v));
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        // serde_json hands non-negative integers to visit_u64; keep `Value`'s split anyway.
        self.0.push(match u64::try_from(v) {
            Ok(u) => Scalar::U64(u),
            Err(_) => Scalar::I64(v),
        });
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // As `Value`: a float JSON cannot represent would be null.
        self.0.push(if v.is_finite() {
            Scalar::F64(v)
        } else {
            Scalar::Other(Value::Null)
        });
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(Scalar::Other(Value::String(v.to_owned())));
        Ok(())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.0.push(Scalar::Other(Value::String(v)));
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.push(Scalar::Other(Value::Null));
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.reserve(n);
        }
        while seq.next_element_seed(Flatten(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.0.push(Scalar::Other(v));
        Ok(())
    }
}

/// Converts flattened JSON `data` into typed elements; errors name `what` and the element.
pub(super) fn json_data(dt: DataType, data: &JsonData, what: &str) -> Result<TensorData, Error> {
    let flat = &data.0;
    let bad = |i: usize, v: &Scalar| {
        Error::invalid(format!(
            "{what}: element {i} ({}) is not a valid {dt} value",
            v.to_value()
        ))
    };
    macro_rules! conv {
        ($variant:ident, $f:expr) => {
            TensorData::$variant(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| $f(v).ok_or_else(|| bad(i, v)))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    let int = |v: &Scalar| v.as_i64();
    let uint = |v: &Scalar| v.as_u64();
    Ok(match dt {
        DataType::BOOL => conv!(Bool, |v: &Scalar| v.as_bool()),
        DataType::UINT8 => conv!(U8, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT16 => conv!(U16, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT32 => conv!(U32, |v| uint(v).and_then(|x| x.try_into().ok())),
        DataType::UINT64 => conv!(U64, uint),
        DataType::INT8 => conv!(I8, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT16 => conv!(I16, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT32 => conv!(I32, |v| int(v).and_then(|x| x.try_into().ok())),
        DataType::INT64 => conv!(I64, int),
        DataType::FP16 => conv!(F16, |v: &Scalar| v.as_f64().map(f16::from_f64)),
        DataType::BF16 => conv!(BF16, |v: &Scalar| v.as_f64().map(bf16::from_f64)),
        DataType::FP32 => conv!(F32, |v: &Scalar| v.as_f64().map(|x| x as f32)),
        DataType::FP64 => conv!(F64, |v: &Scalar| v.as_f64()),
        DataType::BYTES => conv!(Bytes, |v: &Scalar| v
            .as_str()
            .map(|s| s.as_bytes().to_vec())),
    })
}

/// A tensor's elements as a JSON array, written straight to the output (no `Value` per
/// element); numbers print exactly as `serde_json::Value` would print them.
pub(super) struct Elements<'a>(pub(super) &'a TensorData);

impl Serialize for Elements<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn seq<S: serde::Serializer, T: Copy, U: Serialize>(
            s: S,
            v: &[T],
            f: impl Fn(T) -> U,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|&x| f(x)))
        }
        match self.0 {
            TensorData::Bool(v) => seq(s, v, |x| x),
            TensorData::U8(v) => seq(s, v, u64::from),
            TensorData::U16(v) => seq(s, v, u64::from),
            TensorData::U32(v) => seq(s, v, u64::from),
            TensorData::U64(v) => seq(s, v, |x| x),
            TensorData::I8(v) => seq(s, v, i64::from),
            TensorData::I16(v) => seq(s, v, i64::from),
            TensorData::I32(v) => seq(s, v, i64::from),
            TensorData::I64(v) => seq(s, v, |x| x),
            // serde_json writes a non-finite float as null, as `Value::from(f64)` does.
            TensorData::F16(v) => seq(s, v, |x| x.to_f64()),
            TensorData::BF16(v) => seq(s, v, |x| x.to_f64()),
            TensorData::F32(v) => seq(s, v, f64::from),
            TensorData::F64(v) => seq(s, v, |x| x),
            TensorData::Bytes(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}
