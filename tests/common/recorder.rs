//! A backend that records what it received, for checks that an echo's answer cannot make
//! (a mirror's copy, which nobody reads the answer of).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request a recording backend saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The Host header, or the HTTP/2 authority.
    pub host: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// What a recording backend saw, in order.
pub type Seen = Arc<std::sync::Mutex<Vec<Recorded>>>;

/// A backend that records every request and answers 200 after `delay`.
pub async fn recorder(delay: Duration) -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    recorder_with(delay, false).await
}

/// The same over HTTP/2 cleartext (prior knowledge), as gRPC backends speak; its answers are
/// gRPC successes.
pub async fn recorder_h2(delay: Duration) -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    recorder_with(delay, true).await
}

async fn recorder_with(delay: Duration, h2: bool) -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    use http_body_util::BodyExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((io, _)) = l.accept().await else { return };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                        let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).or(parts.uri.authority().map(|a| a.as_str())).unwrap_or("").to_string();
                        s.lock().unwrap().push(Recorded { method: parts.method.to_string(), path: parts.uri.path().to_string(), host, headers: parts.headers.clone(), body });
                        tokio::time::sleep(delay).await;
                        let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"recorded")));
                        if h2 {
                            resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
                            resp.headers_mut().insert("grpc-status", http::HeaderValue::from_static("0"));
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(io);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new()).serve_connection(io, svc).await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                }
            });
        }
    });
    (addr, seen, task)
}

/// Waits (polling, up to 5 s) until `seen` holds `n` requests.
pub async fn wait_seen(seen: &Seen, n: usize) -> Vec<Recorded> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let now = seen.lock().unwrap().clone();
        if now.len() >= n || Instant::now() > until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

