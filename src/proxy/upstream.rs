//! Upstream connections: a pool of HTTP/1.1 keep-alive connections per endpoint address.
//!
//! The pool is keyed by endpoint, not by configuration, so it outlives every config swap: a
//! change to the Ingresses never closes a connection to an endpoint that is still in use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;
type Sender = SendRequest<ReqBody>;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

struct Idle {
    sender: Sender,
}

/// Idle keep-alive connections by endpoint.
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    max_idle_per_endpoint: usize,
    /// Connections open to endpoints, pooled or in use.
    open: Arc<AtomicI64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("endpoints", &self.idle.lock().map(|m| m.len()).unwrap_or(0)).finish()
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(Arc::new(AtomicI64::new(0)))
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<AtomicI64>);

impl OpenGuard {
    fn new(open: &Arc<AtomicI64>) -> Self {
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
    pub sender: Sender,
    pub reused: bool,
}

impl Pool {
    pub fn new(open: Arc<AtomicI64>) -> Self {
        Pool { idle: Mutex::new(HashMap::new()), max_idle_per_endpoint: 64, open }
    }

    pub fn open_count(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// An idle connection to `addr` that is ready for a request, if there is one.
    fn take_idle(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if c.sender.is_ready() {
                return Some(c.sender);
            }
        }
        None
    }

    /// Puts a connection back for reuse, once it is ready for the next request.
    pub fn put(self: &Arc<Self>, addr: SocketAddr, mut sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if sender.is_ready() {
            self.put_ready(addr, sender);
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put_ready(addr, sender);
            }
        });
    }

    fn put_ready(&self, addr: SocketAddr, sender: Sender) {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(addr).or_default();
        list.retain(|c| !c.sender.is_closed());
        if list.len() < self.max_idle_per_endpoint {
            list.push(Idle { sender });
        }
    }

    /// Drops idle connections to endpoints no longer in `keep`.
    pub fn retain(&self, keep: &std::collections::HashSet<SocketAddr>) {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.retain(|addr, list| {
            list.retain(|c| !c.sender.is_closed());
            keep.contains(addr) && !list.is_empty()
        });
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool lock").values().map(|l| l.len()).sum()
    }

    /// A pooled connection to `addr`, or a new one.
    pub async fn get(&self, addr: SocketAddr, connect_timeout: Duration) -> Result<Conn, ConnectError> {
        if let Some(sender) = self.take_idle(addr) {
            return Ok(Conn { addr, sender, reused: true });
        }
        let stream = connect(addr, connect_timeout).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Handshake(addr, e))?;
        let guard = OpenGuard::new(&self.open);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(guard);
        });
        Ok(Conn { addr, sender, reused: false })
    }

    /// A new connection that may be upgraded (WebSocket); never pooled.
    pub async fn connect_upgradable(&self, addr: SocketAddr, connect_timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = connect(addr, connect_timeout).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Handshake(addr, e))?;
        let guard = OpenGuard::new(&self.open);
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
            drop(guard);
        });
        Ok(sender)
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout(addr)),
        Ok(Err(e)) => return Err(ConnectError::Io(addr, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// An upstream response body that returns its connection to the pool when it ends, and fails
/// when the upstream sends nothing for longer than the read timeout.
pub struct PooledBody {
    inner: Incoming,
    conn: Option<(Arc<Pool>, SocketAddr, Sender)>,
    read_timeout: Duration,
    /// Allocated on the first wait, re-armed on each later one.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?}")]
pub struct ReadTimeout(pub Duration);

impl PooledBody {
    pub fn new(inner: Incoming, pool: Arc<Pool>, addr: SocketAddr, sender: Sender, read_timeout: Duration) -> Self {
        let conn = if inner.is_end_stream() {
            pool.put(addr, sender);
            None
        } else {
            Some((pool, addr, sender))
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
                    if let Some((pool, addr, sender)) = this.conn.take() {
                        pool.put(addr, sender);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                if let Some((pool, addr, sender)) = this.conn.take() {
                    pool.put(addr, sender);
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

use std::future::Future;
