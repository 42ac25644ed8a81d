//! The admit phase of a connection, before any HTTP: the PROXY protocol header, then the limit
//! on connections per client address.

use std::net::SocketAddr;
use std::time::Duration;

use super::Shared;

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
pub async fn admit<'a>(shared: &'a Shared, proxy_protocol: bool, stream: &mut tokio::net::TcpStream, peer: SocketAddr) -> Result<(Option<SocketAddr>, Option<PerIpGuard<'a>>), ()> {
    let proxied = if proxy_protocol {
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

