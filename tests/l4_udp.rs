//! UDP services (`--udp-services-configmap`) through real sockets: sessions per client with
//! replies routed to the right one, and idle sessions ending after `proxy-stream-timeout`.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::net::UdpSocket;

/// Answers every datagram with `echo:` and the payload; records where each came from.
async fn echo_udp() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            record.lock().unwrap().push(from);
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from).await;
        }
    });
    (addr, seen)
}

async fn start_udp(backend: SocketAddr, port: u16, timeout: &str) -> Harness {
    let m = manifest([
        backend_yaml("default", "dns", &[backend]),
        ConfigMap::new("ingress", "udp").data(&port.to_string(), "default/dns:80").to_yaml(),
        ConfigMap::new("ingress", "vestibule").data("proxy-stream-timeout", timeout).to_yaml(),
    ]);
    let h = start_with(&m, |o| {
        o.udp_services = Some(("ingress".into(), "udp".into()));
        o.configmap = Some(("ingress".into(), "vestibule".into()));
    })
    .await;
    for _ in 0..250 {
        if h.running.shared.l4.local_addr(&format!("udp-{port}")).is_some() {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("udp-{port} never opened");
}

async fn ask(s: &UdpSocket, msg: &str) -> String {
    s.send(msg.as_bytes()).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await.expect("a reply").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_at_once_each_get_their_own_replies() {
    init_tracing();
    let (backend, seen) = echo_udp().await;
    let port = free_port();
    let h = start_udp(backend, port, "60s").await;
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut clients = Vec::new();
    for name in ["alice", "bob"] {
        clients.push(tokio::spawn(async move {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.connect(target).await.unwrap();
            for i in 0..20 {
                let msg = format!("{name}-{i}");
                assert_eq!(ask(&s, &msg).await, format!("echo:{msg}"), "{name} got its own reply");
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let mut sources: Vec<SocketAddr> = seen.lock().unwrap().clone();
    assert_eq!(sources.len(), 40);
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 2, "one session (one upstream socket) per client: {sources:?}");
    let text = h.running.shared.metrics.encode(0);
    assert!(text.contains(&format!("vestibule_l4_connections_total{{service=\"default/dns\",port=\"{port}\",protocol=\"udp\"}} 2")), "{text}");
    let debug = vestibule::debug::config_json(&h.running.shared.config(), &h.running.snapshot.load());
    assert_eq!(debug["l4Services"][0]["protocol"], "udp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires() {
    init_tracing();
    let (backend, seen) = echo_udp().await;
    let port = free_port();
    let _h = start_udp(backend, port, "300ms").await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(ask(&s, "1").await, "echo:1");
    assert_eq!(ask(&s, "2").await, "echo:2");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(ask(&s, "3").await, "echo:3");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], seen[1], "within the timeout the session is kept");
    assert_ne!(seen[1], seen[2], "after it, a new session (a new upstream socket) began");
}
