//! Upstream connections: HTTP/1.1 keep-alive connections pooled per endpoint, and one
//! multiplexed HTTP/2 connection per endpoint, either of them cleartext or TLS.
//!
//! The pool is keyed by endpoint, not by configuration, so it outlives every config swap: a
//! change to the Ingresses never closes a connection to an endpoint that is still in use.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::h1::client::RawConn;
use crate::config::{BackendProtocol, UpstreamTls};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("TLS with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

/// A connection's request side.
pub enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

impl Sender {
    /// Sends a request; when it was not written at all, the error gives it back.
    pub fn send(&mut self, req: Request<ReqBody>) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<ReqBody>>>> + Send + use<> {
        // Not boxed: one allocation less per request.
        match self {
            Sender::H1(s) => futures::future::Either::Left(s.try_send_request(req)),
            Sender::H2(s) => futures::future::Either::Right(s.try_send_request(req)),
        }
    }
}

/// Endpoint, and the TLS setup connections to it were made with (0: plain; 1: TLS without
/// verification; else the backend's `UpstreamTls::fingerprint`).
type Key = (SocketAddr, u64);

/// Idle HTTP/1.1 connections and shared HTTP/2 connections, by endpoint and TLS.
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<http1::SendRequest<ReqBody>>>>,
    h2: Mutex<HashMap<Key, http2::SendRequest<ReqBody>>>,
    /// Idle cleartext HTTP/1.1 connections of the raw exchange (`h1::client`).
    raw: Mutex<HashMap<SocketAddr, Vec<RawConn>>>,
    max_idle_per_endpoint: usize,
    /// Connections open to endpoints, pooled or in use.
    open: Arc<AtomicI64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle_count()).field("open", &self.open_count()).finish()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(Arc::new(AtomicI64::new(0)))
    }
}

/// Counts a connection as open for as long as it lives.
pub(crate) struct OpenGuard(Arc<AtomicI64>);

impl OpenGuard {
    pub(crate) fn new(open: &Arc<AtomicI64>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(open.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection checked out of the pool (or new), with where it goes.
pub struct Conn {
    pub addr: SocketAddr,
    /// The pool key's TLS part.
    pub tls: u64,
    pub sender: Sender,
    pub reused: bool,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

fn default_tls(http2: bool) -> UpstreamTls {
    static H1: OnceLock<UpstreamTls> = OnceLock::new();
    static H2: OnceLock<UpstreamTls> = OnceLock::new();
    let make = |alpn: &[&[u8]]| UpstreamTls { config: crate::tls::insecure_client(alpn), server_name: rustls_pki_types::ServerName::try_from("backend").expect("valid name"), fingerprint: 1 };
    if http2 { H2.get_or_init(|| make(&[b"h2"])).clone() } else { H1.get_or_init(|| make(&[b"http/1.1"])).clone() }
}

impl Pool {
    pub fn new(open: Arc<AtomicI64>) -> Self {
        Pool { idle: Mutex::new(HashMap::new()), h2: Mutex::new(HashMap::new()), raw: Mutex::new(HashMap::new()), max_idle_per_endpoint: 64, open }
    }

    pub fn open_count(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn idle_count(&self) -> usize {
        let raw: usize = self.raw.lock().expect("pool lock").values().map(|l| l.len()).sum();
        self.idle.lock().expect("pool lock").values().map(|l| l.len()).sum::<usize>() + raw
    }

    /// Puts a raw connection whose last answer was read to its end back for reuse.
    pub fn put_raw(&self, addr: SocketAddr, mut conn: RawConn) {
        let mut raw = self.raw.lock().expect("pool lock");
        let list = raw.entry(addr).or_default();
        if list.len() >= self.max_idle_per_endpoint {
            list.retain(|c| c.idle_ok());
        }
        if list.len() < self.max_idle_per_endpoint {
            conn.reused = true;
            list.push(conn);
        }
    }

    /// A raw connection to `addr`: an idle one that is still open, else a new one.
    pub async fn get_raw(&self, addr: SocketAddr, connect_timeout: Duration) -> Result<RawConn, ConnectError> {
        let idle = {
            let mut raw = self.raw.lock().expect("pool lock");
            let list = raw.get_mut(&addr);
            list.and_then(|l| std::iter::from_fn(|| l.pop()).find(|c| c.idle_ok()))
        };
        if let Some(c) = idle {
            return Ok(c);
        }
        Box::pin(self.dial_raw(addr, connect_timeout)).await
    }

    /// A new raw connection to `addr`.
    pub async fn dial_raw(&self, addr: SocketAddr, connect_timeout: Duration) -> Result<RawConn, ConnectError> {
        let stream = within(connect_timeout, addr, tcp(addr)).await?;
        Ok(RawConn::new(stream, OpenGuard::new(&self.open)))
    }

    fn take_idle(&self, key: Key) -> Option<http1::SendRequest<ReqBody>> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(&key)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Puts an HTTP/1.1 connection back for reuse. It may still be finishing its last response;
    /// readiness is checked when it is taken.
    pub fn put(self: &Arc<Self>, key: Key, sender: http1::SendRequest<ReqBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(key).or_default();
        if list.len() >= self.max_idle_per_endpoint {
            list.retain(|c| !c.is_closed());
        }
        if list.len() < self.max_idle_per_endpoint {
            list.push(sender);
        }
    }

    /// Drops idle connections to endpoints no longer in `keep` (HTTP/2 connections close once
    /// their last stream ends).
    pub fn retain(&self, keep: &std::collections::HashSet<SocketAddr>) {
        self.idle.lock().expect("pool lock").retain(|(addr, _), list| {
            list.retain(|c| !c.is_closed());
            keep.contains(addr) && !list.is_empty()
        });
        self.h2.lock().expect("pool lock").retain(|(addr, _), s| keep.contains(addr) && !s.is_closed());
        self.raw.lock().expect("pool lock").retain(|addr, list| {
            list.retain(|c| c.idle_ok());
            keep.contains(addr) && !list.is_empty()
        });
    }

    /// Drops every idle connection (graceful shutdown).
    pub fn clear(&self) {
        self.idle.lock().expect("pool lock").clear();
        self.h2.lock().expect("pool lock").clear();
        self.raw.lock().expect("pool lock").clear();
    }

    /// A connection to `addr` for `protocol`: pooled when one is ready, else new.
    pub async fn get(&self, addr: SocketAddr, protocol: BackendProtocol, tls: Option<&UpstreamTls>, connect_timeout: Duration) -> Result<Conn, ConnectError> {
        let use_tls = protocol.tls();
        let key = (addr, if !use_tls { 0 } else { tls.map(|t| t.fingerprint).unwrap_or(1) });
        if protocol.http2() {
            if let Some(s) = self.h2.lock().expect("pool lock").get(&key).filter(|s| !s.is_closed()).cloned() {
                return Ok(Conn { addr, tls: key.1, sender: Sender::H2(s), reused: true });
            }
        } else {
            while let Some(mut s) = self.take_idle(key) {
                if s.is_ready() {
                    return Ok(Conn { addr, tls: key.1, sender: Sender::H1(s), reused: true });
                }
                // A connection put back at the end of its response becomes ready as soon as its
                // task has run; one that does not is dropped.
                if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(20), s.ready()).await {
                    return Ok(Conn { addr, tls: key.1, sender: Sender::H1(s), reused: true });
                }
            }
        }
        // A new connection is the rare case: its dial and handshake futures are large, so they
        // are boxed, and the future of every request that reuses a connection stays small.
        Box::pin(self.open_new(key, addr, protocol, tls, connect_timeout)).await
    }

    async fn open_new(&self, key: Key, addr: SocketAddr, protocol: BackendProtocol, tls: Option<&UpstreamTls>, connect_timeout: Duration) -> Result<Conn, ConnectError> {
        let io = self.dial(addr, protocol, tls, connect_timeout).await?;
        let guard = OpenGuard::new(&self.open);
        if protocol.http2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(TokioIo::new(io))
                .await
                .map_err(|e| ConnectError::Handshake(addr, e))?;
            tokio::spawn(async move {
                let _ = conn.await;
                drop(guard);
            });
            self.h2.lock().expect("pool lock").insert(key, sender.clone());
            Ok(Conn { addr, tls: key.1, sender: Sender::H2(sender), reused: false })
        } else {
            let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(|e| ConnectError::Handshake(addr, e))?;
            tokio::spawn(async move {
                let _ = conn.await;
                drop(guard);
            });
            Ok(Conn { addr, tls: key.1, sender: Sender::H1(sender), reused: false })
        }
    }

    /// A new HTTP/1.1 connection that may be upgraded (WebSocket); never pooled.
    pub async fn connect_upgradable(&self, addr: SocketAddr, protocol: BackendProtocol, tls: Option<&UpstreamTls>, connect_timeout: Duration) -> Result<http1::SendRequest<ReqBody>, ConnectError> {
        let io = self.dial(addr, if protocol.tls() { BackendProtocol::Https } else { BackendProtocol::Http }, tls, connect_timeout).await?;
        let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(|e| ConnectError::Handshake(addr, e))?;
        let guard = OpenGuard::new(&self.open);
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
            drop(guard);
        });
        Ok(sender)
    }

    async fn dial(&self, addr: SocketAddr, protocol: BackendProtocol, tls: Option<&UpstreamTls>, timeout: Duration) -> Result<Box<dyn IoBox>, ConnectError> {
        let fut = async {
            let stream = tcp(addr).await?;
            if !protocol.tls() {
                return Ok(Box::new(stream) as Box<dyn IoBox>);
            }
            let t = tls.cloned().unwrap_or_else(|| default_tls(protocol.http2()));
            let connector = tokio_rustls::TlsConnector::from(t.config.clone());
            let s = connector.connect(t.server_name.clone(), stream).await.map_err(|e| ConnectError::Tls(addr, e))?;
            Ok(Box::new(s) as Box<dyn IoBox>)
        };
        within(timeout, addr, fut).await
    }
}

/// A TCP connection to `addr`, with Nagle's algorithm off.
async fn tcp(addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let stream = TcpStream::connect(addr).await.map_err(|e| ConnectError::Io(addr, e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// `fut`, failed as a connect timeout to `addr` when it takes longer than `timeout`.
async fn within<T>(timeout: Duration, addr: SocketAddr, fut: impl Future<Output = Result<T, ConnectError>>) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, fut).await.unwrap_or(Err(ConnectError::Timeout(addr)))
}

/// A boxed upstream byte stream (TCP, or TLS over TCP).
pub trait IoBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: Io> IoBox for T {}

/// An upstream response body that returns its HTTP/1.1 connection to the pool when it ends,
/// and fails when the upstream sends nothing for longer than the read timeout.
pub struct PooledBody {
    inner: Incoming,
    conn: Option<(Arc<Pool>, Key, http1::SendRequest<ReqBody>)>,
    read_timeout: Duration,
    /// Allocated on the first wait, re-armed on each later one.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?}")]
pub struct ReadTimeout(pub Duration);

impl PooledBody {
    pub fn new(inner: Incoming, pool: Arc<Pool>, addr: SocketAddr, tls: u64, sender: Sender, read_timeout: Duration) -> Self {
        let conn = match sender {
            Sender::H1(s) if inner.is_end_stream() => {
                pool.put((addr, tls), s);
                None
            }
            Sender::H1(s) => Some((pool, (addr, tls), s)),
            Sender::H2(_) => None,
        };
        PooledBody { inner, conn, read_timeout, deadline: None, armed: false }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                if this.inner.is_end_stream() {
                    if let Some((pool, key, sender)) = this.conn.take() {
                        pool.put(key, sender);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                if let Some((pool, key, sender)) = this.conn.take() {
                    pool.put(key, sender);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.read_timeout;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !this.armed {
                    deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                    this.armed = true;
                }
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.conn = None;
                        Poll::Ready(Some(Err(Box::new(ReadTimeout(timeout)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
