//! The data plane of the Gateway API filters, weighted splits and timeouts, through real
//! sockets: a configuration compiled from Ingress paths (so its backends and routes are real),
//! its routes then given the Gateway filters and splits, served by a real proxy to real echo
//! backends.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::recorder::{recorder, recorder_h2, wait_seen};
use common::*;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use vestibule::config::filter::{HeaderEdit, PathRewrite, Redirect, UrlRewrite};
use vestibule::config::{Backend, Config, Filter, ListenerProtocol, ListenerSpec, ProxySettings, Route, WeightedBackend};
use vestibule::proxy::{ProxyOptions, Shared};

pub struct Plane {
    pub shared: Arc<Shared>,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    base: Config,
    pub backends: HashMap<String, Arc<Backend>>,
}

/// Compiles `/NAME` Prefix paths on `gw.test` for each named backend and serves them.
pub async fn plane(services: &[(&str, SocketAddr)]) -> Plane {
    let mut docs: Vec<String> = services.iter().map(|(s, a)| backend_yaml("default", s, &[*a])).collect();
    let mut ing = Ingress::new("default", "gw");
    for (s, _) in services {
        ing = ing.host_path("gw.test", &format!("/{s}"), "Prefix", s, 80);
    }
    docs.push(ing.to_yaml());
    let mut config = vestibule::compile::compile(&store_of(&manifest(docs)), &compile_settings()).config;
    config.listeners = vec![ListenerSpec { name: "http".into(), addr: "127.0.0.1:0".parse().unwrap(), protocol: ListenerProtocol::Http, proxy_protocol: false }];
    let backends = config.exact["gw.test"].routes.iter().map(|r| (r.backend().service.clone(), r.backend().clone())).collect();
    let shared = Shared::new(config.clone(), ProxyOptions::default());
    assert!(shared.swap(config.clone()).is_empty());
    let addr = shared.listeners.local_addr("http").unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Plane { shared, addr, client, base: config, backends }
}

impl Plane {
    /// Serves the compiled configuration with the route of `/NAME` changed by `edit`.
    pub fn set(&self, name: &str, edit: impl FnOnce(&mut Route)) {
        let mut config = self.base.clone();
        let mut vh = (*config.exact["gw.test"]).clone();
        let route = vh.routes.iter_mut().find(|r| r.rule_path == format!("/{name}")).expect("route");
        edit(route);
        config.exact.insert("gw.test".into(), Arc::new(vh));
        assert!(self.shared.swap(config).is_empty());
    }

    pub fn backend(&self, name: &str) -> Arc<Backend> {
        self.backends[name].clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).header("host", "gw.test")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path).send().await.unwrap()
    }
}

pub fn filters(f: Vec<Filter>) -> Arc<[Filter]> {
    Arc::from(f)
}

fn edit(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> Arc<HeaderEdit> {
    let pairs = |l: &[(&str, &str)]| l.iter().map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap())).collect();
    Arc::new(HeaderEdit { set: pairs(set), add: pairs(add), remove: remove.iter().map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()).collect() })
}

async fn json(resp: reqwest::Response) -> Value {
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

fn with_proxy(route: &mut Route, f: impl FnOnce(&mut ProxySettings)) {
    let mut p = (*route.proxy).clone();
    f(&mut p);
    route.proxy = Arc::new(p);
}

#[tokio::test]
async fn header_modifiers_edit_the_request_and_every_answer() {
    let a = echo("a").await;
    let p = plane(&[("a", a.addr), ("down", "127.0.0.1:9".parse().unwrap())]).await;
    let (req_edit, resp_edit) = (edit(&[("x-header-set", "set-overwrites-values")], &[("x-header-add", "add-appends-values")], &["x-header-remove"]), edit(&[("x-resp-set", "1")], &[("x-resp-add", "b")], &["content-type"]));
    p.set("a", |r| r.filters = filters(vec![Filter::RequestHeaderEdit(req_edit.clone()), Filter::ResponseHeaderEdit(resp_edit.clone())]));
    let resp = p.get("/a").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-resp-set"], "1");
    assert_eq!(resp.headers()["x-resp-add"], "b");
    assert!(resp.headers().get("content-type").is_none(), "removed from the backend's answer");
    let resp = p.req(reqwest::Method::GET, "/a").header("X-Header-Set", "some-other-value").header("X-Header-Add", "add-val").header("X-Header-Remove", "gone").send().await.unwrap();
    let v = json(resp).await;
    assert_eq!(v["headers"]["x-header-set"], "set-overwrites-values");
    assert_eq!(v["headers"]["x-header-add"], "add-val,add-appends-values");
    assert!(v["headers"].get("x-header-remove").is_none(), "{v}");

    // Vestibule's own answers get the response edits too: a backend that cannot be reached.
    p.set("down", |r| r.filters = filters(vec![Filter::ResponseHeaderEdit(resp_edit.clone())]));
    let resp = p.get("/down").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-resp-set"], "1");
}

#[tokio::test]
async fn redirect_locations_follow_the_spec() {
    let a = echo("a").await;
    let p = plane(&[("a", a.addr)]).await;
    let port = p.addr.port();
    let r = |scheme: Option<&str>, hostname: Option<&str>, port: Option<u16>, path: Option<PathRewrite>, status: u16| Redirect { scheme: scheme.map(Into::into), hostname: hostname.map(Into::into), port, path, status };
    let prefix = |m: &str, to: &str| Some(PathRewrite::Prefix { matched: m.into(), replacement: to.into() });
    let cases = [
        (r(None, None, None, None, 302), "/a/b?q=1", 302, format!("http://gw.test:{port}/a/b?q=1")),
        (r(Some("https"), None, None, None, 301), "/a/b?q=1", 301, "https://gw.test/a/b?q=1".to_string()),
        (r(Some("https"), None, Some(8443), None, 302), "/a", 302, "https://gw.test:8443/a".to_string()),
        (r(Some("http"), None, None, None, 302), "/a", 302, "http://gw.test/a".to_string()),
        (r(None, None, Some(80), None, 302), "/a", 302, "http://gw.test/a".to_string()),
        (r(None, None, Some(443), None, 302), "/a", 302, "http://gw.test:443/a".to_string()),
        (r(None, Some("example.org"), None, None, 302), "/a", 302, format!("http://example.org:{port}/a")),
        (r(None, None, None, Some(PathRewrite::Full("/new".into())), 303), "/a/b?q=1", 303, format!("http://gw.test:{port}/new?q=1")),
        (r(None, None, None, prefix("/a", "/x"), 307), "/a/b/", 307, format!("http://gw.test:{port}/x/b/")),
        (r(Some("https"), Some("other.test"), None, prefix("/a", ""), 308), "/a", 308, "https://other.test/".to_string()),
    ];
    for (redirect, path, status, location) in cases {
        p.set("a", |route| route.filters = filters(vec![Filter::Redirect(Box::new(redirect.clone()))]));
        let resp = p.get(path).await;
        assert_eq!(resp.status().as_u16(), status, "{redirect:?}");
        assert_eq!(resp.headers()["location"], location.as_str(), "{redirect:?}");
    }
}

#[tokio::test]
async fn url_rewrite_sets_host_and_path() {
    let a = echo("a").await;
    let p = plane(&[("a", a.addr)]).await;
    let cases = [
        (PathRewrite::Prefix { matched: "/a".into(), replacement: "/one".into() }, "/a/two?x=1", "/one/two"),
        (PathRewrite::Prefix { matched: "/a".into(), replacement: "".into() }, "/a", "/"),
        (PathRewrite::Prefix { matched: "/a".into(), replacement: "".into() }, "/a/three/", "/three/"),
        (PathRewrite::Full("/full".into()), "/a/any/thing", "/full"),
    ];
    for (path, sent, want) in cases {
        let rw = UrlRewrite { hostname: Some(HeaderValue::from_static("rewritten.test")), path: Some(path.clone()) };
        p.set("a", |r| r.filters = filters(vec![Filter::UrlRewrite(Box::new(rw))]));
        let v = json(p.get(sent).await).await;
        assert_eq!(v["path"], want, "{path:?} {sent}");
        assert_eq!(v["host"], "rewritten.test");
        assert_eq!(v["headers"]["x-forwarded-host"], "gw.test");
        if sent.contains('?') {
            assert_eq!(v["query"], "x=1");
        }
    }
}

/// Which service answered each of `n` requests.
async fn spread(p: &Plane, path: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let resp = p.get(path).await;
        let key = if resp.status() == 200 { json(resp).await["service"].as_str().unwrap().to_string() } else { resp.status().as_str().to_string() };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_split_follows_the_weights() {
    let (a, b, z) = (echo("a").await, echo("b").await, echo("z").await);
    let p = plane(&[("a", a.addr), ("b", b.addr), ("z", z.addr)]).await;
    let split = vec![WeightedBackend::new(p.backend("a"), 70), WeightedBackend::new(p.backend("b"), 30), WeightedBackend::new(p.backend("z"), 0)];
    p.set("a", |r| r.backends = Arc::from(split));
    let counts = spread(&p, "/a", 1000).await;
    // 700 expected, standard deviation about 14.5: ±100 is about 7 of them.
    assert!((600..=800).contains(&counts["a"]), "{counts:?}");
    assert_eq!(counts["a"] + counts["b"], 1000, "{counts:?}");
    assert!(!counts.contains_key("z"), "weight 0 is never picked: {counts:?}");

    p.set("a", |r| r.backends = Arc::from(vec![WeightedBackend::new(p.backend("a"), 0), WeightedBackend::new(p.backend("b"), 0)]));
    assert_eq!(p.get("/a").await.status(), 500, "every weight 0");
}

#[tokio::test]
async fn unresolved_share_answers_500_and_backend_filters_apply() {
    let (a, b) = (echo("a").await, echo("b").await);
    let p = plane(&[("a", a.addr), ("b", b.addr)]).await;
    let missing = Arc::new(Backend::unresolved(p.backend("b").id, "default", "missing", "80", "Service default/missing not found".into()));
    p.set("a", |r| r.backends = Arc::from(vec![WeightedBackend::new(p.backend("a"), 1), WeightedBackend::new(missing.clone(), 1)]));
    let counts = spread(&p, "/a", 200).await;
    assert_eq!(counts["a"] + counts["500"], 200, "{counts:?}");
    assert!(counts["500"] > 50 && counts["a"] > 50, "{counts:?}");
    p.set("a", |r| r.backends = Arc::from(vec![WeightedBackend::new(missing.clone(), 1)]));
    assert_eq!(p.get("/a").await.status(), 500, "a rule whose only backendRef is missing");

    // Each backendRef's own filters run when it is picked.
    let own = |name: &str, backend: Arc<Backend>| WeightedBackend { backend, weight: 1, filters: filters(vec![Filter::RequestHeaderEdit(edit(&[("x-picked", name)], &[], &[])), Filter::ResponseHeaderEdit(edit(&[("x-answered", name)], &[], &[]))]) };
    p.set("a", |r| r.backends = Arc::from(vec![own("a", p.backend("a")), own("b", p.backend("b"))]));
    let mut seen = HashMap::new();
    for _ in 0..40 {
        let resp = p.get("/a").await;
        let answered = resp.headers()["x-answered"].to_str().unwrap().to_string();
        let v = json(resp).await;
        assert_eq!(v["service"], answered.as_str());
        assert_eq!(v["headers"]["x-picked"], answered.as_str());
        *seen.entry(answered).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn request_and_backend_request_timeouts_give_504() {
    let a = echo("a").await;
    let p = plane(&[("a", a.addr)]).await;
    p.set("a", |r| with_proxy(r, |s| s.request_timeout = Some(Duration::from_millis(300))));
    let t = Instant::now();
    assert_eq!(p.get("/a?delay_ms=3000").await.status(), 504);
    assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());
    assert_eq!(p.get("/a?delay_ms=10").await.status(), 200, "within the limit");

    p.set("a", |r| with_proxy(r, |s| s.try_timeout = Some(Duration::from_millis(300))));
    let t = Instant::now();
    assert_eq!(p.get("/a?delay_ms=3000").await.status(), 504);
    assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());
    assert_eq!(p.get("/a").await.status(), 200);
}

#[tokio::test]
async fn unusable_filters_answer_500() {
    let a = echo("a").await;
    let p = plane(&[("a", a.addr)]).await;
    p.set("a", |r| r.filters = filters(vestibule::compile::gateway::filters::unusable()));
    assert_eq!(p.get("/a/x").await.status(), 500);
}

#[tokio::test]
async fn mirror_gets_a_copy_and_never_slows_the_request() {
    let a = echo("a").await;
    // The mirror answers only after 2 s: the client must not wait for it.
    let (m_addr, seen, _task) = recorder(Duration::from_secs(2)).await;
    let p = plane(&[("a", a.addr), ("m", m_addr)]).await;
    let mirror = |n, d| Filter::Mirror(Arc::new(vestibule::config::filter::Mirror { backend: p.backend("m"), numerator: n, denominator: d }));
    let rw = UrlRewrite { hostname: None, path: Some(PathRewrite::Prefix { matched: "/a".into(), replacement: "/mirrored".into() }) };
    p.set("a", |r| r.filters = filters(vec![Filter::UrlRewrite(Box::new(rw)), mirror(1, 1)]));
    let t = Instant::now();
    let resp = p.get("/a/get").await;
    assert_eq!(json(resp).await["service"], "a");
    let resp = p.req(reqwest::Method::POST, "/a/post").body("hello mirror").send().await.unwrap();
    let v = json(resp).await;
    assert_eq!((v["service"].as_str(), v["body_bytes"].as_u64()), (Some("a"), Some(12)));
    assert!(t.elapsed() < Duration::from_millis(1500), "the mirror's slowness leaked: {:?}", t.elapsed());
    let got = wait_seen(&seen, 2).await;
    let mut got: Vec<_> = got.into_iter().map(|r| (r.method, r.path, r.host, String::from_utf8(r.body).unwrap())).collect();
    got.sort();
    assert_eq!(got, vec![("GET".into(), "/mirrored/get".into(), "gw.test".into(), String::new()), ("POST".into(), "/mirrored/post".into(), "gw.test".into(), "hello mirror".into())]);

    // A fraction of 0 never mirrors: 20 requests, then one on a route that always does.
    seen.lock().unwrap().clear();
    p.set("a", |r| r.filters = filters(vec![mirror(0, 100)]));
    for _ in 0..20 {
        assert_eq!(p.get("/a/never").await.status(), 200);
    }
    p.set("a", |r| r.filters = filters(vec![mirror(1, 1)]));
    assert_eq!(p.get("/a/always").await.status(), 200);
    let got = wait_seen(&seen, 1).await;
    assert_eq!(got.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/a/always"]);

    // A mirror that cannot be reached changes nothing for the client.
    let dead = Arc::new(Backend::new(0, "default", "dead", "80", vec!["127.0.0.1:9".parse().unwrap()], None));
    p.set("a", |r| r.filters = filters(vec![Filter::Mirror(Arc::new(vestibule::config::filter::Mirror { backend: dead, numerator: 1, denominator: 1 }))]));
    assert_eq!(p.get("/a").await.status(), 200);
}

#[tokio::test]
async fn gateway_cors_preflights_and_answers() {
    use vestibule::config::cors::{CorsOrigins, CorsPolicy};
    let a = echo("a").await;
    let p = plane(&[("a", a.addr)]).await;
    let origins = ["https://www.foo.com", "https://*.bar.com"].iter().map(|o| {
        let mut pat = vestibule::compile::annotations::cors::origin(o).unwrap();
        pat.multi_label = true;
        pat
    });
    let policy = CorsPolicy { origins: CorsOrigins::List(origins.collect()), allow_methods: "GET, OPTIONS".into(), allow_headers: "*".into(), expose_headers: "x-header-3, x-header-4".into(), allow_credentials: true, max_age: 3600, gateway: true };
    p.set("a", |r| r.filters = filters(vec![Filter::Cors(Box::new(policy))]));
    let preflight = |origin: &'static str| p.req(reqwest::Method::OPTIONS, "/a").header("origin", origin).header("access-control-request-method", "GET").header("access-control-request-headers", "x-header-1, x-header-2").send();
    let resp = preflight("https://xpto.www.bar.com").await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://xpto.www.bar.com");
    assert_eq!(h["access-control-allow-methods"], "GET, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "x-header-1, x-header-2", "* answers with what was asked");
    assert_eq!(h["access-control-expose-headers"], "x-header-3, x-header-4");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let resp = preflight("https://foobar.com").await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = p.req(reqwest::Method::GET, "/a").header("origin", "https://www.foo.com").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://www.foo.com");
    assert_eq!(resp.headers()["vary"], "Origin");
    assert!(resp.headers().get("access-control-max-age").is_none(), "preflight only");
    assert_eq!(json(resp).await["service"], "a");
}

#[tokio::test]
async fn grpc_requests_get_header_edits_and_mirrors() {
    use vestibule::config::BackendProtocol;
    let (main_addr, main_seen, _t1) = recorder_h2(Duration::ZERO).await;
    let (mirror_addr, mirror_seen, _t2) = recorder_h2(Duration::ZERO).await;
    let p = plane(&[("svc", main_addr), ("mirror", mirror_addr)]).await;
    let grpc = |b: Arc<Backend>| {
        let mut g = Backend::new(b.id, &b.namespace, &b.service, &b.port, b.endpoints.clone(), None);
        g.protocol = BackendProtocol::Grpc;
        Arc::new(g)
    };
    let (main, mirror) = (grpc(p.backend("svc")), grpc(p.backend("mirror")));
    p.set("svc", |r| {
        r.backends = Arc::from(vec![WeightedBackend::new(main, 1)]);
        r.filters = filters(vec![
            Filter::RequestHeaderEdit(edit(&[("x-set", "1")], &[("x-add", "b")], &["x-drop"])),
            Filter::ResponseHeaderEdit(edit(&[("x-answered", "yes")], &[], &[])),
            Filter::Mirror(Arc::new(vestibule::config::filter::Mirror { backend: mirror, numerator: 1, denominator: 1 })),
        ]);
    });
    let client = reqwest::Client::builder().http2_prior_knowledge().resolve("gw.test", p.addr).build().unwrap();
    // A unary gRPC call's framing: no compression, a 5-byte message.
    let frame = b"\0\0\0\0\x05hello".to_vec();
    let resp = client.post(format!("http://gw.test:{}/svc/Echo", p.addr.port())).header("content-type", "application/grpc").header("te", "trailers")
        .header("x-add", "a").header("x-drop", "1").body(frame.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-answered"], "yes");
    let main = wait_seen(&main_seen, 1).await;
    assert_eq!(main.len(), 1);
    assert_eq!((main[0].headers["x-set"].to_str().unwrap(), main[0].headers["x-add"].to_str().unwrap()), ("1", "a,b"));
    assert!(main[0].headers.get("x-drop").is_none());
    assert_eq!(main[0].body, frame);
    let copy = wait_seen(&mirror_seen, 1).await;
    assert_eq!(copy.len(), 1, "the mirror got the call");
    assert_eq!((copy[0].path.as_str(), copy[0].body.as_slice(), copy[0].headers["x-set"].to_str().unwrap()), ("/svc/Echo", frame.as_slice(), "1"));
}
