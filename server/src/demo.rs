//! `cohost gen` and the demo repository `cohost serve` uses when given none.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Bump when the demo's contents change, so stale caches are regenerated.
const DEMO_VERSION: u32 = 1;

/// The demo: a few small models (preset, rows per embedding table), quick to generate and
/// load. `dlrm-small` keeps its 26 tables but at 2,000 rows each (13 MB, not 665 MB).
const DEMO: &[(&str, Option<usize>)] = &[
    ("mlp-tiny", None),
    ("mlp-small", None),
    ("dlrm-tiny", None),
    ("dlrm-small", Some(2_000)),
];

/// Marker written last, so a half-generated folder is never served.
const COMPLETE: &str = ".cohost-demo-complete";

fn cache_root() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("cohost");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".cache").join("cohost");
    }
    std::env::temp_dir().join("cohost-cache")
}

/// Progress of one generation as plain lines on stderr, one per quarter of the weight bytes.
struct Progress {
    /// What is being generated (the preset).
    label: String,
    /// Quarters reported so far.
    quarters: u64,
}

impl Progress {
    fn new(label: &str) -> Self {
        Progress {
            label: label.to_string(),
            quarters: 0,
        }
    }

    /// Notes `done` of `total` bytes written; prints a line when a new quarter is reached.
    fn update(&mut self, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        let quarters = done.min(total).saturating_mul(4) / total;
        if quarters > self.quarters {
            self.quarters = quarters;
            eprintln!(
                "{}: {}% ({} of {})",
                self.label,
                quarters * 25,
                size(done),
                size(total)
            );
        }
    }
}

/// "12.3 MB", "4.1 kB".
fn size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

/// Generates `count` models of `preset` into `out`, progress lines on stderr.
fn generate_preset(
    out: &Path,
    preset: &str,
    count: usize,
    seed: u64,
    rows: Option<usize>,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(preset);
    cohost_models::synth::generate(out, preset, count, seed, rows, &mut |done, total| {
        progress.update(done, total)
    })
    .with_context(|| format!("cannot generate {preset} into {}", out.display()))?;
    Ok(())
}

/// `cohost gen`: `count` models of `preset` into `out` (created if missing).
pub fn generate(
    out: &Path,
    preset: &str,
    count: usize,
    seed: u64,
    rows: Option<usize>,
) -> anyhow::Result<()> {
    if cohost_models::synth::preset(preset).is_none() {
        anyhow::bail!(
            "unknown preset '{preset}' (known: {})",
            cohost_models::synth::preset_names().join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    generate_preset(out, preset, count, seed, rows)?;
    println!("generated {count} × {preset} into {}", out.display());
    Ok(())
}

/// The demo repository folder, generated on first use.
pub fn demo_repository() -> anyhow::Result<PathBuf> {
    let root = cache_root();
    let dir = root.join(format!("demo-repo-v{DEMO_VERSION}"));
    if dir.join(COMPLETE).exists() {
        return Ok(dir);
    }
    tracing::info!(
        "generating the demo repository into {} (once)",
        dir.display()
    );
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let tmp = root.join(format!(
        ".demo-repo-v{DEMO_VERSION}.tmp-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (i, (preset, rows)) in DEMO.iter().enumerate() {
        generate_preset(&tmp, preset, 1, 42 + i as u64, *rows)?;
    }
    std::fs::write(tmp.join(COMPLETE), b"")?;
    if dir.exists() {
        // A previous attempt left an incomplete folder.
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(COMPLETE).exists() {
            return Err(e)
                .with_context(|| format!("cannot move the demo repository to {}", dir.display()));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_each_quarter_once() {
        let mut p = Progress::new("m");
        for (done, quarters) in [
            (0, 0),
            (10, 0),
            (25, 1),
            (30, 1),
            (99, 3),
            (100, 4),
            (100, 4),
        ] {
            p.update(done, 100);
            assert_eq!(p.quarters, quarters, "after {done} of 100");
        }
        assert_eq!(
            (size(4_100), size(12_340_000)),
            ("4.1 kB".into(), "12.3 MB".into())
        );
        let mut empty = Progress::new("e");
        empty.update(0, 0);
        assert_eq!(empty.quarters, 0);
    }
}
