//! The Triton-like model repository on disk:
//! `<repo>/<model>/config.toml` and `<repo>/<model>/<version>/model.safetensors`.

use crate::{Error, ModelConfig, Result};
use cohost_models::VersionPolicy;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// File name of a version's weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of a model's configuration.
pub const CONFIG_FILE: &str = "config.toml";

/// Refuses model names that could escape the repository or confuse a URL (letters,
/// digits, `-`, `_` and `.`, not starting with `.`, at most 128 bytes).
pub fn validate_model_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid model name '{name}': use letters, digits, '-', '_' and '.', not starting with '.'"
        )))
    }
}

/// Names of the model folders (those holding a `config.toml`), sorted.
pub fn model_names(repo: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(repo).map_err(|e| {
        Error::unavailable(format!(
            "cannot read model repository {}: {e}",
            repo.display()
        ))
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CONFIG_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| validate_model_name(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// One model folder as found on disk.
pub struct ModelOnDisk {
    /// Parsed and validated configuration.
    pub config: ModelConfig,
    /// Version number → weights file, for every numeric folder holding weights.
    pub versions: BTreeMap<u64, PathBuf>,
    /// Changes whenever the config file changes.
    pub config_fingerprint: u64,
}

/// Reads a model folder: its config and its numeric version folders.
pub fn read_model(repo: &Path, name: &str) -> Result<ModelOnDisk> {
    validate_model_name(name)?;
    read_model_within(repo, &repo.join(name), name)
}

/// Reads the model folder `dir` (anywhere, not only in a repository) for the model `name`;
/// its files must resolve inside `dir` itself.
pub fn read_model_dir(dir: &Path, name: &str) -> Result<ModelOnDisk> {
    read_model_within(dir, dir, name)
}

/// Reads the model folder `dir`, refusing files that resolve (through links) outside `repo`.
fn read_model_within(repo: &Path, dir: &Path, name: &str) -> Result<ModelOnDisk> {
    let dir = dir.to_path_buf();
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(Error::not_found(format!(
            "model '{name}' is not in the repository ({} has no {CONFIG_FILE})",
            dir.display()
        )));
    }
    // A link may point anywhere: only files that resolve inside the repository are read.
    let root = repo
        .canonicalize()
        .map_err(|e| Error::unavailable(format!("cannot read model repository: {e}")))?;
    let outside = |p: &Path| !p.canonicalize().is_ok_and(|c| c.starts_with(&root));
    let refuse = |rel: String| {
        Error::invalid(format!(
            "model '{name}': {rel} resolves outside the model repository (a symbolic link?); refused"
        ))
    };
    if outside(&config_path) {
        return Err(refuse(format!("{name}/{CONFIG_FILE}")));
    }
    let config = ModelConfig::from_file(&config_path).map_err(|e| Error::invalid(e.to_string()))?;
    let mut versions = BTreeMap::new();
    for e in std::fs::read_dir(&dir)
        .map_err(|e| Error::unavailable(format!("{}: {e}", dir.display())))?
    {
        let Ok(e) = e else { continue };
        let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let w = e.path().join(WEIGHTS_FILE);
        if w.is_file() {
            if outside(&w) {
                let folder = e.file_name();
                return Err(refuse(format!(
                    "{name}/{}/{WEIGHTS_FILE}",
                    folder.to_string_lossy()
                )));
            }
            versions.insert(v, w);
        }
    }
    Ok(ModelOnDisk {
        config,
        versions,
        config_fingerprint: fingerprint(&[&config_path]),
    })
}

/// The versions a policy serves out of those available.
pub fn wanted_versions(policy: &VersionPolicy, available: &[u64]) -> Vec<u64> {
    let mut v: Vec<u64> = match policy {
        VersionPolicy::Latest(n) => available.iter().rev().take(*n as usize).copied().collect(),
        VersionPolicy::Specific(list) => available
            .iter()
            .filter(|v| list.contains(v))
            .copied()
            .collect(),
        VersionPolicy::All(_) => available.to_vec(),
    };
    v.sort();
    v
}

/// A cheap identity of files' contents (length and modification time).
pub fn fingerprint(paths: &[&Path]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in paths {
        p.hash(&mut h);
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "x\\y"] {
            assert!(validate_model_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["dlrm-small", "mlp_1", "m.v2"] {
            assert!(validate_model_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn version_policies() {
        let a = [1, 2, 5, 7];
        assert_eq!(wanted_versions(&VersionPolicy::Latest(1), &a), vec![7]);
        assert_eq!(wanted_versions(&VersionPolicy::Latest(2), &a), vec![5, 7]);
        assert_eq!(
            wanted_versions(&VersionPolicy::Specific(vec![2, 3]), &a),
            vec![2]
        );
        assert_eq!(wanted_versions(&VersionPolicy::All(true), &a), a.to_vec());
    }
}
