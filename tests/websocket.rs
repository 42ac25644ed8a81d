//! WebSocket upgrades are tunnelled both ways, over HTTP and HTTPS, and outlive config swaps.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn ingress(name: &str, host: &str, svc: &str) -> String {
    format!("{}---\n", Ingress::new("default", name).host_path(host, "/", "Prefix", svc, 80).to_yaml())
}

fn backend(svc: &str, e: &Echo) -> String {
    format!("{}\n---\n", backend_yaml("default", svc, &[e.addr]))
}

/// The next message, within a bounded time.
async fn next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message within 10 s").map(|r| r.expect("a valid frame"))
}

/// Sends `msg` and expects the very same message back.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, msg: Message) {
    ws.send(msg.clone()).await.expect("send");
    let got = next(ws).await.expect("the tunnel is still open");
    assert!(got == msg, "echoed message differs: sent {} bytes of {:?}, got {} bytes of {:?}", msg.len(), kind(&msg), got.len(), kind(&got));
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "frame",
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Opens a WebSocket to `host` through Vestibule's plain HTTP port.
async fn connect_ws(h: &Harness, host: &str, path: &str) -> WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(h.running.http).await.unwrap();
    let req = format!("ws://{host}{path}").into_client_request().unwrap();
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("handshake within 10 s")
        .expect("the WebSocket handshake succeeds through Vestibule");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// Text, binary (small and larger than 64 KiB), ping/pong and a clean close.
async fn exercise<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    round_trip(&mut ws, Message::text("hello, vestibule")).await;
    round_trip(&mut ws, Message::binary(pattern(10))).await;
    let big_text: String = (0..70 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    round_trip(&mut ws, Message::text(big_text)).await;
    round_trip(&mut ws, Message::binary(pattern(300 * 1024))).await;
    round_trip(&mut ws, Message::binary(pattern(2 * 1024 * 1024 + 7))).await;
    for i in 0..20 {
        round_trip(&mut ws, Message::text(format!("message {i}"))).await;
    }

    ws.send(Message::Ping(Bytes::from_static(b"are you there"))).await.unwrap();
    match next(&mut ws).await {
        Some(Message::Pong(p)) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {:?}", other.as_ref().map(kind)),
    }

    ws.close(None).await.expect("close frame sent");
    match next(&mut ws).await {
        Some(Message::Close(_)) => {}
        other => panic!("expected the peer's close frame, got {:?}", other.as_ref().map(kind)),
    }
    // After the close handshake the stream ends.
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("the stream ends after the close handshake");
    assert!(matches!(end, None | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed))), "unexpected after close: {end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_both_ways() {
    init_tracing();
    let e = echo("ws").await;
    let h = start(&format!("{}{}", backend("ws", &e), ingress("ws", "ws.test", "ws"))).await;
    exercise(connect_ws(&h, "ws.test", "/chat").await).await;
    // Two at once, interleaved: each tunnel carries only its own messages.
    let mut a = connect_ws(&h, "ws.test", "/a").await;
    let mut b = connect_ws(&h, "ws.test", "/b").await;
    for i in 0..10 {
        a.send(Message::text(format!("a{i}"))).await.unwrap();
        b.send(Message::text(format!("b{i}"))).await.unwrap();
        assert_eq!(next(&mut b).await, Some(Message::text(format!("b{i}"))));
        assert_eq!(next(&mut a).await, Some(Message::text(format!("a{i}"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_survives_config_swaps() {
    init_tracing();
    let (ws_echo, other) = (echo("ws").await, echo("other").await);
    let backends = format!("{}{}", backend("ws", &ws_echo), backend("other", &other));
    let h = start(&backends).await;
    h.write("routes.yaml", &ingress("ws", "ws.test", "ws"));
    h.wait_route("ws.test", "/", (200, Some("ws")), Duration::from_secs(5)).await;

    let mut ws = connect_ws(&h, "ws.test", "/live").await;
    round_trip(&mut ws, Message::text("before any change")).await;

    // Each change is confirmed live over plain HTTP before the open WebSocket is used again.
    let changes: [(&str, String, &str, (u16, Option<&str>)); 5] = [
        ("unrelated Ingress added", format!("{}{}", ingress("ws", "ws.test", "ws"), ingress("side", "side.test", "other")), "side.test", (200, Some("other"))),
        ("its route moved to another Service", format!("{}{}", ingress("ws", "ws.test", "other"), ingress("side", "side.test", "other")), "ws.test", (200, Some("other"))),
        ("its Ingress deleted", ingress("side", "side.test", "other"), "ws.test", (404, None)),
        ("unrelated Ingress deleted", String::new(), "side.test", (404, None)),
        ("its route restored", ingress("ws", "ws.test", "ws"), "ws.test", (200, Some("ws"))),
    ];
    for (i, (what, manifests, probe_host, expect)) in changes.into_iter().enumerate() {
        h.write("routes.yaml", &manifests);
        h.wait_route(probe_host, "/", expect, Duration::from_secs(5)).await;
        round_trip(&mut ws, Message::text(format!("after change {i}: {what}"))).await;
        round_trip(&mut ws, Message::binary(pattern(100 * 1024 + i))).await;
    }
    // A fresh WebSocket still works too, and the old one closes cleanly.
    exercise(connect_ws(&h, "ws.test", "/fresh").await).await;
    ws.send(Message::Ping(Bytes::from_static(b"still here"))).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::Pong(Bytes::from_static(b"still here"))));
    ws.close(None).await.unwrap();
    assert!(matches!(next(&mut ws).await, Some(Message::Close(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls() {
    init_tracing();
    vestibule::tls::install_provider();
    let e = echo("wss").await;
    let issued = vestibule::tls::issue_with_ca(&["wss.test"]).unwrap();
    let m = format!(
        "{}{}",
        backend("wss", &e),
        manifest([
            secret_yaml("default", "wss-tls", &issued.cert_pem, &issued.key_pem),
            Ingress::new("default", "wss").tls(&["wss.test"], "wss-tls").host_path("wss.test", "/", "Prefix", "wss", 80).to_yaml(),
        ])
    );
    let h = start(&m).await;

    // Trust only the CA that signed the Ingress's certificate: the handshake proves SNI chose it.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(der_of(&issued.ca_pem))).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(vestibule::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));

    let open = || async {
        let tcp = tokio::net::TcpStream::connect(h.running.https).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("wss.test").unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake with the Ingress's certificate");
        let (ws, resp) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::client_async("wss://wss.test/secure".into_client_request().unwrap(), tls))
            .await
            .expect("handshake within 10 s")
            .expect("the WebSocket handshake succeeds over TLS");
        assert_eq!(resp.status().as_u16(), 101);
        ws
    };
    exercise(open().await).await;
    // The plain HTTP port redirects this TLS host rather than tunnelling it in clear.
    let plain = tokio::net::TcpStream::connect(h.running.http).await.unwrap();
    match tokio_tungstenite::client_async("ws://wss.test/secure".into_client_request().unwrap(), plain).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 308),
        Err(other) => panic!("expected a 308 answer to the plain upgrade, got {other:?}"),
        Ok(_) => panic!("a TLS host was tunnelled over plain HTTP"),
    }
    // A second secure WebSocket after the first closed.
    let mut ws = open().await;
    round_trip(&mut ws, Message::binary(pattern(128 * 1024))).await;
    ws.close(None).await.unwrap();
    assert!(matches!(next(&mut ws).await, Some(Message::Close(_))));
}
