//! `h3`: HTTP/3 over QUIC, as h2load does HTTP/2: `--connections` QUIC connections, each with
//! `--streams` requests in flight at once (a new request as soon as one is answered), `GET`
//! until `--duration` is up. Latency is from sending a request's head to the end of its body.
//!
//! Each connection has its own UDP socket (its own quinn endpoint), as h2load's clients have
//! their own TCP connections. A connection that fails is counted and opened again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use crate::{NoVerify, Opts, Tally, done};

type Send = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// TLS 1.3 with ALPN `h3`, any certificate accepted (as the `tls` mode: the client's own CPU
/// stays small; the server does all of its work).
fn client_config() -> Result<quinn::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| format!("QUIC TLS: {e}"))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// A QUIC connection and its HTTP/3 client; the endpoint is kept alive with it.
async fn open(o: &Opts, cfg: &quinn::ClientConfig) -> Result<(Send, quinn::Endpoint, tokio::task::JoinHandle<()>), String> {
    let local: SocketAddr = if o.addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
    let mut endpoint = quinn::Endpoint::client(local).map_err(|e| format!("UDP socket: {e}"))?;
    endpoint.set_default_client_config(cfg.clone());
    let conn = endpoint.connect(o.addr, &o.sni).map_err(|e| format!("connect: {e}"))?.await.map_err(|e| format!("QUIC handshake: {e}"))?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await.map_err(|e| format!("HTTP/3 setup: {e}"))?;
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok((send, endpoint, drive))
}

/// One connection: open it, run `--streams` request loops on it until the end, reopen it if it
/// broke before then.
pub async fn worker(o: Opts, t: Arc<Tally>, end: Instant) {
    let cfg = match client_config() {
        Ok(c) => c,
        Err(e) => return t.err(e),
    };
    let url = format!("https://{}{}", o.host, o.path);
    while !done(end) {
        let (send, endpoint, drive) = match tokio::time::timeout(o.timeout, open(&o, &cfg)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                t.err(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                t.err("connect timeout");
                continue;
            }
        };
        let mut streams = Vec::with_capacity(o.streams);
        for _ in 0..o.streams {
            streams.push(tokio::spawn(stream_loop(send.clone(), url.clone(), o.timeout, t.clone(), end)));
        }
        drop(send);
        for s in streams {
            let _ = s.await;
        }
        drive.abort();
        endpoint.close(0u32.into(), b"done");
    }
}

/// Requests back to back on one stream slot of a connection; returns when the time is up or
/// the connection failed.
async fn stream_loop(mut send: Send, url: String, timeout: Duration, t: Arc<Tally>, end: Instant) {
    while !done(end) {
        let started = Instant::now();
        match tokio::time::timeout(timeout, request(&mut send, &url)).await {
            Ok(Ok(200)) => t.ok(started.elapsed()),
            Ok(Ok(status)) => t.err(format!("status {status}")),
            Ok(Err(e)) => {
                t.err(e);
                return;
            }
            Err(_) => {
                t.err("timeout");
                return;
            }
        }
    }
}

/// One `GET`: its status, once the whole body has been read.
async fn request(send: &mut Send, url: &str) -> Result<u16, String> {
    let req = http::Request::get(url).body(()).map_err(|e| e.to_string())?;
    let mut stream = send.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    stream.finish().await.map_err(|e| format!("finish: {e}"))?;
    let resp = stream.recv_response().await.map_err(|e| format!("response: {e}"))?;
    while let Some(mut chunk) = stream.recv_data().await.map_err(|e| format!("body: {e}"))? {
        chunk.advance(chunk.remaining());
    }
    Ok(resp.status().as_u16())
}
