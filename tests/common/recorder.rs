//! A backend that records what it received, for checks that an echo's answer cannot make
//! (a mirror's copy, which nobody reads the answer of).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a recording backend saw: method, path, Host and body of each request.
pub type Seen = Arc<std::sync::Mutex<Vec<(String, String, String, Vec<u8>)>>>;

/// A backend that records every request and answers 200 after `delay`.
pub async fn recorder(delay: Duration) -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
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
                        let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                        s.lock().unwrap().push((parts.method.to_string(), parts.uri.path().to_string(), host, body));
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"mirror"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(io), svc).await;
            });
        }
    });
    (addr, seen, task)
}

/// Waits (polling, up to 5 s) until `seen` holds `n` requests.
pub async fn wait_seen(seen: &Seen, n: usize) -> Vec<(String, String, String, Vec<u8>)> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let now = seen.lock().unwrap().clone();
        if now.len() >= n || Instant::now() > until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

