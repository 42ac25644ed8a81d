//! SSL passthrough on the HTTPS listener: the ClientHello is read first; when its SNI names a
//! passthrough host the raw connection (the ClientHello bytes first) goes to that host's
//! endpoints, so the client talks TLS with the endpoint and sees its certificate. Anything
//! else is handed back, with the bytes read, for Vestibule's own TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::super::Shared;
use super::clienthello;
use crate::config::Passthrough;

/// What to do with a connection on the HTTPS port.
pub enum Verdict {
    /// Terminate TLS here: replay these bytes into the acceptor.
    Terminate(TcpStream, Vec<u8>),
    /// Passed through (or dropped); nothing more to do.
    Done,
}

/// Reads the ClientHello and passes the connection through when its SNI is a passthrough
/// host. A malformed, oversized or late ClientHello closes the connection.
pub async fn route(shared: &Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, table: &Passthrough) -> Verdict {
    let (hello, sni) = match clienthello::read(&mut stream).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "closing: no usable ClientHello");
            return Verdict::Done;
        }
    };
    let Some(backend) = sni.as_deref().and_then(|s| table.backend(s)) else {
        return Verdict::Terminate(stream, hello);
    };
    let _active = shared.drain.track();
    let Some(mut upstream) = super::connect(shared, backend, table.connect_timeout).await else { return Verdict::Done };
    if upstream.write_all(&hello).await.is_err() {
        return Verdict::Done;
    }
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let c = super::count(shared, backend, port, "passthrough");
    c.up.inc_by(hello.len() as u64);
    super::splice::splice(stream, upstream, table.idle_timeout, &c.up, &c.down).await;
    Verdict::Done
}
