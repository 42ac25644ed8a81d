//! The controller reads only the Secrets its objects name, each by name: a GET, then a watch
//! with a `metadata.name` field selector, never a list. The fake API server answers 403 to any
//! other read of Secrets, as RBAC does for the shipped role (`get` and `watch`, no `list`).

mod common;
mod fakeapi;

use std::time::{Duration, Instant};

use common::{Ingress, IngressClass};
use fakeapi::{FakeApi, Req};
use vestibule::controller::{self, ControllerOptions};

fn options(api: &FakeApi, dir: &std::path::Path) -> ControllerOptions {
    fakeapi::options::controller(api, dir, "token", "ctrl", fakeapi::options::serve())
}

fn tls_ingress(ns: &str, name: &str, host: &str, secret: &str) -> serde_json::Value {
    Ingress::new(ns, name).class("vestibule").tls(&[host], secret).host_path(host, "/", "Prefix", "app", 80).to_json()
}

/// A Secret of `ns` and the certificate (DER) it holds for `host`.
fn secret(api: &FakeApi, ns: &str, name: &str, host: &str) -> Vec<u8> {
    let (_, cert, key) = vestibule::tls::self_signed(&[host]).unwrap();
    api.apply_yaml(&common::secret_yaml(ns, name, &cert, &key));
    common::der_of(&cert)
}

/// Waits until a handshake with SNI `host` gets the certificate `der`.
async fn wait_cert(https: std::net::SocketAddr, host: &str, der: &[u8], timeout: Duration) {
    let start = Instant::now();
    loop {
        let (got, _, _) = common::handshake(https, Some(host), &[&rustls::version::TLS13], &[b"http/1.1"]).await;
        if got == der {
            return;
        }
        assert!(start.elapsed() < timeout, "{host}: the Secret's certificate is not served after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secret_requests(api: &FakeApi) -> Vec<Req> {
    api.requests().into_iter().filter(|r| r.path.contains("/secrets")).collect()
}

/// Whether `r` reads Secret `ns/name` by name: a GET of the object, or a watch of the
/// namespace's Secrets with `metadata.name=name`.
fn reads(r: &Req, ns: &str, name: &str) -> bool {
    r.path == format!("/api/v1/namespaces/{ns}/secrets/{name}")
        || (r.path == format!("/api/v1/namespaces/{ns}/secrets") && r.param("fieldSelector").as_deref() == Some(&format!("metadata.name={name}")))
}

/// How many watches of Secret `ns/name` were opened.
fn watches_of(api: &FakeApi, ns: &str, name: &str) -> usize {
    secret_requests(api).iter().filter(|r| reads(r, ns, name) && r.param("watch").as_deref() == Some("true")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_named_secrets_are_read_each_by_name() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.allow_secrets_get_watch_only();
    let app = common::echo("app").await;
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply_yaml(&common::backend_yaml("default", "app", &[app.addr]));
    let cafe = secret(&api, "default", "cafe-tls", "cafe.example.com");
    secret(&api, "default", "unreferenced", "cafe.example.com");
    secret(&api, "other", "cafe-tls", "cafe.example.com");
    secret(&api, "default", "foreign-tls", "foreign.example.com");
    let tea2 = secret(&api, "default", "tea-tls-2", "tea.example.com");
    api.apply(tls_ingress("default", "cafe", "cafe.example.com", "cafe-tls"));
    // Another controller's Ingress: its Secret is not ours to read.
    api.apply(Ingress::new("default", "foreign").class("other").tls(&["foreign.example.com"], "foreign-tls").host_path("foreign.example.com", "/", "Prefix", "app", 80).to_json());

    let run = controller::start(options(&api, dir.path())).await.unwrap();
    // The named Secret is served, picked by SNI.
    wait_cert(run.https, "cafe.example.com", &cafe, Duration::from_secs(10)).await;

    // A Secret created after the Ingress that names it is seen by its by-name watch.
    api.apply(tls_ingress("default", "tea", "tea.example.com", "tea-tls"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tea = secret(&api, "default", "tea-tls", "tea.example.com");
    wait_cert(run.https, "tea.example.com", &tea, Duration::from_secs(5)).await;
    let held = run.applied().unwrap().store.secrets.keys().cloned().collect::<Vec<_>>();
    assert_eq!(held, vec![("default".to_string(), "cafe-tls".to_string()), ("default".to_string(), "tea-tls".to_string())], "only the named Secrets are held");

    // The Ingress names another Secret: the old one's watch stops and it leaves the store.
    api.apply(tls_ingress("default", "tea", "tea.example.com", "tea-tls-2"));
    wait_cert(run.https, "tea.example.com", &tea2, Duration::from_secs(5)).await;
    let before = watches_of(&api, "default", "tea-tls");
    // Were its watch still running, an expiry would make it read the Secret again.
    api.expire_watches();
    wait_cert(run.https, "cafe.example.com", &cafe, Duration::from_secs(5)).await;
    let start = Instant::now();
    while watches_of(&api, "default", "cafe-tls") < 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(watches_of(&api, "default", "cafe-tls") >= 2, "a named Secret's watch resumes after a 410");
    assert_eq!(watches_of(&api, "default", "tea-tls"), before, "the Secret no longer named is not watched any more");
    let held = run.applied().unwrap().store.secrets.keys().cloned().collect::<Vec<_>>();
    assert!(!held.contains(&("default".to_string(), "tea-tls".to_string())), "{held:?}");

    let reqs = secret_requests(&api);
    for r in &reqs {
        assert_eq!(r.method, "GET", "{r:?}");
        let by_name = r.path.split('/').count() == 7;
        let watch_by_name = r.param("watch").as_deref() == Some("true") && r.param("fieldSelector").is_some_and(|f| f.starts_with("metadata.name=") && !f.contains(','));
        assert!(by_name || watch_by_name, "Secrets are read only by name: {} ?{}", r.path, r.query);
    }
    for (ns, name) in [("default", "unreferenced"), ("other", "cafe-tls"), ("default", "foreign-tls")] {
        assert!(!reqs.iter().any(|r| reads(r, ns, name)), "Secret {ns}/{name} is named by nothing of ours and never requested");
    }
    assert!(reqs.iter().any(|r| r.path == "/api/v1/namespaces/default/secrets/cafe-tls"), "a named Secret is fetched with a GET");
    run.shutdown().await;
}
