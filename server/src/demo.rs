//! `cohost gen` and the demo repository `cohost serve` uses when given none.

use crate::cli::GenArgs;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
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

/// Generates `count` models of `preset` into `out`, reporting progress to `bar`.
fn generate(
    out: &Path,
    preset: &str,
    count: usize,
    seed: u64,
    rows: Option<usize>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    cohost_models::synth::generate(out, preset, count, seed, rows, &mut progress)
        .with_context(|| format!("cannot generate {preset} into {}", out.display()))?;
    Ok(())
}

fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// `cohost gen`.
pub fn generate_with_bar(args: &GenArgs) -> anyhow::Result<()> {
    if cohost_models::synth::preset(&args.preset).is_none() {
        anyhow::bail!(
            "unknown preset '{}' (known: {})",
            args.preset,
            cohost_models::synth::preset_names().join(", ")
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let bar = bar(0);
    bar.set_message(args.preset.clone());
    generate(
        &args.out,
        &args.preset,
        args.count,
        args.seed,
        args.rows,
        &bar,
    )?;
    bar.finish();
    println!(
        "generated {} × {} into {}",
        args.count,
        args.preset,
        args.out.display()
    );
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
        let bar = bar(0);
        bar.set_message(preset.to_string());
        generate(&tmp, preset, 1, 42 + i as u64, *rows, &bar)?;
        bar.finish_and_clear();
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
