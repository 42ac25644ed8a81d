//! Requests a hostile client writes to get past the routing rules: upgrade tunnels (h2c
//! smuggling), Host confusion, CONNECT. Each goes through a real Vestibule on loopback, with
//! real backends that record what reaches them.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend written at the byte level, so that it can misbehave: it answers `101` to any
/// request carrying `Upgrade` (or to every request with `always_101`), and after a 101 answers
/// each later request on the connection with `smuggled:PATH`. Otherwise it answers
/// `plain:PATH`. Every request line and head it sees is recorded.
struct RawBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn raw_backend(always_101: bool) -> RawBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut switched = false;
                while let Some(head) = read_head(&mut s, &mut buf).await {
                    log.lock().unwrap().push(head.clone());
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let asks_upgrade = head.to_ascii_lowercase().contains("\r\nupgrade:");
                    if !switched && (always_101 || asks_upgrade) {
                        switched = true;
                        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n").await;
                        continue;
                    }
                    let body = format!("{}:{path}", if switched { "smuggled" } else { "plain" });
                    let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    RawBackend { addr, seen, task }
}

fn ingress(name: &str, host: Option<&str>, paths: &[(&str, &str)]) -> String {
    let mut y = format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  rules:\n  - ");
    if let Some(h) = host {
        y.push_str(&format!("host: {h}\n    "));
    }
    y.push_str("http:\n      paths:\n");
    for (path, svc) in paths {
        y.push_str(&format!(
            "      - path: {path}\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
        ));
    }
    y
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`.
async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(s, &mut buf)).await.expect("response in time").expect("a response");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.expect("body in time").unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, head, String::from_utf8_lossy(&buf[..len.min(buf.len())]).into_owned())
}

#[tokio::test]
async fn h2c_upgrade_is_not_a_tunnel_past_the_path_rules() {
    let root = raw_backend(false).await;
    let admin = common::echo("admin").await;
    let manifests = [
        ingress("site", None, &[("/", "root"), ("/admin", "admin")]),
        common::backend_yaml("default", "root", &[root.addr]),
        common::backend_yaml("default", "admin", &[admin.addr]),
    ]
    .join("---\n");
    let h = common::start(&manifests).await;

    let mut s = TcpStream::connect(h.running.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n").await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!((status, body.as_str()), (200, "plain:/"), "the h2c upgrade is served as plain HTTP/1.1");
    let head = root.seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(!head.contains("upgrade:") && !head.contains("http2-settings:"), "the upgrade never reaches the backend: {head}");

    // The next request on the connection is routed by its own path.
    s.write_all(b"GET /admin HTTP/1.1\r\nHost: site.example\r\n\r\n").await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("an echo answer, not {body:?}"));
    assert_eq!(v["service"], "admin");
    assert_eq!(root.seen.lock().unwrap().len(), 1, "nothing else reached the / backend");
}

#[tokio::test]
async fn unknown_upgrade_tokens_are_removed_and_stray_101s_refused() {
    let root = raw_backend(false).await;
    let rogue = raw_backend(true).await;
    let manifests = [
        ingress("site", None, &[("/", "root"), ("/rogue", "rogue")]),
        common::backend_yaml("default", "root", &[root.addr]),
        common::backend_yaml("default", "rogue", &[rogue.addr]),
    ]
    .join("---\n");
    let h = common::start(&manifests).await;

    let mut s = TcpStream::connect(h.running.http).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: site.example\r\nConnection: upgrade\r\nUpgrade: foo/2\r\n\r\n").await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!((status, body.as_str()), (200, "plain:/x"));
    assert!(!root.seen.lock().unwrap()[0].to_ascii_lowercase().contains("upgrade:"));

    // A backend that switches protocols when nobody asked gets no tunnel: 502.
    let out = common::raw(h.running.http, b"GET /rogue HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(!out.contains(" 101 "), "{out}");
}

#[tokio::test]
async fn absolute_form_target_is_the_one_authority() {
    let a = common::echo("a").await;
    let b = common::echo("b").await;
    let manifests = [
        ingress("a", Some("a.example"), &[("/", "a")]),
        ingress("b", Some("b.example"), &[("/", "b")]),
        common::backend_yaml("default", "a", &[a.addr]),
        common::backend_yaml("default", "b", &[b.addr]),
    ]
    .join("---\n");
    let h = common::start(&manifests).await;
    let mut s = TcpStream::connect(h.running.http).await.unwrap();
    s.write_all(b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n").await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["service"], "a", "routed by the target's authority");
    assert_eq!(v["host"], "a.example", "forwarded with the same authority: {v}");
    assert_eq!(v["headers"]["x-forwarded-host"], "a.example", "{v}");
}

#[tokio::test]
async fn connect_is_refused_and_never_forwarded() {
    let root = raw_backend(false).await;
    let manifests = [ingress("site", None, &[("/", "root")]), common::backend_yaml("default", "root", &[root.addr])].join("---\n");
    let h = common::start(&manifests).await;
    let out = common::raw(h.running.http, b"CONNECT root.example:443 HTTP/1.1\r\nHost: root.example:443\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    let allow = out.lines().find(|l| l.to_ascii_lowercase().starts_with("allow:")).expect("an Allow header");
    assert!(allow.contains("GET") && !allow.contains("CONNECT"), "{allow}");
    assert!(root.seen.lock().unwrap().is_empty(), "the backend saw nothing");
}

#[tokio::test]
async fn host_header_must_be_single_present_and_valid() {
    let root = raw_backend(false).await;
    let manifests = [ingress("site", None, &[("/", "root")]), common::backend_yaml("default", "root", &[root.addr])].join("---\n");
    let h = common::start(&manifests).await;
    let cases: [(&str, &[u8]); 5] = [
        ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
        ("a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("a slash", b"GET / HTTP/1.1\r\nHost: a.example/evil\r\n\r\n"),
        ("a bad port", b"GET / HTTP/1.1\r\nHost: a.example:80x\r\n\r\n"),
    ];
    for (what, req) in cases {
        let out = common::raw(h.running.http, req, Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
    }
    assert!(root.seen.lock().unwrap().is_empty(), "none of them reached the backend");
    // HTTP/1.0 may omit Host, and a valid one with a port is fine.
    let out = common::raw(h.running.http, b"GET /ok HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.contains(" 200 OK") && out.ends_with("plain:/ok"), "{out}");
    let out = common::raw(h.running.http, b"GET /ok HTTP/1.1\r\nHost: a.example:8080\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
