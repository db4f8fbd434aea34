//! `--model-control-mode poll`: re-scan the repository and reload what changed.

use cohost_runtime::Runtime;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a model folder looks like on disk: every file's relative path, size and mtime.
type Fingerprint = Vec<(PathBuf, u64, SystemTime)>;

/// Files modified more recently than this are assumed to be still being written.
const SETTLE: Duration = Duration::from_millis(500);

fn walk(root: &Path, dir: &Path, out: &mut Fingerprint) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((
                rel,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
}

/// Fingerprints of every model folder in `repo` (hidden folders skipped).
pub fn scan(repo: &Path) -> BTreeMap<String, Fingerprint> {
    let mut models = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(repo) else {
        return models;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let mut fp = Vec::new();
        walk(&entry.path(), &entry.path(), &mut fp);
        fp.sort();
        models.insert(name, fp);
    }
    models
}

fn settled(fp: &Fingerprint) -> bool {
    let now = SystemTime::now();
    fp.iter()
        .all(|(_, _, t)| now.duration_since(*t).map(|d| d >= SETTLE).unwrap_or(true))
}

/// One scan: loads new or changed models, unloads removed ones; returns the new state.
pub fn apply(
    runtime: &Runtime,
    repo: &Path,
    known: &BTreeMap<String, Fingerprint>,
) -> BTreeMap<String, Fingerprint> {
    let mut now = scan(repo);
    for (name, fp) in now.iter_mut() {
        if known.get(name) == Some(fp) {
            continue;
        }
        if !settled(fp) {
            // Still being written: look again next time.
            match known.get(name) {
                Some(old) => *fp = old.clone(),
                None => fp.clear(),
            }
            continue;
        }
        match runtime.load_model(name) {
            Ok(()) => tracing::info!(model = %name, "poll: loaded new or changed model"),
            Err(e) => tracing::warn!(model = %name, "poll: load failed: {e}"),
        }
    }
    now.retain(|_, fp| !fp.is_empty());
    for name in known.keys().filter(|n| !now.contains_key(*n)) {
        match runtime.unload_model(name) {
            Ok(()) => tracing::info!(model = %name, "poll: unloaded removed model"),
            Err(e) => tracing::warn!(model = %name, "poll: unload failed: {e}"),
        }
    }
    now
}

/// Polls `repo` every `interval` until `stop` resolves.
pub async fn run(
    runtime: Runtime,
    repo: PathBuf,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    // Only what the runtime serves counts as known: a model dropped in between the start-up
    // load and this first scan (or one that failed to load at start) is loaded by the first
    // pass instead of being taken as already handled.
    let (scan_repo, rt) = (repo.clone(), runtime.clone());
    let mut known = tokio::task::spawn_blocking(move || {
        let mut known = scan(&scan_repo);
        known.retain(|name, _| rt.metadata(name, None).is_ok());
        known
    })
    .await
    .unwrap_or_default();
    tracing::info!(
        interval_secs = interval.as_secs_f64(),
        "polling {} for changes",
        repo.display()
    );
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let (rt, r, k) = (runtime.clone(), repo.clone(), known);
        known = match tokio::task::spawn_blocking(move || apply(&rt, &r, &k)).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("poll: scan failed: {e}");
                return;
            }
        };
    }
}
