//! Below HTTP: TCP and UDP services (`Config::l4`) and SSL passthrough on the HTTPS listener.
//!
//! The L4 sockets are reconciled on every swap like the HTTP listeners: a service whose name
//! (`tcp-9000`), address and protocol are unchanged keeps its socket and picks up the new
//! backend in place; a removed one stops accepting while its open connections drain; a new one
//! opens. Balancing is round-robin over the ready endpoints, with a cursor per backend name
//! that outlives swaps.

pub mod clienthello;
pub mod passthrough;
pub mod prefixed;
pub mod splice;
pub mod tcp;
pub mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;

use super::Shared;
use super::listener::ListenError;
use crate::config::{Backend, L4Protocol, L4Service};
use crate::metrics::{L4ByteLabels, L4Labels};

/// One open TCP listener or UDP socket.
struct Open {
    addr: SocketAddr,
    protocol: L4Protocol,
    local: SocketAddr,
    /// The service as last reconciled: new connections use it.
    service: Arc<ArcSwap<L4Service>>,
    close: tokio::sync::watch::Sender<bool>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.close.send_replace(true);
    }
}

/// The open L4 sockets by service name, and the round-robin cursors by backend name.
#[derive(Default)]
pub struct L4Listeners {
    open: Mutex<HashMap<String, Open>>,
    cursors: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl std::fmt::Debug for L4Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.open.lock().expect("l4 lock");
        f.debug_map().entries(open.iter().map(|(k, v)| (k, v.local))).finish()
    }
}

impl L4Listeners {
    /// Where the service `name` (`tcp-9000`) is bound, when it is open.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.open.lock().expect("l4 lock").get(name).map(|o| o.local)
    }

    /// Makes the open set match `services`; returns those that could not be opened (the
    /// others are unaffected). Must run inside the runtime.
    pub fn reconcile(&self, services: &[L4Service], shared: &Arc<Shared>) -> Vec<ListenError> {
        let mut open = self.open.lock().expect("l4 lock");
        open.retain(|name, o| services.iter().any(|s| &s.name == name && s.addr == o.addr && s.protocol == o.protocol));
        let mut errors = Vec::new();
        for svc in services {
            if let Some(o) = open.get(&svc.name) {
                o.service.store(Arc::new(svc.clone()));
                continue;
            }
            match start(svc, shared) {
                Ok(o) => {
                    tracing::info!(service = %svc.name, addr = %o.local, origin = %svc.origin, "listening");
                    open.insert(svc.name.clone(), o);
                }
                Err(e) => errors.push(ListenError {
                    name: format!("{} ({})", svc.name, svc.origin),
                    addr: svc.addr,
                    error: e.to_string(),
                    source: Some(svc.source.clone()),
                }),
            }
        }
        errors
    }

    /// Closes every L4 socket (open TCP connections go on until drained).
    pub fn close_all(&self) {
        self.open.lock().expect("l4 lock").clear();
    }

    /// The round-robin cursor of a backend, shared by every configuration.
    fn cursor(&self, backend: &str) -> Arc<AtomicUsize> {
        self.cursors.lock().expect("l4 lock").entry(backend.to_string()).or_default().clone()
    }
}

fn start(svc: &L4Service, shared: &Arc<Shared>) -> std::io::Result<Open> {
    let (close, closed) = tokio::sync::watch::channel(false);
    let service = Arc::new(ArcSwap::from_pointee(svc.clone()));
    let local = match svc.protocol {
        L4Protocol::Tcp => {
            let l = std::net::TcpListener::bind(svc.addr)?;
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            let local = l.local_addr()?;
            tokio::spawn(tcp::serve(l, service.clone(), shared.clone(), closed));
            local
        }
        L4Protocol::Udp => {
            let s = std::net::UdpSocket::bind(svc.addr)?;
            s.set_nonblocking(true)?;
            let s = tokio::net::UdpSocket::from_std(s)?;
            let local = s.local_addr()?;
            tokio::spawn(udp::serve(Arc::new(s), service.clone(), shared.clone(), closed));
            local
        }
    };
    Ok(Open { addr: svc.addr, protocol: svc.protocol, local, service, close })
}

/// The endpoints of `backend` in the order to try them: round-robin, then the others.
pub(crate) fn order(shared: &Shared, backend: &Backend) -> Vec<SocketAddr> {
    let n = backend.endpoints.len();
    if n == 0 {
        return Vec::new();
    }
    let start = shared.l4.cursor(&backend.name).fetch_add(1, Ordering::Relaxed) % n;
    (0..n).map(|i| backend.endpoints[(start + i) % n]).collect()
}

/// Dials the endpoints of `backend` in balancing order; a failure moves on to the next.
pub(crate) async fn connect(shared: &Shared, backend: &Backend, timeout: Duration) -> Option<TcpStream> {
    for ep in order(shared, backend) {
        match tokio::time::timeout(timeout, TcpStream::connect(ep)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => tracing::debug!(endpoint = %ep, backend = %backend.name, error = %e, "connect failed; trying the next endpoint"),
            Err(_) => tracing::debug!(endpoint = %ep, backend = %backend.name, "connect timed out; trying the next endpoint"),
        }
    }
    tracing::debug!(backend = %backend.name, "no endpoint could be reached; closing the connection");
    None
}

/// The metric labels of one service (or passthrough host) and its byte counters.
pub(crate) struct Counters {
    pub up: prometheus_client::metrics::counter::Counter,
    pub down: prometheus_client::metrics::counter::Counter,
}

pub(crate) fn count(shared: &Shared, backend: &Backend, port: u16, protocol: &str) -> Counters {
    let m = &shared.metrics;
    let l = L4Labels { service: format!("{}/{}", backend.namespace, backend.service), port: port.to_string(), protocol: protocol.into() };
    m.l4_connections.get_or_create(&l).inc();
    let bytes = |direction: &str| m.l4_bytes.get_or_create(&L4ByteLabels { service: l.service.clone(), port: l.port.clone(), protocol: l.protocol.clone(), direction: direction.into() }).clone();
    Counters { up: bytes("upstream"), down: bytes("downstream") }
}
