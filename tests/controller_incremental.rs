//! Controller mode with a few hundred Ingresses: the Kubernetes source names the objects each
//! batch of watch events changed, so an Ingress or Service change compiles only the hosts it
//! reaches and an EndpointSlice change replaces endpoint sets without a compile
//! (`vestibule_config_applies_total{mode}` says which), and a re-list applies only what it
//! really changed. Real API protocol (tests/fakeapi), real echo backends, real requests.

mod common;
mod fakeapi;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Ingress;
use fakeapi::FakeApi;
use serde_json::Value;
use vestibule::controller::{self, ControllerOptions, Running};

const INGRESSES: usize = 300;
const SERVICES: usize = 10;

fn options(api: &FakeApi, dir: &std::path::Path) -> ControllerOptions {
    let base = fakeapi::options::controller(api, dir, "token-a", "ctrl-a", fakeapi::options::serve_by_class());
    // Status writes are Ingress changes too: off, so that each change below is one apply.
    ControllerOptions { update_status: false, lease_duration_secs: ControllerOptions::default().lease_duration_secs, lease_grace_secs: ControllerOptions::default().lease_grace_secs, ..base }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap()
}

/// Status and echo service of `GET http://host/path` through the proxy.
async fn route(http: SocketAddr, host: &str, path: &str) -> (u16, Option<String>) {
    let Ok(resp) = client().get(format!("http://{http}{path}")).header("host", host).send().await else { return (0, None) };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str::<Value>(&text).ok().and_then(|v| v["service"].as_str().map(str::to_string)))
}

/// Polls until `host/path` answers `expect`; how long that took.
async fn wait_route(http: SocketAddr, host: &str, path: &str, expect: (u16, Option<&str>)) -> Duration {
    let start = Instant::now();
    loop {
        let (s, svc) = route(http, host, path).await;
        if s == expect.0 && svc.as_deref() == expect.1 {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{host}{path}: expected {expect:?}, still ({s}, {svc:?})");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `vestibule_config_applies_total` by mode: (full, incremental, endpoints).
async fn applies(run: &Running) -> (f64, f64, f64) {
    let text = client().get(format!("http://{}/metrics", run.healthz)).send().await.unwrap().text().await.unwrap();
    let get = |mode: &str| {
        let prefix = format!("vestibule_config_applies_total{{mode=\"{mode}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0.0)
    };
    (get("full"), get("incremental"), get("endpoints"))
}

/// Waits until the counters move from `before`; they must move to `expect`.
async fn wait_applies(run: &Running, before: (f64, f64, f64), expect: (f64, f64, f64), what: &str) {
    let start = Instant::now();
    loop {
        let now = applies(run).await;
        if now != before {
            assert_eq!(now, expect, "{what}: applies (full, incremental, endpoints) went from {before:?}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: no apply counted ({before:?})");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn host(i: usize) -> String {
    format!("h{i}.example.com")
}

fn ingress(i: usize, extra: Option<(&str, &str)>) -> Value {
    let mut ing = Ingress::new("default", &format!("ing-{i}")).class("vestibule").host_path(&host(i), "/", "Prefix", &format!("svc-{}", i % SERVICES), 80);
    if let Some((path, svc)) = extra {
        ing = ing.host_path(&host(i), path, "Prefix", svc, 80);
    }
    ing.to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_service_and_endpoint_changes_go_live_without_a_full_compile() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (blue, blue2, fresh, late) = (common::echo("blue").await, common::echo("blue-v2").await, common::echo("fresh").await, common::echo("late").await);
    api.apply(common::IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    for s in 0..SERVICES {
        api.apply_yaml(&common::backend_yaml("default", &format!("svc-{s}"), &[blue.addr]));
    }
    api.apply_yaml(&common::backend_yaml("default", "fresh", &[fresh.addr]));
    // `late` has endpoints but no Service yet: its path answers 503 until the Service comes.
    api.apply(common::backend_slice("default", "late", &[late.addr]).to_json());
    for i in 0..INGRESSES {
        api.apply(ingress(i, (i == 7).then_some(("/late", "late"))));
    }

    let run = controller::start(options(&api, dir.path())).await.unwrap();
    wait_route(run.http, &host(0), "/", (200, Some("blue"))).await;
    wait_route(run.http, &host(INGRESSES - 1), "/", (200, Some("blue"))).await;
    assert_eq!(route(run.http, &host(7), "/late").await.0, 503);
    let start = applies(&run).await;
    assert!(start.0 >= 1.0, "the first configuration is a full compile: {start:?}");

    // One Ingress: a new path to another Service.
    api.apply(ingress(5, Some(("/new", "fresh"))));
    let t = wait_route(run.http, &host(5), "/new", (200, Some("fresh"))).await;
    eprintln!("Ingress change live after {t:?}");
    wait_applies(&run, start, (start.0, start.1 + 1.0, start.2), "an Ingress change").await;
    assert_eq!(route(run.http, &host(5), "/").await, (200, Some("blue".into())));

    // One Service: created, so the path that named it serves.
    let before = applies(&run).await;
    api.apply_yaml(&common::service_yaml("default", "late"));
    let t = wait_route(run.http, &host(7), "/late", (200, Some("late"))).await;
    eprintln!("Service change live after {t:?}");
    wait_applies(&run, before, (before.0, before.1 + 1.0, before.2), "a Service change").await;

    // One EndpointSlice: svc-3 moves to another endpoint; the 30 hosts on it follow, nothing
    // else changes.
    let before = applies(&run).await;
    api.apply(common::backend_slice("default", "svc-3", &[blue2.addr]).to_json());
    let t = wait_route(run.http, &host(3), "/", (200, Some("blue-v2"))).await;
    eprintln!("EndpointSlice change live after {t:?}");
    wait_applies(&run, before, (before.0, before.1, before.2 + 1.0), "an EndpointSlice change").await;
    assert_eq!(route(run.http, &host(293), "/").await, (200, Some("blue-v2".into())));
    assert_eq!(route(run.http, &host(4), "/").await, (200, Some("blue".into())));
    assert_eq!(route(run.http, &host(5), "/new").await, (200, Some("fresh".into())));

    // A slice left with no ready endpoint: compiled (503 and the diagnostic), not patched.
    let before = applies(&run).await;
    api.apply(common::backend_slice("default", "svc-3", &[]).to_json());
    wait_route(run.http, &host(13), "/", (503, None)).await;
    wait_applies(&run, before, (before.0, before.1 + 1.0, before.2), "an EndpointSlice change to no endpoints").await;

    // A re-list (410 Gone) that finds nothing new applies nothing; one that finds a change
    // whose event was lost applies just that.
    let before = applies(&run).await;
    api.expire_watches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applies(&run).await, before, "a re-list that changed nothing");
    api.set_silently(common::backend_slice("default", "svc-4", &[blue2.addr]).to_json());
    api.expire_watches();
    wait_route(run.http, &host(4), "/", (200, Some("blue-v2"))).await;
    wait_applies(&run, before, (before.0, before.1, before.2 + 1.0), "a re-list with one lost slice change").await;
    assert_eq!(route(run.http, &host(0), "/").await, (200, Some("blue".into())));
    run.shutdown().await;
}
