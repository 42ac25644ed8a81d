//! `--watch-namespace` under the RBAC of deploy/static/vestibule-namespaced.yaml: the fake API
//! server authorizes every request with that file's Roles and ClusterRole (tests/fakeapi/rbac.rs)
//! and refuses the rest with a 403. The controller serves and writes the status of an Ingress of
//! the watched namespace, and asks for nothing outside it but the cluster-scoped kinds the
//! ClusterRole grants.

mod common;
mod fakeapi;

use std::time::{Duration, Instant};

use common::{Ingress, IngressClass};
use fakeapi::FakeApi;
use serde_json::{Value, json};
use vestibule::controller::{self, ControllerOptions};
use vestibule::serve::ServeOptions;

/// The controller's own namespace.
const NS: &str = "vestibule";

/// The namespaced manifest, with the watched namespace changed to `watched` as its header says.
fn manifest(watched: &str) -> String {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/static/vestibule-namespaced.yaml")).unwrap();
    let moved = text
        .replace("  name: vestibule-watch\n  namespace: vestibule\n", &format!("  name: vestibule-watch\n  namespace: {watched}\n"))
        .replace("resourceNames: [vestibule]\n", &format!("resourceNames: [{watched}]\n"))
        .replace("--watch-namespace=vestibule\n", &format!("--watch-namespace={watched}\n"));
    assert_eq!(moved.matches(watched).count() - text.matches(watched).count(), if watched == NS { 0 } else { 4 }, "the manifest names the watched namespace in 4 places");
    moved
}

/// The controller as the namespaced manifest's Deployment runs it.
fn options(api: &FakeApi, dir: &std::path::Path, watched: &str) -> ControllerOptions {
    let key = |name: &str| Some((NS.to_string(), name.to_string()));
    let serve = ServeOptions { tcp_services: key("vestibule-tcp-services"), udp_services: key("vestibule-udp-services"), ..fakeapi::options::serve_by_class() };
    ControllerOptions {
        namespace: Some(NS.into()),
        watch_namespace: Some(watched.into()),
        configmap: key("vestibule-controller"),
        publish_service: key("vestibule-controller"),
        ..fakeapi::options::controller(api, dir, "token", "ctrl", serve)
    }
}

async fn get(http: std::net::SocketAddr, host: &str) -> (u16, Option<String>) {
    let c = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    let Ok(resp) = c.get(format!("http://{http}/")).header("host", host).send().await else { return (0, None) };
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body["service"].as_str().map(str::to_string))
}

async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what}: not true after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every request was allowed, and none asked for a namespaced kind outside the watched
/// namespace and the controller's own, or for a cluster-scoped kind the ClusterRole does not
/// grant.
fn assert_confined(api: &FakeApi, watched: &str) {
    assert_eq!(api.denied().iter().map(|a| a.to_string()).collect::<Vec<_>>(), Vec::<String>::new(), "requests the namespaced RBAC refuses");
    let cluster_scoped = ["/apis/networking.k8s.io/v1/ingressclasses", "/apis/gateway.networking.k8s.io/v1/gatewayclasses", "/api/v1/namespaces"];
    for r in api.requests() {
        let p = r.path.as_str();
        let discovery = p == "/api" || p == "/api/v1" || p == "/version" || (p.starts_with("/apis") && p.matches('/').count() <= 3);
        let in_ns = [watched, NS].iter().any(|ns| p.contains(&format!("/namespaces/{ns}/")));
        let allowed_cluster = cluster_scoped.iter().any(|c| p == *c || p.starts_with(&format!("{c}/")));
        assert!(discovery || in_ns || allowed_cluster, "a request outside namespace {watched}: {} {p}?{}", r.method, r.query);
        if watched != NS && p.contains(&format!("/namespaces/{NS}/")) {
            let own = ["/configmaps", "/services", "/endpointslices", "/leases", "/events"];
            assert!(own.iter().any(|k| p.contains(k)), "in its own namespace the controller reads only its own objects: {p}");
        }
        if p == "/api/v1/namespaces" {
            assert_eq!(r.param("fieldSelector").as_deref(), Some(&*format!("metadata.name={watched}")), "Namespaces are read only by the watched one's name");
        }
        if p.contains("/secrets") {
            assert!(p.split('/').count() == 7 || r.param("fieldSelector").is_some_and(|f| f.starts_with("metadata.name=")), "Secrets are read only by name: {p}?{}", r.query);
        }
    }
}

/// The controller in `NS` watching `watched` (the same namespace, or another).
async fn scenario(watched: &str) {
    common::init_tracing();
    let w = watched;
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.authorize_with(&manifest(w), NS, "vestibule");
    let (app, other) = (common::echo("app").await, common::echo("other").await);
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": w}}));
    api.apply(common::ConfigMap::new(NS, "vestibule-controller").data("use-forwarded-headers", "true").to_json());
    api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "vestibule-controller", "namespace": NS},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
    }));
    api.apply_yaml(&common::backend_yaml(w, "app", &[app.addr]));
    let (_, cert, key) = vestibule::tls::self_signed(&["app.example.com"]).unwrap();
    api.apply_yaml(&common::secret_yaml(w, "app-tls", &cert, &key));
    api.apply(Ingress::new(w, "app").class("vestibule").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false").tls(&["app.example.com"], "app-tls").host_path("app.example.com", "/", "Prefix", "app", 80).to_json());
    // Basic auth from a Secret of another namespace: not read, so the protection fails closed.
    api.apply_yaml(&common::secret_yaml("team-b", "htpasswd", &cert, &key));
    api.apply(Ingress::new(w, "guarded").class("vestibule").annotations(&[("nginx.ingress.kubernetes.io/auth-type", "basic"), ("nginx.ingress.kubernetes.io/auth-secret", "team-b/htpasswd")]).host_path("guarded.example.com", "/", "Prefix", "app", 80).to_json());
    // Our class, but another namespace: neither served nor requested.
    api.apply_yaml(&common::backend_yaml("team-b", "other", &[other.addr]));
    api.apply(Ingress::new("team-b", "other").class("vestibule").host_path("other.example.com", "/", "Prefix", "other", 80).to_json());

    let run = controller::start(options(&api, dir.path(), w)).await.unwrap();
    let start = Instant::now();
    while get(run.http, "app.example.com").await != (200, Some("app".into())) {
        assert!(start.elapsed() < Duration::from_secs(10), "app.example.com is not served: {:?}; refused: {:?}", get(run.http, "app.example.com").await, api.denied());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("the status of Ingress app", Duration::from_secs(10), || {
        api.get("Ingress", w, "app").is_some_and(|i| i["status"]["loadBalancer"]["ingress"] == json!([{"ip": "203.0.113.9"}]))
    })
    .await;
    let applied = run.applied().unwrap();
    assert!(applied.store.secrets.contains_key(&(w.to_string(), "app-tls".to_string())), "the TLS Secret of the watched namespace is read");
    assert!(applied.store.ingresses.keys().all(|(ns, _)| ns == w), "{:?}", applied.store.ingresses.keys().collect::<Vec<_>>());
    assert_eq!(get(run.http, "other.example.com").await.0, 404, "an Ingress of another namespace is not served");
    assert_eq!(get(run.http, "guarded.example.com").await.0, 503, "basic auth from another namespace's Secret fails closed");
    assert!(api.get("Ingress", "team-b", "other").unwrap()["status"]["loadBalancer"]["ingress"].is_null(), "the status of another namespace's Ingress is not written");
    assert_confined(&api, w);
    // What was asked for, by kind: the watches of the namespace, the cluster-scoped kinds, and
    // the leader's Lease and status writes.
    let reqs = api.requests();
    let asked = |m: &str, p: &str| reqs.iter().any(|r| r.method == m && r.path == p);
    assert!(asked("GET", &format!("/apis/networking.k8s.io/v1/namespaces/{w}/ingresses")));
    assert!(asked("GET", &format!("/api/v1/namespaces/{w}/secrets/app-tls")));
    assert!(asked("PUT", &format!("/apis/networking.k8s.io/v1/namespaces/{w}/ingresses/app/status")));
    assert!(reqs.iter().any(|r| r.path.starts_with(&format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"))));
    assert!(asked("GET", "/apis/networking.k8s.io/v1/ingressclasses"));

    // Shutting down (the last replica clears the addresses it wrote) stays inside too.
    run.shutdown().await;
    assert_confined(&api, w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_its_own_namespace_under_the_namespaced_rbac_asks_for_nothing_outside() {
    scenario(NS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_another_namespace_under_the_namespaced_rbac_asks_for_nothing_outside() {
    scenario("team-a").await;
}

/// The fake's RBAC refuses what the namespaced manifest does not grant: a controller watching
/// every namespace is refused its cluster-wide lists and serves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_watch_namespace_the_namespaced_rbac_refuses_the_cluster_wide_watches() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.authorize_with(&manifest(NS), NS, "vestibule");
    let app = common::echo("app").await;
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply_yaml(&common::backend_yaml(NS, "app", &[app.addr]));
    api.apply(Ingress::new(NS, "app").class("vestibule").host_path("app.example.com", "/", "Prefix", "app", 80).to_json());
    let mut o = options(&api, dir.path(), NS);
    o.watch_namespace = None;
    let run = controller::start(o).await.unwrap();
    wait_for("a refused list of every namespace's Ingresses", Duration::from_secs(10), || {
        api.denied().iter().any(|a| a.verb == "list" && a.resource == "ingresses" && a.namespace.is_none())
    })
    .await;
    assert_ne!(get(run.http, "app.example.com").await, (200, Some("app".into())), "nothing is served before every kind is listed");
    run.shutdown().await;
}

/// The cluster-wide manifest (deploy/static/vestibule.yaml) grants everything the controller
/// asks for when it watches every namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_wide_rbac_grants_what_the_controller_asks_for() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/static/vestibule.yaml")).unwrap();
    api.authorize_with(&text, NS, "vestibule");
    let app = common::echo("app").await;
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "vestibule-controller", "namespace": NS},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
    }));
    api.apply_yaml(&common::backend_yaml("default", "app", &[app.addr]));
    let (_, cert, key) = vestibule::tls::self_signed(&["app.example.com"]).unwrap();
    api.apply_yaml(&common::secret_yaml("default", "app-tls", &cert, &key));
    api.apply(Ingress::new("default", "app").class("vestibule").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false").tls(&["app.example.com"], "app-tls").host_path("app.example.com", "/", "Prefix", "app", 80).to_json());
    let mut o = options(&api, dir.path(), NS);
    o.watch_namespace = None;
    let run = controller::start(o).await.unwrap();
    wait_for("the status of Ingress default/app", Duration::from_secs(10), || api.get("Ingress", "default", "app").is_some_and(|i| !i["status"]["loadBalancer"]["ingress"].is_null())).await;
    assert_eq!(get(run.http, "app.example.com").await, (200, Some("app".into())));
    run.shutdown().await;
    assert_eq!(api.denied().iter().map(|a| a.to_string()).collect::<Vec<_>>(), Vec::<String>::new());
    assert!(api.requests().iter().any(|r| r.path == "/apis/networking.k8s.io/v1/ingresses"), "Ingresses are watched in every namespace");
}
