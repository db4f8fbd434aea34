//! What the fuzz targets share: comparing decoded tensors bit for bit, and the fixed
//! configs the safetensors target loads hostile weights against.

use cohost_runtime::{DataType, Tensor, TensorData};

/// True when two tensor lists carry the same names, shapes, datatypes and element bits
/// (BOOL as 0/1, NaN payloads included).
pub fn same_tensors(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.shape == y.shape
                && x.data.datatype() == y.data.datatype()
                && x.data.to_le_bytes() == y.data.to_le_bytes()
        })
}

/// True when every float element is finite (what JSON can carry back unchanged).
pub fn finite(data: &TensorData) -> bool {
    match data {
        TensorData::F16(v) => v.iter().all(|x| x.is_finite()),
        TensorData::BF16(v) => v.iter().all(|x| x.is_finite()),
        TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
        TensorData::F64(v) => v.iter().all(|x| x.is_finite()),
        _ => true,
    }
}

/// Checks the raw little-endian form of one datatype both ways: what `from_le_bytes`
/// accepts writes back to the same bytes (BOOL: to 0/1), and reads back the same.
pub fn check_le_round_trip(dt: DataType, raw: &[u8]) {
    let Ok(data) = TensorData::from_le_bytes(dt, raw, "input 'x'") else {
        return;
    };
    assert_eq!(data.datatype(), dt);
    let back = data.to_le_bytes();
    if dt == DataType::BOOL {
        let norm: Vec<u8> = raw.iter().map(|&b| u8::from(b != 0)).collect();
        assert_eq!(back, norm);
    } else {
        assert_eq!(back, raw, "{dt} raw bytes do not round-trip");
    }
    if let Some(size) = dt.size() {
        assert_eq!(data.len() * size, raw.len());
    }
    let again = TensorData::from_le_bytes(dt, &back, "input 'x'").expect("written bytes parse");
    assert_eq!(again.to_le_bytes(), back);
}

/// The config the safetensors target loads against, by the low two bits of `mode`:
/// mlp-tiny, dlrm-tiny, dlrm-tiny with a DCN interaction, mlp-tiny with f16 weights.
pub fn config(mode: u8) -> cohost_models::ModelConfig {
    use cohost_models::synth::preset;
    use cohost_models::{InteractionKind, WeightPrecision};
    match mode & 3 {
        0 => preset("mlp-tiny").expect("preset"),
        1 => preset("dlrm-tiny").expect("preset"),
        2 => {
            let mut c = preset("dlrm-tiny").expect("preset");
            let p = c.dlrm.as_mut().expect("dlrm");
            p.interaction = InteractionKind::Dcn;
            p.dcn_layers = 1;
            p.dcn_low_rank = 2;
            c
        }
        _ => {
            let mut c = preset("mlp-tiny").expect("preset");
            c.weight_precision = WeightPrecision::Fp16;
            c
        }
    }
}

/// Where the safetensors target writes a weights file to map (one per process).
pub fn file_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cohost-fuzz-{}.safetensors", std::process::id()))
}
