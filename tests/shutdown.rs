//! Graceful shutdown, in process: unready at once, listeners open through the delay, requests
//! in flight finish, HTTP/2 gets GOAWAY, WebSockets get a 1001 close, and what outlives the grace
//! period is reported.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(5);

async fn setup() -> (Echo, Harness) {
    init_tracing();
    let e = echo("echo").await;
    let m = manifest([backend_yaml("default", "echo", &[e.addr]), catch_all("echo").to_yaml()]);
    let h = start(&m).await;
    (e, h)
}

async fn healthz(h: &Harness) -> u16 {
    h.client.get(format!("http://{}/healthz", h.running.healthz)).send().await.unwrap().status().as_u16()
}

/// Waits (bounded) until a request is in flight to `endpoint`.
async fn wait_in_flight(h: &Harness, endpoint: SocketAddr) {
    let start = Instant::now();
    while h.running.shared.registry.endpoint(endpoint).in_flight.load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed() < WAIT, "the request reaches the endpoint");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a TCP connection to `addr` is refused (nothing listening any more).
async fn refused(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await, Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_at_once_listeners_open_during_the_delay_then_closed() {
    let (_e, h) = setup().await;
    assert_eq!(healthz(&h).await, 200);
    let delay = Duration::from_millis(1500);
    let shared = h.running.shared.clone();
    let started = Instant::now();
    let sd = tokio::spawn(async move { shared.shutdown(delay, Duration::from_secs(2)).await });

    // Unready at once.
    while healthz(&h).await != 503 {
        assert!(started.elapsed() < Duration::from_millis(500), "/healthz turns 503 as soon as shutdown starts");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // New connections are still accepted and served during the delay (load balancers are
    // still sending traffic while they notice the instance is unready).
    let (s, svc) = h.route("", "/during-delay").await;
    assert_eq!((s, svc.as_deref()), (200, Some("echo")));
    let raw_answer = raw(h.running.http, b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", WAIT).await;
    assert!(raw_answer.starts_with("HTTP/1.1 200"), "{raw_answer}");
    assert!(started.elapsed() < delay, "these requests were made during the delay (test too slow to tell otherwise)");
    assert!(!sd.is_finished());
    assert!(!refused(h.running.http).await, "still listening during the delay");

    // After the delay: nothing listens on the proxy ports any more.
    let left = tokio::time::timeout(Duration::from_secs(5), sd).await.expect("shutdown ends").unwrap();
    assert_eq!(left, 0, "no connection was left open");
    assert!(started.elapsed() >= delay, "the listeners stayed open for the whole delay");
    let start = Instant::now();
    while !(refused(h.running.http).await && refused(h.running.https).await) {
        assert!(start.elapsed() < Duration::from_secs(2), "the HTTP and HTTPS listeners close after the delay");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(healthz(&h).await, 503, "still unready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_completes_and_shutdown_reports_nothing_left() {
    let (e, h) = setup().await;
    let Harness { dir: _dir, running, client } = h;
    let url = format!("http://{}/slow?delay_ms=500", running.http);
    let slow = tokio::spawn(async move {
        let resp = client.get(url).send().await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    let start = Instant::now();
    while running.shared.registry.endpoint(e.addr).in_flight.load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed() < WAIT, "the request reaches the endpoint");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let left = running.shutdown(Duration::from_millis(50), Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(left, 0, "the connection finished its response and closed within the grace period");
    assert!(took < Duration::from_secs(4), "shutdown ends when the last request is done, not at the end of the grace period: {took:?}");
    let (status, body) = tokio::time::timeout(WAIT, slow).await.expect("the request ends").unwrap().expect("the request in flight is answered");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|err| panic!("a complete echo body ({err}): {body:?}"));
    assert_eq!(v["path"], "/slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_promptly() {
    let (_e, h) = setup().await;
    let mut idle = TcpStream::connect(h.running.http).await.unwrap();
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Read the first answer (a complete echo response), leaving the connection idle.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !String::from_utf8_lossy(&buf).contains("\"path\"") || !buf.ends_with(b"}\n") {
        let n = tokio::time::timeout(WAIT, idle.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the first answer arrives");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(h.running.shared.drain.active(), 1, "one open client connection");
    let started = Instant::now();
    let left = h.running.shared.shutdown(Duration::ZERO, Duration::from_secs(3)).await;
    assert_eq!(left, 0, "an idle keep-alive connection does not hold shutdown up");
    assert!(started.elapsed() < Duration::from_secs(2), "and is closed promptly: {:?}", started.elapsed());
    let n = tokio::time::timeout(WAIT, idle.read(&mut chunk)).await.expect("the idle connection is closed").unwrap_or(0);
    assert_eq!(n, 0, "closed without another response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_gets_goaway_while_its_open_stream_completes() {
    let (e, h) = setup().await;
    let tcp = TcpStream::connect(h.running.http).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2c with prior knowledge");
    let conn_task = tokio::spawn(conn);
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c.send_request(http::Request::get("http://a.test/slow?delay_ms=800").body(()).unwrap(), true).unwrap();
    let slow = tokio::spawn(async move {
        let resp = resp.await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        Ok::<_, h2::Error>((status, bytes))
    });
    wait_in_flight(&h, e.addr).await;

    let shared = h.running.shared.clone();
    let started = Instant::now();
    let sd = tokio::spawn(async move { shared.shutdown(Duration::ZERO, Duration::from_secs(5)).await });

    // New streams on this connection are refused (GOAWAY) while the slow one is still open.
    let refused_at = loop {
        let attempt = async {
            let mut c = client.clone().ready().await?;
            let (resp, _) = c.send_request(http::Request::get("http://a.test/new").body(()).unwrap(), true)?;
            resp.await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Err(err)) => {
                tracing::info!(%err, "new stream refused");
                assert!(err.is_go_away() || err.reason() == Some(h2::Reason::REFUSED_STREAM), "refused by GOAWAY (or REFUSED_STREAM), got {err}");
                break started.elapsed();
            }
            Ok(Ok(r)) => {
                // Opened before the GOAWAY arrived: served normally.
                assert_eq!(r.status(), 200);
            }
            Err(_) => panic!("a new stream neither answered nor refused within 2 s"),
        }
        assert!(started.elapsed() < Duration::from_secs(2), "GOAWAY refuses new streams soon after shutdown starts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!slow.is_finished(), "the refusal came while the slow stream was still open ({refused_at:?} after shutdown began)");

    let (status, body) = tokio::time::timeout(WAIT, slow).await.expect("the open stream ends").unwrap().expect("the open stream completes");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).expect("a complete echo body");
    assert_eq!(v["path"], "/slow");
    let ended = tokio::time::timeout(WAIT, conn_task).await;
    assert!(ended.is_ok(), "the connection ends after its last stream");
    let left = tokio::time::timeout(WAIT, sd).await.expect("shutdown ends").unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_gets_a_going_away_close_frame() {
    let (_e, h) = setup().await;
    let tcp = TcpStream::connect(h.running.http).await.unwrap();
    let req = "ws://a.test/ws".into_client_request().unwrap();
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp)).await.expect("handshake in time").expect("WebSocket handshake through Vestibule");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("before shutdown")).await.unwrap();
    let echoed = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("before shutdown"));

    let grace = Duration::from_secs(3);
    let shared = h.running.shared.clone();
    let started = Instant::now();
    let sd = tokio::spawn(async move { shared.shutdown(Duration::from_millis(50), grace).await });

    let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame arrives on shutdown").expect("the stream has a frame").expect("a valid frame");
    match msg {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away, "close code 1001 (going away)"),
        other => panic!("expected a Close frame with code 1001, got {other:?}"),
    }
    // The client completes the closing handshake; the stream then ends.
    let mut rest = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(WAIT, ws.next()).await {
        match m {
            Ok(m) => rest.push(m),
            Err(_) => break,
        }
    }
    assert!(rest.iter().all(|m| matches!(m, Message::Close(_))), "nothing but the close after it: {rest:?}");
    let left = tokio::time::timeout(WAIT, sd).await.expect("shutdown ends").unwrap();
    assert_eq!(left, 0, "the tunnel finished within the grace period");
    assert!(started.elapsed() < grace + Duration::from_millis(500), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_busy_past_the_grace_period_is_reported() {
    let (e, h) = setup().await;
    let client = h.client.clone();
    let url = h.http("/slower?delay_ms=3000");
    let busy = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    wait_in_flight(&h, e.addr).await;
    let started = Instant::now();
    let left = h.running.shared.shutdown(Duration::ZERO, Duration::from_millis(300)).await;
    assert_eq!(left, 1, "the one busy connection is reported as left open");
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown gives up at the end of the grace period: {:?}", started.elapsed());
    busy.abort();
}
