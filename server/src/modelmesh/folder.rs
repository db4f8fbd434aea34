//! What a `loadModel` request names: its model id, served under the same cohost name when
//! that name is valid (a checked mapping, never a rewrite), and its `modelPath`, a cohost
//! model folder or a folder holding exactly one.

use crate::http::errors::quoted;
use std::path::{Path, PathBuf};
use tonic::Status;

/// The file that makes a folder a cohost model folder.
const CONFIG_FILE: &str = "config.toml";

/// The cohost model name for a ModelMesh model id: the id itself, which must be a valid
/// cohost name (letters, digits, `-`, `_`, `.`, not starting with `.`, at most 128
/// bytes), so that the v2 `model_name`, the `mm-model-id` header and `/v2/models/{id}` all
/// say the same; any other id is INVALID_ARGUMENT, before anything is loaded.
pub fn model_name(id: &str) -> Result<String, Status> {
    cohost_runtime::validate_model_name(id)
        .map(|()| id.to_string())
        .map_err(|_| {
            Status::invalid_argument(format!(
                "modelId '{}' is not a cohost model name: cohost serves a ModelMesh model under its id, \
                 which must be 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'",
                quoted(id)
            ))
        })
}

/// The model folder `modelPath` names: the path itself when it holds `config.toml`, else
/// its one subfolder that does (a repository folder of one model, as ModelMesh's puller
/// copies a storage path that points at a cohost repository). INVALID_ARGUMENT otherwise.
pub fn model_folder(model_path: &str) -> Result<PathBuf, Status> {
    let shown = quoted(model_path);
    if model_path.is_empty() {
        return Err(Status::invalid_argument(
            "modelPath is empty: name the cohost model folder to load (config.toml and <version>/model.safetensors)",
        ));
    }
    let path = Path::new(model_path);
    if !path.is_dir() {
        return Err(Status::invalid_argument(format!(
            "modelPath '{shown}' is not a folder this server can read"
        )));
    }
    if path.join(CONFIG_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let inner: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Status::invalid_argument(format!("modelPath '{shown}': {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(CONFIG_FILE).is_file())
        .collect();
    match <[PathBuf; 1]>::try_from(inner) {
        Ok([one]) => Ok(one),
        Err(found) if found.is_empty() => Err(Status::invalid_argument(format!(
            "modelPath '{shown}' is not a cohost model folder: neither it nor a subfolder holds {CONFIG_FILE}"
        ))),
        Err(found) => Err(Status::invalid_argument(format!(
            "modelPath '{shown}' holds {} model folders; ModelMesh loads one model per modelPath",
            found.len()
        ))),
    }
}

/// `predictModelSize` for the model folder `dir`: the bytes of every tensor of the
/// versions a load would serve, widened to f32 (cohost's in-memory form before any
/// quantization), read from the safetensors headers alone. That is the model's size with
/// every table resident; see docs/DEPLOY.md § ModelMesh for when the loaded size differs.
pub fn estimate(dir: &Path) -> Result<u64, Status> {
    let weights = cohost_runtime::Runtime::weights_in_dir(dir)
        .map_err(|e| Status::invalid_argument(e.message))?;
    let mut total = 0u64;
    for (_, file) in weights {
        total = total.saturating_add(f32_bytes(&file)?);
    }
    Ok(total)
}

/// Largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The f32 bytes of every tensor in a safetensors file, from its header.
fn f32_bytes(file: &Path) -> Result<u64, Status> {
    use std::io::Read;
    let bad = |why: String| {
        Status::invalid_argument(format!("{}: not a safetensors file: {why}", file.display()))
    };
    let mut f = std::fs::File::open(file).map_err(|e| bad(e.to_string()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| bad(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Err(bad(format!("a header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let mut total = 0u64;
    for (name, tensor) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let shape = tensor
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("tensor '{name}' has no shape")))?;
        let elements = shape.iter().try_fold(1u64, |n, d| {
            d.as_u64()
                .and_then(|d| n.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor '{name}' has a bad shape")))
        })?;
        total = total.saturating_add(elements.saturating_mul(4));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn ids_that_are_cohost_names_map_to_themselves_others_are_refused() {
        for id in ["dlrm-small__isvc-3e1c", "m.v2", "mlp_1"] {
            assert_eq!(model_name(id).unwrap(), id);
        }
        for id in ["", "a/b", ".hidden", "ns:model", "mödel", &"x".repeat(129)] {
            assert_eq!(
                model_name(id).unwrap_err().code(),
                Code::InvalidArgument,
                "{id:?}"
            );
        }
    }

    #[test]
    fn a_model_folder_or_a_folder_of_one_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let s = |p: &Path| p.to_str().unwrap().to_string();
        assert_eq!(model_folder("").unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(
            model_folder(&s(&root.join("missing"))).unwrap_err().code(),
            Code::InvalidArgument
        );
        // Empty: no model folder.
        let err = model_folder(&s(root)).unwrap_err();
        assert!(
            err.message().contains("not a cohost model folder"),
            "{err:?}"
        );
        std::fs::create_dir(root.join("m")).unwrap();
        std::fs::write(root.join("m/config.toml"), "").unwrap();
        assert_eq!(model_folder(&s(root)).unwrap(), root.join("m"));
        assert_eq!(model_folder(&s(&root.join("m"))).unwrap(), root.join("m"));
        std::fs::create_dir(root.join("n")).unwrap();
        std::fs::write(root.join("n/config.toml"), "").unwrap();
        let err = model_folder(&s(root)).unwrap_err();
        assert!(err.message().contains("holds 2 model folders"), "{err:?}");
    }
}
