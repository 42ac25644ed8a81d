//! Plain TCP: the backend of the TCP-service scenarios and their two clients.
//!
//! - `tcp-backend`: a source port that writes bytes to every connection until it closes, and
//!   an echo port that sends back what it reads up to the first newline (or until the client
//!   half-closes), then closes.
//! - `tcp-stream`: `--connections` streams from the source, read as fast as they come for
//!   `--duration`; reports bytes and MB/s.
//! - `tcp-connect`: `--connections` workers, each in a loop: connect, send `--size` bytes (the
//!   last a newline), read them back, wait for the server's close, close. Reports connections
//!   per second and the latency of each exchange.
//!
//! The server closes first so that TIME_WAIT stays on the listening ports' side: a client that
//! closed first would leave tens of thousands of TIME_WAIT sockets on ephemeral ports, which
//! share the kernel's range with the bench's listening ports and keep the next proxy from
//! binding them for a minute.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Opts, Tally, done};

/// Serves the source and echo ports until SIGTERM or SIGINT.
pub async fn backend(source: SocketAddr, echo: SocketAddr) -> Result<(), String> {
    let src = bind(source).await?;
    let ech = bind(echo).await?;
    eprintln!("tcp-backend: source {source}, echo {echo}");
    tokio::spawn(async move {
        let chunk: Arc<[u8]> = vec![b'v'; 64 * 1024].into();
        while let Ok((mut s, _)) = src.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                // Until the reader goes away (a write error or reset ends it).
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = ech.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() || buf[n - 1] == b'\n' {
                        break;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let s = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    s.set_reuseaddr(true).map_err(|e| e.to_string())?;
    s.bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    s.listen(4096).map_err(|e| format!("listen {addr}: {e}"))
}

/// One stream: connect and read until the end of the run; adds what it read to `bytes`.
/// A stream that breaks is counted as an error and opened again.
pub async fn stream_worker(o: Opts, t: Arc<Tally>, end: Instant, bytes: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 256 * 1024];
    while !done(end) {
        let mut s = match tokio::time::timeout(o.timeout, TcpStream::connect(o.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                t.err(format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                t.err("connect timeout");
                continue;
            }
        };
        let started = Instant::now();
        let mut got = 0u64;
        let outcome = loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || done(end) {
                break Ok(());
            }
            match tokio::time::timeout(left.min(o.timeout), s.read(&mut buf)).await {
                Ok(Ok(0)) => break Err("closed by the server".to_string()),
                Ok(Ok(n)) => {
                    got += n as u64;
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(Err(e)) => break Err(format!("read: {e}")),
                Err(_) if Instant::now() >= end => break Ok(()),
                Err(_) => break Err("read timeout".to_string()),
            }
        };
        match outcome {
            // One sample per stream that lasted the run: how long it streamed.
            Ok(()) if got > 0 => t.ok(started.elapsed()),
            Ok(()) => t.err("no byte received"),
            Err(e) => t.err(e),
        }
    }
}

/// Connect, send `size` bytes ending in a newline, read them back (and check them), wait for
/// the server's close, close; as fast as it goes. The latency ends with the echo.
pub async fn connect_worker(o: Opts, t: Arc<Tally>, end: Instant) {
    let size = o.size.max(1);
    let mut payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    payload[size - 1] = b'\n';
    let mut back = vec![0u8; size];
    while !done(end) {
        let started = Instant::now();
        let r = tokio::time::timeout(o.timeout, async {
            let mut s = TcpStream::connect(o.addr).await.map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.write_all(&payload).await.map_err(|e| format!("write: {e}"))?;
            s.read_exact(&mut back).await.map_err(|e| format!("read: {e}"))?;
            if back != payload {
                return Err("the echo differs from what was sent".to_string());
            }
            let took = started.elapsed();
            match s.read(&mut back[..1]).await {
                Ok(0) => Ok::<Duration, String>(took),
                Ok(_) => Err("bytes after the echo".to_string()),
                Err(e) => Err(format!("waiting for the close: {e}")),
            }
        })
        .await;
        match r {
            Ok(Ok(took)) => t.ok(took),
            Ok(Err(e)) => {
                t.err(e);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => t.err("timeout"),
        }
    }
}
