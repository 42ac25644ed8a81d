//! The controller ConfigMap's forwarded-header, request-ID and server-tokens keys, as
//! ingress-nginx applies them, through real sockets on 127.0.0.1: what the backend receives and
//! what the client gets back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const CM: (&str, &str) = ("ingress", "vestibule");

fn manifests(web: &Echo, data: &[(&str, &str)]) -> String {
    let mut cm = ConfigMap::new(CM.0, CM.1);
    for (k, v) in data {
        cm = cm.data(k, v);
    }
    manifest([backend_yaml("default", "web", &[web.addr]), catch_all("web").to_yaml(), cm.to_yaml()])
}

async fn start_cm(web: &Echo, data: &[(&str, &str)]) -> Harness {
    init_tracing();
    start_with(&manifests(web, data), |o| o.configmap = Some((CM.0.into(), CM.1.into()))).await
}

/// The client of ingress-nginx's forwarded-headers e2e test: every X-Forwarded-* set.
async fn forged(h: &Harness, extra: &[(&str, &str)]) -> (reqwest::header::HeaderMap, Value) {
    let mut req = h
        .client
        .get(h.http("/orig?x=1"))
        .header("host", "forwarded-headers")
        .header("x-forwarded-port", "1234")
        .header("x-forwarded-proto", "myproto")
        .header("x-forwarded-scheme", "myproto")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-forwarded-host", "myhost");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request succeeds");
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (headers, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_client_forwarded_headers_are_replaced_not_trusted() {
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    let (resp, j) = forged(&h, &[("proxy", "http://evil.example:3128")]).await;
    let hd = &j["headers"];
    assert_eq!(j["host"], "forwarded-headers", "{j:#}");
    assert_eq!(hd["x-forwarded-host"], "forwarded-headers", "{j:#}");
    assert_eq!(hd["x-forwarded-port"], h.running.http.port().to_string(), "{j:#}");
    assert_eq!(hd["x-forwarded-proto"], "http", "{j:#}");
    assert_eq!(hd["x-forwarded-scheme"], "http", "{j:#}");
    assert_eq!(hd["x-scheme"], "http", "{j:#}");
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "the client address alone: {j:#}");
    assert_eq!(hd["x-real-ip"], "127.0.0.1", "{j:#}");
    assert_eq!(hd["x-original-forwarded-for"], "1.2.3.4", "{j:#}");
    assert_eq!(hd["x-original-forwarded-host"], "myhost", "{j:#}");
    assert!(hd.get("proxy").is_none(), "httpoxy: the Proxy header is removed: {j:#}");
    assert!(hd.get("x-original-uri").is_none(), "proxy-add-original-uri-header is off: {j:#}");
    let id = hd["x-request-id"].as_str().expect("a generated request id");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(resp.get("server").is_none(), "server-tokens off: no Server header: {resp:?}");

    // No client X-Forwarded-For: no X-Original-Forwarded-For either, even a forged one.
    let resp = h.client.get(h.http("/")).header("host", "a.test").header("x-original-forwarded-for", "6.6.6.6").send().await.unwrap();
    let j: Value = resp.json().await.unwrap();
    assert!(j["headers"].get("x-original-forwarded-for").is_none(), "{j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_forwarded_headers_trusts_the_client() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("use-forwarded-headers", "true")]).await;
    let (_, j) = forged(&h, &[]).await;
    let hd = &j["headers"];
    assert_eq!(j["host"], "myhost", "Host upstream is the forwarded host: {j:#}");
    assert_eq!(hd["x-forwarded-host"], "myhost", "{j:#}");
    assert_eq!(hd["x-forwarded-proto"], "myproto", "{j:#}");
    assert_eq!(hd["x-forwarded-scheme"], "myproto", "{j:#}");
    assert_eq!(hd["x-forwarded-port"], "1234", "{j:#}");
    assert_eq!(hd["x-forwarded-for"], "1.2.3.4", "{j:#}");
    assert_eq!(hd["x-real-ip"], "1.2.3.4", "{j:#}");

    // The first element of a list of forwarded hosts; the leftmost forwarded-for address.
    let (_, j) = forged(&h, &[("x-forwarded-host", "myhost.com, another.host,example.net"), ("x-forwarded-for", "10.0.0.9, 10.0.0.1")]).await;
    assert_eq!(j["host"], "myhost", "a repeated header: the first value first: {j:#}");
    let resp = h.client.get(h.http("/")).header("host", "a.test").header("x-forwarded-host", "myhost.com, another.host,example.net").header("x-forwarded-for", "10.0.0.9, 10.0.0.1").send().await.unwrap();
    let j: Value = resp.json().await.unwrap();
    assert_eq!(j["host"], "myhost.com", "{j:#}");
    assert_eq!(j["headers"]["x-real-ip"], "10.0.0.9", "{j:#}");
    assert_eq!(j["headers"]["x-forwarded-for"], "10.0.0.9", "{j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_full_forwarded_for_appends_the_peer() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("use-forwarded-headers", "true"), ("compute-full-forwarded-for", "true")]).await;
    let (_, j) = forged(&h, &[]).await;
    assert_eq!(j["headers"]["x-forwarded-for"], "1.2.3.4, 127.0.0.1", "{j:#}");
    assert_eq!(j["headers"]["x-real-ip"], "1.2.3.4", "{j:#}");
    let j: Value = h.get("a.test", "/").await.json().await.unwrap();
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.1", "just the peer without a client list: {j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_real_ip_trusts_the_address_only() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("enable-real-ip", "true")]).await;
    let (_, j) = forged(&h, &[]).await;
    let hd = &j["headers"];
    assert_eq!(hd["x-forwarded-for"], "1.2.3.4", "{j:#}");
    assert_eq!(hd["x-real-ip"], "1.2.3.4", "{j:#}");
    assert_eq!(j["host"], "forwarded-headers", "{j:#}");
    assert_eq!(hd["x-forwarded-host"], "forwarded-headers", "{j:#}");
    assert_eq!(hd["x-forwarded-proto"], "http", "{j:#}");
    assert_eq!(hd["x-forwarded-port"], h.running.http.port().to_string(), "{j:#}");

    // forwarded-for-header names another header.
    let h2 = start_cm(&web, &[("enable-real-ip", "true"), ("forwarded-for-header", "CF-Connecting-IP")]).await;
    let (_, j) = forged(&h2, &[("cf-connecting-ip", "192.0.2.44")]).await;
    assert_eq!(j["headers"]["x-real-ip"], "192.0.2.44", "{j:#}");
    assert_eq!(j["headers"]["x-forwarded-for"], "192.0.2.44", "{j:#}");
    assert_eq!(j["headers"]["x-original-forwarded-for"], "192.0.2.44", "the raw forwarded-for-header: {j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_original_uri_and_server_tokens() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("generate-request-id", "false"), ("proxy-add-original-uri-header", "true"), ("server-tokens", "true"), ("proxy-body-size", "10")]).await;
    let (resp, j) = forged(&h, &[]).await;
    assert!(j["headers"].get("x-request-id").is_none(), "generate-request-id off and none sent: {j:#}");
    assert_eq!(j["headers"]["x-original-uri"], "/orig?x=1", "{j:#}");
    assert_eq!(resp.get("server").map(|v| v.to_str().unwrap()), Some("vestibule"), "server-tokens on");
    let (_, j) = forged(&h, &[("x-request-id", "client-chosen-7")]).await;
    assert_eq!(j["headers"]["x-request-id"], "client-chosen-7", "{j:#}");
    // Vestibule's own answers carry it too (413: over proxy-body-size).
    let resp = h.client.post(h.http("/")).header("host", "a.test").body(vec![b'x'; 100]).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers().get("server").map(|v| v.to_str().unwrap()), Some("vestibule"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tokens_changes_live() {
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    assert!(h.get("a.test", "/").await.headers().get("server").is_none());
    h.write("manifests.yaml", &manifests(&web, &[("server-tokens", "true")]));
    let start = Instant::now();
    loop {
        if h.get("a.test", "/").await.headers().get("server").is_some_and(|v| v == "vestibule") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "server-tokens: true not live within 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A writer the access log fills, read by the test.
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trusted_client_address_is_what_the_access_log_and_hashing_use() {
    init_tracing();
    let pods = [echo("h0").await, echo("h1").await, echo("h2").await];
    let addrs: Vec<std::net::SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let cm = ConfigMap::new(CM.0, CM.1).data("use-forwarded-headers", "true");
    let ing = Ingress::new("default", "hashed").annotation("nginx.ingress.kubernetes.io/upstream-hash-by", "$remote_addr").host_path("hash.test", "/", "Prefix", "web", 80);
    // One slice per endpoint: a slice has one port for all its addresses.
    let mut docs = vec![service_yaml("default", "web"), ing.to_yaml(), cm.to_yaml()];
    for a in &addrs {
        docs.push(EndpointSlice::new("default", &format!("web-{}", a.port()), "web").port("http", a.port()).endpoint(Endpoint::at(a.ip())).to_yaml());
    }
    let m = manifest(docs);
    let sink = Sink::default();
    let w = sink.clone();
    let h = start_with(&m, move |o| {
        o.configmap = Some((CM.0.into(), CM.1.into()));
        o.access_log = vestibule::serve::AccessLogTarget::Writer(vestibule::accesslog::Format::Json, std::sync::Mutex::new(Some(Box::new(w))));
    })
    .await;
    let via = |ip: String| {
        let h = &h;
        async move {
            let resp = h.client.get(h.http("/")).header("host", "hash.test").header("x-forwarded-for", ip.as_str()).send().await.unwrap();
            let j: Value = resp.json().await.unwrap();
            assert_eq!(j["headers"]["x-real-ip"], ip.as_str(), "{j:#}");
            j["service"].as_str().unwrap().to_string()
        }
    };
    let mut owner = std::collections::BTreeMap::new();
    for i in 1..=16 {
        let ip = format!("198.51.100.{i}");
        let first = via(ip.clone()).await;
        assert_eq!(via(ip.clone()).await, first, "{ip} sticks to one endpoint");
        owner.insert(ip, first);
    }
    let used: std::collections::BTreeSet<&String> = owner.values().collect();
    assert!(used.len() > 1, "forwarded client addresses, not the one TCP peer, are hashed: {owner:?}");
    // The access log names the forwarded client, not 127.0.0.1.
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if lines.len() >= 32 {
            assert!(lines.iter().all(|l| l["remote_addr"].as_str().is_some_and(|a| a.starts_with("198.51.100."))), "{text}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "32 access log lines expected:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
