//! Bounds on what upstream answers and upstream connections can make Vestibule hold, driven end
//! to end against real servers on 127.0.0.1 that count their connections (docs/limits.md).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response};

/// An HTTP/1.1 server counting the connections it accepted, and those still open. `/big`
/// answers 200 with a 1 MiB body, anything else 200 with a short one, after `delay`.
async fn server(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, conns, _) = server_open(delay).await;
    (addr, conns)
}

async fn server_open(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (conns, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, o) = (conns.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    let body = if req.uri().path() == "/big" { Bytes::from(vec![b'x'; 1 << 20]) } else { Bytes::from_static(b"ok\n") };
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, conns, open)
}

fn auth_ingress(name: &str, host: &str, url: &str) -> String {
    Ingress::new("default", name).annotation("nginx.ingress.kubernetes.io/auth-url", url).host_path(host, "/", "Prefix", "app", 80).to_yaml()
}

/// An auth service's answer body is read up to 64 KiB and dropped: a 1 MiB answer still gives
/// its verdict at once, and its connection, with the rest unread, is not reused. A short answer's
/// connection is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_answer_body_is_read_only_up_to_its_bound() {
    init_tracing();
    let app = echo("app").await;
    let (auth, conns) = server(Duration::ZERO).await;
    let m = manifest([
        backend_yaml("default", "app", &[app.addr]),
        auth_ingress("big", "big.test", &format!("http://{auth}/big")),
        auth_ingress("small", "small.test", &format!("http://{auth}/small")),
    ]);
    let h = start(&m).await;
    for round in 0..3 {
        let started = Instant::now();
        let (status, svc) = h.route("big.test", "/").await;
        assert_eq!((status, svc.as_deref()), (200, Some("app")), "round {round}: the verdict of a 1 MiB auth answer");
        assert!(started.elapsed() < Duration::from_secs(5), "round {round}: took {:?}", started.elapsed());
    }
    let after_big = conns.load(Ordering::SeqCst);
    assert_eq!(after_big, 3, "each 1 MiB answer's connection was closed, not pooled with its body unread");
    for _ in 0..3 {
        assert_eq!(h.route("small.test", "/").await, (200, Some("app".to_string())));
    }
    assert_eq!(conns.load(Ordering::SeqCst), after_big + 1, "short answers share one pooled connection");
}

async fn idle_gauge(h: &Harness) -> i64 {
    let text = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("vestibule_upstream_connections_idle ")).unwrap_or_else(|| panic!("no idle gauge in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// 100 requests at once open 100 connections to one endpoint; when they end, 64 are kept idle
/// for reuse and the others are closed, so idle connections per endpoint stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_per_endpoint_are_capped() {
    init_tracing();
    let (slow, conns, open) = server_open(Duration::from_millis(500)).await;
    let m = manifest([backend_yaml("default", "slow", &[slow]), Ingress::new("default", "slow").host_path("slow.test", "/", "Prefix", "slow", 80).to_yaml()]);
    let h = start(&m).await;
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    let url = h.http("/");
    let answers = futures::future::join_all((0..100).map(|_| client.get(&url).header("host", "slow.test").send())).await;
    for a in answers {
        assert_eq!(a.unwrap().status(), 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 100, "every request in flight had a connection of its own");
    // Connections go back to the pool as their answers end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut idle = idle_gauge(&h).await;
    while idle < 64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        idle = idle_gauge(&h).await;
    }
    assert_eq!(idle, 64, "idle connections to the one endpoint");
    // The kept ones are used again: more requests open no new connection.
    for _ in 0..5 {
        assert_eq!(client.get(&url).header("host", "slow.test").send().await.unwrap().status(), 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 100, "pooled connections served the next requests");
    assert_eq!(open.load(Ordering::SeqCst), 64, "the connections over the cap were closed");

    // The endpoint leaves the configuration: its idle connections are closed soon after the swap.
    let (next, _) = server(Duration::ZERO).await;
    h.write("manifests.yaml", &manifest([backend_yaml("default", "slow", &[next]), Ingress::new("default", "slow").host_path("slow.test", "/", "Prefix", "slow", 80).to_yaml()]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open.load(Ordering::SeqCst), 0, "idle connections to an endpoint no longer configured were kept");
    assert!(idle_gauge(&h).await <= 1, "only connections to live endpoints stay idle");
}
