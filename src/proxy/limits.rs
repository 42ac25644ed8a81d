//! The state of the per-client limits (`limit-rps`, `limit-rpm`, `limit-connections`): token
//! buckets and active-request counts keyed by the limit's zone (the Ingress's stable identity)
//! and the client address. It lives beside the configuration, not in it, so a swap keeps every
//! bucket; the bucket table is bounded (least recently used entries evicted) so a flood of
//! addresses cannot grow it without limit.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::limits::Rate;

/// The most buckets kept; the least recently used go first.
pub const MAX_BUCKETS: usize = 100_000;

type Key = (String, u8, IpAddr);

struct Bucket {
    /// nginx's "excess": requests above the average rate, drained at the rate.
    excess: f64,
    at: Instant,
    stamp: u64,
}

#[derive(Default)]
struct Table {
    map: HashMap<Key, Bucket>,
    order: BTreeMap<u64, Key>,
    next: u64,
}

#[derive(Default)]
pub struct Limits {
    buckets: Mutex<Table>,
    conns: Arc<Mutex<HashMap<(String, IpAddr), u32>>>,
    cap: Option<usize>,
}

/// An active request counted against `limit-connections`; dropping it ends it.
pub struct ConnGuard {
    table: Arc<Mutex<HashMap<(String, IpAddr), u32>>>,
    key: (String, IpAddr),
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").field("buckets", &self.buckets()).finish()
    }
}

impl Limits {
    /// A table holding at most `cap` buckets (tests).
    pub fn with_capacity(cap: usize) -> Self {
        Limits { cap: Some(cap), ..Default::default() }
    }

    pub fn buckets(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    /// Whether one more request from `ip` fits the `index`th rate of `zone`, at `now`; counts it
    /// when it does (nginx's `limit_req ... nodelay`: the first request and `burst` more at once,
    /// then one per 1/rate seconds).
    pub fn take(&self, zone: &str, index: u8, rate: Rate, ip: IpAddr, now: Instant) -> bool {
        let mut t = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (zone.to_string(), index, ip);
        t.next += 1;
        let stamp = t.next;
        if let Some(b) = t.map.get_mut(&key) {
            let drained = (b.excess - rate.per_second * now.saturating_duration_since(b.at).as_secs_f64()).max(0.0);
            let old = b.stamp;
            // A tiny tolerance, so that a bucket drained exactly on time is not refused.
            let ok = drained + 1.0 <= rate.burst as f64 + 1e-9;
            if ok {
                (b.excess, b.at) = (drained + 1.0, now);
            }
            b.stamp = stamp;
            t.order.remove(&old);
            t.order.insert(stamp, key);
            return ok;
        }
        let cap = self.cap.unwrap_or(MAX_BUCKETS).max(1);
        while t.map.len() >= cap {
            let Some((_, oldest)) = t.order.pop_first() else { break };
            t.map.remove(&oldest);
        }
        t.map.insert(key.clone(), Bucket { excess: 0.0, at: now, stamp });
        t.order.insert(stamp, key);
        true
    }

    /// One more active request from `ip` under `zone`, unless `max` are active already.
    pub fn connect(&self, zone: &str, ip: IpAddr, max: u32) -> Option<ConnGuard> {
        let key = (zone.to_string(), ip);
        let mut t = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(key.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnGuard { table: self.conns.clone(), key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_one_per_interval() {
        let l = Limits::default();
        let (rate, ip, t0) = (Rate { per_second: 1.0, burst: 5 }, "127.0.0.1".parse().unwrap(), Instant::now());
        let n = (0..20).filter(|_| l.take("z", 0, rate, ip, t0)).count();
        assert_eq!(n, 6, "the first request and a burst of 5");
        assert!(!l.take("z", 0, rate, ip, t0 + Duration::from_millis(500)));
        assert!(l.take("z", 0, rate, ip, t0 + Duration::from_millis(1000)));
        assert!(l.take("other", 0, rate, ip, t0), "zones are separate");
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_table_bounded() {
        let l = Limits::default();
        let rate = Rate { per_second: 1.0, burst: 1 };
        let now = Instant::now();
        for i in 0..(MAX_BUCKETS as u32 + 50_000) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.take("z", 0, rate, ip, now);
        }
        assert_eq!(l.buckets(), MAX_BUCKETS);
        let small = Limits::with_capacity(2);
        let ips: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().map(|s| s.parse().unwrap()).collect();
        let r = Rate { per_second: 0.001, burst: 0 };
        assert!(small.take("z", 0, r, ips[0], now) && !small.take("z", 0, r, ips[0], now));
        small.take("z", 0, r, ips[1], now);
        small.take("z", 0, r, ips[2], now);
        assert!(small.take("z", 0, r, ips[0], now), "the least recently used bucket was evicted");
    }

    #[test]
    fn connections_are_counted_until_dropped() {
        let l = Limits::default();
        let ip = "127.0.0.1".parse().unwrap();
        let a = l.connect("z", ip, 2);
        let b = l.connect("z", ip, 2);
        assert!(a.is_some() && b.is_some() && l.connect("z", ip, 2).is_none());
        drop(a);
        assert!(l.connect("z", ip, 2).is_some());
    }
}
