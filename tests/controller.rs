//! Controller mode end to end: a fake API server (tests/fakeapi) speaking the real list/watch
//! protocol, `vestibule::controller::start` pointed at it through a kubeconfig, real echo
//! backends, and real HTTP(S) requests through the proxy.

mod common;
mod fakeapi;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{ConfigMap, Ingress, IngressClass};
use fakeapi::FakeApi;
use serde_json::{Value, json};
use vestibule::cli::{Cli, Command};
use vestibule::controller::{self, ApiConfig, ControllerOptions, Running};

/// Our IngressClass.
fn class() -> Value {
    IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json()
}

/// Another controller's IngressClass.
fn other_class() -> Value {
    IngressClass::new("other", "example.com/other").to_json()
}

fn options(api: &FakeApi, dir: &std::path::Path, token: &str, identity: &str) -> ControllerOptions {
    fakeapi::options::controller(api, dir, token, identity, fakeapi::options::serve_by_class())
}

/// An Ingress of `class` for `host`, each of `paths` (path, service) Prefix to the service's
/// port 80, optionally with TLS from `tls_secret`.
fn ingress(ns: &str, name: &str, class: &str, host: &str, paths: &[(&str, &str)], tls_secret: Option<&str>) -> Value {
    let mut ing = Ingress::new(ns, name).class(class);
    if let Some(secret) = tls_secret {
        ing = ing.tls(&[host], secret);
    }
    for (path, svc) in paths {
        ing = ing.host_path(host, path, "Prefix", svc, 80);
    }
    ing.to_json()
}

/// The EndpointSlice `common::backend_yaml` writes for `svc`, with these endpoints.
fn slice(ns: &str, svc: &str, endpoints: &[SocketAddr]) -> Value {
    common::backend_slice(ns, svc, endpoints).to_json()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().pool_max_idle_per_host(0).build().unwrap()
}

/// Status and echo service of `GET http://host/path` through the proxy.
async fn route(http: SocketAddr, host: &str, path: &str) -> (u16, Option<String>) {
    let resp = match client().get(format!("http://{http}{path}")).header("host", host).send().await {
        Ok(r) => r,
        Err(_) => return (0, None),
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let svc = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["service"].as_str().map(str::to_string));
    (status, svc)
}

async fn wait_route(http: SocketAddr, host: &str, path: &str, expect: (u16, Option<&str>), timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (s, svc) = route(http, host, path).await;
        if s == expect.0 && svc.as_deref() == expect.1 {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("{host}{path}: expected {expect:?}, still ({s}, {svc:?}) after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) -> Duration {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > timeout {
            panic!("{what}: not true after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn healthz(run: &Running) -> u16 {
    client().get(format!("http://{}/healthz", run.healthz)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// The value of an unlabelled metric on the health port.
async fn metric(run: &Running, name: &str) -> Option<f64> {
    let text = client().get(format!("http://{}/metrics", run.healthz)).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `ip`/`hostname` values in an Ingress's status.
fn status_addresses(api: &FakeApi, ns: &str, name: &str) -> Vec<String> {
    let ing = api.get("Ingress", ns, name).unwrap();
    ing["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()).map(str::to_string)).collect())
        .unwrap_or_default()
}

fn status_puts(api: &FakeApi) -> Vec<fakeapi::Req> {
    api.requests().into_iter().filter(|r| r.method == "PUT" && r.path.ends_with("/status")).collect()
}

/// Events the fake received, as (reason, regarding name, type, note).
fn events(api: &FakeApi) -> Vec<(String, String, String, String)> {
    api.list("Event")
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["regarding"]["name"].as_str().unwrap_or("").to_string(),
                e["type"].as_str().unwrap_or("").to_string(),
                e["note"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(api: &FakeApi, reason: &str, ingress: &str) -> usize {
    events(api).iter().filter(|e| e.0 == reason && e.1 == ingress).count()
}

fn ingress_lists(api: &FakeApi) -> usize {
    api.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with("/ingresses") && !r.query.contains("watch=true")).count()
}

#[test]
fn cli_flags_and_defaults() {
    let cli = Cli::try_parse_from(["vestibule", "controller"]).unwrap();
    let Command::Controller(args) = cli.command else { panic!("not the controller command") };
    assert_eq!((args.listen.http_port, args.listen.https_port, args.listen.healthz_port), (80, 443, 10254));
    assert!(!args.routing.watch_ingress_without_class, "controller mode serves class-less Ingresses only when asked");
    assert!(args.update_status && args.update_status_on_shutdown);
    assert_eq!(args.election_id, "vestibule-leader");
    let o = args.into_options();
    assert!(matches!(o.api, ApiConfig::InCluster));
    assert_eq!(o.watch_namespace, None);
    assert!(!o.serve.watch_without_class);

    let cli = Cli::try_parse_from([
        "vestibule",
        "controller",
        "--kubeconfig",
        "/tmp/kc",
        "--watch-namespace",
        "team-a",
        "--configmap",
        "vestibule/vestibule-controller",
        "--publish-service",
        "vestibule/vestibule-controller",
        "--publish-status-address",
        "203.0.113.7,lb.example.com",
        "--election-id",
        "my-lock",
        "--update-status=false",
        "--update-status-on-shutdown=false",
        "--watch-ingress-without-class",
        "--http-port",
        "8080",
    ])
    .unwrap();
    let Command::Controller(args) = cli.command else { panic!("not the controller command") };
    let o = args.into_options();
    assert!(matches!(&o.api, ApiConfig::Kubeconfig(p) if p.to_str() == Some("/tmp/kc")));
    assert_eq!(o.watch_namespace.as_deref(), Some("team-a"));
    assert_eq!(o.configmap, Some(("vestibule".into(), "vestibule-controller".into())));
    assert_eq!(o.publish_service, Some(("vestibule".into(), "vestibule-controller".into())));
    assert_eq!(o.publish_status_address, vec!["203.0.113.7".to_string(), "lb.example.com".to_string()]);
    assert_eq!(o.election_id, "my-lock");
    assert!(!o.update_status && !o.update_status_on_shutdown);
    assert!(o.serve.watch_without_class);
    assert_eq!(o.serve.http_port, 8080);

    let addrs = controller::parse_status_addresses(&o.publish_status_address);
    assert_eq!(addrs.iter().map(|a| (a.ip.as_deref(), a.hostname.as_deref())).collect::<Vec<_>>(), vec![(Some("203.0.113.7"), None), (None, Some("lb.example.com"))]);
}

/// Creating, updating and deleting Ingresses, Services, EndpointSlices and Secrets in the
/// cluster changes what is served, each within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_changes_are_served() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (coffee, tea, coffee2) = (common::echo("coffee").await, common::echo("tea").await, common::echo("coffee-v2").await);
    api.apply(class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/coffee", "coffee")], None));
    // Not ours: no class, and --watch-ingress-without-class is off in controller mode.
    api.apply(Ingress::new("default", "classless").host_path("classless.example.com", "/", "Prefix", "coffee", 80).to_json());

    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    wait_route(run.http, "cafe.example.com", "/coffee", (200, Some("coffee")), Duration::from_secs(10)).await;
    assert_eq!(healthz(&run).await, 200);
    assert_eq!(route(run.http, "classless.example.com", "/").await.0, 404);

    // A new Service and a new path on the Ingress.
    api.apply_yaml(&common::backend_yaml("default", "tea", &[tea.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/coffee", "coffee"), ("/tea", "tea")], None));
    let t = wait_route(run.http, "cafe.example.com", "/tea", (200, Some("tea")), Duration::from_secs(5)).await;
    assert!(t < Duration::from_secs(1), "an Ingress change took {t:?}");

    // Endpoints only: the fast path.
    api.apply(slice("default", "coffee", &[coffee2.addr]));
    let t = wait_route(run.http, "cafe.example.com", "/coffee", (200, Some("coffee-v2")), Duration::from_secs(5)).await;
    assert!(t < Duration::from_secs(1), "an endpoint change took {t:?}");
    // No ready endpoint: 503.
    api.apply(slice("default", "coffee", &[]));
    wait_route(run.http, "cafe.example.com", "/coffee", (503, None), Duration::from_secs(5)).await;
    api.apply(slice("default", "coffee", &[coffee.addr]));
    wait_route(run.http, "cafe.example.com", "/coffee", (200, Some("coffee")), Duration::from_secs(5)).await;

    // A deleted Service: 503.
    api.delete("Service", "default", "tea");
    wait_route(run.http, "cafe.example.com", "/tea", (503, None), Duration::from_secs(5)).await;

    // A TLS Secret: its certificate is served for the host, and plain HTTP redirects.
    let (_, cert1, key1) = vestibule::tls::self_signed(&["cafe.example.com"]).unwrap();
    api.apply_yaml(&common::secret_yaml("default", "cafe-tls", &cert1, &key1));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/coffee", "coffee")], Some("cafe-tls")));
    let served = |der: Vec<u8>| {
        let https = run.https;
        async move {
            let start = Instant::now();
            loop {
                let (got, _, _) = common::handshake(https, Some("cafe.example.com"), &[&rustls::version::TLS13], &[b"http/1.1"]).await;
                if got == der {
                    return start.elapsed();
                }
                assert!(start.elapsed() < Duration::from_secs(5), "the Secret's certificate is not served");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    served(common::der_of(&cert1)).await;
    assert_eq!(route(run.http, "cafe.example.com", "/coffee").await.0, 308);
    // The Secret changes: the new certificate is served.
    let (_, cert2, key2) = vestibule::tls::self_signed(&["cafe.example.com"]).unwrap();
    api.apply_yaml(&common::secret_yaml("default", "cafe-tls", &cert2, &key2));
    let t = served(common::der_of(&cert2)).await;
    assert!(t < Duration::from_secs(1), "a Secret change took {t:?}");
    // The Secret is deleted: the default certificate again, never a failed handshake.
    api.delete("Secret", "default", "cafe-tls");
    let start = Instant::now();
    loop {
        let (got, _, _) = common::handshake(run.https, Some("cafe.example.com"), &[&rustls::version::TLS13], &[b"http/1.1"]).await;
        if got != common::der_of(&cert2) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the deleted Secret's certificate is still served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The Ingress is deleted: nothing routes.
    api.delete("Ingress", "default", "cafe");
    wait_route(run.http, "cafe.example.com", "/coffee", (404, None), Duration::from_secs(5)).await;
    run.shutdown().await;
}

/// With two replicas, only the Lease holder writes status (and Events); a graceful stop hands
/// over at once and leaves the addresses while another replica runs; the last one clears them.
/// An Ingress of another class is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_by_the_leader_only() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let coffee = common::echo("coffee").await;
    api.apply(class());
    api.apply(other_class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "coffee")], None));
    let mut foreign: Value = ingress("default", "foreign", "other", "foreign.example.com", &[("/", "coffee")], None);
    foreign["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}});
    api.apply(foreign);
    // The publish Service, and the EndpointSlice that shows both replicas running.
    api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "vestibule-controller", "namespace": "vestibule"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}},
    }));
    let replicas = |names: &[&str]| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "vestibule-controller-x", "namespace": "vestibule", "labels": {"kubernetes.io/service-name": "vestibule-controller"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80}],
            "endpoints": names.iter().enumerate().map(|(i, n)| json!({"addresses": [format!("10.0.0.{}", i + 1)], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "vestibule", "name": n}})).collect::<Vec<_>>(),
        })
    };
    api.apply(replicas(&["ctrl-a", "ctrl-b"]));

    let start = |token: &'static str, id: &'static str| {
        let mut o = options(&api, dir.path(), token, id);
        o.publish_service = Some(("vestibule".into(), "vestibule-controller".into()));
        controller::start(o)
    };
    let a = start("token-a", "ctrl-a").await.unwrap();
    let b = start("token-b", "ctrl-b").await.unwrap();

    let expected = vec!["203.0.113.7".to_string(), "lb.example.com".to_string()];
    wait_for("status written", Duration::from_secs(10), || {
        let mut got = status_addresses(&api, "default", "cafe");
        got.sort();
        got == expected
    })
    .await;
    wait_for("one leader", Duration::from_secs(5), || a.is_leader() != b.is_leader()).await;
    let (leader, follower, leader_token, follower_token) = if a.is_leader() { (a, b, "token-a", "token-b") } else { (b, a, "token-b", "token-a") };
    let lease = api.get("Lease", "vestibule", "vestibule-leader").expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"].as_str(), Some(leader.identity.as_str()));
    // Both serve.
    wait_route(follower.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(5)).await;
    wait_route(leader.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(5)).await;
    // Let the follower see everything too, then check who wrote.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let puts = status_puts(&api);
    assert!(!puts.is_empty());
    assert!(puts.iter().all(|r| r.token == leader_token), "status written by a follower: {:?}", puts.iter().map(|r| (&r.path, &r.token)).collect::<Vec<_>>());
    assert!(puts.iter().all(|r| !r.path.contains("/ingresses/foreign")), "an Ingress of another class was touched");
    assert_eq!(status_addresses(&api, "default", "foreign"), vec!["198.51.100.1".to_string()]);
    let event_posts: Vec<_> = api.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/events")).collect();
    assert!(!event_posts.is_empty(), "the leader sends Sync events");
    assert!(event_posts.iter().all(|r| r.token == leader_token), "events sent by a follower");
    // Writing the status changes the Ingress's resourceVersion, not its spec: no second Sync.
    assert_eq!(count(&api, "Sync", "cafe"), 1);

    // The leader stops gracefully: another replica runs, so the addresses stay; the follower
    // takes over at once (the Lease was released).
    let before = status_puts(&api).len();
    leader.shutdown().await;
    let mut got = status_addresses(&api, "default", "cafe");
    got.sort();
    assert_eq!(got, expected, "status cleared although another replica runs");
    let t = wait_for("the follower takes over", Duration::from_secs(6), || follower.is_leader()).await;
    assert!(t < Duration::from_secs(4), "takeover after a graceful stop took {t:?}");
    assert_eq!(status_puts(&api).len(), before, "nothing was written during the handover");

    // The new leader writes status for new Ingresses.
    api.apply(ingress("default", "cafe2", "vestibule", "cafe2.example.com", &[("/", "coffee")], None));
    wait_for("status of a new Ingress", Duration::from_secs(5), || status_addresses(&api, "default", "cafe2").len() == 2).await;
    let puts = status_puts(&api);
    assert!(puts[before..].iter().all(|r| r.token == follower_token), "only the new leader writes");
    // The publish Service's address changes: every Ingress follows.
    let mut svc = api.get("Service", "vestibule", "vestibule-controller").unwrap();
    svc["status"]["loadBalancer"]["ingress"] = json!([{"ip": "203.0.113.8"}]);
    api.apply(svc);
    wait_for("new address", Duration::from_secs(5), || status_addresses(&api, "default", "cafe") == vec!["203.0.113.8".to_string()] && status_addresses(&api, "default", "cafe2") == vec!["203.0.113.8".to_string()]).await;

    // The last replica stops: the addresses are cleared; the foreign Ingress still untouched.
    api.apply(replicas(&[follower.identity.as_str()]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower.shutdown().await;
    assert!(status_addresses(&api, "default", "cafe").is_empty(), "status not cleared by the last replica");
    assert!(status_addresses(&api, "default", "cafe2").is_empty());
    assert_eq!(status_addresses(&api, "default", "foreign"), vec!["198.51.100.1".to_string()]);
    assert!(status_puts(&api).iter().all(|r| !r.path.contains("/ingresses/foreign")));
    let lease = api.get("Lease", "vestibule", "vestibule-leader").unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "the Lease is released: {lease}");
}

/// A leader that dies without releasing: another replica takes over once the Lease expires,
/// and keeps the status current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_fails_over_after_the_lease_expires() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let coffee = common::echo("coffee").await;
    api.apply(class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "coffee")], None));
    let start = |token: &'static str, id: &'static str| {
        let mut o = options(&api, dir.path(), token, id);
        o.publish_status_address = vec!["192.0.2.10".into()];
        controller::start(o)
    };
    let a = start("token-a", "ctrl-a").await.unwrap();
    let b = start("token-b", "ctrl-b").await.unwrap();
    wait_for("status written", Duration::from_secs(10), || status_addresses(&api, "default", "cafe") == vec!["192.0.2.10".to_string()]).await;
    wait_for("one leader", Duration::from_secs(5), || a.is_leader() != b.is_leader()).await;
    let (leader, follower, follower_token) = if a.is_leader() { (a, b, "token-b") } else { (b, a, "token-a") };
    let before = status_puts(&api).len();

    leader.stop();
    let t = wait_for("the follower takes over", Duration::from_secs(8), || follower.is_leader()).await;
    assert!(t < Duration::from_secs(6), "takeover after a crash took {t:?} with a 2 s lease");
    let lease = api.get("Lease", "vestibule", "vestibule-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"].as_str(), Some(follower.identity.as_str()));
    // The crashed leader cleared nothing.
    assert_eq!(status_addresses(&api, "default", "cafe"), vec!["192.0.2.10".to_string()]);
    api.apply(ingress("default", "cafe2", "vestibule", "cafe2.example.com", &[("/", "coffee")], None));
    wait_for("status of a new Ingress", Duration::from_secs(5), || status_addresses(&api, "default", "cafe2") == vec!["192.0.2.10".to_string()]).await;
    assert!(status_puts(&api)[before..].iter().all(|r| r.token == follower_token));
    follower.stop();
}

/// Each diagnostic on an Ingress becomes one Event with what to fix, not repeated while it
/// stands; `Sync` once per change of an Ingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_become_events() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let coffee = common::echo("coffee").await;
    api.apply(class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(ingress("default", "good", "vestibule", "good.example.com", &[("/", "coffee")], None));
    api.apply(ingress("default", "broken", "vestibule", "broken.example.com", &[("/", "ghost")], None));
    api.apply(Ingress::new("default", "invalid").class("vestibule").host_path("invalid.example.com", "/", "Prefixx", "coffee", 80).to_json());
    api.apply(ingress("default", "foreign", "other", "foreign.example.com", &[("/", "ghost")], None));
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();

    wait_for("ServiceNotFound event", Duration::from_secs(10), || count(&api, "ServiceNotFound", "broken") == 1).await;
    wait_for("InvalidField event", Duration::from_secs(5), || count(&api, "InvalidField", "invalid") == 1).await;
    wait_for("Sync events", Duration::from_secs(5), || count(&api, "Sync", "good") == 1 && count(&api, "Sync", "broken") == 1).await;
    let ev = events(&api);
    let (_, _, ty, note) = ev.iter().find(|e| e.0 == "ServiceNotFound").unwrap();
    assert_eq!(ty, "Warning");
    assert!(note.contains("Service default/ghost not found") && note.contains("Create the Service"), "note: {note}");
    let raw = api.list("Event").into_iter().find(|e| e["reason"] == "ServiceNotFound").unwrap();
    assert_eq!(raw["regarding"]["kind"], "Ingress");
    assert_eq!(raw["regarding"]["namespace"], "default");
    assert_eq!(raw["metadata"]["namespace"], "default");
    assert_eq!(raw["reportingController"], "vestibule.dev/ingress-controller");
    assert_eq!(raw["reportingInstance"], "ctrl-a");
    assert!(raw["regarding"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    // An invalid Ingress is not synced; another class's Ingress gets nothing at all.
    assert_eq!(count(&api, "Sync", "invalid"), 0);
    assert!(events(&api).iter().all(|e| e.1 != "foreign"), "an Ingress of another class got events");

    // Unrelated changes: nothing is repeated.
    api.apply_yaml(&common::backend_yaml("default", "unrelated", &[coffee.addr]));
    wait_for("change applied", Duration::from_secs(5), || run.applied().is_some_and(|a| a.store.services.contains_key(&("default".into(), "unrelated".into())))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&api, "ServiceNotFound", "broken"), 1);
    assert_eq!(count(&api, "Sync", "good"), 1);

    // A change of the Ingress: one more Sync; its standing diagnostic is not repeated.
    api.apply(ingress("default", "broken", "vestibule", "broken.example.com", &[("/", "ghost"), ("/more", "ghost")], None));
    wait_for("second Sync", Duration::from_secs(5), || count(&api, "Sync", "broken") == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&api, "ServiceNotFound", "broken"), 1);

    // The Service appears without endpoints, then goes: each change is news once.
    api.apply_yaml(&common::backend_yaml("default", "ghost", &[]));
    wait_for("NoReadyEndpoints event", Duration::from_secs(5), || count(&api, "NoReadyEndpoints", "broken") == 1).await;
    api.delete("Service", "default", "ghost");
    wait_for("ServiceNotFound again", Duration::from_secs(5), || count(&api, "ServiceNotFound", "broken") == 2).await;
    run.shutdown().await;
}

/// Events are rate-limited: a burst, then a steady rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_rate_limited() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.apply(class());
    for i in 0..10 {
        api.apply(ingress("default", &format!("broken{i}"), "vestibule", &format!("b{i}.example.com"), &[("/", "ghost")], None));
    }
    let mut o = options(&api, dir.path(), "token-a", "ctrl-a");
    o.event_burst = 4;
    o.event_rate = 10.0;
    let run = controller::start(o).await.unwrap();
    // 10 ServiceNotFound + 10 Sync.
    wait_for("all events", Duration::from_secs(10), || api.list("Event").len() == 20).await;
    let mut times: Vec<Instant> = api.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/events")).map(|r| r.at).collect();
    times.sort();
    assert_eq!(times.len(), 20);
    // After the burst of 4, 16 more at 10 per second: at least 1.6 s (some slack for timers).
    let span = times[19] - times[0];
    assert!(span >= Duration::from_millis(1300), "20 events in {span:?}: not rate-limited");
    let early = times.iter().filter(|t| **t - times[0] < Duration::from_millis(200)).count();
    assert!(early <= 7, "{early} events in the first 200 ms");
    run.shutdown().await;
}

/// The API server goes away: traffic keeps flowing on the last configuration, health stays
/// ready, the configuration is flagged stale; when it is back, a full resync picks up what
/// changed meanwhile, and later changes apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_keeps_serving_and_resyncs() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (coffee, tea) = (common::echo("coffee").await, common::echo("tea").await);
    api.apply(class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply_yaml(&common::backend_yaml("default", "tea", &[tea.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "coffee")], None));
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    wait_route(run.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(10)).await;
    assert!(!run.health.is_stale());
    let lists_before = run.health.lists.load(std::sync::atomic::Ordering::Relaxed);

    api.kill();
    let outage = Instant::now();
    let mut ok = 0;
    while outage.elapsed() < Duration::from_millis(1500) {
        assert_eq!(route(run.http, "cafe.example.com", "/").await, (200, Some("coffee".into())), "a request failed during the outage");
        ok += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok > 20);
    wait_for("stale flag", Duration::from_secs(3), || run.health.is_stale()).await;
    assert_eq!(healthz(&run).await, 200, "readiness stays true while a configuration is served");
    assert_eq!(metric(&run, "vestibule_config_stale").await, Some(1.0), "the metric says the configuration is stale");
    assert!(metric(&run, "vestibule_kube_watch_failures_total").await.unwrap_or(0.0) >= 1.0);
    assert_eq!(route(run.http, "cafe.example.com", "/").await, (200, Some("coffee".into())));

    // Changed while the API server was away (no watch could see it).
    let cafe: Value = ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "tea")], None);
    api.set_silently(cafe);
    api.restart().await;
    wait_route(run.http, "cafe.example.com", "/", (200, Some("tea")), Duration::from_secs(5)).await;
    wait_for("stale flag cleared", Duration::from_secs(5), || !run.health.is_stale()).await;
    assert_eq!(metric(&run, "vestibule_config_stale").await, Some(0.0));
    assert!(run.health.lists.load(std::sync::atomic::Ordering::Relaxed) > lists_before, "no relist after the outage");

    // Later changes still apply.
    api.delete("Ingress", "default", "cafe");
    wait_route(run.http, "cafe.example.com", "/", (404, None), Duration::from_secs(3)).await;
    run.shutdown().await;
}

/// A 410 Gone during a watch makes the reflector relist, and the state converges on what the
/// API server holds (including a change whose watch event was lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_relists_and_converges() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (coffee, tea) = (common::echo("coffee").await, common::echo("tea").await);
    api.apply(class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply_yaml(&common::backend_yaml("default", "tea", &[tea.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "coffee")], None));
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    wait_route(run.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(10)).await;
    let lists = ingress_lists(&api);

    let cafe: Value = ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "tea")], None);
    api.set_silently(cafe);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(route(run.http, "cafe.example.com", "/").await, (200, Some("coffee".into())), "the lost event cannot be seen before a relist");
    api.expire_watches();
    let t = wait_route(run.http, "cafe.example.com", "/", (200, Some("tea")), Duration::from_secs(5)).await;
    assert!(t < Duration::from_secs(2), "convergence after 410 took {t:?}");
    assert!(ingress_lists(&api) > lists, "no relist after 410");
    assert!(!run.health.is_stale(), "a 410 is routine, not an outage");
    // And the watch goes on.
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "coffee")], None));
    wait_route(run.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(3)).await;
    run.shutdown().await;
}

/// `--watch-namespace` limits what is served; the `--configmap` ConfigMap, and its changes,
/// reach the store. What is checked of the ConfigMap is that, and only that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespace_limits_what_is_served_and_the_configmap_reaches_the_store() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (a_echo, b_echo, fallback) = (common::echo("svc-a").await, common::echo("svc-b").await, common::echo("fallback").await);
    api.apply(class());
    // The default backend lives outside the watched namespace: it is watched on its own.
    api.apply_yaml(&common::backend_yaml("vestibule", "fallback", &[fallback.addr]));
    api.apply_yaml(&common::backend_yaml("team-a", "svc-a", &[a_echo.addr]));
    api.apply_yaml(&common::backend_yaml("team-b", "svc-b", &[b_echo.addr]));
    api.apply(ingress("team-a", "a", "vestibule", "a.example.com", &[("/", "svc-a")], None));
    api.apply(ingress("team-b", "b", "vestibule", "b.example.com", &[("/", "svc-b")], None));
    api.apply(ConfigMap::new("vestibule", "vestibule-controller").data("some-key", "1").to_json());
    api.apply(ConfigMap::new("vestibule", "unrelated").to_json());
    let mut o = options(&api, dir.path(), "token-a", "ctrl-a");
    o.watch_namespace = Some("team-a".into());
    o.configmap = Some(("vestibule".into(), "vestibule-controller".into()));
    o.serve.default_backend_service = Some(("vestibule".into(), "fallback".into()));
    let run = controller::start(o).await.unwrap();
    wait_route(run.http, "a.example.com", "/", (200, Some("svc-a")), Duration::from_secs(10)).await;
    assert_eq!(route(run.http, "b.example.com", "/").await, (200, Some("fallback".into())), "an Ingress outside --watch-namespace is not served: the default backend answers");
    // The default backend's endpoints are followed too.
    let fallback2 = common::echo("fallback-2").await;
    api.apply(slice("vestibule", "fallback", &[fallback2.addr]));
    wait_route(run.http, "nothing.example.com", "/", (200, Some("fallback-2")), Duration::from_secs(5)).await;
    let app = run.applied().unwrap();
    assert!(app.store.ingresses.keys().all(|(ns, _)| ns == "team-a"));
    assert!(app.store.services.keys().all(|(ns, name)| ns == "team-a" || (ns == "vestibule" && name == "fallback")), "{:?}", app.store.services.keys().collect::<Vec<_>>());
    assert_eq!(app.store.config_maps.keys().collect::<Vec<_>>(), vec![&("vestibule".to_string(), "vestibule-controller".to_string())]);
    let watched: Vec<String> = api.requests().into_iter().filter(|r| r.path.contains("/ingresses")).map(|r| r.path).collect();
    assert!(watched.iter().all(|p| p == "/apis/networking.k8s.io/v1/namespaces/team-a/ingresses"), "{watched:?}");
    // Nothing names a Secret here: the collection of Secrets is never listed or watched.
    assert!(!api.requests().iter().any(|r| r.path.ends_with("/secrets")), "Secrets were listed: {:?}", api.requests().iter().filter(|r| r.path.contains("/secrets")).map(|r| format!("{}?{}", r.path, r.query)).collect::<Vec<_>>());
    // The ConfigMap's changes reach the store.
    api.apply(ConfigMap::new("vestibule", "vestibule-controller").data("some-key", "2").to_json());
    wait_for("ConfigMap change", Duration::from_secs(5), || {
        run.applied().is_some_and(|a| a.store.config_maps.values().any(|c| c.data.as_ref().and_then(|d| d.get("some-key")).map(String::as_str) == Some("2")))
    })
    .await;
    run.shutdown().await;
}

/// A kubeconfig with CA data and a client certificate (no token) works: the controller lists,
/// watches and serves over mutual TLS (rustls on aws-lc-rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_with_client_certificate_and_ca_data() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start_tls().await;
    let coffee = common::echo("coffee").await;
    api.apply(class());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/", "coffee")], None));
    let mut o = options(&api, dir.path(), "unused", "ctrl-a");
    o.api = ApiConfig::Kubeconfig(api.kubeconfig_tls(dir.path()));
    let run = controller::start(o).await.unwrap();
    wait_route(run.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(10)).await;
    wait_for("leader", Duration::from_secs(5), || run.is_leader()).await;
    let reqs = api.requests();
    assert!(!reqs.is_empty());
    assert!(reqs.iter().all(|r| r.token == "client-certificate"), "every request authenticated by its client certificate");
    api.apply(ingress("default", "cafe", "vestibule", "cafe.example.com", &[("/v2", "coffee")], None));
    wait_route(run.http, "cafe.example.com", "/", (404, None), Duration::from_secs(5)).await;
    assert_eq!(route(run.http, "cafe.example.com", "/v2").await, (200, Some("coffee".into())));
    run.shutdown().await;
}
