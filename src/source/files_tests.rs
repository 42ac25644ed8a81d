//! The file source's tests: last good objects, names, and reading only what changed.

use super::*;

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n";

fn shown(source: &FileSource) -> Vec<String> {
    source.errors().iter().map(|e| e.to_string()).collect()
}

#[test]
fn files_are_named_from_their_root_and_a_file_root_as_given() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("k8s");
    std::fs::create_dir_all(root.join("team")).unwrap();
    std::fs::write(root.join("team/bad.yaml"), "kind: Service\n").unwrap();
    let single = tmp.path().join("single.yaml");
    std::fs::write(&single, "kind: Service\n").unwrap();
    let mut source = FileSource::new(vec![root, single.clone()], DEFAULT_MAX_SIZE);
    source.load();
    let errors = source.errors();
    let files: Vec<&Path> = errors.iter().map(|e| e.file.as_path()).collect();
    assert_eq!(files, vec![Path::new("k8s/team/bad.yaml"), single.as_path()]);
}

#[test]
fn an_unreadable_version_keeps_the_last_good_objects_until_the_file_is_good_again() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.yaml");
    std::fs::write(&file, SERVICE).unwrap();
    let mut source = FileSource::new(vec![tmp.path().to_path_buf()], 4096);
    source.load();
    assert_eq!(source.store().services.len(), 1);

    let mut bad = SERVICE.as_bytes().to_vec();
    bad.extend_from_slice(b"# \xff\xfe\n");
    let utf8 = format!("not valid UTF-8 (byte {})", SERVICE.len() + 2);
    for (content, why) in [(bad, utf8.as_str()), (vec![b'#'; 5000], "larger than --max-manifest-size (4096 bytes)")] {
        std::fs::write(&file, &content).unwrap();
        let report = source.load();
        assert!(report.changed && report.new_errors.len() == 1, "{report:?}");
        let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(shown(&source), vec![format!("{name}/app.yaml: {why}; not read")]);
        assert_eq!(source.store().services.len(), 1, "the last good Service stays");
    }

    // The same good text as before the error: read again, and the error is gone.
    std::fs::write(&file, SERVICE).unwrap();
    assert!(source.load().changed);
    assert!(source.errors().is_empty(), "{:?}", shown(&source));
    assert_eq!(source.store().services.len(), 1);
}

fn service(name: &str, port: u16) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - port: {port}\n")
}

fn mark(source: &FileSource, paths: &[&Path]) {
    source.dirty.lock().unwrap().paths.extend(paths.iter().map(|p| p.to_path_buf()));
}

#[test]
fn only_the_files_the_watcher_names_are_read_and_only_changed_objects_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (a, b) = (root.join("a.yaml"), root.join("b.yaml"));
    std::fs::write(&a, format!("{}---\n{}", service("one", 80), service("two", 80))).unwrap();
    std::fs::write(&b, service("three", 80)).unwrap();
    let mut source = FileSource::new(vec![root.clone()], DEFAULT_MAX_SIZE);
    assert_eq!(source.load().changed_objects.map(|c| c.len()), Some(3));
    let two = source.store().services[&("default".to_string(), "two".to_string())].clone();

    // One object of a.yaml changes; b.yaml changes too but is not named, so it is not read.
    std::fs::write(&a, format!("{}---\n{}", service("one", 81), service("two", 80))).unwrap();
    std::fs::write(&b, service("three", 82)).unwrap();
    mark(&source, &[&a, &root.join(".a.yaml.swp")]);
    let report = source.load_changed();
    assert!(report.objects_changed);
    assert_eq!(report.changed_objects, Some(vec![ObjRef::new("Service", "default", "one")]));
    let store = source.store();
    let port = |n: &str| store.services[&("default".to_string(), n.to_string())].ports[0].port;
    assert_eq!((port("one"), port("three")), (81, 80));
    assert!(Arc::ptr_eq(&two, &store.services[&("default".to_string(), "two".to_string())]), "an unchanged object stays the same allocation");

    // A removed file takes its objects; a new one adds its own.
    std::fs::remove_file(&a).unwrap();
    let c = root.join("c.yaml");
    std::fs::write(&c, service("four", 80)).unwrap();
    mark(&source, &[&a, &c]);
    let mut changed = source.load_changed().changed_objects.unwrap();
    changed.sort();
    let names: Vec<&str> = changed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["four", "one", "two"]);
    let names: Vec<String> = source.store().services.keys().map(|k| k.1.clone()).collect();
    assert_eq!(names, ["four", "three"]);

    // A new directory is only understood by a rescan, which also reads b.yaml's change.
    std::fs::create_dir(root.join("team")).unwrap();
    std::fs::write(root.join("team/d.yaml"), service("five", 80)).unwrap();
    mark(&source, &[&root.join("team")]);
    source.load_changed();
    let names: Vec<String> = source.store().services.keys().map(|k| k.1.clone()).collect();
    assert_eq!(names, ["five", "four", "three"]);
    assert_eq!(port("three"), 80, "the earlier copy of the store is not changed");
    assert_eq!(source.store().services[&("default".to_string(), "three".to_string())].ports[0].port, 82);
}

#[test]
fn an_object_defined_in_two_files_keeps_the_last_file_winning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (a, b) = (root.join("a.yaml"), root.join("b.yaml"));
    std::fs::write(&a, service("web", 80)).unwrap();
    std::fs::write(&b, service("web", 90)).unwrap();
    let mut source = FileSource::new(vec![root.clone()], DEFAULT_MAX_SIZE);
    source.load();
    let port = |s: &FileSource| s.store().services[&("default".to_string(), "web".to_string())].ports[0].port;
    assert_eq!(port(&source), 90);
    std::fs::write(&a, service("web", 81)).unwrap();
    mark(&source, &[&a]);
    assert_eq!(source.load_changed().changed_objects, None, "a duplicate rebuilds the store");
    assert_eq!(port(&source), 90);
    std::fs::remove_file(&b).unwrap();
    mark(&source, &[&b]);
    source.load_changed();
    assert_eq!(port(&source), 81);
}

#[test]
fn a_replacement_with_the_same_size_and_modification_time_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.yaml");
    let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let put = |text: &str| {
        let next = tmp.path().join(".next");
        std::fs::write(&next, text).unwrap();
        std::fs::File::options().write(true).open(&next).unwrap().set_modified(when).unwrap();
        std::fs::rename(&next, &file).unwrap();
    };
    put(SERVICE);
    let mut source = FileSource::new(vec![tmp.path().to_path_buf()], DEFAULT_MAX_SIZE);
    source.load();
    assert!(source.store().services.contains_key(&("default".into(), "web".into())));
    put(&SERVICE.replace("name: web", "name: api"));
    assert!(source.load().objects_changed, "the new version is read");
    assert!(source.store().services.contains_key(&("default".into(), "api".into())));
}
