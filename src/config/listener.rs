//! The listeners the data plane must have open, declared by the configuration and reconciled
//! on each swap: a listener whose spec is unchanged keeps its socket and connections.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ListenerProtocol {
    /// HTTP/1.1, and HTTP/2 with prior knowledge.
    Http,
    /// TLS with the certificate SNI picks, then HTTP/2 or HTTP/1.1 by ALPN.
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerSpec {
    /// A stable name (`http`, `https`; later `tcp-5432` and Gateway listeners).
    pub name: String,
    /// Where to bind; port 0 picks a free port once, kept while the spec stays the same.
    pub addr: SocketAddr,
    pub protocol: ListenerProtocol,
    /// Expect a PROXY protocol (v1 or v2) header on every connection.
    pub proxy_protocol: bool,
}
