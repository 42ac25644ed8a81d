//! Access and rate policies of a route: source-address allow and deny lists
//! (`whitelist-source-range`, `denylist-source-range`) and per-client request, connection and
//! bandwidth limits (`limit-rps`, `limit-rpm`, `limit-connections`, `limit-rate`). Data only: the
//! data plane keeps the buckets in a registry keyed by `RateLimit::zone`, so they outlive swaps.

use std::net::IpAddr;

pub use ipnet::IpNet;

/// Whether `ip` is inside one of `nets`.
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// A source-address filter: `deny` wins; then, when `allow` is set, only addresses in it pass.
/// `closed` answers 403 to everyone (a list that could not be parsed: fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpFilter {
    pub allow: Option<Vec<IpNet>>,
    pub deny: Vec<IpNet>,
    pub closed: bool,
}

impl IpFilter {
    /// Whether a request from `ip` is let through.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.closed || contains(&self.deny, ip) {
            return false;
        }
        self.allow.as_ref().is_none_or(|a| contains(a, ip))
    }
}

/// A token bucket (nginx's `limit_req` with `nodelay`): `per_second` requests a second on
/// average, up to `burst` more at once; requests beyond are answered with `status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Eq for Rate {}

/// The per-client limits of one Ingress's routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Stable identity of the buckets: namespace, Ingress name and rule path. Buckets with the
    /// same zone survive a configuration swap.
    pub zone: String,
    /// `limit-rps` and `limit-rpm`: both apply when both are set.
    pub rates: Vec<Rate>,
    /// `limit-connections`: concurrent requests per client address (0: none).
    pub connections: u32,
    /// `limit-allowlist`: clients exempt from the request and connection limits.
    pub exempt: Vec<IpNet>,
    /// `limit-rate` (bytes a second, 0: none) after `limit-rate-after` bytes of the response.
    pub bytes_per_second: u64,
    pub rate_after: u64,
    /// `limit-req-status-code` and `limit-conn-status-code` (ConfigMap; 503 by default).
    pub req_status: u16,
    pub conn_status: u16,
}

/// Parses a comma-separated list of CIDRs or plain addresses (ingress-nginx's `ParseIPNets`).
pub fn parse_nets(v: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = match part.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => match part.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip.to_canonical()),
                Err(_) => return Err(format!("{part:?} is not an address or CIDR")),
            },
        };
        out.push(net);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_lists_parse() {
        let f = IpFilter { allow: Some(parse_nets("127.0.0.0/8, ::1").unwrap()), deny: parse_nets("127.0.0.3").unwrap(), closed: false };
        assert!(f.admits("127.0.0.2".parse().unwrap()));
        assert!(!f.admits("127.0.0.3".parse().unwrap()));
        assert!(!f.admits("10.0.0.1".parse().unwrap()));
        assert!(f.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(parse_nets("10.0.0.0/33").is_err() && parse_nets("nope").is_err());
        assert!(!IpFilter { closed: true, ..Default::default() }.admits("127.0.0.1".parse().unwrap()));
    }
}
