//! Bounds on state that grows with outside input, driven end to end (docs/limits.md lists every
//! bound and the test that reaches it).

mod common;

use std::time::Duration;

use common::*;

async fn metrics(h: &Harness) -> String {
    let resp = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The `ingress` label values of the request counter (requests no rule matched have none).
fn counted_ingresses(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("nginx_ingress_controller_requests{"))
        .filter_map(|l| l.split("ingress=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect()
}

/// Preview environments come and go under new names: the statistics of Ingresses that are gone
/// leave /metrics, so the series (and the map behind them) track what is live, not history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_statistics_of_removed_ingresses_leave_metrics() {
    init_tracing();
    let app = echo("app").await;
    let backend = backend_yaml("default", "app", &[app.addr]);
    let h = start(&backend).await;
    let rounds = 20;
    for i in 0..rounds {
        let ing = Ingress::new("default", &format!("preview-{i}")).host_path(&format!("pr-{i}.example.com"), "/", "Prefix", "app", 80);
        h.write("preview.yaml", &manifest([ing.to_yaml()]));
        h.wait_route(&format!("pr-{i}.example.com"), "/", (200, Some("app")), Duration::from_secs(10)).await;
        // Scraped after each round: counted so far is only what is live now.
        let seen = counted_ingresses(&metrics(&h).await);
        assert!(seen.len() <= 2, "round {i}: the statistics of gone Ingresses stayed: {seen:?}");
    }
    // One more change settles any request that was still in flight on an older configuration.
    h.write("other.yaml", &manifest([Ingress::new("default", "other").host_path("other.example.com", "/", "Prefix", "app", 80).to_yaml()]));
    h.wait_route("other.example.com", "/", (200, Some("app")), Duration::from_secs(10)).await;
    let seen = counted_ingresses(&metrics(&h).await);
    let last = format!("preview-{}", rounds - 1);
    assert!(seen.contains(&last), "the live Ingress keeps its series: {seen:?}");
    assert!(seen.iter().all(|n| n == &last || n == "other"), "only live Ingresses are counted: {seen:?}");
}

/// An idle kept-alive HTTP/1.1 connection holds a file descriptor: it is closed once it has sent
/// nothing for `client-header-timeout`, as nginx closes it after its keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = echo("app").await;
    let m = manifest([backend_yaml("default", "app", &[app.addr]), Ingress::new("default", "app").host_path("a.example", "/", "Prefix", "app", 80).to_yaml()]);
    let h = start_with(&m, |o| o.proxy.header_read_timeout = Duration::from_secs(1)).await;
    let mut c = tokio::net::TcpStream::connect(h.running.http).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "first answer: {}", String::from_utf8_lossy(&buf[..n]));
    let idle = std::time::Instant::now();
    // Drain whatever is left of the first answer, then wait for the close.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection stayed open past 5 s");
    let after = idle.elapsed();
    assert!(after >= Duration::from_millis(800), "closed after {after:?}, before the timeout");
}

/// A client that opens a TLS connection and never finishes the handshake holds a descriptor for
/// 10 s at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_never_finishes_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = echo("app").await;
    let h = start(&backend_yaml("default", "app", &[app.addr])).await;
    let mut c = tokio::net::TcpStream::connect(h.running.https).await.unwrap();
    // The first bytes of a ClientHello record, and then nothing.
    c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    let end = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a stalled handshake was still open after 15 s");
    let after = started.elapsed();
    assert!(after >= Duration::from_secs(9), "cut off after {after:?}: before the handshake timeout");
}
