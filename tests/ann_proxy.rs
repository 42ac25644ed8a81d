//! The proxy and hosts annotation families through real sockets on 127.0.0.1: per-Ingress body
//! limits and timeouts, retries as `proxy-next-upstream` says, server aliases, upstream-vhost,
//! service-upstream, custom-headers, and redirect and cookie rewriting of a backend's answer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: &str = "nginx.ingress.kubernetes.io/";
const CREATED: &str = "2020-01-01T00:00:00Z";

fn ing(name: &str, host: &str, svc: &str, ann: &[(&str, &str)]) -> String {
    let mut i = Ingress::new("default", name).created(CREATED);
    for (k, v) in ann {
        i = i.annotation(&format!("{N}{k}"), v);
    }
    i.host_path(host, "/", "Prefix", svc, 80).to_yaml()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A backend that answers every request with `head` (status line and headers, no body).
async fn raw_backend(ip: &str, head: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                // Small bodies arrive with the head in these tests; the answer closes.
                let _ = s.write_all(format!("{head}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_and_read_timeout_per_ingress() {
    let web = echo("web").await;
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        ing("small", "small.test", "web", &[("proxy-body-size", "1k"), ("proxy-read-timeout", "1")]),
        ing("plain", "plain.test", "web", &[]),
    ]))
    .await;
    let post = |host: &'static str, len: usize| {
        let req = h.client.post(h.http("/up")).header("host", host).body(vec![b'x'; len]);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("small.test", 2048).await, 413, "over this Ingress's proxy-body-size");
    assert_eq!(post("small.test", 512).await, 200);
    assert_eq!(post("plain.test", 2048).await, 200, "another Ingress keeps the default 1m");

    let started = std::time::Instant::now();
    assert_eq!(h.get("small.test", "/?delay_ms=2500").await.status(), 504, "proxy-read-timeout 1s");
    assert!(started.elapsed() < Duration::from_millis(2400), "{:?}", started.elapsed());
    assert_eq!(h.get("plain.test", "/?delay_ms=1500").await.status(), 200, "the default 60s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_upstream_off_and_on_statuses() {
    let web = echo("web").await;
    // A closed port: connecting is refused.
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (busy, _t) = raw_backend("127.0.0.1", "HTTP/1.1 503 Service Unavailable\r\n").await;
    let h = start(&manifest([
        backend_yaml("default", "deadweb", &[web.addr]),
        // Two endpoints on different ports need one slice each: the echo and the dead port.
        EndpointSlice::new("default", "deadweb-dead", "deadweb").port("http", dead.port()).ready("127.0.0.1").to_yaml(),
        backend_yaml("default", "busyweb", &[web.addr]),
        EndpointSlice::new("default", "busyweb-busy", "busyweb").port("http", busy.port()).ready("127.0.0.1").to_yaml(),
        ing("off", "off.test", "deadweb", &[("proxy-next-upstream", "off")]),
        ing("default", "default.test", "deadweb", &[]),
        ing("s503", "s503.test", "busyweb", &[("proxy-next-upstream", "error timeout http_503")]),
        ing("s503post", "s503post.test", "busyweb", &[("proxy-next-upstream", "error timeout http_503 non_idempotent")]),
        ing("plain503", "plain503.test", "busyweb", &[]),
    ]))
    .await;
    let statuses = |host: &'static str, post: bool| {
        let h = &h;
        async move {
            let mut out = Vec::new();
            for _ in 0..6 {
                let req = if post { h.client.post(h.http("/")).body("x") } else { h.client.get(h.http("/")) };
                out.push(req.header("host", host).send().await.unwrap().status().as_u16());
            }
            out
        }
    };
    // First: endpoints that keep refusing are ejected for a while, for every route.
    assert!(statuses("off.test", false).await.contains(&502), "off: a refused connect is final");
    assert!(statuses("default.test", false).await.iter().all(|s| *s == 200), "connect errors go to the next endpoint");
    assert!(statuses("s503.test", false).await.iter().all(|s| *s == 200), "http_503 retries a replayable request");
    assert!(statuses("plain503.test", false).await.contains(&503), "without http_503 the 503 is passed on");
    assert!(statuses("s503.test", true).await.contains(&503), "POST is not replayed without non_idempotent");
    assert!(statuses("s503post.test", true).await.iter().all(|s| *s == 200), "non_idempotent replays POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_alias_and_upstream_vhost() {
    let web = echo("web").await;
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        ing("foo", "foo.test", "web", &[("server-alias", "bar.test"), ("upstream-vhost", "internal.svc.local")]),
    ]))
    .await;
    assert_eq!(h.route("bar.test", "/").await, (200, Some("web".into())), "the alias is served");
    assert_eq!(h.get("baz.test", "/").await.status(), 404);
    let v = json(&h.get("foo.test", "/x").await.text().await.unwrap());
    assert_eq!(v["host"], "internal.svc.local", "{v}");
    assert_eq!(v["headers"]["x-forwarded-host"], "foo.test", "X-Forwarded-Host keeps the client's host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_upstream_dials_the_cluster_ip() {
    let l = tokio::net::TcpListener::bind("127.0.0.5:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let identity = vestibule::echo::Identity { service: "cluster".into(), namespace: "default".into(), pod: "vip".into() };
    let _task = vestibule::echo::spawn(l, vestibule::echo::EchoOptions { identity, tls: false });
    let svc = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: 127.0.0.5\n  ports:\n  - name: http\n    port: {port}\n");
    // The endpoints listed are not listening: only the ClusterIP answers.
    let slice = EndpointSlice::new("default", "web-abc", "web").port("http", 1).ready("127.0.0.1").to_yaml();
    let ingress = |name: &str, host: &str, on: &str| Ingress::new("default", name).created(CREATED).annotation(&format!("{N}service-upstream"), on).host_path(host, "/", "Prefix", "web", port).to_yaml();
    let h = start(&manifest([svc, slice, ingress("on", "on.test", "true"), ingress("off", "off.test", "false")])).await;
    assert_eq!(h.route("on.test", "/").await, (200, Some("cluster".into())));
    assert_eq!(h.get("off.test", "/").await.status(), 502, "the endpoints, which refuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_headers_allowed_and_refused() {
    let web = echo("web").await;
    let cm = ConfigMap::new("ingress", "vestibule").data("global-allowed-response-headers", "My-Custom-Header,My-Custom-Header-Dollar").to_yaml();
    let hdrs = ConfigMap::new("default", "hdrs").data("My-Custom-Header", "42").data("My-Custom-Header-Dollar", "$remote_addr").to_yaml();
    let refused = ConfigMap::new("default", "refused").data("Not-Allowed", "1").to_yaml();
    let h = start_with(
        &manifest([
            backend_yaml("default", "web", &[web.addr]),
            cm,
            hdrs,
            refused,
            ing("ok", "ok.test", "web", &[("custom-headers", "default/hdrs")]),
            ing("no", "no.test", "web", &[("custom-headers", "default/refused")]),
            ing("gone", "gone.test", "web", &[("custom-headers", "default/missing")]),
        ]),
        |o| o.configmap = Some(("ingress".into(), "vestibule".into())),
    )
    .await;
    let r = h.get("ok.test", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["my-custom-header"], "42");
    assert_eq!(r.headers()["my-custom-header-dollar"], "$remote_addr", "values are literal");
    assert_eq!(h.get("no.test", "/").await.status(), 503, "a header not allowed denies the location");
    let r = h.get("gone.test", "/").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("503"), "Vestibule's 503 page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_cookies_rewritten() {
    let head = "HTTP/1.1 302 Found\r\nLocation: http://internal.example:8080/app/x?y=1\r\nRefresh: 3; url=http://internal.example:8080/app/r\r\nSet-Cookie: sid=1; Path=/one/two; Domain=localhost\r\n";
    let (addr, _t) = raw_backend("127.0.0.1", head).await;
    let h = start(&manifest([
        backend_yaml("default", "app", &[addr]),
        ing(
            "rw",
            "rw.test",
            "app",
            &[("proxy-redirect-from", "http://internal.example:8080/app/"), ("proxy-redirect-to", "https://rw.test/"), ("proxy-cookie-path", "/one/ /"), ("proxy-cookie-domain", "localhost example.org")],
        ),
        ing("asis", "asis.test", "app", &[("proxy-redirect-from", "default")]),
    ]))
    .await;
    let r = h.get("rw.test", "/").await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://rw.test/x?y=1");
    assert_eq!(r.headers()["refresh"], "3; url=https://rw.test/r");
    assert_eq!(r.headers()["set-cookie"], "sid=1; Path=/two; Domain=example.org");
    let r = h.get("asis.test", "/").await;
    assert_eq!(r.headers()["location"], "http://internal.example:8080/app/x?y=1", "default leaves the Location as sent");
    assert_eq!(r.headers()["set-cookie"], "sid=1; Path=/one/two; Domain=localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_timeout_bounds_a_stalled_body() {
    let web = echo("web").await;
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        ing("stream", "stream.test", "web", &[("proxy-request-buffering", "off"), ("proxy-send-timeout", "1")]),
    ]))
    .await;
    // Streamed at once (request buffering off), then the body stalls: the echo waits for the
    // rest, and only proxy-send-timeout ends the request.
    let started = std::time::Instant::now();
    let head = b"POST /up HTTP/1.1\r\nHost: stream.test\r\nContent-Length: 100000\r\n\r\n0123456789";
    let out = raw(h.running.http, head, Duration::from_secs(4)).await;
    assert!(out.starts_with("HTTP/1.1 504"), "{out}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(3500), "{took:?}");
}
