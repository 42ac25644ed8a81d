//! Hot reload: a manifest change is live within a second, reloads never fail a request or cut a
//! connection, and removals and endpoint readiness take effect promptly.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The product's promise: a change is serving within this long of being written.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

fn ingress(name: &str, host: &str, path: &str, svc: &str) -> String {
    ingress_paths(name, host, &[(path, svc)])
}

/// An Ingress with several Prefix paths of one host, each `(path, service)`.
fn ingress_paths(name: &str, host: &str, paths: &[(&str, &str)]) -> String {
    let mut ing = Ingress::new("default", name);
    for (path, svc) in paths {
        ing = ing.host_path(host, path, "Prefix", svc, 80);
    }
    format!("{}---\n", ing.to_yaml())
}

fn backend(svc: &str, e: &Echo) -> String {
    format!("{}\n---\n", backend_yaml("default", svc, &[e.addr]))
}

/// Polls `host` + `path` every ~10 ms until it answers `expect`; returns the time since `since`.
async fn live_after(h: &Harness, since: Instant, host: &str, path: &str, expect: (u16, Option<&str>), timeout: Duration) -> Duration {
    loop {
        let (s, svc) = h.route(host, path).await;
        if s == expect.0 && svc.as_deref() == expect.1 {
            return since.elapsed();
        }
        if since.elapsed() > timeout {
            panic!("{host}{path}: expected {expect:?}, still ({s}, {svc:?}) after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_is_live_within_one_second() {
    init_tracing();
    let (alpha, beta) = (echo("alpha").await, echo("beta").await);
    let h = start(&format!("{}{}{}", backend("alpha", &alpha), backend("beta", &beta), ingress("app", "app.test", "/", "alpha"))).await;
    h.wait_route("app.test", "/", (200, Some("alpha")), Duration::from_secs(5)).await;
    assert_eq!(h.route("new.test", "/").await, (404, None), "a host no Ingress names is not routed yet");

    // A new host, in a new file.
    let t = Instant::now();
    h.write("new.yaml", &ingress("new", "new.test", "/", "beta"));
    let new_host = live_after(&h, t, "new.test", "/", (200, Some("beta")), Duration::from_secs(5)).await;

    // A new path on an existing host, by rewriting the file that holds it.
    assert_eq!(h.route("app.test", "/v2/x").await, (200, Some("alpha".into())));
    let t = Instant::now();
    h.write("manifests.yaml", &format!("{}{}{}", backend("alpha", &alpha), backend("beta", &beta), ingress_paths("app", "app.test", &[("/", "alpha"), ("/v2", "beta")])));
    let new_path = live_after(&h, t, "app.test", "/v2/x", (200, Some("beta")), Duration::from_secs(5)).await;

    // Another backend for an existing path.
    let t = Instant::now();
    h.write("manifests.yaml", &format!("{}{}{}", backend("alpha", &alpha), backend("beta", &beta), ingress_paths("app", "app.test", &[("/", "beta"), ("/v2", "beta")])));
    let new_backend = live_after(&h, t, "app.test", "/", (200, Some("beta")), Duration::from_secs(5)).await;

    eprintln!("live after: new host {new_host:?}, new path {new_path:?}, new backend {new_backend:?}");
    for (what, took) in [("new host", new_host), ("new path", new_path), ("new backend", new_backend)] {
        assert!(took < LIVE_WITHIN, "{what}: live only after {took:?}, promised < {LIVE_WITHIN:?}");
    }
    // What did not change keeps routing as before.
    assert_eq!(h.route("new.test", "/").await, (200, Some("beta".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_has_zero_failed_requests() {
    init_tracing();
    let (blue, green, other) = (echo("blue").await, echo("green").await, echo("other").await);
    let h = start(&format!("{}{}", backend("blue", &blue), backend("green", &green))).await;
    h.write("app.yaml", &ingress("app", "app.test", "/", "blue"));
    h.wait_route("app.test", "/", (200, Some("blue")), Duration::from_secs(5)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (n_blue, n_green) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let url = h.http("/load");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, n_blue, n_green, failures, url) = (stop.clone(), n_blue.clone(), n_green.clone(), failures.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            // Keep-alive: each client reuses its connection across the reloads.
            let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let result = async {
                    let resp = client.get(&url).header("host", "app.test").send().await.map_err(|e| format!("request: {e:?}"))?;
                    let status = resp.status().as_u16();
                    let text = resp.text().await.map_err(|e| format!("body: {e:?}"))?;
                    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| format!("status {status}, not an echo answer: {text:.200}"))?;
                    match (status, v["service"].as_str()) {
                        (200, Some("blue")) => Ok(true),
                        (200, Some("green")) => Ok(false),
                        (s, svc) => Err(format!("status {s}, service {svc:?}")),
                    }
                }
                .await;
                match result {
                    Ok(true) => {
                        n_blue.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {
                        n_green.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }

    // ~20 rewrites over ~3 s: flip the backend of the route under load, and add or remove
    // unrelated Ingresses (with a Service of their own) in another file.
    let started = Instant::now();
    let mut extra = false;
    let mut last = "blue";
    for i in 0..20 {
        last = if i % 2 == 0 { "green" } else { "blue" };
        h.write("app.yaml", &ingress("app", "app.test", "/", last));
        if i % 3 == 0 {
            if extra {
                h.remove("extra.yaml");
            } else {
                let mut m = backend("other", &other);
                for k in 0..5 {
                    m.push_str(&ingress(&format!("extra-{k}"), &format!("extra-{k}.test"), "/", "other"));
                }
                h.write("extra.yaml", &m);
            }
            extra = !extra;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Let the last change land while the load continues.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(10), c).await.expect("client tasks finish").unwrap();
    }
    let elapsed = started.elapsed();

    let (b, g) = (n_blue.load(Ordering::Relaxed), n_green.load(Ordering::Relaxed));
    let failures = failures.lock().unwrap().clone();
    eprintln!("under load for {elapsed:?}: {} ok (blue {b}, green {g}), {} failed", b + g, failures.len());
    assert!(failures.is_empty(), "{} of {} requests failed during reloads; first: {:?}", failures.len(), b + g + failures.len() as u64, &failures[..failures.len().min(5)]);
    assert!(b + g >= 200, "only {} requests completed in {elapsed:?}", b + g);
    assert!(b > 0 && g > 0, "the backend flips were served by both backends (blue {b}, green {g})");
    h.wait_route("app.test", "/", (200, Some(last)), Duration::from_secs(2)).await;
    assert_eq!(h.route("extra-0.test", "/").await.0, if extra { 200 } else { 404 });
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body) from a kept-alive connection.
async fn read_response(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).await.expect("status line");
    assert!(!line.is_empty(), "the connection was closed by Vestibule");
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length") {
        body.resize(len.parse::<usize>().unwrap(), 0);
        r.read_exact(&mut body).await.expect("body");
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line).await.expect("chunk size");
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).expect("hex chunk size");
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).await.expect("chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        panic!("a keep-alive response needs a length: {headers:?}");
    }
    (status, headers, body)
}

/// One request on the connection: (status, service that answered).
async fn ask(r: &mut BufReader<TcpStream>, host: &str, path: &str) -> (u16, Option<String>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: reload-test\r\n\r\n");
    r.get_mut().write_all(req.as_bytes()).await.expect("the connection accepts the next request");
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(5), read_response(r)).await.expect("an answer within 5 s");
    assert!(
        !headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")),
        "Vestibule announced it closes the keep-alive connection: {headers:?}"
    );
    let svc = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["service"].as_str().map(str::to_string));
    (status, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_connection_survives_config_changes() {
    init_tracing();
    let (blue, green) = (echo("blue").await, echo("green").await);
    let h = start(&format!("{}{}", backend("blue", &blue), backend("green", &green))).await;
    h.write("app.yaml", &ingress("app", "app.test", "/", "blue"));
    h.wait_route("app.test", "/", (200, Some("blue")), Duration::from_secs(5)).await;

    let mut conn = BufReader::new(TcpStream::connect(h.running.http).await.unwrap());
    assert_eq!(ask(&mut conn, "app.test", "/").await, (200, Some("blue".into())));
    let mut requests = 1;
    let mut want = "blue";
    for i in 0..15 {
        want = if i % 2 == 0 { "green" } else { "blue" };
        let mut m = ingress("app", "app.test", "/", want);
        // Unrelated Ingresses come and go as well.
        for k in 0..(i % 4) {
            m.push_str(&ingress(&format!("side-{k}"), &format!("side-{k}.test"), "/", "blue"));
        }
        let t = Instant::now();
        h.write("app.yaml", &m);
        // The same connection sees the new configuration on a later request.
        loop {
            let got = ask(&mut conn, "app.test", "/").await;
            requests += 1;
            assert_eq!(got.0, 200, "change {i}: request {requests} on the kept-alive connection failed: {got:?}");
            if got.1.as_deref() == Some(want) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(3), "change {i}: still {got:?} on the connection after {:?}", t.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Still the one connection, still answering.
    assert_eq!(ask(&mut conn, "app.test", "/").await, (200, Some(want.into())));
    eprintln!("{requests} requests on one connection across 15 changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_and_endpoint_readiness_take_effect() {
    init_tracing();
    let (gone, flaky, stay) = (echo("gone").await, echo("flaky").await, echo("stay").await);
    let base = format!("{}{}", backend("stay", &stay), ingress("stay", "stay.test", "/", "stay"));
    let h = start(&base).await;
    h.write("gone.yaml", &format!("{}{}", backend("gone", &gone), ingress("gone", "gone.test", "/", "gone")));
    let flaky_ready = backend("flaky", &flaky);
    // The same Service and EndpointSlice, its one endpoint not ready.
    let not_ready = EndpointSlice::new("default", "flaky-abc", "flaky").port("http", flaky.addr.port()).endpoint(Endpoint::at(flaky.addr.ip()).ready(false));
    let flaky_not_ready = format!("{}\n---\n", manifest([service_yaml("default", "flaky"), not_ready.to_yaml()]));
    h.write("flaky.yaml", &format!("{flaky_ready}{}", ingress("flaky", "flaky.test", "/", "flaky")));
    h.wait_route("gone.test", "/", (200, Some("gone")), Duration::from_secs(5)).await;
    h.wait_route("flaky.test", "/", (200, Some("flaky")), Duration::from_secs(5)).await;

    // The Ingress leaves its file (the Service stays): its host is no longer routed.
    let t = Instant::now();
    h.write("gone.yaml", &backend("gone", &gone));
    let took = live_after(&h, t, "gone.test", "/", (404, None), Duration::from_secs(5)).await;
    assert!(took < LIVE_WITHIN, "removed Ingress still routed for {took:?}");
    assert_eq!(h.route("stay.test", "/").await, (200, Some("stay".into())));

    // Back, then the whole file goes away.
    h.write("gone.yaml", &format!("{}{}", backend("gone", &gone), ingress("gone", "gone.test", "/", "gone")));
    h.wait_route("gone.test", "/", (200, Some("gone")), Duration::from_secs(5)).await;
    let t = Instant::now();
    h.remove("gone.yaml");
    let took = live_after(&h, t, "gone.test", "/", (404, None), Duration::from_secs(5)).await;
    assert!(took < LIVE_WITHIN, "Ingress of a deleted file still routed for {took:?}");

    // The only endpoint turns not ready: 503, and back.
    let t = Instant::now();
    h.write("flaky.yaml", &format!("{flaky_not_ready}{}", ingress("flaky", "flaky.test", "/", "flaky")));
    let took = live_after(&h, t, "flaky.test", "/", (503, None), Duration::from_secs(5)).await;
    assert!(took < LIVE_WITHIN, "not-ready endpoint still used for {took:?}");
    let t = Instant::now();
    h.write("flaky.yaml", &format!("{flaky_ready}{}", ingress("flaky", "flaky.test", "/", "flaky")));
    let took = live_after(&h, t, "flaky.test", "/", (200, Some("flaky")), Duration::from_secs(5)).await;
    assert!(took < LIVE_WITHIN, "ready endpoint unused for {took:?}");
    assert_eq!(h.route("stay.test", "/").await, (200, Some("stay".into())));
}
