//! The file source: manifests from files and directories, watched and re-read on change.
//!
//! Each file keeps its last good objects: a document that fails to parse or validate keeps the
//! version of its object that was read before (a file whose YAML cannot be split at all keeps
//! all of its objects), so a typo never takes down what works.
//!
//! Files are named relative to the `--manifests` directory they were found in, prefixed by that
//! directory's own name (`--manifests /etc/vestibule/k8s` shows `k8s/app.yaml`); a `--manifests`
//! that is a file is shown as given. Errors, warnings and `/debug/config` use these names, so
//! they never show where on the host the manifests live.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::parse::{self, ParseError};
use crate::store::{ObjRef, SharedObject, Store};

#[derive(Default)]
struct FileState {
    /// Size and modification time when last read: an unchanged file is not read again.
    stamp: Option<(u64, std::time::SystemTime)>,
    hash: u64,
    objects: Vec<SharedObject>,
    errors: Vec<ParseError>,
}

/// What one rescan found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Whether any file's objects changed.
    pub changed: bool,
    /// Errors in files that changed in this rescan.
    pub new_errors: Vec<ParseError>,
    pub warnings: Vec<String>,
}

pub struct FileSource {
    paths: Vec<PathBuf>,
    /// Every file found, by real path, with the name it is shown by.
    files: BTreeMap<PathBuf, (PathBuf, FileState)>,
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Manifest files under `path`, sorted, each with the name it is shown by (`shown` is the name
/// of `path` itself); hidden entries (including Kubernetes' `..data` volume internals) are
/// skipped, symlinks are followed.
fn collect(path: &Path, shown: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    if path.is_file() {
        out.push((path.to_path_buf(), shown.to_path_buf()));
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Some(name) = p.file_name() else { continue };
        if name.to_str().is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if p.is_dir() {
            collect(&p, &shown.join(name), out);
        } else if is_manifest(&p) {
            out.push((p.clone(), shown.join(name)));
        }
    }
}

/// How a `--manifests` root is shown: a directory by its own name, a file as given.
fn shown_root(root: &Path) -> PathBuf {
    match root.file_name() {
        Some(name) if root.is_dir() => PathBuf::from(name),
        Some(_) => root.to_path_buf(),
        None => PathBuf::new(),
    }
}

fn hash_of(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        FileSource { paths, files: BTreeMap::new() }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Re-reads every file; files whose content did not change are not parsed again.
    pub fn load(&mut self) -> LoadReport {
        let mut report = LoadReport::default();
        let mut found = Vec::new();
        for p in &self.paths {
            if !p.exists() {
                report.warnings.push(format!("{}: no such file or directory", p.display()));
            }
            collect(p, &shown_root(p), &mut found);
        }
        found.dedup_by(|a, b| a.0 == b.0);
        let before = self.files.len();
        let present: std::collections::HashSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
        self.files.retain(|p, _| present.contains(p));
        if self.files.len() != before {
            report.changed = true;
        }
        for (path, shown) in found {
            let stamp = std::fs::metadata(&path).ok().and_then(|m| Some((m.len(), m.modified().ok()?)));
            if stamp.is_some() && self.files.get(&path).is_some_and(|(_, s)| s.stamp == stamp) {
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    // Vanished between listing and reading, or unreadable: keep what we had.
                    report.warnings.push(format!("{}: {e}", shown.display()));
                    continue;
                }
            };
            let hash = hash_of(&text);
            if let Some((_, s)) = self.files.get_mut(&path).filter(|(_, s)| s.hash == hash) {
                s.stamp = stamp;
                continue;
            }
            let mut parsed = parse::parse_text(&shown, &text);
            let prev = self.files.remove(&path).map(|(_, s)| s).unwrap_or_default();
            let objects = merge_last_good(prev.objects, &mut parsed);
            report.changed = true;
            report.new_errors.extend(parsed.errors.iter().cloned());
            report.warnings.extend(parsed.warnings);
            self.files.insert(path, (shown, FileState { stamp, hash, objects, errors: parsed.errors }));
        }
        report
    }

    /// Every error currently standing in the files.
    pub fn errors(&self) -> Vec<ParseError> {
        self.files.values().flat_map(|(_, f)| f.errors.iter().cloned()).collect()
    }

    /// The objects of all files; on a duplicate, the file that sorts last wins.
    pub fn store(&self) -> Store {
        let mut store = Store::default();
        let mut seen: HashMap<ObjRef, (&Path, &Path)> = HashMap::new();
        for (path, (shown, state)) in &self.files {
            for obj in &state.objects {
                if let Some((other, other_shown)) = seen.insert(obj.obj_ref(), (path, shown)) {
                    if other != path {
                        tracing::warn!(object = %obj.obj_ref(), first = %other_shown.display(), second = %shown.display(), "object defined in two files; the second is used");
                    }
                }
                store.insert_shared(obj);
            }
        }
        store
    }
}

/// The objects a file now contributes: what parsed, plus the last good version of every object
/// whose document failed (all previous objects when the file could not be read as YAML).
fn merge_last_good(prev: Vec<SharedObject>, parsed: &mut parse::Parsed) -> Vec<SharedObject> {
    if parsed.fatal {
        return prev;
    }
    let mut objects: Vec<SharedObject> = std::mem::take(&mut parsed.objects).into_iter().map(SharedObject::from).collect();
    if parsed.errors.is_empty() {
        return objects;
    }
    let anonymous_failure = parsed.errors.iter().any(|e| e.object.is_none());
    let present: std::collections::HashSet<ObjRef> = objects.iter().map(|o| o.obj_ref()).collect();
    for old in prev {
        let r = old.obj_ref();
        if present.contains(&r) {
            continue;
        }
        if anonymous_failure || parsed.errors.iter().any(|e| e.object.as_ref() == Some(&r)) {
            objects.push(old);
        }
    }
    objects
}

/// Watches `paths` and sends on `tx` after each burst of changes settles.
/// Each message carries when the first change of its burst was seen.
pub fn watch(paths: &[PathBuf], tx: mpsc::Sender<std::time::Instant>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    for p in paths {
        // Watch directories, not files: editors and Kubernetes volumes replace files by rename.
        let (target, mode) = if p.is_dir() {
            (p.clone(), RecursiveMode::Recursive)
        } else {
            (p.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")), RecursiveMode::NonRecursive)
        };
        watcher.watch(&target, mode)?;
    }
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            let seen_at = std::time::Instant::now();
            // Debounce: wait for 10 ms of quiet, at most 100 ms in all (a save is a burst of
            // events within microseconds).
            let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
            loop {
                match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_millis(10)), raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(seen_at).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_from_their_root_and_a_file_root_as_given() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("k8s");
        std::fs::create_dir_all(root.join("team")).unwrap();
        std::fs::write(root.join("team/bad.yaml"), "kind: Service\n").unwrap();
        let single = tmp.path().join("single.yaml");
        std::fs::write(&single, "kind: Service\n").unwrap();
        let mut source = FileSource::new(vec![root, single.clone()]);
        source.load();
        let errors = source.errors();
        let files: Vec<&Path> = errors.iter().map(|e| e.file.as_path()).collect();
        assert_eq!(files, vec![Path::new("k8s/team/bad.yaml"), single.as_path()]);
    }
}
