//! Request heads whose lines end with a bare LF (which the HTTP/1 parser accepts, RFC 9112
//! §2.2) get the same framing checks as CRLF heads: ambiguous framing is refused with 400 and a
//! close before any backend sees it, and a well-formed bare-LF request is still served.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw backend that counts the bytes it receives and answers each read with a small 200.
async fn raw_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.fetch_add(n, Ordering::SeqCst);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                }
            });
        }
    });
    (addr, seen)
}

/// Sends `request`, returns what came back and whether the connection was closed.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_heads_with_ambiguous_framing_are_refused_like_crlf_heads() {
    init_tracing();
    let (backend, seen) = raw_backend().await;
    let h = start(&manifest([backend_yaml("default", "raw", &[backend]), catch_all("raw").to_yaml()])).await;
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let cases = [
        ("two equal Content-Length headers", format!("POST / HTTP/1.1\nHost: a.test\nContent-Length: {n}\nContent-Length: {n}\n\n{hidden}", n = hidden.len())),
        ("Content-Length with Transfer-Encoding", format!("POST / HTTP/1.1\nHost: a.test\nContent-Length: {}\nTransfer-Encoding: chunked\n\n0\r\n\r\n{hidden}", hidden.len() + 5)),
        ("CRLF lines, a bare LF blank line", format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\n0\r\n\r\n{hidden}")),
        ("bare LF header line amid CRLF", format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}")),
    ];
    let mut failures = Vec::new();
    for (name, request) in &cases {
        let (text, closed) = exchange(h.running.http, request.as_bytes()).await;
        if !text.starts_with("HTTP/1.1 400 ") || !closed {
            failures.push(format!("{name}: closed={closed}, response {:?}", text.lines().next()));
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no refused request reaches the backend");

    // A bare-LF head with unambiguous framing is still served.
    let (text, _) = exchange(h.running.http, b"POST / HTTP/1.1\nHost: a.test\nContent-Length: 5\nConnection: close\n\nhello").await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(seen.load(Ordering::SeqCst) > 0);
}
