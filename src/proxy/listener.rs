//! Listeners: accept TCP (and TLS) connections and serve HTTP/1.1 and HTTP/2 on them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use crate::metrics::{ProtocolLabels, TlsLabels};
use super::http::{ConnInfo, handle};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts a client connection in `vestibule_connections_active` while it is open.
struct ConnGauge(prometheus_client::metrics::gauge::Gauge);

impl ConnGauge {
    fn new(shared: &Shared, protocol: &str) -> Self {
        let g = shared.metrics.connections.get_or_create(&ProtocolLabels { protocol: protocol.into() }).clone();
        g.inc();
        ConnGauge(g)
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn builder(shared: &Shared) -> Arc<auto::Builder<TokioExecutor>> {
    let opts = &shared.opts;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_headers(opts.max_headers)
        .max_buf_size(opts.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(opts.max_header_bytes as u32)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256);
    Arc::new(b)
}

/// Binds a listener; port 0 picks a free port (see `local_addr`).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn accept(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) until the task is dropped.
pub fn spawn_http(listener: TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let builder = builder(&shared);
    tokio::spawn(async move {
        let local = listener.local_addr().expect("bound listener has an address");
        while let Some((stream, peer)) = accept(&listener).await {
            let shared = shared.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let _open = ConnGauge::new(&shared, "http");
                let info = Arc::new(ConnInfo { peer, local, tls: false, proxied_client: None });
                let svc = service_fn(move |req| handle(shared.clone(), info.clone(), req));
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
            });
        }
    })
}

/// Serves HTTPS: TLS with the certificate SNI picks, then HTTP/2 or HTTP/1.1 as ALPN chose.
pub fn spawn_https(listener: TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let builder = builder(&shared);
    let acceptor = TlsAcceptor::from(crate::tls::server_config(shared.clone()));
    tokio::spawn(async move {
        let local = listener.local_addr().expect("bound listener has an address");
        while let Some((stream, peer)) = accept(&listener).await {
            let shared = shared.clone();
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let handshakes = &shared.metrics.tls_handshakes;
                let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        handshakes.get_or_create(&TlsLabels { version: String::new(), result: "error".into() }).inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        handshakes.get_or_create(&TlsLabels { version: String::new(), result: "timeout".into() }).inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let (_, session) = tls.get_ref();
                let version = match session.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                    _ => "other",
                };
                handshakes.get_or_create(&TlsLabels { version: version.into(), result: "ok".into() }).inc();
                let protocol = if session.alpn_protocol() == Some(b"h2") { "https/h2" } else { "https/http1.1" };
                let _open = ConnGauge::new(&shared, protocol);
                let info = Arc::new(ConnInfo { peer, local, tls: true, proxied_client: None });
                let svc = service_fn(move |req| handle(shared.clone(), info.clone(), req));
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await;
            });
        }
    })
}
