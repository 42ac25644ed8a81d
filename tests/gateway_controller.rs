//! Gateway API in controller mode, against the fake API server: the kinds are watched into the
//! store (and served), the CRD presence check, and the status the leader writes.

mod common;
#[path = "gateway_controller/e2e.rs"]
mod e2e;
mod fakeapi;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Ingress, IngressClass, free_port};
use fakeapi::FakeApi;
use serde_json::{Value, json};
use vestibule::controller::gateway_status::sync_once;
use vestibule::controller::{self, Applied, ApiConfig, ControllerOptions, Running};
use vestibule::source::kube_gateway::GatewayDiscovery;

const CONTROLLER: &str = "vestibule.dev/gateway-controller";

fn options(api: &FakeApi, dir: &std::path::Path, token: &str, identity: &str) -> ControllerOptions {
    ControllerOptions { publish_status_address: vec!["203.0.113.7".into()], ..fakeapi::options::controller(api, dir, token, identity, fakeapi::options::serve_by_class()) }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().pool_max_idle_per_host(0).build().unwrap()
}

/// Status and echo service of `GET http://host/path` through the proxy.
async fn route(http: SocketAddr, host: &str, path: &str) -> (u16, Option<String>) {
    let Ok(resp) = client().get(format!("http://{http}{path}")).header("host", host).send().await else { return (0, None) };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str::<Value>(&text).ok().and_then(|v| v["service"].as_str().map(str::to_string)))
}

async fn wait_route(http: SocketAddr, host: &str, path: &str, expect: (u16, Option<&str>), timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (s, svc) = route(http, host, path).await;
        if s == expect.0 && svc.as_deref() == expect.1 {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{host}{path}: expected {expect:?}, still ({s}, {svc:?}) after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what}: not true after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn applied(run: &Running) -> Option<Arc<Applied>> {
    run.applied()
}

fn gateway_class(name: &str, controller: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": name}, "spec": {"controllerName": controller}})
}

fn gateway(ns: &str, name: &str, class: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
           "spec": {"gatewayClassName": class, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})
}

fn http_route(ns: &str, name: &str, gateway: &str, host: &str, svc: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns},
           "spec": {"parentRefs": [{"name": gateway}], "hostnames": [host],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": svc, "port": 80}]}]}})
}

fn others(ns: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": {"name": "grpc", "namespace": ns}, "spec": {"parentRefs": [{"name": "gw"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute", "metadata": {"name": "tls", "namespace": ns}, "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["tls.example.com"]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "grant", "namespace": ns},
               "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "other"}], "to": [{"group": "", "kind": "Service"}]}}),
    ]
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_string(), name.to_string())
}

/// Every Gateway API kind is listed and watched into the store; `--watch-namespace` limits the
/// namespaced ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kinds_are_watched_into_the_store() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.apply(gateway_class("vestibule", CONTROLLER));
    for ns in ["default", "other"] {
        api.apply(gateway(ns, "gw", "vestibule"));
        api.apply(http_route(ns, "web", "gw", "web.example.com", "web"));
        for o in others(ns) {
            api.apply(o);
        }
    }
    let mut opts = options(&api, dir.path(), "token-a", "ctrl-a");
    opts.watch_namespace = Some("default".into());
    let run = controller::start(opts).await.unwrap();
    wait_for("the first configuration", Duration::from_secs(10), || applied(&run).is_some()).await;
    let s = applied(&run).unwrap().store.clone();
    assert!(s.gateway_classes.contains_key("vestibule"));
    assert_eq!(s.gateways.keys().cloned().collect::<Vec<_>>(), vec![key("default", "gw")], "only the watched namespace");
    assert_eq!(s.http_routes.keys().cloned().collect::<Vec<_>>(), vec![key("default", "web")]);
    assert_eq!(s.grpc_routes.keys().cloned().collect::<Vec<_>>(), vec![key("default", "grpc")]);
    assert_eq!(s.tls_routes.keys().cloned().collect::<Vec<_>>(), vec![key("default", "tls")]);
    assert_eq!(s.reference_grants.keys().cloned().collect::<Vec<_>>(), vec![key("default", "grant")]);
    assert_eq!(s.tls_routes[&key("default", "tls")].spec.hostnames, vec!["tls.example.com"]);

    // Changes arrive through the watch.
    api.apply(http_route("default", "new", "gw", "new.example.com", "web"));
    let t = wait_for("the new HTTPRoute", Duration::from_secs(5), || applied(&run).is_some_and(|a| a.store.http_routes.contains_key(&key("default", "new")))).await;
    assert!(t < Duration::from_secs(1), "an HTTPRoute took {t:?} to arrive");
    api.delete("HTTPRoute", "default", "new");
    wait_for("the deleted HTTPRoute gone", Duration::from_secs(5), || applied(&run).is_some_and(|a| !a.store.http_routes.contains_key(&key("default", "new")))).await;
    let paths: Vec<String> = api.requests().iter().filter(|r| r.path.contains("gateway.networking.k8s.io") && r.query.contains("watch")).map(|r| r.path.clone()).collect();
    assert!(paths.iter().any(|p| p == "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "/apis/gateway.networking.k8s.io/v1/gatewayclasses"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("/namespaces/other/")), "{paths:?}");
    run.stop();
}

/// Where TLSRoute is served only as v1alpha2 and ReferenceGrant only as v1, those are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_and_newer_versions_are_read_where_the_preferred_one_is_missing() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.serve_only_crds(&[("GatewayClass", "v1"), ("Gateway", "v1"), ("HTTPRoute", "v1"), ("GRPCRoute", "v1"), ("TLSRoute", "v1alpha2"), ("ReferenceGrant", "v1")]);
    for o in others("default") {
        api.apply(o);
    }
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    wait_for("the first configuration", Duration::from_secs(10), || applied(&run).is_some()).await;
    let s = applied(&run).unwrap().store.clone();
    assert_eq!(s.tls_routes[&key("default", "tls")].spec.hostnames, vec!["tls.example.com"], "TLSRoute read through v1alpha2");
    assert_eq!(s.reference_grants[&key("default", "grant")].spec.from[0].namespace, "other", "ReferenceGrant read through v1");
    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r.path == "/apis/gateway.networking.k8s.io/v1alpha2/tlsroutes"));
    assert!(reqs.iter().any(|r| r.path == "/apis/gateway.networking.k8s.io/v1/referencegrants"));
    run.stop();
}

/// A writer that keeps what it is given, for reading the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Without some Gateway API CRDs, the log says plainly which are missing, once; those kinds
/// are not watched, and Ingress works and the controller is ready as before.
#[tokio::test(flavor = "current_thread")]
async fn missing_crds_are_named_once_and_ingress_keeps_working() {
    let log = Captured::default();
    let w = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || w.clone()).with_ansi(false).with_max_level(tracing::Level::INFO).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.serve_only_crds(&[("GatewayClass", "v1"), ("Gateway", "v1"), ("HTTPRoute", "v1")]);
    let coffee = common::echo("coffee").await;
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(Ingress::new("default", "cafe").class("vestibule").host_path("cafe.example.com", "/", "Prefix", "coffee", 80).to_json());

    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    wait_route(run.http, "cafe.example.com", "/", (200, Some("coffee")), Duration::from_secs(10)).await;
    let health = client().get(format!("http://{}/healthz", run.healthz)).send().await.unwrap().status().as_u16();
    assert_eq!(health, 200, "ready without the missing kinds");
    // A later change still applies (no watch of a missing kind keeps the source stale).
    api.apply(Ingress::new("default", "cafe").class("vestibule").host_path("cafe.example.com", "/", "Prefix", "coffee", 80).host_path("tea.example.com", "/", "Prefix", "coffee", 80).to_json());
    wait_route(run.http, "tea.example.com", "/", (200, Some("coffee")), Duration::from_secs(5)).await;
    assert!(!run.health.is_stale(), "{:?}", run.health.failing());

    let text = log.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("CRDs are not installed")).collect();
    assert_eq!(lines.len(), 1, "one line names the missing kinds:\n{text}");
    let missing = lines[0].split("missing=").nth(1).and_then(|m| m.split(" served=").next()).unwrap_or("");
    for kind in ["GRPCRoute", "ReferenceGrant", "TLSRoute"] {
        assert!(missing.contains(kind), "{kind} is named as missing: {}", lines[0]);
    }
    assert!(!missing.contains("HTTPRoute") && !missing.contains("Gateway "), "served kinds are not called missing: {}", lines[0]);
    let asked: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert!(asked.iter().any(|p| p == "/apis"), "discovery was asked");
    assert!(!asked.iter().any(|p| p.ends_with("/grpcroutes") || p.ends_with("/tlsroutes") || p.ends_with("/referencegrants")), "missing kinds are not watched: {asked:?}");
    run.stop();
}

/// The fake API server's CRDs behave as the API server's: discovery lists what is served,
/// status writes do not bump metadata.generation and spec changes do, and each patch type
/// on the status subresource changes only the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_api_serves_gateway_crds_faithfully() {
    let api = FakeApi::start().await;
    api.serve_only_crds(&[("Gateway", "v1"), ("HTTPRoute", "v1")]);
    let c = client();
    let get = |path: &str| {
        let c = c.clone();
        let url = format!("{}{path}", api.url());
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, groups) = get("/apis").await;
    let gw = groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "gateway.networking.k8s.io").unwrap().clone();
    assert_eq!(gw["preferredVersion"]["version"], "v1");
    let (_, v1) = get("/apis/gateway.networking.k8s.io/v1").await;
    let names: Vec<&str> = v1["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["gateways", "gateways/status", "httproutes", "httproutes/status"]);
    assert_eq!(get("/apis/gateway.networking.k8s.io/v1beta1").await.0, 404, "no v1beta1 kind served");
    assert_eq!(get("/apis/gateway.networking.k8s.io/v1/grpcroutes").await.0, 404, "not installed");

    let route = api.apply(http_route("default", "web", "gw", "web.example.com", "web"));
    assert_eq!(route["metadata"]["generation"], 1);
    let base = format!("{}/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web", api.url());
    let mut body = route.clone();
    body["status"] = json!({"parents": [{"parentRef": {"name": "gw"}, "controllerName": CONTROLLER, "conditions": []}]});
    body["spec"]["hostnames"] = json!(["changed.example.com"]);
    let put: Value = c.put(format!("{base}/status")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(put["metadata"]["generation"], 1, "a status write is not a new generation");
    assert_eq!(put["spec"]["hostnames"], json!(["web.example.com"]), "PUT /status changes only the status");
    assert_eq!(put["status"]["parents"][0]["controllerName"], CONTROLLER);
    let stale = c.put(format!("{base}/status")).json(&body).send().await.unwrap().status().as_u16();
    assert_eq!(stale, 409, "an old resourceVersion conflicts");

    let merged: Value = c
        .patch(format!("{base}/status"))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"hostnames": ["x"]}, "status": {"parents": []}}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(merged["status"]["parents"], json!([]));
    assert_eq!((merged["spec"]["hostnames"].clone(), merged["metadata"]["generation"].clone()), (json!(["web.example.com"]), json!(1)));
    let patched: Value = c
        .patch(format!("{base}/status"))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "add", "path": "/status/parents/-", "value": {"parentRef": {"name": "b"}, "controllerName": "x/y"}}, {"op": "replace", "path": "/spec/hostnames", "value": ["y"]}]).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["status"]["parents"][0]["controllerName"], "x/y");
    assert_eq!(patched["spec"]["hostnames"], json!(["web.example.com"]), "a JSON patch on /status changes only the status");

    let spec: Value = c
        .patch(base.clone())
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"hostnames": ["new.example.com"]}, "status": {"parents": []}}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["metadata"]["generation"], 2, "a spec change is a new generation");
    assert_eq!(spec["status"]["parents"][0]["controllerName"], "x/y", "the object's patch leaves the status");

    // A watch from a resourceVersion replays what came after it.
    let rv = route["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut resp = c.get(format!("{}/apis/gateway.networking.k8s.io/v1/httproutes?watch=true&resourceVersion={rv}", api.url())).send().await.unwrap();
    let mut seen = String::new();
    while seen.lines().count() < 4 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let types: Vec<String> = seen.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, vec!["MODIFIED"; 4], "the four writes since: {seen}");
}

/// The parsed store of the objects the fake holds, as the source would give it.
fn store_from(api: &FakeApi) -> vestibule::store::Store {
    let mut docs = Vec::new();
    for kind in ["GatewayClass", "Gateway", "HTTPRoute", "Service"] {
        docs.extend(api.list(kind).into_iter().map(|o| o.to_string()));
    }
    common::store_of(&docs.join("\n---\n"))
}

fn cond(type_: &str, status: &str, reason: &str, generation: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(generation),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

fn status_writes(api: &FakeApi) -> usize {
    api.requests().iter().filter(|r| r.method == "PUT" && r.path.ends_with("/status") && r.path.contains("gateway.networking.k8s.io")).count()
}

/// The writer against a status filled by hand: times stamped and kept, observedGeneration,
/// addresses, other controllers' parent entries kept, ours removed when compile drops them,
/// and no write when nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writer_stamps_merges_and_writes_only_changes() {
    use vestibule::gateway_api as gw;
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.apply(gateway_class("vestibule", CONTROLLER));
    api.apply(gateway("default", "gw", "vestibule"));
    let mut r = http_route("default", "web", "gw", "web.example.com", "web");
    r["status"] = json!({"parents": [{"parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other", "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}]});
    api.apply(r);
    let kube = controller::client(&ApiConfig::Kubeconfig(api.kubeconfig(dir.path(), "token-w"))).await.unwrap();
    let parent = gw::RouteParentStatus { parent_ref: gw::ParentReference { name: "gw".into(), ..Default::default() }, controller_name: CONTROLLER.into(), conditions: vec![cond("Accepted", "True", "Accepted", 1), cond("ResolvedRefs", "False", "BackendNotFound", 1)] };
    let mut status = vestibule::compile::status::Status::default();
    status.gateway.gateway_classes.insert("vestibule".into(), gw::GatewayClassStatus { conditions: vec![cond("Accepted", "True", "Accepted", 1)], ..Default::default() });
    status.gateway.gateways.insert(key("default", "gw"), gw::GatewayStatus { conditions: vec![cond("Programmed", "True", "Programmed", 1)], ..Default::default() });
    status.gateway.http_routes.insert(key("default", "web"), vec![parent.clone()]);
    let app = |status: &vestibule::compile::status::Status| Applied { store: store_from(&api), diagnostics: Vec::new(), status: Arc::new(status.clone()), settings: common::compile_settings() };
    let addrs = controller::parse_status_addresses(&["203.0.113.7".to_string()]);
    let all = GatewayDiscovery::all();

    assert!(sync_once(&kube, &app(&status), &all, &addrs).await);
    assert_eq!(status_writes(&api), 3);
    let class = api.get("GatewayClass", "", "vestibule").unwrap();
    assert_eq!(class["status"]["conditions"][0]["observedGeneration"], 1);
    let stamped = class["status"]["conditions"][0]["lastTransitionTime"].as_str().unwrap().to_string();
    assert!(!stamped.starts_with("1970"), "stamped with the time of the write: {stamped}");
    let g = api.get("Gateway", "default", "gw").unwrap();
    assert_eq!(g["status"]["addresses"], json!([{"type": "IPAddress", "value": "203.0.113.7"}]));
    assert_eq!(g["status"]["conditions"][0]["reason"], "Programmed");
    let route = api.get("HTTPRoute", "default", "web").unwrap();
    let parents = route["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(parents[0]["controllerName"], "example.com/other");
    assert_eq!(parents[0]["conditions"][0]["lastTransitionTime"], "2020-01-01T00:00:00Z", "theirs untouched");
    assert_eq!(parents[1]["conditions"][1]["reason"], "BackendNotFound");
    assert_eq!(route["metadata"]["generation"], 1, "status writes are not new generations");

    // Nothing changed: nothing written.
    assert!(sync_once(&kube, &app(&status), &all, &addrs).await);
    assert_eq!(status_writes(&api), 3, "no write when the status already says it");

    // The backend appears: only ResolvedRefs changes, and only its time moves.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut fixed = parent.clone();
    fixed.conditions[1] = cond("ResolvedRefs", "True", "ResolvedRefs", 1);
    status.gateway.http_routes.insert(key("default", "web"), vec![fixed]);
    assert!(sync_once(&kube, &app(&status), &all, &addrs).await);
    assert_eq!(status_writes(&api), 4, "one write, for the route");
    let after = api.get("HTTPRoute", "default", "web").unwrap();
    let ours = &after["status"]["parents"][1]["conditions"];
    assert_eq!(ours[0]["lastTransitionTime"], parents[1]["conditions"][0]["lastTransitionTime"], "Accepted kept its time");
    assert_ne!(ours[1]["lastTransitionTime"], parents[1]["conditions"][1]["lastTransitionTime"], "ResolvedRefs moved");
    assert_eq!(ours[1]["status"], "True");

    // The route no longer attaches to our Gateway: our entry goes, theirs stays.
    status.gateway.http_routes.clear();
    assert!(sync_once(&kube, &app(&status), &all, &addrs).await);
    let gone = api.get("HTTPRoute", "default", "web").unwrap();
    assert_eq!(gone["status"]["parents"].as_array().unwrap().iter().map(|p| p["controllerName"].clone()).collect::<Vec<_>>(), vec![json!("example.com/other")]);
}

/// With two replicas, only the leader writes Gateway API status (here: it removes a stale
/// entry under our controllerName from a route that attaches to nothing of ours, and keeps the
/// other controller's entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_gateway_status() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let mut r = http_route("default", "web", "not-ours", "web.example.com", "web");
    r["status"] = json!({"parents": [
        {"parentRef": {"name": "not-ours"}, "controllerName": "example.com/other", "conditions": []},
        {"parentRef": {"name": "old"}, "controllerName": CONTROLLER, "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}]});
    api.apply(r);
    let a = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    let b = controller::start(options(&api, dir.path(), "token-b", "ctrl-b")).await.unwrap();
    wait_for("a leader", Duration::from_secs(10), || a.is_leader() || b.is_leader()).await;
    wait_for("our stale entry removed", Duration::from_secs(10), || {
        api.get("HTTPRoute", "default", "web").unwrap()["status"]["parents"].as_array().is_some_and(|p| p.len() == 1)
    })
    .await;
    let route = api.get("HTTPRoute", "default", "web").unwrap();
    assert_eq!(route["status"]["parents"][0]["controllerName"], "example.com/other");
    let leader_token = if a.is_leader() { "token-a" } else { "token-b" };
    let writers: Vec<String> = api.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("httproutes")).map(|r| r.token.clone()).collect();
    assert_eq!(writers, vec![leader_token.to_string()], "one write, by the leader");
    // Further changes elsewhere cause no rewrite.
    api.apply(gateway_class("other", "example.com/other"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("httproutes")).count(), 1);
    a.stop();
    b.stop();
}

/// CRDs installed after the start are watched from then on, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_installed_later_are_watched() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.serve_only_crds(&[]);
    api.apply(gateway_class("vestibule", CONTROLLER));
    api.apply(http_route("default", "web", "gw", "web.example.com", "web"));
    let mut opts = options(&api, dir.path(), "token-a", "ctrl-a");
    opts.gateway_rediscovery = Duration::from_millis(100);
    let run = controller::start(opts).await.unwrap();
    wait_for("the first configuration", Duration::from_secs(10), || applied(&run).is_some()).await;
    assert!(applied(&run).unwrap().store.http_routes.is_empty(), "not installed, not read");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(applied(&run).unwrap().store.http_routes.is_empty());

    api.serve_only_crds(&[("GatewayClass", "v1"), ("Gateway", "v1"), ("HTTPRoute", "v1"), ("GRPCRoute", "v1"), ("ReferenceGrant", "v1beta1"), ("TLSRoute", "v1")]);
    wait_for("the HTTPRoute read once its CRD is installed", Duration::from_secs(5), || applied(&run).is_some_and(|a| a.store.http_routes.contains_key(&key("default", "web")) && a.store.gateway_classes.contains_key("vestibule"))).await;
    // The status writer uses the kinds found later too.
    wait_for("GatewayClass status", Duration::from_secs(5), || api.get("GatewayClass", "", "vestibule").unwrap()["status"]["conditions"].as_array().is_some_and(|c| !c.is_empty())).await;
    // Once every kind is served, discovery is not asked again.
    let asked = || api.requests().iter().filter(|r| r.path == "/apis").count();
    let n = asked();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(asked(), n, "no more discovery once everything is served");
    run.stop();
}
