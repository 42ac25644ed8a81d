//! A manifest directory replaced wholesale the way a Kubernetes ConfigMap volume is updated:
//! each version is written into a new timestamped directory, a temporary `..data_tmp` symlink
//! to it is renamed over `..data` (one atomic step), and the old directory is removed; the
//! files the user sees are symlinks through `..data`. A hundred swaps under load: no request
//! fails, and every version goes live.

mod common;
#[path = "common/load.rs"]
mod load;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// Version `v` of the manifests: the stable host always, and `flip.test/` to `alpha` on even
/// versions and `gamma` on odd ones. Both texts have the same length, and every version's file
/// gets the same modification time (as an archive or `cp -p` keeps it), so only the swap
/// itself tells the versions apart.
fn version(v: usize, stable: &str, alpha: &str, gamma: &str) -> String {
    let target = if v % 2 == 0 { "alpha" } else { "gamma" };
    manifest([
        stable.to_string(),
        alpha.to_string(),
        gamma.to_string(),
        Ingress::new("default", "stable").host_path("stable.test", "/", "Prefix", "stable", 80).to_yaml(),
        Ingress::new("default", "flip").host_path("flip.test", "/", "Prefix", target, 80).to_yaml(),
    ])
}

/// Writes version `text` as the kubelet's atomic writer does; returns the new directory.
fn swap(dir: &Path, n: usize, text: &str, old: Option<&Path>) -> std::path::PathBuf {
    let ts = format!("..2026_12_02_12_00_00.{:09}", 100_000_000 + n);
    let new = dir.join(&ts);
    std::fs::create_dir(&new).unwrap();
    let file = new.join("app.yaml");
    std::fs::write(&file, text).unwrap();
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_676_800)).unwrap();
    drop(f);
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(old).unwrap();
    }
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_data_symlink_swaps_under_load_lose_nothing_and_each_goes_live() {
    init_tracing();
    let (stable, alpha, gamma) = (echo("stable").await, echo("alpha").await, echo("gamma").await);
    let (s, a, g) = (backend_yaml("default", "stable", &[stable.addr]), backend_yaml("default", "alpha", &[alpha.addr]), backend_yaml("default", "gamma", &[gamma.addr]));
    assert_eq!(version(0, &s, &a, &g).len(), version(1, &s, &a, &g).len());

    // The volume: ..data → the first version, and app.yaml → ..data/app.yaml.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("config");
    std::fs::create_dir(&dir).unwrap();
    let mut current = swap(&dir, 0, &version(0, &s, &a, &g), None);
    std::os::unix::fs::symlink("..data/app.yaml", dir.join("app.yaml")).unwrap();
    let h = start_with("", |o| o.manifests = vec![dir.clone()]).await;
    h.wait_route("flip.test", "/", (200, Some("alpha")), Duration::from_secs(5)).await;

    // Load on both hosts: the stable one must always be `stable`, the flipping one one of the
    // two, never an error.
    let steady = load::Load::get(h.running.http, "stable.test", "/", 3, Duration::ZERO, &["stable"]);
    let flipping = load::Load::get(h.running.http, "flip.test", "/", 1, Duration::ZERO, &["alpha", "gamma"]);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for v in 1..=100 {
        current = swap(&dir, v, &version(v, &s, &a, &g), Some(&current));
        let expect = if v % 2 == 0 { "alpha" } else { "gamma" };
        let t = h.wait_route("flip.test", "/", (200, Some(expect)), Duration::from_secs(5)).await;
        slowest = slowest.max(t);
    }
    let swaps_took = started.elapsed();
    let (steady, flipping) = (steady.stop().await, flipping.stop().await);
    println!(
        "100 swaps in {swaps_took:?}, each live within {slowest:?}; {} requests ({} steady, {} on the flipping host), {} failed",
        steady.total() + flipping.total(),
        steady.total(),
        flipping.total(),
        steady.failed + flipping.failed
    );
    assert_eq!(steady.failed, 0, "failed requests: {:?}", steady.failures);
    assert_eq!(flipping.failed, 0, "failed requests: {:?}", flipping.failures);
    assert!(steady.ok > 100, "only {} requests", steady.ok);
    // The last version is served, and the old directories are gone.
    assert_eq!(h.route("flip.test", "/").await, (200, Some("alpha".into())));
    let hidden: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("..2026")).collect();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    assert!(h.running.snapshot.load().diagnostics.iter().all(|d| !format!("{d:?}").contains("duplicate")), "the hidden directories are not read as manifests");
}
