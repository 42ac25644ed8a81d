//! Load balancing through real sockets, with several backends told apart by their pod name:
//! round-robin, consistent hashing, least-request (peak EWMA), passive health checking, retries
//! only where safe, and endpoint changes under load without a failed request.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use vestibule::proxy::balance::EJECT_AFTER;

const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Backends

/// An echo backend (the product's own) reporting `pod` as its pod name.
struct EchoPod {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoPod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_pod(service: &str, pod: &str) -> EchoPod {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let identity = vestibule::echo::Identity { service: service.into(), namespace: "default".into(), pod: pod.into() };
    let task = vestibule::echo::spawn(l, vestibule::echo::EchoOptions { identity, tls: false });
    EchoPod { addr, task }
}

/// A backend that answers `{"pod": NAME, ...}` after `delay` (plus `delay_ms` from the query),
/// records every request it gets, and stops like a terminating pod: it closes its listener,
/// lets the requests in flight finish, and closes idle keep-alive connections.
struct Pod {
    name: String,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Pod {
    async fn start(name: &str, delay: Duration) -> Pod {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, _) = tokio::sync::watch::channel(false);
        let (pod, seen2, stop2) = (name.to_string(), seen.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut stopped = stop2.subscribe();
            loop {
                let (s, _) = tokio::select! {
                    r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = stopped.changed() => break,
                };
                let (pod, seen, mut stopped) = (pod.clone(), seen2.clone(), stop2.subscribe());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (pod, seen) = (pod.clone(), seen.clone());
                        async move {
                            let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
                            seen.lock().unwrap().push((req.method().to_string(), pq.clone()));
                            let extra = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms="))).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                            let body = req.into_body().collect().await.map(|c| c.to_bytes().len()).unwrap_or(0);
                            tokio::time::sleep(delay + Duration::from_millis(extra)).await;
                            let json = serde_json::json!({ "pod": pod, "path": pq, "body_bytes": body }).to_string();
                            let mut resp = http::Response::new(http_body_util::Full::new(Bytes::from(json)));
                            resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(s), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = async { let _ = stopped.wait_for(|s| *s).await; } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        });
        Pod { name: name.to_string(), addr, seen, stop, task }
    }

    /// Terminates like a pod: no new connections; what is in flight finishes.
    fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn saw(&self, path: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|(_, p)| p == path)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.task.abort();
    }
}

/// A backend that accepts a connection, reads one whole request, records its request line,
/// and closes the connection without answering.
struct BlackHole {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn black_hole() -> BlackHole {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock().unwrap().push(head.lines().next().unwrap_or("").to_string());
                // Close without a word.
            });
        }
    });
    BlackHole { addr, seen, task }
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// A Service, one EndpointSlice per endpoint (address, ready; each has its own port) and an
/// Ingress for `host`.
fn app(svc: &str, host: &str, endpoints: &[(SocketAddr, bool)], annotations: &[(&str, &str)]) -> String {
    let mut docs = vec![service_yaml("default", svc)];
    for (a, ready) in endpoints {
        let slice = EndpointSlice::new("default", &format!("{svc}-{}", a.port()), svc).port("http", a.port()).endpoint(Endpoint::at(a.ip()).ready(*ready));
        docs.push(slice.to_yaml());
    }
    docs.push(Ingress::new("default", svc).annotations(annotations).host_path(host, "/", "Prefix", svc, 80).to_yaml());
    format!("{}---\n", manifest(docs))
}

fn ready(addrs: &[SocketAddr]) -> Vec<(SocketAddr, bool)> {
    addrs.iter().map(|a| (*a, true)).collect()
}

// ---------------------------------------------------------------------------------------------
// Clients and observation

/// GET `path` on `host`; the status and the answering pod.
async fn pod_of(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut req = h.client.get(h.http(path)).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let pod = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["pod"].as_str().map(str::to_string));
    (status, pod)
}

async fn pod_200(h: &Harness, host: &str, path: &str) -> String {
    let (s, pod) = pod_of(h, host, path, &[]).await;
    assert_eq!(s, 200, "{host}{path}");
    pod.expect("an answer from a pod")
}

/// The endpoints the live configuration sends `host` to.
fn live_endpoints(h: &Harness, host: &str) -> BTreeSet<SocketAddr> {
    let config = h.running.shared.config();
    config.route_path(host, "/").backend().map(|b| b.endpoints.iter().copied().collect()).unwrap_or_default()
}

/// Waits (bounded) until the live configuration sends `host` to exactly `want`.
async fn wait_endpoints(h: &Harness, host: &str, want: &[SocketAddr]) {
    let want: BTreeSet<SocketAddr> = want.iter().copied().collect();
    let start = Instant::now();
    loop {
        let now = live_endpoints(h, host);
        if now == want {
            return;
        }
        assert!(start.elapsed() < WAIT, "{host}: endpoints still {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sum of the samples of `name` on the health port's /metrics.
async fn metric(h: &Harness, name: &str) -> f64 {
    let text = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// 1. Round-robin

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_and_keeps_rotating_across_a_config_swap() {
    init_tracing();
    let pods = [echo_pod("rr", "rr-0").await, echo_pod("rr", "rr-1").await, echo_pod("rr", "rr-2").await];
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let marker = echo_pod("marker", "marker-0").await;
    let m = app("rr", "rr.test", &ready(&addrs), &[]);
    let h = start(&m).await;

    let mut seq = Vec::new();
    for _ in 0..30 {
        seq.push(pod_200(&h, "rr.test", "/").await);
    }
    let mut counts = BTreeMap::<String, usize>::new();
    for p in &seq {
        *counts.entry(p.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "every endpoint is used: {counts:?}");
    assert!(counts.values().all(|c| *c == 10), "30 requests over 3 endpoints: 10 each, got {counts:?}");
    for i in 3..seq.len() {
        assert_eq!(seq[i], seq[i - 3], "a strict rotation: {seq:?}");
    }
    // One more, so that the rotation stands on its second endpoint.
    assert_eq!(pod_200(&h, "rr.test", "/").await, seq[0]);

    // A configuration change that keeps the endpoints (a new Ingress for another host).
    let m2 = format!("{m}{}", app("marker", "marker.test", &ready(&[marker.addr]), &[]));
    h.write("manifests.yaml", &m2);
    let start = Instant::now();
    while pod_of(&h, "marker.test", "/", &[]).await.1.as_deref() != Some("marker-0") {
        assert!(start.elapsed() < WAIT, "the new configuration goes live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(pod_200(&h, "rr.test", "/").await);
    }
    assert_eq!(after, vec![seq[1].clone(), seq[2].clone(), seq[0].clone()], "the rotation continues where it was (before the swap: …, {}), not from the first endpoint", seq[0]);
}

// ---------------------------------------------------------------------------------------------
// 2. Consistent hashing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_on_the_request_uri_is_sticky_and_moves_little() {
    init_tracing();
    let mut pods = vec![echo_pod("hash", "hash-0").await, echo_pod("hash", "hash-1").await, echo_pod("hash", "hash-2").await];
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let ann = [("nginx.ingress.kubernetes.io/upstream-hash-by", "$request_uri")];
    let h = start(&app("hash", "hash.test", &ready(&addrs), &ann)).await;

    let uris: Vec<String> = (0..20).map(|i| format!("/item/{i}?v={}", i * 7)).collect();
    let mut owner = BTreeMap::new();
    for u in &uris {
        let first = pod_200(&h, "hash.test", u).await;
        for _ in 0..4 {
            assert_eq!(pod_200(&h, "hash.test", u).await, first, "{u} always reaches the same pod");
        }
        owner.insert(u.clone(), first);
    }
    let used: BTreeSet<&String> = owner.values().collect();
    assert!(used.len() > 1, "different URIs spread over more than one pod: {owner:?}");
    // The pod is a function of the URI alone, not of the order requests come in.
    for u in uris.iter().rev() {
        assert_eq!(pod_200(&h, "hash.test", u).await, owner[u], "{u} asked again, in reverse order");
    }

    // A fourth endpoint: most URIs keep their pod; those that move, move to the new one.
    pods.push(echo_pod("hash", "hash-3").await);
    let addrs4: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    h.write("manifests.yaml", &app("hash", "hash.test", &ready(&addrs4), &ann));
    wait_endpoints(&h, "hash.test", &addrs4).await;
    let mut kept = 0;
    for u in &uris {
        let now = pod_200(&h, "hash.test", u).await;
        if now == owner[u] {
            kept += 1;
        } else {
            assert_eq!(now, "hash-3", "{u} moved from {} to another old pod", owner[u]);
        }
    }
    assert!(kept >= 10, "at least half of the URIs keep their pod after adding an endpoint: {kept} of 20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_on_a_header() {
    init_tracing();
    let pods = [echo_pod("users", "users-0").await, echo_pod("users", "users-1").await, echo_pod("users", "users-2").await];
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let h = start(&app("users", "users.test", &ready(&addrs), &[("nginx.ingress.kubernetes.io/upstream-hash-by", "$http_x_user")])).await;
    let mut owner = BTreeMap::new();
    for u in 0..12 {
        let user = format!("user-{u}");
        let mut pods_seen = BTreeSet::new();
        for p in 0..3 {
            let (s, pod) = pod_of(&h, "users.test", &format!("/page/{p}"), &[("x-user", &user)]).await;
            assert_eq!(s, 200);
            pods_seen.insert(pod.unwrap());
        }
        assert_eq!(pods_seen.len(), 1, "{user} sticks to one pod whatever the path: {pods_seen:?}");
        owner.insert(user, pods_seen.into_iter().next().unwrap());
    }
    let used: BTreeSet<&String> = owner.values().collect();
    assert!(used.len() > 1, "different users spread over more than one pod: {owner:?}");
    // The pod is a function of the header alone, not of the order requests come in.
    for (user, pod) in owner.iter().rev() {
        let (s, got) = pod_of(&h, "users.test", "/again", &[("x-user", user)]).await;
        assert_eq!((s, got.as_deref()), (200, Some(pod.as_str())), "{user} asked again, in reverse order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_on_remote_addr_uses_the_proxy_protocol_client_address() {
    init_tracing();
    let pods = [echo_pod("ra", "ra-0").await, echo_pod("ra", "ra-1").await, echo_pod("ra", "ra-2").await];
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let m = app("ra", "ra.test", &ready(&addrs), &[("nginx.ingress.kubernetes.io/upstream-hash-by", "$remote_addr")]);
    let h = start_with(&m, |o| o.proxy.proxy_protocol = true).await;
    let via = |ip: String| {
        let addr = h.running.http;
        async move {
            let mut req = format!("PROXY TCP4 {ip} 10.0.0.1 5555 80\r\n").into_bytes();
            req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: ra.test\r\nConnection: close\r\n\r\n");
            let text = raw(addr, &req, WAIT).await;
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo answer ({e}): {text:?}"));
            assert_eq!(v["headers"]["x-real-ip"], ip.as_str());
            v["pod"].as_str().unwrap().to_string()
        }
    };
    let mut owner = BTreeMap::new();
    for i in 1..=16 {
        let ip = format!("203.0.113.{i}");
        let a = via(ip.clone()).await;
        for _ in 0..2 {
            assert_eq!(via(ip.clone()).await, a, "{ip} sticks to one pod");
        }
        owner.insert(ip, a);
    }
    let used: BTreeSet<&String> = owner.values().collect();
    assert!(used.len() > 1, "clients with different addresses (from the PROXY header) spread over more than one pod: {owner:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Least request (peak EWMA)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_most_requests_to_the_fast_endpoint() {
    init_tracing();
    let fast = Pod::start("fast", Duration::ZERO).await;
    let slow = Pod::start("slow", Duration::from_millis(300)).await;
    let h = Arc::new(start(&app("lr", "lr.test", &ready(&[fast.addr, slow.addr]), &[("nginx.ingress.kubernetes.io/load-balance", "ewma")])).await);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..15 {
                got.push(pod_200(&h, "lr.test", "/").await);
            }
            got
        }));
    }
    let mut counts = BTreeMap::<String, usize>::new();
    for t in tasks {
        for p in tokio::time::timeout(Duration::from_secs(20), t).await.expect("load finishes").unwrap() {
            *counts.entry(p).or_default() += 1;
        }
    }
    let fast_n = counts.get("fast").copied().unwrap_or(0);
    assert_eq!(counts.values().sum::<usize>(), 90);
    assert!(fast_n * 100 >= 90 * 75, "most requests go to the fast endpoint (≥ 75%): {counts:?}");
    // The pods' own records agree with the answers: every request reached exactly the pod
    // that answered it, once.
    assert_eq!(fast.seen.lock().unwrap().len(), fast_n, "requests the fast pod received: {counts:?}");
    assert_eq!(slow.seen.lock().unwrap().len(), 90 - fast_n, "requests the slow pod received: {counts:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. Passive health

/// Sends requests until an endpoint has been ejected; every one must succeed.
async fn until_ejected(h: &Harness, host: &str) {
    for i in 0..40 {
        let (s, _) = pod_of(h, host, "/", &[]).await;
        assert_eq!(s, 200, "request {i}: a refused endpoint is skipped by retrying another one");
        if metric(h, "vestibule_endpoint_ejections_total").await >= 1.0 {
            return;
        }
    }
    panic!("the refusing endpoint was never ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_endpoint_is_ejected_and_then_skipped() {
    init_tracing();
    let a = echo_pod("ph", "ph-0").await;
    let b = echo_pod("ph", "ph-1").await;
    let dead = dead_addr();
    let h = start(&app("ph", "ph.test", &ready(&[a.addr, b.addr, dead]), &[])).await;
    until_ejected(&h, "ph.test").await;
    let retries = metric(&h, "vestibule_upstream_retries_total").await;
    assert_eq!(retries, EJECT_AFTER as f64, "each refused connect up to the ejection was retried once, and nothing else was");
    let mut pods = BTreeSet::new();
    for _ in 0..20 {
        let (s, pod) = pod_of(&h, "ph.test", "/", &[]).await;
        assert_eq!(s, 200);
        pods.insert(pod.unwrap());
    }
    let grew = metric(&h, "vestibule_upstream_retries_total").await - retries;
    assert_eq!(grew, 0.0, "an ejected endpoint is not tried: retries grew by {grew} over 20 requests");
    assert_eq!(pods, BTreeSet::from(["ph-0".to_string(), "ph-1".to_string()]), "the healthy endpoints share the load");
    assert_eq!(metric(&h, "vestibule_endpoint_ejections_total").await, 1.0, "ejected once, not again while ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_survives_a_config_swap_that_keeps_the_endpoint() {
    init_tracing();
    let a = echo_pod("ej", "ej-0").await;
    let b = echo_pod("ej", "ej-1").await;
    let marker = echo_pod("marker", "marker-0").await;
    let dead = dead_addr();
    let m = app("ej", "ej.test", &ready(&[a.addr, b.addr, dead]), &[]);
    let h = start(&m).await;
    until_ejected(&h, "ej.test").await;

    h.write("manifests.yaml", &format!("{m}{}", app("marker", "marker.test", &ready(&[marker.addr]), &[])));
    let start = Instant::now();
    while pod_of(&h, "marker.test", "/", &[]).await.1.as_deref() != Some("marker-0") {
        assert!(start.elapsed() < WAIT, "the new configuration goes live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retries = metric(&h, "vestibule_upstream_retries_total").await;
    for _ in 0..20 {
        assert_eq!(pod_of(&h, "ej.test", "/", &[]).await.0, 200);
    }
    let grew = metric(&h, "vestibule_upstream_retries_total").await - retries;
    assert_eq!(grew, 0.0, "the endpoint stays ejected across the swap: retries grew by {grew} over 20 requests");
    assert_eq!(metric(&h, "vestibule_endpoint_ejections_total").await, 1.0, "no second ejection: the first one still holds");
}

// ---------------------------------------------------------------------------------------------
// 5. Retries only where safe

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_replayable_idempotent_requests_are_retried_after_being_sent() {
    init_tracing();
    let hole = black_hole().await;
    let good = Pod::start("good", Duration::ZERO).await;
    let m = app("rt", "rt.test", &ready(&[hole.addr, good.addr]), &[]);
    // Each part starts a fresh instance: the endpoint that hangs up gets about two of each
    // part's four requests, and three failed tries in a row would eject it.
    let h = start(&m).await;
    let url = |p: &str| h.http(p);

    // GET: sent to the endpoint that hangs up, then retried on the good one.
    for i in 0..4 {
        let path = format!("/get/{i}");
        let resp = h.client.get(url(&path)).header("host", "rt.test").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} is retried and succeeds");
        assert!(good.saw(&path), "{path} reached the good endpoint");
    }
    let holes_gets = hole.seen.lock().unwrap().iter().filter(|l| l.starts_with("GET /get/")).count();
    assert!(holes_gets >= 1, "some GETs went to the endpoint that hangs up first: {:?}", hole.seen.lock().unwrap());

    // PUT with a small (buffered) body: idempotent, so retried too.
    for i in 0..4 {
        let path = format!("/put/{i}");
        let resp = h.client.put(url(&path)).header("host", "rt.test").body("replayable").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path} is retried and succeeds");
        assert!(good.saw(&path));
    }

    // POST: never sent twice. When the first endpoint hangs up, the client gets 502.
    let h = start(&m).await;
    let url = |p: &str| h.http(p);
    let mut failed = 0;
    for i in 0..4 {
        let path = format!("/post/{i}");
        let resp = h.client.post(url(&path)).header("host", "rt.test").body("only once").send().await.unwrap();
        let hole_saw = hole.seen.lock().unwrap().iter().any(|l| l.starts_with(&format!("POST {path} ")));
        match resp.status().as_u16() {
            502 => {
                failed += 1;
                assert!(hole_saw, "{path}: 502 only after the request was sent");
                assert!(!good.saw(&path), "{path} was sent to a second endpoint after the first one got it");
            }
            200 => assert!(!hole_saw && good.saw(&path), "{path}"),
            s => panic!("{path}: unexpected status {s}"),
        }
    }
    assert!(failed >= 1, "at least one POST went to the endpoint that hangs up");

    // A large (streamed, not buffered) PUT is not replayed either.
    let h = start(&m).await;
    let url = |p: &str| h.http(p);
    let big = vec![b'x'; 200 * 1024];
    let mut failed = 0;
    for i in 0..4 {
        let path = format!("/big/{i}");
        let resp = h.client.put(url(&path)).header("host", "rt.test").body(big.clone()).send().await.unwrap();
        let hole_saw = hole.seen.lock().unwrap().iter().any(|l| l.starts_with(&format!("PUT {path} ")));
        match resp.status().as_u16() {
            502 => {
                failed += 1;
                assert!(!good.saw(&path), "{path}: a streamed body was sent to a second endpoint");
            }
            200 => assert!(!hole_saw && good.saw(&path), "{path}"),
            s => panic!("{path}: unexpected status {s}"),
        }
    }
    assert!(failed >= 1, "at least one large PUT went to the endpoint that hangs up");
}

// ---------------------------------------------------------------------------------------------
// 6. Endpoint changes under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_replacement_under_load_drops_nothing() {
    init_tracing();
    let old: Vec<Pod> = vec![Pod::start("old-0", Duration::ZERO).await, Pod::start("old-1", Duration::ZERO).await, Pod::start("old-2", Duration::ZERO).await];
    let mut eps: Vec<(SocketAddr, bool)> = ready(&old.iter().map(|p| p.addr).collect::<Vec<_>>());
    let h = Arc::new(start(&app("roll", "roll.test", &eps, &[])).await);

    // Four clients with keep-alive connections, sending requests back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (h, stop) = (h.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().build().unwrap();
            let mut ok = BTreeMap::<String, usize>::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(h.http("/roll")).header("host", "roll.test").timeout(Duration::from_secs(5)).send().await {
                    Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                        Ok(v) => *ok.entry(v["pod"].as_str().unwrap_or("?").to_string()).or_default() += 1,
                        Err(e) => failures.push(format!("body: {e}")),
                    },
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error: {e}")),
                }
            }
            (ok, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut new = Vec::new();
    for (i, o) in old.iter().enumerate() {
        // Start the replacement and add it, ready.
        let n = Pod::start(&format!("new-{i}"), Duration::ZERO).await;
        eps.push((n.addr, true));
        h.write("manifests.yaml", &app("roll", "roll.test", &eps, &[]));
        let serving: Vec<SocketAddr> = eps.iter().filter(|e| e.1).map(|e| e.0).collect();
        wait_endpoints(&h, "roll.test", &serving).await;
        new.push(n);
        // The old one turns unready, is taken out of rotation, drains, then stops.
        eps.iter_mut().find(|e| e.0 == o.addr).unwrap().1 = false;
        h.write("manifests.yaml", &app("roll", "roll.test", &eps, &[]));
        let serving: Vec<SocketAddr> = eps.iter().filter(|e| e.1).map(|e| e.0).collect();
        wait_endpoints(&h, "roll.test", &serving).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        o.stop();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for t in load {
        let (ok, f) = tokio::time::timeout(Duration::from_secs(10), t).await.expect("load stops").unwrap();
        for (k, v) in ok {
            *total.entry(k).or_default() += v;
        }
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{} request(s) failed during the rolling update: {:?} (answers: {total:?})", failures.len(), &failures[..failures.len().min(10)]);
    let answered: usize = total.values().sum();
    assert!(answered >= 50, "the load kept going: {total:?}");
    for n in &new {
        assert!(total.contains_key(&n.name), "{} served during the update: {total:?}", n.name);
    }
    let mut end = BTreeSet::new();
    for _ in 0..30 {
        end.insert(pod_200(&h, "roll.test", "/").await);
    }
    assert_eq!(end, new.iter().map(|n| n.name.clone()).collect::<BTreeSet<_>>(), "only the new pods answer at the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_to_a_removed_endpoint_completes() {
    init_tracing();
    let a = echo_pod("inflight", "inflight-a").await;
    let b = echo_pod("inflight", "inflight-b").await;
    let h = Arc::new(start(&app("inflight", "inflight.test", &ready(&[a.addr]), &[])).await);
    let slow = {
        let h = h.clone();
        tokio::spawn(async move { pod_of(&h, "inflight.test", "/?delay_ms=500", &[]).await })
    };
    // Wait until the slow request is with endpoint A.
    let start = Instant::now();
    while h.running.shared.registry.endpoint(a.addr).in_flight.load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed() < WAIT, "the slow request reaches the endpoint");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.write("manifests.yaml", &app("inflight", "inflight.test", &ready(&[b.addr]), &[]));
    wait_endpoints(&h, "inflight.test", &[b.addr]).await;
    assert_eq!(pod_200(&h, "inflight.test", "/").await, "inflight-b", "new requests go to the new endpoint");
    let (status, pod) = tokio::time::timeout(WAIT, slow).await.expect("the slow request ends").unwrap();
    assert_eq!((status, pod.as_deref()), (200, Some("inflight-a")), "the request in flight completes on the removed endpoint");
}
