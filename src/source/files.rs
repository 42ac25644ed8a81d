//! The file source: manifests from files and directories, watched and re-read on change.
//!
//! Each file keeps its last good objects: a document that fails to parse or validate keeps the
//! version of its object that was read before (a file whose YAML cannot be split at all keeps
//! all of its objects), so a typo never takes down what works. The same holds for a file that
//! cannot be read as a manifest at all: not a regular file (a FIFO, a device, a socket), larger
//! than the size limit, or not UTF-8. Only regular files are read (a symlink only when it leads
//! to one), and never more than the limit, so nothing in the directory can block a rescan or
//! fill memory.
//!
//! Files are named relative to the `--manifests` directory they were found in, prefixed by that
//! directory's own name (`--manifests /etc/vestibule/k8s` shows `k8s/app.yaml`); a `--manifests`
//! that is a file is shown as given. Errors, warnings and `/debug/config` use these names, so
//! they never show where on the host the manifests live.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::parse::{self, ParseError};
use crate::store::{ObjRef, SharedObject, Store};

#[derive(Default)]
struct FileState {
    /// Identity, size and times when last read: an unchanged file is not read again.
    stamp: Option<Stamp>,
    /// Hash of the text last read; `None` when the file could not be read.
    hash: Option<u64>,
    objects: Vec<SharedObject>,
    errors: Vec<ParseError>,
}

/// What tells one version of a file from the next without reading it: the inode (a volume's
/// `..data` swap or an editor's rename leaves the size and modification time as they were
/// when the versions are copied with their times kept), the change time (which nothing can set
/// back), the size and the modification time.
type Stamp = (u64, u64, i64, i64, u64, std::time::SystemTime);

fn stamp_of(meta: &std::fs::Metadata) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    meta.modified().ok().map(|t| (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec(), meta.len(), t))
}

/// What one rescan found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Whether any file's objects or errors changed.
    pub changed: bool,
    /// Whether any file's objects changed (a file that only failed keeps its objects).
    pub objects_changed: bool,
    /// Errors in files that changed in this rescan.
    pub new_errors: Vec<ParseError>,
    pub warnings: Vec<String>,
    /// The objects whose version in the store changed (added, replaced by different content,
    /// removed); `None` when the store was rebuilt whole and nobody counted.
    pub changed_objects: Option<Vec<ObjRef>>,
}

/// The paths the watcher saw change since the last read; `all` when it could not tell
/// (a directory, an overflow, a hidden entry that is not a plain file).
#[derive(Debug, Default)]
pub struct Dirty {
    paths: BTreeSet<PathBuf>,
    all: bool,
}

/// The default of `--max-manifest-size`.
pub const DEFAULT_MAX_SIZE: u64 = 16 * 1024 * 1024;

pub struct FileSource {
    paths: Vec<PathBuf>,
    /// Largest file read, in bytes.
    max_size: u64,
    /// Every file found, by real path, with the name it is shown by.
    files: BTreeMap<PathBuf, (PathBuf, FileState)>,
    /// The objects of all files, kept current change by change (`store` hands out copies).
    store: Store,
    /// How many files define each object, by a hash of its kind, namespace and name
    /// (`def_key`): an object defined twice makes the store rebuilt, so that the file sorting
    /// last wins as documented. Two objects with one hash only cost a rebuild, which is always
    /// right; keeping the names instead cost about 17 MB at 100,000 objects.
    defs: HashMap<u64, u32>,
    dirty: Arc<Mutex<Dirty>>,
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Manifest files under `path`, sorted, each with the name it is shown by (`shown` is the name
/// of `path` itself); hidden entries (including Kubernetes' `..data` volume internals) are
/// skipped, symlinks are followed. A `path` that is not a directory is taken as a file, whatever
/// it is: reading it says what is wrong with it.
fn collect(path: &Path, shown: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    if !path.is_dir() {
        if path.symlink_metadata().is_ok() {
            out.push((path.to_path_buf(), shown.to_path_buf()));
        }
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

/// Why a file was not read.
enum ReadError {
    /// It vanished between listing and reading: it is dropped at the next rescan.
    Gone(std::io::Error),
    /// It is not something to read as a manifest, or could not be read: reported as an error.
    Refused(String),
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if t.is_dir() { "a directory" } else { "not a regular file" }
}

/// Reads a regular file of at most `max` bytes as UTF-8. `meta` is the file's metadata (links
/// followed), read just before; the file opened is checked again, and never more than `max + 1`
/// bytes are read, in case it was replaced or grows meanwhile.
fn read_manifest(path: &Path, meta: &std::fs::Metadata, max: u64) -> Result<String, ReadError> {
    let refuse_type = |t| ReadError::Refused(format!("{}; only regular files are read", kind_of(t)));
    let too_large = || ReadError::Refused(format!("larger than --max-manifest-size ({max} bytes); not read"));
    if !meta.is_file() {
        return Err(refuse_type(meta.file_type()));
    }
    if meta.len() > max {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Gone(e),
        _ => ReadError::Refused(e.to_string()),
    })?;
    let opened = file.metadata().map_err(|e| ReadError::Refused(e.to_string()))?;
    if !opened.is_file() {
        return Err(refuse_type(opened.file_type()));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| ReadError::Refused(e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| ReadError::Refused(format!("not valid UTF-8 (byte {}); not read", e.utf8_error().valid_up_to())))
}

fn def_key(r: &ObjRef) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.hash(&mut h);
    h.finish()
}

fn hash_of(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl FileSource {
    /// A source of the manifests under `paths`, reading no file larger than `max_size` bytes.
    pub fn new(paths: Vec<PathBuf>, max_size: u64) -> Self {
        FileSource { paths, max_size, files: BTreeMap::new(), store: Store::default(), defs: HashMap::new(), dirty: Arc::default() }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Where `watch` notes the paths that changed, for `load_changed`.
    pub fn dirty(&self) -> Arc<Mutex<Dirty>> {
        self.dirty.clone()
    }

    /// Re-reads every file; files whose content did not change are not parsed again.
    pub fn load(&mut self) -> LoadReport {
        *self.dirty.lock().expect("the dirty set") = Dirty::default();
        let mut report = LoadReport { changed_objects: Some(Vec::new()), ..Default::default() };
        let mut found = Vec::new();
        for p in &self.paths {
            if !p.exists() {
                report.warnings.push(format!("{}: no such file or directory", p.display()));
            }
            collect(p, &shown_root(p), &mut found);
        }
        found.dedup_by(|a, b| a.0 == b.0);
        let present: std::collections::HashSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
        let gone: Vec<PathBuf> = self.files.keys().filter(|p| !present.contains(p)).cloned().collect();
        for path in gone {
            self.forget(&path, &mut report);
        }
        for (path, shown) in found {
            self.read_one(path, shown, &mut report);
        }
        self.settle(&mut report);
        report
    }

    /// Re-reads only the files the watcher saw change (everything, as `load`, when it could
    /// not tell which).
    pub fn load_changed(&mut self) -> LoadReport {
        let dirty = std::mem::take(&mut *self.dirty.lock().expect("the dirty set"));
        if dirty.all || dirty.paths.is_empty() {
            return self.load();
        }
        let mut report = LoadReport { changed_objects: Some(Vec::new()), ..Default::default() };
        for path in dirty.paths {
            if let Some((shown, _)) = self.files.get(&path) {
                let shown = shown.clone();
                match std::fs::symlink_metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.forget(&path, &mut report),
                    _ => self.read_one(path, shown, &mut report),
                }
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let hidden = |c: &std::ffi::OsStr| c.to_str().is_some_and(|n| n.starts_with('.'));
            let root = self.paths.iter().find(|r| r.is_dir() && path.starts_with(r));
            let rel = root.and_then(|r| path.strip_prefix(r).ok());
            match rel {
                // An editor's or a writer's temporary file: never read.
                Some(rel) if meta.is_file() && rel.file_name().is_some_and(hidden) && rel.components().count() == 1 => {}
                Some(rel) if !meta.is_dir() && !rel.iter().any(hidden) => {
                    if is_manifest(&path) {
                        let shown = shown_root(root.expect("a root")).join(rel);
                        self.read_one(path, shown, &mut report);
                    }
                }
                // A sibling of a `--manifests` that is a file: not ours.
                None if !self.paths.iter().any(|r| r.is_dir() || *r == path) => {}
                // A directory, a hidden link or folder (a Kubernetes volume's swap), a file
                // root that appeared: only a rescan can tell what it means.
                _ => return self.load(),
            }
        }
        self.settle(&mut report);
        report
    }

    /// Reads one file found at `path` (shown as `shown`) unless it is unchanged.
    fn read_one(&mut self, path: PathBuf, shown: PathBuf, report: &mut LoadReport) {
        // Links followed: a symlink is judged by what it leads to.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                // Vanished between listing and reading, or a dangling link: keep what we had.
                report.warnings.push(format!("{}: {e}", shown.display()));
                return;
            }
        };
        let stamp = stamp_of(&meta);
        if stamp.is_some() && self.files.get(&path).is_some_and(|(_, s)| s.stamp == stamp) {
            return;
        }
        let text = match read_manifest(&path, &meta, self.max_size) {
            Ok(t) => t,
            Err(ReadError::Gone(e)) => {
                report.warnings.push(format!("{}: {e}", shown.display()));
                return;
            }
            Err(ReadError::Refused(message)) => {
                // Like a file whose YAML cannot be split: all its last good objects stay.
                let error = ParseError::file(&shown, message);
                let prev = self.files.remove(&path).map(|(_, s)| s).unwrap_or_default();
                report.changed = true;
                report.new_errors.push(error.clone());
                self.files.insert(path, (shown, FileState { stamp, hash: None, objects: prev.objects, errors: vec![error] }));
                return;
            }
        };
        let hash = hash_of(&text);
        if let Some((_, s)) = self.files.get_mut(&path).filter(|(_, s)| s.hash == Some(hash)) {
            s.stamp = stamp;
            return;
        }
        let mut parsed = parse::parse_text(&shown, &text);
        let prev = self.files.remove(&path).map(|(_, s)| s).unwrap_or_default();
        let kept = prev.objects.clone();
        let objects = keep_unchanged(&kept, merge_last_good(prev.objects, &mut parsed));
        report.changed = true;
        report.objects_changed |= kept.len() != objects.len() || kept.iter().zip(&objects).any(|(a, b)| !a.same(b));
        report.new_errors.extend(parsed.errors.iter().cloned());
        report.warnings.extend(parsed.warnings);
        self.update_store(&kept, &objects, report);
        self.files.insert(path, (shown, FileState { stamp, hash: Some(hash), objects, errors: parsed.errors }));
    }

    /// Drops a file that is gone, and its objects.
    fn forget(&mut self, path: &Path, report: &mut LoadReport) {
        if let Some((_, state)) = self.files.remove(path) {
            report.changed = true;
            report.objects_changed = true;
            self.update_store(&state.objects, &[], report);
        }
    }

    /// Brings the store from a file's `old` objects to its `new` ones, noting what changed; an
    /// object another file also defines (or one file defines twice) marks the store for a
    /// rebuild instead, so precedence stays as `build_store` decides it.
    fn update_store(&mut self, old: &[SharedObject], new: &[SharedObject], report: &mut LoadReport) {
        let old_refs: HashMap<ObjRef, &SharedObject> = old.iter().map(|o| (o.obj_ref(), o)).collect();
        let new_refs: HashMap<ObjRef, &SharedObject> = new.iter().map(|o| (o.obj_ref(), o)).collect();
        let mut rebuild = old_refs.len() != old.len() || new_refs.len() != new.len();
        let mut changed = Vec::new();
        for r in old_refs.keys().filter(|r| !new_refs.contains_key(*r)) {
            let n = self.defs.entry(def_key(r)).or_default();
            *n = n.saturating_sub(1);
            rebuild |= *n > 0;
            if *n == 0 {
                self.defs.remove(&def_key(r));
                self.store.remove(r);
            }
            changed.push(r.clone());
        }
        for (r, o) in &new_refs {
            match old_refs.get(r) {
                Some(prev) if prev.same(o) => continue,
                Some(_) => {}
                None => *self.defs.entry(def_key(r)).or_default() += 1,
            }
            rebuild |= self.defs.get(&def_key(r)).is_some_and(|n| *n > 1);
            self.store.insert_shared(o);
            changed.push(r.clone());
        }
        match (&mut report.changed_objects, rebuild) {
            (Some(list), false) => list.extend(changed),
            (slot, _) => *slot = None,
        }
    }

    /// After a read: rebuilds the store whole if a duplicate made it necessary.
    fn settle(&mut self, report: &mut LoadReport) {
        if report.changed_objects.is_none() {
            self.store = self.build_store();
        }
    }

    /// Every error currently standing in the files.
    pub fn errors(&self) -> Vec<ParseError> {
        self.files.values().flat_map(|(_, f)| f.errors.iter().cloned()).collect()
    }

    /// The objects of all files; on a duplicate, the file that sorts last wins.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    fn build_store(&self) -> Store {
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

/// `new` with every object whose content equals its previous version replaced by that
/// version: an unchanged object stays the same allocation, so nothing downstream sees it move.
fn keep_unchanged(prev: &[SharedObject], new: Vec<SharedObject>) -> Vec<SharedObject> {
    if prev.is_empty() {
        return new;
    }
    let by_ref: HashMap<ObjRef, &SharedObject> = prev.iter().map(|o| (o.obj_ref(), o)).collect();
    new.into_iter().map(|o| match by_ref.get(&o.obj_ref()) {
        Some(p) if p.same_content(&o) => (*p).clone(),
        _ => o,
    }).collect()
}

/// The objects a file now contributes: what parsed, plus the last good version of every object
/// whose document failed (all previous objects when the file could not be read as YAML).
fn merge_last_good(prev: Vec<SharedObject>, parsed: &mut parse::Parsed) -> Vec<SharedObject> {
    if parsed.fatal {
        return prev;
    }
    // Into a new vector, not the parsed one: `collect` would reuse that allocation, sized for
    // whole objects (hundreds of bytes each, with the growth's slack) where the shared ones
    // are two words, and keep it for as long as the file is held (130 MB at 10,000 Ingresses).
    let parsed_objects = std::mem::take(&mut parsed.objects);
    let mut objects: Vec<SharedObject> = Vec::with_capacity(parsed_objects.len());
    objects.extend(parsed_objects.into_iter().map(SharedObject::from));
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
/// The paths of each event are noted in `dirty` (from `FileSource::dirty`) for `load_changed`.
pub fn watch(paths: &[PathBuf], dirty: Arc<Mutex<Dirty>>, tx: mpsc::Sender<std::time::Instant>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let mut d = dirty.lock().expect("the dirty set");
        match res {
            Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => return,
            Ok(ev) if !ev.need_rescan() && !ev.paths.is_empty() => d.paths.extend(ev.paths),
            // An overflow or an error: which files changed is unknown.
            _ => d.all = true,
        }
        drop(d);
        let _ = raw_tx.send(());
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
            // Debounce: wait for 2 ms of quiet, at most 50 ms in all (a save is a burst of
            // events within microseconds; a change arriving later is read by the next rescan).
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            loop {
                match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_millis(2)), raw_rx.recv()).await {
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
#[path = "files_tests.rs"]
mod tests;
