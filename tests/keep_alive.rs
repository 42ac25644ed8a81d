//! `keep-alive` and `keep-alive-requests` from the controller ConfigMap: how long an idle client
//! connection is kept, and how many requests one connection carries, over HTTP/1.1 and HTTP/2,
//! through real sockets on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CM: (&str, &str) = ("ingress", "vestibule");

async fn start_cm(web: &Echo, data: &[(&str, &str)]) -> Harness {
    let mut cm = ConfigMap::new(CM.0, CM.1);
    for (k, v) in data {
        cm = cm.data(k, v);
    }
    let m = manifest([backend_yaml("default", "web", &[web.addr]), Ingress::new("default", "web").host_path("a.test", "/", "Prefix", "web", 80).to_yaml(), cm.to_yaml()]);
    start_with(&m, |o| o.configmap = Some((CM.0.into(), CM.1.into()))).await
}

/// One response head and body (by Content-Length) from a kept-alive connection.
async fn response(c: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 8192];
                let n = c.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return Some(head);
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn closed_within(c: &mut TcpStream, limit: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_closes_http1_after_the_nth_answer() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("keep-alive-requests", "3")]).await;
    let mut c = TcpStream::connect(h.running.http).await.unwrap();
    let mut buf = Vec::new();
    for i in 1..=3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
        let head = response(&mut c, &mut buf).await.unwrap_or_else(|| panic!("answer {i}"));
        assert!(head.starts_with("HTTP/1.1 200"), "answer {i}: {head}");
        let close = head.to_ascii_lowercase().contains("connection: close");
        assert_eq!(close, i == 3, "answer {i} says whether the connection ends: {head}");
    }
    assert!(closed_within(&mut c, Duration::from_secs(2)).await, "the connection stayed open after the third answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_closes_an_idle_http1_connection() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("keep-alive", "1")]).await;
    let mut c = TcpStream::connect(h.running.http).await.unwrap();
    let mut buf = Vec::new();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    assert!(response(&mut c, &mut buf).await.unwrap().starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(5)).await, "an idle connection outlived keep-alive: 1 (the header timeout is 60 s)");
    assert!(idle.elapsed() >= Duration::from_millis(800), "closed after {:?}, before keep-alive", idle.elapsed());

    // `keep-alive: 0`: no keep-alive at all, the first answer ends the connection.
    let h = start_cm(&web, &[("keep-alive", "0")]).await;
    let mut c = TcpStream::connect(h.running.http).await.unwrap();
    let mut buf = Vec::new();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let head = response(&mut c, &mut buf).await.unwrap();
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
}

/// An HTTP/2 connection over cleartext (prior knowledge), and a task driving it.
async fn h2(h: &Harness) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = TcpStream::connect(h.running.http).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    (client, tokio::spawn(conn))
}

async fn h2_get(client: &mut h2::client::SendRequest<Bytes>) -> Result<u16, h2::Error> {
    let mut c = client.clone().ready().await?;
    let (resp, _) = c.send_request(http::Request::get("http://a.test/").body(()).unwrap(), true)?;
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    *client = c;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_gets_goaway_after_keep_alive() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("keep-alive", "1")]).await;
    let (mut client, conn) = h2(&h).await;
    assert_eq!(h2_get(&mut client).await.unwrap(), 200);
    let idle = Instant::now();
    // The server sends GOAWAY and closes: the connection task ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection outlived keep-alive: 1");
    assert!(idle.elapsed() >= Duration::from_millis(800), "ended after {:?}", idle.elapsed());
    drop(client);

    // A connection that never sends a request is idle too.
    let (client, conn) = h2(&h).await;
    assert!(tokio::time::timeout(Duration::from_secs(5), conn).await.is_ok(), "a connection with no request was kept");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_ends_http2_connections_with_goaway() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("keep-alive-requests", "2")]).await;
    let (mut client, conn) = h2(&h).await;
    assert_eq!(h2_get(&mut client).await.unwrap(), 200);
    assert_eq!(h2_get(&mut client).await.unwrap(), 200, "the second request is still served");
    assert!(tokio::time::timeout(Duration::from_secs(5), conn).await.is_ok(), "the connection was not ended after two requests");
    assert!(h2_get(&mut client).await.is_err(), "a third request on the ended connection");
    // A new connection is served as usual.
    let (mut client, _conn) = h2(&h).await;
    assert_eq!(h2_get(&mut client).await.unwrap(), 200);
}

#[test]
fn invalid_values_are_reported_naming_the_key_and_the_default_stays() {
    let text = manifest([ConfigMap::new(CM.0, CM.1).data("keep-alive", "soon").data("keep-alive-requests", "0").to_yaml()]);
    let store = store_of(&text);
    let mut settings = compile_settings();
    settings.configmap = Some((CM.0.into(), CM.1.into()));
    let c = vestibule::compile::compile(&store, &settings);
    let fields: Vec<&str> = c.diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert!(fields.contains(&"data.keep-alive") && fields.contains(&"data.keep-alive-requests"), "{:?}", c.diagnostics);
    assert_eq!(c.config.http.keep_alive, Duration::from_secs(75));
    assert_eq!(c.config.http.keep_alive_requests, 1000);
}

/// `max-worker-connections` bounds the open client connections (per worker thread; this test's
/// runtime has two): at the bound a new connection waits unanswered, the open ones are served,
/// and it is taken as soon as one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_worker_connections_holds_new_connections_until_one_closes() {
    let web = echo("web").await;
    let h = start_cm(&web, &[("max-worker-connections", "2")]).await;
    let bound = 2 * 2;
    let mut open = Vec::new();
    for _ in 0..bound {
        let mut c = TcpStream::connect(h.running.http).await.unwrap();
        let mut buf = Vec::new();
        c.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
        assert!(response(&mut c, &mut buf).await.unwrap().starts_with("HTTP/1.1 200"));
        open.push(c);
    }
    // Over the bound: the kernel completes the handshake, Vestibule does not take it yet.
    let mut waiting = TcpStream::connect(h.running.http).await.unwrap();
    waiting.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let mut chunk = [0u8; 256];
    assert!(tokio::time::timeout(Duration::from_millis(800), waiting.read(&mut chunk)).await.is_err(), "a connection over the bound was served");
    // The open ones still are.
    let mut buf = Vec::new();
    open[0].write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    assert!(response(&mut open[0], &mut buf).await.unwrap().starts_with("HTTP/1.1 200"));
    // One closes: the waiting one is answered.
    drop(open.pop());
    let mut buf = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(3), response(&mut waiting, &mut buf)).await.expect("taken once a connection closed");
    assert!(head.unwrap().starts_with("HTTP/1.1 200"));
}
