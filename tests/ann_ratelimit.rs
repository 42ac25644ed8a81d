//! Per-client limits (`limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-allowlist`,
//! `limit-connections`, `limit-rate`) and the ConfigMap's status codes, through real sockets;
//! clients bound to different 127.x addresses are different clients.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CM: (&str, &str) = ("ingress", "vestibule");
const P: &str = "nginx.ingress.kubernetes.io/";

/// The status and body length of `GET path` for `host`, sent from source address `src`.
async fn get_from(addr: SocketAddr, src: &str, host: &str, path: &str) -> (u16, usize) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {:?}", &text[..text.len().min(200)]));
    (status, out.len())
}

/// How many of `n` back-to-back requests from `src` were answered 200, and the other statuses.
async fn burst(addr: SocketAddr, src: &str, host: &str, n: usize) -> (usize, Vec<u16>) {
    let mut ok = 0;
    let mut other = Vec::new();
    for _ in 0..n {
        match get_from(addr, src, host, "/").await.0 {
            200 => ok += 1,
            s => other.push(s),
        }
    }
    (ok, other)
}

fn ing(host: &str, ann: &[(&str, &str)]) -> String {
    let full: Vec<(String, &str)> = ann.iter().map(|(k, v)| (format!("{P}{k}"), *v)).collect();
    let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ingress::new("default", host).annotations(&refs).host_path(host, "/", "Prefix", "web", 80).to_yaml()
}

fn manifests(web: &Echo, ingresses: &[String], cm: &[(&str, &str)]) -> String {
    let mut c = ConfigMap::new(CM.0, CM.1);
    for (k, v) in cm {
        c = c.data(k, v);
    }
    let mut docs = vec![backend_yaml("default", "web", &[web.addr]), c.to_yaml()];
    docs.extend(ingresses.iter().cloned());
    manifest(docs)
}

async fn start_all(web: &Echo, ingresses: &[String], cm: &[(&str, &str)]) -> Harness {
    init_tracing();
    start_with(&manifests(web, ingresses, cm), |o| o.configmap = Some((CM.0.into(), CM.1.into()))).await
}

#[tokio::test]
async fn limit_rps_serves_the_first_request_and_the_burst_then_refuses() {
    let web = echo("web").await;
    // nginx's limit_req with burst = rps * 5 and nodelay: the first request, then 5 more at
    // once; the 7th within the second is refused.
    let h = start_all(&web, &[ing("a", &[("limit-rps", "1")]), ing("b", &[("limit-rps", "1"), ("limit-allowlist", "127.0.0.2/32")])], &[]).await;
    let (ok, other) = burst(h.running.http, "127.0.0.1", "a", 12).await;
    assert_eq!(ok, 6, "{other:?}");
    assert!(other.iter().all(|s| *s == 503), "{other:?}");
    assert_eq!(burst(h.running.http, "127.0.0.3", "a", 1).await.0, 1, "another client has its own bucket");
    assert_eq!(burst(h.running.http, "127.0.0.2", "b", 12).await.0, 12, "limit-allowlist is exempt");
    assert_eq!(burst(h.running.http, "127.0.0.1", "b", 12).await.0, 6);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(burst(h.running.http, "127.0.0.1", "a", 2).await.0, 1, "one more a second");
}

#[tokio::test]
async fn limit_rpm_with_a_multiplier_and_the_configmap_status() {
    let web = echo("web").await;
    let h = start_all(&web, &[ing("a", &[("limit-rpm", "3"), ("limit-burst-multiplier", "2")])], &[("limit-req-status-code", "429")]).await;
    let (ok, other) = burst(h.running.http, "127.0.0.1", "a", 10).await;
    assert_eq!(ok, 7, "1 + 3*2");
    assert!(other.iter().all(|s| *s == 429), "{other:?}");
}

#[tokio::test]
async fn limit_connections_counts_active_requests() {
    let web = echo("web").await;
    let h = start_all(&web, &[ing("a", &[("limit-connections", "2")])], &[("limit-conn-status-code", "429")]).await;
    let addr = h.running.http;
    let tasks: Vec<_> = (0..6).map(|_| tokio::spawn(async move { get_from(addr, "127.0.0.1", "a", "/?delay_ms=1500").await.0 })).collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort();
    assert_eq!(got, [200, 200, 429, 429, 429, 429]);
    assert_eq!(get_from(addr, "127.0.0.1", "a", "/").await.0, 200, "the slots are free again");
}

#[tokio::test]
async fn limit_rate_paces_the_response_body() {
    let web = echo("web").await;
    let h = start_all(&web, &[ing("a", &[("limit-rate", "64")]), ing("b", &[])], &[]).await;
    let start = Instant::now();
    let (status, len) = get_from(h.running.http, "127.0.0.1", "a", "/?bytes=262144").await;
    let paced = start.elapsed();
    assert!(status == 200 && len > 262144, "{status} {len}");
    // 256 KiB at 64 KiB/s: about 4 s.
    assert!(paced >= Duration::from_secs(3), "{paced:?}");
    let start = Instant::now();
    get_from(h.running.http, "127.0.0.1", "b", "/?bytes=262144").await;
    assert!(start.elapsed() < Duration::from_secs(2), "unlimited: {:?}", start.elapsed());
}

#[tokio::test]
async fn buckets_survive_a_configuration_swap() {
    let web = echo("web").await;
    let a = ing("a", &[("limit-rps", "1"), ("limit-burst-multiplier", "1")]);
    let h = start_all(&web, std::slice::from_ref(&a), &[]).await;
    assert_eq!(burst(h.running.http, "127.0.0.1", "a", 4).await.0, 2);
    h.write("manifests.yaml", &manifests(&web, &[a, ing("c", &[])], &[]));
    h.wait_route("c", "/", (200, Some("web")), Duration::from_secs(10)).await;
    // The swap took less than the 1 s refill only if it was quick; check that the bucket was
    // not reset, i.e. no new burst of 2.
    assert!(burst(h.running.http, "127.0.0.1", "a", 3).await.0 <= 1);
}
