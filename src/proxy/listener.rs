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
use super::sniff::{Sniffer, Verdicts};
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
        .max_concurrent_streams(opts.max_concurrent_streams)
        .max_header_list_size(opts.max_header_bytes as u32)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256);
    Arc::new(b)
}

/// Binds a listener; port 0 picks a free port (see `local_addr`).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Waits for a connection, or for shutdown (`None`).
async fn accept(listener: &TcpListener, stop: &mut tokio::sync::watch::Receiver<bool>) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        if *stop.borrow() {
            return None;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => {}
        }
    }
}

/// Connections open per client address, when a limit is set.
#[derive(Debug, Default)]
pub struct PerIp {
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

pub struct PerIpGuard<'a>(&'a PerIp, std::net::IpAddr);

impl PerIp {
    fn enter(&self, ip: std::net::IpAddr, limit: usize) -> Option<PerIpGuard<'_>> {
        let mut c = self.counts.lock().expect("per-ip lock");
        let n = c.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PerIpGuard(self, ip))
    }
}

impl Drop for PerIpGuard<'_> {
    fn drop(&mut self) {
        let mut c = self.0.counts.lock().expect("per-ip lock");
        if let Some(n) = c.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.1);
            }
        }
    }
}

/// Everything a new connection goes through before HTTP: the PROXY header, then the
/// per-client limit. Returns the client address the header gave and the connection's slot, or
/// `Err` to drop the connection.
async fn admit<'a>(shared: &'a Shared, stream: &mut tokio::net::TcpStream, peer: SocketAddr) -> Result<(Option<SocketAddr>, Option<PerIpGuard<'a>>), ()> {
    let proxied = if shared.opts.proxy_protocol {
        match super::proxy_protocol::read(stream, shared.opts.header_read_timeout.min(Duration::from_secs(10))).await {
            Ok(src) => src,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "dropping connection without a valid PROXY protocol header");
                return Err(());
            }
        }
    } else {
        None
    };
    let limit = shared.opts.max_connections_per_ip;
    if limit == 0 {
        return Ok((proxied, None));
    }
    let client = proxied.unwrap_or(peer).ip().to_canonical();
    match shared.per_ip.enter(client, limit) {
        Some(slot) => Ok((proxied, Some(slot))),
        None => {
            tracing::debug!(%client, limit, "connection refused: too many from this client");
            Err(())
        }
    }
}

/// Serves one HTTP connection until it ends, or shuts it down gracefully when draining starts
/// (HTTP/1.1: after the response in flight; HTTP/2: GOAWAY, then the open streams finish).
async fn serve<I>(shared: Arc<Shared>, builder: Arc<auto::Builder<TokioExecutor>>, io: I, info: Arc<ConnInfo>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _active = shared.drain.track();
    let mut stop = shared.drain.subscribe();
    let svc = {
        let shared = shared.clone();
        service_fn(move |req| handle(shared.clone(), info.clone(), req))
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
        return;
    }
    tokio::select! {
        _ = &mut conn => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) until draining starts.
pub fn spawn_http(listener: TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let builder = builder(&shared);
    tokio::spawn(async move {
        let local = listener.local_addr().expect("bound listener has an address");
        let mut stop = shared.drain.subscribe();
        while let Some((mut stream, peer)) = accept(&listener, &mut stop).await {
            let shared = shared.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let Ok((proxied_client, _slot)) = admit(&shared, &mut stream, peer).await else { return };
                let _open = ConnGauge::new(&shared, "http");
                let verdicts = Arc::new(Verdicts::default());
                let info = Arc::new(ConnInfo { peer, local, tls: false, proxied_client, verdicts: Some(verdicts.clone()) });
                serve(shared.clone(), builder, Sniffer::new(stream, verdicts), info).await;
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
        let mut stop = shared.drain.subscribe();
        while let Some((mut stream, peer)) = accept(&listener, &mut stop).await {
            let shared = shared.clone();
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok((proxied_client, _slot)) = admit(&shared, &mut stream, peer).await else { return };
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
                if protocol == "https/h2" {
                    let info = Arc::new(ConnInfo { peer, local, tls: true, proxied_client, verdicts: None });
                    serve(shared.clone(), builder, tls, info).await;
                } else {
                    let verdicts = Arc::new(Verdicts::default());
                    let info = Arc::new(ConnInfo { peer, local, tls: true, proxied_client, verdicts: Some(verdicts.clone()) });
                    serve(shared.clone(), builder, Sniffer::new(tls, verdicts), info).await;
                }
            });
        }
    })
}
