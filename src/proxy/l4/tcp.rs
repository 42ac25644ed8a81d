//! A TCP service: accept, optionally read the client's PROXY header, dial an endpoint
//! (round-robin, moving on when one refuses), optionally send a PROXY v1 line, then splice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::super::Shared;
use crate::config::L4Service;

/// Accepts until the service is removed or shutdown begins; connections already open go on.
pub(super) async fn serve(listener: TcpListener, service: Arc<ArcSwap<L4Service>>, shared: Arc<Shared>, mut closed: tokio::sync::watch::Receiver<bool>) {
    let mut stop = shared.drain.subscribe();
    let mut errors = super::super::listener::AcceptErrors::new("tcp service");
    loop {
        if *closed.borrow() || *stop.borrow() {
            return;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle(shared.clone(), stream, peer, service.load_full()));
                }
                Err(e) => errors.failed(&e).await,
            },
            _ = closed.changed() => {}
            _ = stop.changed() => {}
        }
    }
}

async fn handle(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, svc: Arc<L4Service>) {
    let _active = shared.drain.track();
    let client = if svc.decode_proxy {
        match super::super::proxy_protocol::read(&mut stream, Duration::from_secs(10)).await {
            Ok(src) => src,
            Err(e) => {
                tracing::debug!(%peer, service = %svc.name, error = %e, "dropping connection without a valid PROXY protocol header");
                return;
            }
        }
    } else {
        None
    };
    let Some(mut upstream) = super::connect(&shared, &svc.backend, svc.connect_timeout).await else { return };
    if svc.encode_proxy {
        let local = stream.local_addr().unwrap_or(svc.addr);
        let line = super::super::proxy_protocol::encode_v1(client.unwrap_or(peer), local);
        if upstream.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
    let c = super::count(&shared, &svc.backend, svc.addr.port(), "tcp");
    super::splice::splice(stream, upstream, svc.idle_timeout, &c.up, &c.down).await;
}
