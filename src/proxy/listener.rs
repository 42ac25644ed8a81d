//! Listeners: the set the configuration declares, reconciled on each swap (opened, kept or
//! closed, never a restart), each accepting TCP (and TLS) connections and serving HTTP/1.1 and
//! HTTP/2 on them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::Shared;
use super::admit::admit;
use super::handler::{ConnInfo, handle};
use super::l4::prefixed::Prefixed;
use super::sniff::{Sniffer, Verdicts};
use crate::config::{ListenerProtocol, ListenerSpec};
use crate::metrics::{ProtocolLabels, TlsLabels};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's default limit on request header fields (its `DEFAULT_MAX_HEADERS`).
const HYPER_MAX_HEADERS: usize = 100;

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
        .max_buf_size(opts.max_header_bytes.max(8192))
        .keep_alive(true);
    // hyper's own limit is 100 header fields; set only when different, because with a limit
    // set hyper fills a header array of that size on every request it parses.
    if opts.max_headers != HYPER_MAX_HEADERS {
        b.http1().max_headers(opts.max_headers);
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .max_header_list_size(opts.max_header_bytes as u32)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256);
    Arc::new(b)
}

/// How long an accept loop stops accepting after running out of file descriptors or memory.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one log line per this long about failing accepts.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What an accept loop does when `accept` fails. Out of file descriptors (EMFILE, ENFILE) or
/// memory, the connection stays in the backlog and `accept` would fail again at once: the loop
/// stops accepting for `ACCEPT_PAUSE` (as nginx disables accept for a while), so it never spins,
/// the connections it has keep being served, and the backlog is taken up once descriptors are
/// free. A failure that concerns only the connection being accepted (aborted or reset before
/// it was taken) does not pause. One line is logged per `ACCEPT_LOG_EVERY`, with the count.
pub(crate) struct AcceptErrors {
    what: &'static str,
    logged_at: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    pub(crate) fn new(what: &'static str) -> Self {
        AcceptErrors { what, logged_at: None, unlogged: 0 }
    }

    pub(crate) async fn failed(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        let connection_only = matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) || e.raw_os_error() == Some(71 /* EPROTO */);
        self.unlogged += 1;
        if self.logged_at.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
            let (what, failures) = (self.what, self.unlogged);
            if connection_only {
                tracing::debug!(listener = what, error = %e, failures, "accept failed");
            } else {
                tracing::warn!(listener = what, error = %e, failures, pause = ?ACCEPT_PAUSE, "accept failed; pausing accepts (out of file descriptors? see ulimit -n)");
            }
            self.logged_at = Some(std::time::Instant::now());
            self.unlogged = 0;
        }
        if !connection_only {
            tokio::time::sleep(ACCEPT_PAUSE).await;
        }
    }
}

/// Waits for a connection, or for shutdown (`None`).
async fn accept(listener: &TcpListener, limit: &super::conn_limit::ConnLimit, stop: &mut tokio::sync::watch::Receiver<bool>, closed: &mut tokio::sync::watch::Receiver<bool>, errors: &mut AcceptErrors) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        if *stop.borrow() || *closed.borrow() {
            return None;
        }
        tokio::select! {
            _ = limit.room() => {}
            _ = stop.changed() => continue,
            _ = closed.changed() => continue,
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => errors.failed(&e).await,
            },
            _ = stop.changed() => {}
            _ = closed.changed() => {}
        }
    }
}

/// Serves one HTTP connection until it ends, or shuts it down gracefully when draining starts
/// (HTTP/1.1: after the response in flight; HTTP/2: GOAWAY, then the open streams finish).
/// `served`: requests the fast path already answered on this connection, which count towards
/// `keep-alive-requests`.
pub(crate) async fn serve<I>(shared: Arc<Shared>, builder: Arc<auto::Builder<TokioExecutor>>, io: I, info: Arc<ConnInfo>, served: u64)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _active = shared.drain.track();
    let mut stop = shared.drain.subscribe();
    let ConnLimits { keep_alive, max_requests, first } = ConnLimits::of(&shared);
    let use_ = Arc::new(ConnUse::new(max_requests.saturating_sub(served).max(1)));
    let svc = {
        let (shared, use_) = (shared.clone(), use_.clone());
        service_fn(move |req| handle(shared.clone(), info.clone(), req, use_.begin()))
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
        _ = use_.spent(keep_alive, first) => {
            // HTTP/1.1: the answer in flight ends with the connection; HTTP/2: GOAWAY, and the
            // open streams finish.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The keep-alive bounds of a client connection, read from the Config when it starts.
pub(crate) struct ConnLimits {
    /// Idle time allowed between requests.
    pub keep_alive: std::time::Duration,
    /// Requests served before the connection closes (`keep-alive: 0`: the first answer closes).
    pub max_requests: u64,
    /// Idle time allowed before the first request: a connection that never sends one is cut by
    /// the header timeout (HTTP/1.1) or by this (HTTP/2), even when `keep-alive` is 0.
    pub first: std::time::Duration,
}

impl ConnLimits {
    pub(crate) fn of(shared: &Shared) -> Self {
        let config = shared.config();
        let http = &config.http;
        let keep_alive = http.keep_alive;
        let max_requests = if keep_alive.is_zero() { 1 } else { http.keep_alive_requests };
        let first = if keep_alive.is_zero() { shared.opts.header_read_timeout } else { keep_alive };
        ConnLimits { keep_alive, max_requests, first }
    }
}

/// How a client connection is used, for `keep-alive` and `keep-alive-requests`: requests
/// begun, requests in flight, and when the last one was answered. Kept cheap per request: two
/// atomic counts and a clock read; the one timer per connection is moved only when it fires.
struct ConnUse {
    start: std::time::Instant,
    max_requests: u64,
    begun: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicU64,
    /// Milliseconds from `start` to the end of the last answer.
    last_end: std::sync::atomic::AtomicU64,
    enough: tokio::sync::Notify,
}

struct Turn(Arc<ConnUse>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.last_end.store(self.0.start.elapsed().as_millis() as u64, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnUse {
    fn new(max_requests: u64) -> Self {
        let z = || std::sync::atomic::AtomicU64::new(0);
        ConnUse { start: std::time::Instant::now(), max_requests, begun: z(), in_flight: z(), last_end: z(), enough: tokio::sync::Notify::new() }
    }

    fn begin(self: &Arc<Self>) -> Turn {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.begun.fetch_add(1, Ordering::AcqRel) + 1 >= self.max_requests {
            self.enough.notify_one();
        }
        Turn(self.clone())
    }

    /// Resolves when the connection has carried `max_requests`, or has had no request in
    /// flight for `idle` (before its first request: `first`).
    async fn spent(&self, idle: Duration, first: Duration) {
        let sleep = tokio::time::sleep(first);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = self.enough.notified() => return,
                _ = &mut sleep => {}
            }
            let now = tokio::time::Instant::now();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                sleep.as_mut().reset(now + idle.max(Duration::from_secs(1)));
                continue;
            }
            let (begun, last_end) = (self.begun.load(Ordering::Acquire), self.last_end.load(Ordering::Acquire));
            let wait = if begun == 0 { first } else { idle };
            let quiet = self.start.elapsed().saturating_sub(Duration::from_millis(last_end));
            if quiet >= wait {
                return;
            }
            sleep.as_mut().reset(now + (wait - quiet));
        }
    }
}

/// One open listener.
struct Open {
    spec: ListenerSpec,
    local: SocketAddr,
    /// The spec's PROXY protocol setting, which may change without reopening.
    proxy_protocol: Arc<AtomicBool>,
    /// Closes this listener (its connections go on).
    close: tokio::sync::watch::Sender<bool>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.close.send_replace(true);
    }
}

/// The open listeners, by name.
#[derive(Default)]
pub struct Listeners {
    open: Mutex<HashMap<String, Open>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.open.lock().expect("listeners lock");
        f.debug_map().entries(open.iter().map(|(k, v)| (k, v.local))).finish()
    }
}

/// A listener that could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenError {
    pub name: String,
    pub addr: SocketAddr,
    pub error: String,
    /// For a TCP or UDP service: the ConfigMap (namespace, name) and key that declared it.
    pub source: Option<(String, String, String)>,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "listener {} on {}: {}", self.name, self.addr, self.error)
    }
}

impl Listeners {
    /// Where the listener `name` is bound, when it is open.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.open.lock().expect("listeners lock").get(name).map(|o| o.local)
    }

    /// Makes the open set match `specs`: a listener whose name, address and protocol are
    /// unchanged is kept (its PROXY protocol setting is updated in place); others are closed,
    /// and new ones opened. Must run inside the runtime. Returns the listeners that failed to
    /// open; the others are unaffected.
    pub fn reconcile(&self, specs: &[ListenerSpec], shared: &Arc<Shared>) -> Vec<ListenError> {
        let mut open = self.open.lock().expect("listeners lock");
        open.retain(|name, o| specs.iter().any(|s| &s.name == name && s.addr == o.spec.addr && s.protocol == o.spec.protocol));
        let mut errors = Vec::new();
        for spec in specs {
            if let Some(o) = open.get_mut(&spec.name) {
                o.proxy_protocol.store(spec.proxy_protocol, Ordering::Relaxed);
                o.spec = spec.clone();
                continue;
            }
            match start(spec, shared) {
                Ok(o) => {
                    tracing::info!(listener = %spec.name, addr = %o.local, "listening");
                    open.insert(spec.name.clone(), o);
                }
                Err(e) => errors.push(ListenError { name: spec.name.clone(), addr: spec.addr, error: e.to_string(), source: None }),
            }
        }
        errors
    }

    /// Closes every listener (connections go on until drained).
    pub fn close_all(&self) {
        self.open.lock().expect("listeners lock").clear();
    }
}

fn start(spec: &ListenerSpec, shared: &Arc<Shared>) -> std::io::Result<Open> {
    let std_listener = std::net::TcpListener::bind(spec.addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std_listener)?;
    let local = listener.local_addr()?;
    let proxy_protocol = Arc::new(AtomicBool::new(spec.proxy_protocol));
    let (close, closed) = tokio::sync::watch::channel(false);
    let (shared, pp) = (shared.clone(), proxy_protocol.clone());
    match spec.protocol {
        ListenerProtocol::Http => tokio::spawn(serve_http(listener, shared, pp, closed)),
        ListenerProtocol::Https => tokio::spawn(serve_https(listener, shared, pp, closed)),
    };
    Ok(Open { spec: spec.clone(), local, proxy_protocol, close })
}

/// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) until closed or draining.
async fn serve_http(listener: TcpListener, shared: Arc<Shared>, proxy_protocol: Arc<AtomicBool>, mut closed: tokio::sync::watch::Receiver<bool>) {
    let builder = builder(&shared);
    let local = listener.local_addr().expect("bound listener has an address");
    let mut stop = shared.drain.subscribe();
    let mut errors = AcceptErrors::new("http");
    while let Some((mut stream, peer)) = accept(&listener, &shared.conn_limit, &mut stop, &mut closed, &mut errors).await {
        let (shared, builder, pp) = (shared.clone(), builder.clone(), proxy_protocol.load(Ordering::Relaxed));
        let slot = shared.conn_limit.take();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok((proxied_client, _slot)) = admit(&shared, pp, &mut stream, peer).await else { return };
            let _open = ConnGauge::new(&shared, "http");
            if shared.opts.http1_fast_path {
                let info = ConnInfo { peer, local, tls: false, proxied_client, verdicts: None, client_cert: None };
                return super::h1::server::serve(shared.clone(), builder, stream, info).await;
            }
            let verdicts = Arc::new(Verdicts::default());
            let info = Arc::new(ConnInfo { peer, local, tls: false, proxied_client, verdicts: Some(verdicts.clone()), client_cert: None });
            serve(shared.clone(), builder, Sniffer::new(stream, verdicts), info, 0).await;
        });
    }
}

/// Serves HTTPS: TLS with the certificate SNI picks, then HTTP/2 or HTTP/1.1 as ALPN chose.
async fn serve_https(listener: TcpListener, shared: Arc<Shared>, proxy_protocol: Arc<AtomicBool>, mut closed: tokio::sync::watch::Receiver<bool>) {
    let builder = builder(&shared);
    // The one place the HTTPS listener picks its TLS configuration: the live options', per
    // connection.
    let mut picker = super::sni::Picker::new();
    let local = listener.local_addr().expect("bound listener has an address");
    let mut stop = shared.drain.subscribe();
    let mut errors = AcceptErrors::new("https");
    while let Some((mut stream, peer)) = accept(&listener, &shared.conn_limit, &mut stop, &mut closed, &mut errors).await {
        let tls_config = picker.pick(&shared);
        let (shared, builder, pp) = (shared.clone(), builder.clone(), proxy_protocol.load(Ordering::Relaxed));
        let slot = shared.conn_limit.take();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok((proxied_client, _slot)) = admit(&shared, pp, &mut stream, peer).await else { return };
            // SSL passthrough: the ClientHello is read first, and replayed into our TLS when
            // its SNI is not a passthrough host.
            let passthrough = shared.config().passthrough_on(local.port()).clone();
            let stream = if passthrough.is_empty() {
                Prefixed::new(Vec::new(), stream)
            } else {
                match super::l4::passthrough::route(&shared, stream, peer, &passthrough).await {
                    super::l4::passthrough::Verdict::Terminate(stream, hello) => Prefixed::new(hello, stream),
                    super::l4::passthrough::Verdict::Done => return,
                }
            };
            let handshakes = &shared.metrics.tls_handshakes;
            // The client certificate is asked for only when SNI names a host with a policy.
            let (tls, client_cert) = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, super::client_auth::accept(&shared, &tls_config, stream)).await {
                Ok(Ok(done)) => done,
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
                let info = Arc::new(ConnInfo { peer, local, tls: true, proxied_client, verdicts: None, client_cert });
                serve(shared.clone(), builder, tls, info, 0).await;
            } else if shared.opts.http1_fast_path {
                let info = ConnInfo { peer, local, tls: true, proxied_client, verdicts: None, client_cert };
                super::h1::server::serve(shared.clone(), builder, tls, info).await;
            } else {
                let verdicts = Arc::new(Verdicts::default());
                let info = Arc::new(ConnInfo { peer, local, tls: true, proxied_client, verdicts: Some(verdicts.clone()), client_cert });
                serve(shared.clone(), builder, Sniffer::new(tls, verdicts), info, 0).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Hyper moves each request's future into place, a copy of its whole size per request: a
    /// wrapper that holds a future twice, or a rare path kept inline, shows here first (it was
    /// 14 KiB in a debug build once, against 6.5 KiB after boxing the rare paths).
    #[test]
    fn a_request_future_stays_small() {
        let size = future_size(handle::<hyper::body::Incoming, Turn>);
        let bound = 10 << 10;
        assert!(size < bound, "a request's future is {size} bytes, over {bound}");
    }
}
