//! Per-client limits: `limit-rps`, `limit-rpm` (with `limit-burst-multiplier`, 5 by default:
//! the burst is the rate times it, served at once as nginx's `nodelay`), `limit-connections`,
//! `limit-allowlist` (also `limit-whitelist`: clients exempt) and `limit-rate` /
//! `limit-rate-after` (response bandwidth in KiB/s after that many KiB).
//!
//! The buckets are per client address per Ingress (all its paths share them, as its nginx zone
//! is shared). Over a limit: the ConfigMap's `limit-req-status-code` / `limit-conn-status-code`.
//!
//! Fail closed: a limit that cannot be parsed is an Error and the Ingress's paths answer with
//! the limit status (ingress-nginx would drop the limit and serve unlimited); an allow list that
//! cannot be parsed is an Error and nobody is exempt.

use std::sync::Arc;

use super::Reader;
use crate::config::http::HttpSettings;
use crate::config::limits::{Rate, RateLimit, parse_nets};

pub const KEYS: &[&str] = &["limit-rps", "limit-rpm", "limit-burst-multiplier", "limit-connections", "limit-allowlist", "limit-whitelist", "limit-rate", "limit-rate-after"];

#[derive(Debug, Clone, Default)]
pub struct RateAnn {
    pub limit: Option<Arc<RateLimit>>,
    /// A limit could not be parsed: every request answers `status`.
    pub closed: Option<u16>,
}

/// A whole number annotation: `Ok(0)` when absent, `Err` (reported) when not a number.
fn number(r: &mut Reader, key: &str) -> Result<u64, ()> {
    let Some((k, v)) = r.get(key) else { return Ok(0) };
    match v.trim().parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) => {
            r.invalid(&k, format!("{v:?}: must be a whole number; fails closed: every request to this Ingress's paths is refused"));
            Err(())
        }
    }
}

pub fn parse(r: &mut Reader, http: &HttpSettings) -> RateAnn {
    let (rps, rpm, conn) = (number(r, "limit-rps"), number(r, "limit-rpm"), number(r, "limit-connections"));
    let (rate, after) = (number(r, "limit-rate"), number(r, "limit-rate-after"));
    if rps.is_err() || rpm.is_err() || conn.is_err() || rate.is_err() || after.is_err() {
        return RateAnn { limit: None, closed: Some(http.limit_req_status) };
    }
    let (rps, rpm, conn, rate, after) = (rps.unwrap_or(0), rpm.unwrap_or(0), conn.unwrap_or(0), rate.unwrap_or(0), after.unwrap_or(0));
    let mut multiplier = 5u64;
    if let Some((k, v)) = r.get("limit-burst-multiplier") {
        match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => multiplier = n,
            _ => r.bad(&k, format!("{v:?}: must be a whole number above 0; 5 is used")),
        }
    }
    let mut exempt = Vec::new();
    if let Some((k, v)) = r.get("limit-allowlist").or_else(|| r.get("limit-whitelist")) {
        match parse_nets(v) {
            Ok(n) => exempt = n,
            Err(e) => r.invalid(&k, format!("{e}; nobody is exempt from the limits")),
        }
    }
    if rps == 0 && rpm == 0 && conn == 0 && rate == 0 {
        return RateAnn::default();
    }
    let mut rates = Vec::new();
    for (n, per_second) in [(rps, rps as f64), (rpm, rpm as f64 / 60.0)] {
        if n > 0 {
            rates.push(Rate { per_second, burst: (n.saturating_mul(multiplier)).min(u32::MAX as u64) as u32 });
        }
    }
    let m = &r.ingress.metadata;
    let zone = format!("{}/{}", m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""));
    let limit = RateLimit {
        zone,
        rates,
        connections: conn.min(u32::MAX as u64) as u32,
        exempt,
        bytes_per_second: rate.saturating_mul(1024),
        rate_after: after.saturating_mul(1024),
        req_status: http.limit_req_status,
        conn_status: http.limit_conn_status,
    };
    RateAnn { limit: Some(Arc::new(limit)), closed: None }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};

    #[test]
    fn burst_is_rate_times_multiplier() {
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/limit-rps", "2"), ("nginx.ingress.kubernetes.io/limit-rpm", "60"), ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "3")]));
        let l = a.ratelimit.limit.expect("limit");
        assert!(e.is_empty());
        assert_eq!(l.rates.iter().map(|r| (r.per_second, r.burst)).collect::<Vec<_>>(), [(2.0, 6), (1.0, 180)]);
        assert_eq!(l.zone, "ns/");
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/limit-rps", "lots")]));
        assert_eq!((a.ratelimit.closed, e.len()), (Some(503), 1));
        let (a, _) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/limit-rate", "64")]));
        assert_eq!(a.ratelimit.limit.expect("limit").bytes_per_second, 65536);
    }
}
