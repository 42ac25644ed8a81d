//! TCP services (`--tcp-services-configmap`) through real sockets: a tiny TCP echo backend,
//! 1 MiB each way, half-close, the PROXY protocol in and out, live edits, a taken port, and
//! the ConfigMap value syntax.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

/// Echoes every connection until the client half-closes, then closes its own side. With
/// `first_line`, the first line received is sent back alone first (and reported).
async fn echo_tcp(first_line: bool) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                if first_line {
                    let mut line = String::new();
                    let _ = r.read_line(&mut line).await;
                    let _ = tx.send(line);
                }
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, rx)
}

fn manifests(svc: &str, backend: &[SocketAddr], entries: &[(u16, String)]) -> String {
    let mut cm = ConfigMap::new("ingress", "tcp");
    for (port, v) in entries {
        cm = cm.data(&port.to_string(), v);
    }
    manifest([backend_yaml("default", svc, backend), cm.to_yaml()])
}

async fn start_tcp(m: &str) -> Harness {
    start_with(m, |o| o.tcp_services = Some(("ingress".into(), "tcp".into()))).await
}

async fn wait_open(h: &Harness, port: u16) -> SocketAddr {
    for _ in 0..250 {
        if let Some(a) = h.running.shared.l4.local_addr(&format!("tcp-{port}")) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("tcp-{port} never opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mib_each_way_with_half_close() {
    init_tracing();
    let (backend, _) = echo_tcp(false).await;
    let port = free_port();
    let h = start_tcp(&manifests("echo", &[backend], &[(port, "default/echo:80".into())])).await;
    let addr = wait_open(&h, port).await;

    let data: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    // The client writes everything, then half-closes; the echo only closes after seeing that
    // EOF, so reading to the end proves both half-closes were passed on.
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut got)).await.expect("EOF arrives").unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(got.len(), MIB);
    assert!(got == data, "the bytes came back unchanged");

    let text = h.running.shared.metrics.encode(0);
    let labels = format!("service=\"default/echo\",port=\"{port}\",protocol=\"tcp\"");
    assert!(text.contains(&format!("vestibule_l4_connections_total{{{labels}}} 1")), "{text}");
    assert!(text.contains(&format!("vestibule_l4_bytes_total{{{labels},direction=\"upstream\"}} {MIB}")), "{text}");
    assert!(text.contains(&format!("vestibule_l4_bytes_total{{{labels},direction=\"downstream\"}} {MIB}")), "{text}");

    let config = h.running.shared.config();
    let debug = vestibule::debug::config_json(&config, &h.running.snapshot.load());
    let svc = &debug["l4Services"][0];
    assert_eq!(svc["name"], format!("tcp-{port}"));
    assert_eq!(svc["source"], format!("ConfigMap ingress/tcp data.{port}"));
    assert_eq!(svc["backend"]["endpoints"][0], backend.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_the_client_and_to_the_backend() {
    init_tracing();
    let (backend, mut lines) = echo_tcp(true).await;
    let (both, decode, encode) = (free_port(), free_port(), free_port());
    let entries = [(both, "default/pp:80:PROXY:PROXY".to_string()), (decode, "default/pp:http:PROXY".into()), (encode, "default/pp:80::PROXY".into())];
    let h = start_tcp(&manifests("pp", &[backend], &entries)).await;

    // Decoded from the client, sent on to the backend: the client's address from the header.
    let addr = wait_open(&h, both).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 9000\r\nhello\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let line = lines.recv().await.unwrap();
    assert_eq!(line, format!("PROXY TCP4 203.0.113.7 127.0.0.1 5555 {both}\r\n"), "the backend got a v1 line for the real client");
    assert_eq!(out, "hello\n", "the client's own PROXY header was consumed, the rest echoed");

    // Decode only: the backend sees the bytes after the header, no PROXY line.
    let addr = wait_open(&h, decode).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 198.51.100.1 10.0.0.1 1 2\r\nplain\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(lines.recv().await.unwrap(), "plain\n");
    assert_eq!(out, "", "only the first line was held back by the backend");

    // Decode required: a connection without a header is dropped.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"no header\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("closed");
    assert!(out.is_empty());

    // Encode only (`::PROXY`): the backend's line names the client's own address.
    let addr = wait_open(&h, encode).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"data").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(lines.recv().await.unwrap(), format!("PROXY TCP4 127.0.0.1 127.0.0.1 {} {encode}\r\n", me.port()));
    assert_eq!(out, "data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_is_matched_in_any_case_and_other_words_are_refused() {
    init_tracing();
    let (backend, mut lines) = echo_tcp(true).await;
    let port = free_port();
    let h = start_tcp(&manifests("enc", &[backend], &[(port, "default/enc:80:xxx:PROXY".into())])).await;
    assert!(h.running.snapshot.load().diagnostics.iter().any(|d| d.field == format!("data.{port}")), "a third field other than PROXY is refused");
    let port = free_port();
    h.write("manifests.yaml", &manifests("enc", &[backend], &[(port, "default/enc:80:proxy:PROXY".into())]));
    let addr = wait_open(&h, port).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nx").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(lines.recv().await.unwrap(), "PROXY TCP4 192.0.2.1 127.0.0.1 1 ".to_string() + &port.to_string() + "\r\n");
    assert_eq!(out, "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_come_and_go_live_and_open_connections_drain() {
    init_tracing();
    let (backend, _) = echo_tcp(false).await;
    let (a, b) = (free_port(), free_port());
    let h = start_tcp(&manifests("live", &[backend], &[(a, "default/live:80".into())])).await;
    let addr_a = wait_open(&h, a).await;
    let mut held = TcpStream::connect(addr_a).await.unwrap();
    held.write_all(b"one").await.unwrap();
    let mut buf = [0u8; 3];
    held.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"one");

    h.write("manifests.yaml", &manifests("live", &[backend], &[(b, "default/live:80".into())]));
    let addr_b = wait_open(&h, b).await;
    let mut s = TcpStream::connect(addr_b).await.unwrap();
    s.write_all(b"new port").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "new port", "the added key listens");

    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr_a).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the removed key no longer accepts");
    held.write_all(b"two").await.unwrap();
    held.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two", "the connection open on the removed port keeps working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_or_a_bad_value_is_reported_and_the_others_serve() {
    init_tracing();
    let (backend, _) = echo_tcp(false).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t = taken.local_addr().unwrap().port();
    let (free, bad) = (free_port(), free_port());
    let entries = [(t, "default/web:80".to_string()), (free, "default/web:80".into()), (bad, "default/web".into())];
    let h = start_tcp(&manifests("web", &[backend], &entries)).await;
    let addr = wait_open(&h, free).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"ok").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "ok");

    let diags = h.running.snapshot.load().diagnostics.clone();
    let on = |key: u16| diags.iter().find(|d| d.field == format!("data.{key}")).unwrap_or_else(|| panic!("no diagnostic for {key}: {diags:#?}")).clone();
    let d = on(t);
    assert_eq!((d.severity, d.reason.as_str()), (vestibule::compile::Severity::Error, "PortUnavailable"));
    assert!(d.to_string().starts_with(&format!("ConfigMap ingress/tcp: data.{t}: cannot listen on 127.0.0.1:{t}")), "{d}");
    let d = on(bad);
    assert_eq!(d.reason.as_str(), "InvalidField");
    assert!(d.to_string().contains("ConfigMap ingress/tcp") && d.message.contains("namespace/service:port"), "{d}");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_moves_on_to_the_next() {
    init_tracing();
    let (backend, _) = echo_tcp(false).await;
    // Nothing listens on 127.0.0.2 at that port: every other pick is refused.
    let dead: SocketAddr = SocketAddr::new("127.0.0.2".parse().unwrap(), backend.port());
    let port = free_port();
    let h = start_tcp(&manifests("rr", &[backend, dead], &[(port, "default/rr:80".into())])).await;
    let addr = wait_open(&h, port).await;
    for i in 0..6 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let msg = format!("try {i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
        assert_eq!(out, msg, "connection {i} reached the live endpoint");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_proxy_stream_timeout() {
    init_tracing();
    let (backend, _) = echo_tcp(false).await;
    let port = free_port();
    let m = manifest([manifests("idle", &[backend], &[(port, "default/idle:80".into())]), ConfigMap::new("ingress", "vestibule").data("proxy-stream-timeout", "300ms").to_yaml()]);
    let h = start_with(&m, |o| {
        o.tcp_services = Some(("ingress".into(), "tcp".into()));
        o.configmap = Some(("ingress".into(), "vestibule".into()));
    })
    .await;
    let addr = wait_open(&h, port).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed when idle").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200), "not before the timeout: {:?}", started.elapsed());
}
