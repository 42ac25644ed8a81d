//! Cookie session affinity through real sockets: the Set-Cookie attributes and their order
//! (name, Path defaults, Expires/Max-Age, Domain, Secure over HTTP and HTTPS, SameSite,
//! HttpOnly), when a cookie is issued, stickiness across a configuration swap and (persistent
//! mode) an endpoint addition, change-on-failure, and canary + affinity (sticky vs legacy).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::*;
use vestibule::config::affinity::{backend_key, endpoint_key};

const A: &str = "nginx.ingress.kubernetes.io/";
const WAIT: Duration = Duration::from_secs(5);

fn ing(name: &str, ann: &[(&str, &str)]) -> Ingress {
    let full: Vec<(String, String)> = ann.iter().map(|(k, v)| (format!("{A}{k}"), v.to_string())).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ingress::new("default", name).created("2020-01-01T00:00:00Z").annotations(&refs)
}

/// An echo backend of one service reporting its pod name; stops when dropped.
struct Pod {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pod(service: &str, pod: &str) -> Pod {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let identity = vestibule::echo::Identity { service: service.into(), namespace: "default".into(), pod: pod.into() };
    let task = vestibule::echo::spawn(l, vestibule::echo::EchoOptions { identity, tls: false });
    Pod { addr, task }
}

/// A Service and one EndpointSlice per endpoint (each with its own port).
fn service(svc: &str, endpoints: &[SocketAddr]) -> Vec<String> {
    let mut docs = vec![service_yaml("default", svc)];
    for a in endpoints {
        docs.push(EndpointSlice::new("default", &format!("{svc}-{}", a.port()), svc).port("http", a.port()).endpoint(Endpoint::at(a.ip())).to_yaml());
    }
    docs
}

/// An address nothing listens on.
async fn dead() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    pod: String,
    service: String,
    cookies: Vec<String>,
}

impl Answer {
    /// `NAME=VALUE` of the first Set-Cookie.
    fn pair(&self) -> String {
        self.cookies[0].split(';').next().unwrap().to_string()
    }
}

async fn send(req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Answer {
    let mut req = req;
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let cookies = resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    Answer { status, pod: body["pod"].as_str().unwrap_or("").into(), service: body["service"].as_str().unwrap_or("").into(), cookies }
}

async fn get(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let req = h.client.get(h.http(path));
    send(if host.is_empty() { req } else { req.header("host", host) }, headers).await
}

/// `Wdy, DD-Mon-YY HH:MM` of `t`, from httpdate's `Wdy, DD Mon YYYY HH:MM:SS GMT`.
fn cookie_minute(t: SystemTime) -> String {
    let s = httpdate::fmt_http_date(t);
    let p: Vec<&str> = s.split(' ').collect();
    format!("{} {}-{}-{} {}", p[0], p[1], p[2], &p[3][2..], &p[4][..5])
}

#[tokio::test]
async fn cookie_attributes() {
    let web = pod("web", "web-1").await;
    let mut docs = service("web", &[web.addr]);
    let aff = |name: &str, more: &[(&str, &str)]| {
        let mut a = vec![("affinity", "cookie")];
        a.extend_from_slice(more);
        ing(name, &a)
    };
    docs.push(aff("name", &[("session-cookie-name", "SERVERID")]).host_path("name.com", "/", "Prefix", "web", 80).to_yaml());
    docs.push(aff("paths", &[]).host_path("path.com", "/something", "Prefix", "web", 80).host_path("path.com", "/somewhereelse", "Prefix", "web", 80).to_yaml());
    docs.push(aff("expires", &[("session-cookie-expires", "172800"), ("session-cookie-max-age", "259200")]).host_path("expires.com", "/", "Prefix", "web", 80).to_yaml());
    docs.push(aff("domain", &[("session-cookie-domain", "foo.bar"), ("session-cookie-path", "/p")]).host_path("domain.com", "/", "Prefix", "web", 80).to_yaml());
    docs.push(aff("foobar", &[]).host_path("mixed.com", "/foo/bar", "Prefix", "web", 80).to_yaml());
    docs.push(ing("foo", &[]).host_path("mixed.com", "/foo", "Prefix", "web", 80).to_yaml());
    docs.push(aff("hostless", &[]).path("/hostless", "Prefix", "web", 80).to_yaml());
    docs.push(aff("secure", &[("session-cookie-secure", "true"), ("session-cookie-samesite", "Strict")]).host_path("secure.com", "/", "Prefix", "web", 80).to_yaml());
    docs.push(aff("insecure", &[("session-cookie-secure", "false"), ("session-cookie-samesite", "strict")]).host_path("insecure.com", "/", "Prefix", "web", 80).to_yaml());
    docs.push(aff("samesite", &[("session-cookie-samesite", "None"), ("session-cookie-conditional-samesite-none", "true")]).host_path("samesite.com", "/", "Prefix", "web", 80).to_yaml());
    let h = start(&manifest(docs)).await;

    let bkey = backend_key("default-web-80");
    let a = get(&h, "name.com", "/", &[]).await;
    assert_eq!(a.cookies.len(), 1, "{a:?}");
    let re = regex::Regex::new(&format!("^SERVERID=[0-9a-f]{{16}}\\|{bkey}; Path=/; HttpOnly$")).unwrap();
    assert!(re.is_match(&a.cookies[0]), "{:?}", a.cookies);
    let again = get(&h, "name.com", "/", &[("cookie", &a.pair())]).await;
    assert!(again.cookies.is_empty() && again.status == 200, "a valid cookie gets no new one: {again:?}");

    assert!(get(&h, "path.com", "/something", &[]).await.cookies[0].contains("; Path=/something;"));
    assert!(get(&h, "path.com", "/somewhereelse/x", &[]).await.cookies[0].contains("; Path=/somewhereelse;"));

    let before = SystemTime::now() + Duration::from_secs(172800);
    let c = get(&h, "expires.com", "/", &[]).await.cookies.remove(0);
    let after = SystemTime::now() + Duration::from_secs(172800);
    let (e1, e2) = (cookie_minute(before), cookie_minute(after));
    assert!(c.contains(&format!("; Expires={e1}")) || c.contains(&format!("; Expires={e2}")), "{c} vs {e1}");
    assert!(c.contains(" GMT; Max-Age=259200; Path=/; HttpOnly"), "{c}");

    let c = get(&h, "domain.com", "/", &[]).await.cookies.remove(0);
    assert!(c.ends_with("; Domain=foo.bar; Path=/p; HttpOnly"), "{c}");
    assert!(!get(&h, "name.com", "/", &[]).await.cookies[0].contains("; Domain"));

    assert!(get(&h, "mixed.com", "/foo", &[]).await.cookies.is_empty(), "the Ingress without affinity sets no cookie");
    assert!(get(&h, "mixed.com", "/foo/bar", &[]).await.cookies[0].contains("; Path=/foo/bar;"));
    assert!(get(&h, "", "/hostless", &[]).await.cookies[0].contains("; Path=/hostless;"));

    assert!(get(&h, "secure.com", "/", &[]).await.cookies[0].ends_with("; Path=/; Secure; HttpOnly; SameSite=Strict"));
    assert!(get(&h, "insecure.com", "/", &[]).await.cookies[0].ends_with("; Path=/; HttpOnly"), "secure false over HTTP; SameSite in the wrong case is dropped");
    let modern = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    let old = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/59.0 Safari/537.36";
    assert!(get(&h, "samesite.com", "/", &[("user-agent", modern)]).await.cookies[0].ends_with("; HttpOnly; SameSite=None"));
    assert!(get(&h, "samesite.com", "/", &[("user-agent", old)]).await.cookies[0].ends_with("; HttpOnly"));
}

#[tokio::test]
async fn secure_over_https_even_when_false() {
    vestibule::tls::install_provider();
    let web = pod("web", "web-1").await;
    let cert = vestibule::tls::issue_with_ca(&["a.example.com"]).unwrap();
    let mut docs = service("web", &[web.addr]);
    docs.push(secret_yaml("default", "a-tls", &cert.cert_pem, &cert.key_pem));
    docs.push(ing("tls", &[("affinity", "cookie"), ("session-cookie-secure", "false")]).tls(&["a.example.com"], "a-tls").host_path("a.example.com", "/", "Prefix", "web", 80).to_yaml());
    let h = start(&manifest(docs)).await;
    let client = h.https_client(&["a.example.com"], &cert.ca_pem);
    let mut a = send(client.get(h.https("a.example.com", "/")), &[]).await;
    for _ in 0..100 {
        if a.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        a = send(client.get(h.https("a.example.com", "/")), &[]).await;
    }
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.cookies[0].ends_with("; Path=/; Secure; HttpOnly"), "{:?}", a.cookies);
}

/// Waits until a request without cookie reaches one of `pods`' count of distinct pods.
async fn distinct_pods(h: &Harness, host: &str, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(get(h, host, "/", &[]).await.pod);
    }
    seen
}

async fn stays(h: &Harness, host: &str, cookie: &str, want: &str) {
    for i in 0..20 {
        let a = get(h, host, "/", &[("cookie", cookie)]).await;
        assert_eq!((a.status, a.pod.as_str(), a.cookies.len()), (200, want, 0), "request {i}: {a:?}");
    }
}

#[tokio::test]
async fn sticky_across_a_swap_and_in_persistent_mode_across_added_endpoints() {
    let mut pods: Vec<Pod> = Vec::new();
    for i in 1..=5 {
        pods.push(pod("web", &format!("web-{i}")).await);
    }
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let docs = |n: usize, extra: bool| {
        let mut d = service("web", &addrs[..n]);
        d.push(ing("p", &[("affinity", "cookie"), ("affinity-mode", "persistent")]).host_path("p.com", "/", "Prefix", "web", 80).to_yaml());
        d.push(ing("b", &[("affinity", "cookie")]).host_path("b.com", "/", "Prefix", "web", 80).to_yaml());
        if extra {
            d.push(ing("unrelated", &[]).host_path("x.com", "/", "Prefix", "web", 80).to_yaml());
        }
        manifest(d)
    };
    let h = start(&docs(3, false)).await;
    assert_eq!(distinct_pods(&h, "p.com", 12).await.len(), 3, "without a cookie requests spread");
    let (p, b) = (get(&h, "p.com", "/", &[]).await, get(&h, "b.com", "/", &[]).await);
    stays(&h, "p.com", &p.pair(), &p.pod).await;
    stays(&h, "b.com", &b.pair(), &b.pod).await;

    // A swap that changes nothing for these routes.
    h.write("manifests.yaml", &docs(3, true));
    h.wait_route("x.com", "/", (200, Some("web")), WAIT).await;
    stays(&h, "p.com", &p.pair(), &p.pod).await;
    stays(&h, "b.com", &b.pair(), &b.pod).await;

    // Two endpoints more: persistent cookies keep their endpoint.
    h.write("manifests.yaml", &docs(5, true));
    let start = std::time::Instant::now();
    while distinct_pods(&h, "p.com", 10).await.len() < 5 {
        assert!(start.elapsed() < WAIT, "the new endpoints never took traffic");
    }
    stays(&h, "p.com", &p.pair(), &p.pod).await;

    // An endpoint that is gone: a new pick, a new cookie.
    let gone = p.pod.clone();
    let keep: Vec<SocketAddr> = pods.iter().zip(1..).filter(|(_, i)| format!("web-{i}") != gone).map(|(e, _)| e.addr).collect();
    let mut d = service("web", &keep);
    d.push(ing("p", &[("affinity", "cookie"), ("affinity-mode", "persistent")]).host_path("p.com", "/", "Prefix", "web", 80).to_yaml());
    h.write("manifests.yaml", &manifest(d));
    let start = std::time::Instant::now();
    loop {
        let a = get(&h, "p.com", "/", &[("cookie", &p.pair())]).await;
        if a.pod != gone {
            assert_eq!(a.cookies.len(), 1, "a new endpoint, a new cookie: {a:?}");
            stays(&h, "p.com", &a.pair(), &a.pod).await;
            break;
        }
        assert!(start.elapsed() < WAIT, "still sent to the removed endpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn change_on_failure() {
    let live = pod("web", "alive").await;
    let (dead1, dead2) = (dead().await, dead().await);
    let mut docs = service("keep", &[dead1, live.addr]);
    docs.extend(service("change", &[dead2, live.addr]));
    let persistent = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    docs.push(ing("keep", &persistent).host_path("keep.com", "/", "Prefix", "keep", 80).to_yaml());
    let mut cof = persistent.to_vec();
    cof.push(("session-cookie-change-on-failure", "true"));
    docs.push(ing("change", &cof).host_path("change.com", "/", "Prefix", "change", 80).to_yaml());
    let h = start(&manifest(docs)).await;
    let pinned = |svc: &str, addr: SocketAddr| format!("INGRESSCOOKIE={:016x}|{}", endpoint_key(&format!("default-{svc}-80"), addr), backend_key(&format!("default-{svc}-80")));

    // Default: the cookie's endpoint is kept even when it fails.
    let a = get(&h, "keep.com", "/", &[("cookie", &pinned("keep", dead1))]).await;
    assert_eq!((a.status, a.cookies.len()), (502, 0), "{a:?}");
    // change-on-failure: the next try is a new pick, with a new cookie naming it.
    let a = get(&h, "change.com", "/", &[("cookie", &pinned("change", dead2))]).await;
    assert_eq!((a.status, a.pod.as_str(), a.cookies.len()), (200, "alive", 1), "{a:?}");
    assert_eq!(a.pair(), pinned("change", live.addr));
}

#[tokio::test]
async fn canary_with_affinity_sticky_and_legacy() {
    let (main, canary) = (pod("main", "main-1").await, pod("canary", "canary-1").await);
    let mut docs = service("main", &[main.addr]);
    docs.extend(service("canary", &[canary.addr]));
    for (host, behavior, weight) in [("sticky.com", "sticky", "1"), ("default.com", "", "1"), ("legacy.com", "legacy", "50")] {
        docs.push(ing(&format!("{host}-main"), &[("affinity", "cookie"), ("session-cookie-name", "aff")]).host_path(host, "/", "Prefix", "main", 80).to_yaml());
        let mut c = vec![("canary", "true"), ("canary-by-header", "ForceCanary"), ("canary-by-header-value", "yes"), ("canary-weight", weight)];
        if !behavior.is_empty() {
            c.push(("affinity-canary-behavior", behavior));
        }
        docs.push(ing(&format!("{host}-canary"), &c).host_path(host, "/", "Prefix", "canary", 80).to_yaml());
    }
    let h = start(&manifest(docs)).await;
    for host in ["sticky.com", "default.com"] {
        let forced = get(&h, host, "/", &[("ForceCanary", "yes")]).await;
        assert_eq!(forced.service, "canary");
        assert!(forced.cookies.len() == 1 && forced.cookies[0].starts_with("aff="), "{forced:?}");
        for i in 0..50 {
            let a = get(&h, host, "/", &[("cookie", &forced.pair())]).await;
            assert_eq!(a.service, "canary", "{host} request {i}");
        }
        let m = get(&h, host, "/", &[("ForceCanary", "no")]).await;
        assert_eq!(m.service, "main");
        // The mainline's cookie keeps the mainline even when the header asks for the canary.
        assert_eq!(get(&h, host, "/", &[("ForceCanary", "yes"), ("cookie", &m.pair())]).await.service, "main");
    }
    let forced = get(&h, "legacy.com", "/", &[("ForceCanary", "yes")]).await;
    assert_eq!(forced.service, "canary");
    assert!(forced.cookies.is_empty(), "legacy: the canary has no affinity: {forced:?}");
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        seen.insert(get(&h, "legacy.com", "/", &[]).await.service);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}
