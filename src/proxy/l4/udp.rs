//! A UDP service: one session per client address, each with its own socket connected to the
//! endpoint chosen (round-robin) when the session began. Replies on that socket go back to
//! that client from the service's port. A session idle for the timeout (no datagram either
//! way) ends; the table is bounded, and when full the least recently active session is evicted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::super::Shared;
use super::Counters;
use crate::config::L4Service;

/// The most sessions one service keeps at once.
pub const MAX_SESSIONS: usize = 10_000;
const DATAGRAM: usize = 65_535;

struct Session {
    id: u64,
    upstream: Arc<UdpSocket>,
    /// Last datagram either way, in milliseconds since the table's base.
    last: Arc<AtomicU64>,
    counters: Arc<Counters>,
    task: tokio::task::AbortHandle,
}

struct Table {
    base: Instant,
    sessions: HashMap<SocketAddr, Session>,
    next_id: u64,
}

impl Table {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn evict_oldest(&mut self) {
        if let Some(client) = self.sessions.iter().min_by_key(|(_, s)| s.last.load(Ordering::Relaxed)).map(|(c, _)| *c) {
            if let Some(s) = self.sessions.remove(&client) {
                s.task.abort();
                tracing::debug!(%client, "UDP session table full; evicted the least recently active session");
            }
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        for s in self.sessions.values() {
            s.task.abort();
        }
    }
}

/// Receives until the service is removed or shutdown begins; then every session ends.
pub(super) async fn serve(socket: Arc<UdpSocket>, service: Arc<ArcSwap<L4Service>>, shared: Arc<Shared>, mut closed: tokio::sync::watch::Receiver<bool>) {
    let table = Arc::new(Mutex::new(Table { base: Instant::now(), sessions: HashMap::new(), next_id: 0 }));
    let mut stop = shared.drain.subscribe();
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        if *closed.borrow() || *stop.borrow() {
            break;
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, client)) => datagram(&shared, &socket, &table, &service, client, &buf[..n]).await,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems: not fatal.
                    tracing::debug!(error = %e, "UDP receive failed");
                }
            },
            _ = closed.changed() => {}
            _ = stop.changed() => {}
        }
    }
    table.lock().expect("udp table").sessions.clear();
}

async fn datagram(shared: &Arc<Shared>, socket: &Arc<UdpSocket>, table: &Arc<Mutex<Table>>, service: &ArcSwap<L4Service>, client: SocketAddr, data: &[u8]) {
    let existing = {
        let t = table.lock().expect("udp table");
        t.sessions.get(&client).map(|s| {
            s.last.store(t.now_ms(), Ordering::Relaxed);
            (s.upstream.clone(), s.counters.clone())
        })
    };
    let (upstream, counters) = match existing {
        Some(s) => s,
        None => match open(shared, socket, table, &service.load_full(), client).await {
            Some(s) => s,
            None => return,
        },
    };
    if upstream.send(data).await.is_ok() {
        counters.up.inc_by(data.len() as u64);
    }
}

/// Starts a session for `client`: an endpoint, a socket connected to it, and the task that
/// carries its replies back.
async fn open(shared: &Arc<Shared>, socket: &Arc<UdpSocket>, table: &Arc<Mutex<Table>>, svc: &Arc<L4Service>, client: SocketAddr) -> Option<(Arc<UdpSocket>, Arc<Counters>)> {
    let endpoint = *super::order(shared, &svc.backend).first()?;
    let bind: SocketAddr = if endpoint.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let upstream = Arc::new(UdpSocket::bind(bind).await.ok()?);
    upstream.connect(endpoint).await.ok()?;
    let counters = Arc::new(super::count(shared, &svc.backend, svc.addr.port(), "udp"));
    let mut t = table.lock().expect("udp table");
    if t.sessions.len() >= MAX_SESSIONS {
        t.evict_oldest();
    }
    let id = t.next_id;
    t.next_id += 1;
    let last = Arc::new(AtomicU64::new(t.now_ms()));
    let replies = replies(socket.clone(), upstream.clone(), table.clone(), client, id, last.clone(), counters.clone(), svc.idle_timeout);
    let task = tokio::spawn(replies).abort_handle();
    t.sessions.insert(client, Session { id, upstream: upstream.clone(), last, counters: counters.clone(), task });
    tracing::debug!(%client, %endpoint, service = %svc.name, "UDP session started");
    Some((upstream, counters))
}

/// Carries one session's replies to its client until the session is idle for `idle`.
#[allow(clippy::too_many_arguments)]
async fn replies(socket: Arc<UdpSocket>, upstream: Arc<UdpSocket>, table: Arc<Mutex<Table>>, client: SocketAddr, id: u64, last: Arc<AtomicU64>, counters: Arc<Counters>, idle: Duration) {
    let base = table.lock().expect("udp table").base;
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let deadline = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        if Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout_at(deadline, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                last.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
                if socket.send_to(&buf[..n], client).await.is_ok() {
                    counters.down.inc_by(n as u64);
                }
            }
            // An ICMP error (the endpoint refused): keep the session until it is idle.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => {}
        }
    }
    let mut t = table.lock().expect("udp table");
    if t.sessions.get(&client).is_some_and(|s| s.id == id) {
        t.sessions.remove(&client);
        tracing::debug!(%client, "UDP session idle; ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the table is full, the session with the oldest activity goes, and its task ends.
    #[tokio::test]
    async fn eviction_takes_the_least_recently_active() {
        let counters = Arc::new(Counters { up: Default::default(), down: Default::default() });
        let mut t = Table { base: Instant::now(), sessions: HashMap::new(), next_id: 0 };
        let mut tasks = Vec::new();
        for (i, last) in [(1u16, 50u64), (2, 10), (3, 30)] {
            let task = tokio::spawn(std::future::pending::<()>());
            let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            t.sessions.insert(([127, 0, 0, 1], i).into(), Session { id: i as u64, upstream, last: Arc::new(AtomicU64::new(last)), counters: counters.clone(), task: task.abort_handle() });
            tasks.push(task);
        }
        t.evict_oldest();
        let mut left: Vec<u16> = t.sessions.keys().map(|a| a.port()).collect();
        left.sort();
        assert_eq!(left, [1, 3]);
        assert!(tasks.remove(1).await.unwrap_err().is_cancelled(), "the evicted session's task was stopped");
    }
}
