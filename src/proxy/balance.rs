//! Choosing an endpoint: round-robin, least-request by power of two choices over a peak-EWMA
//! latency, or consistent hashing on a request key; and passive health (ejection with backoff).
//!
//! Per-endpoint state lives in a registry keyed by address, so it survives configuration swaps
//! for endpoints that remain.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{Backend, HashKey, HashPart, Policy};

/// Consecutive failed tries that eject an endpoint.
pub const EJECT_AFTER: u32 = 3;
const EJECT_BASE: Duration = Duration::from_secs(5);
const EJECT_MAX: Duration = Duration::from_secs(60);
/// Peak-EWMA decay time.
const EWMA_TAU_NS: f64 = 10_000_000_000.0;

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// What the balancer knows about one endpoint.
#[derive(Debug)]
pub struct EndpointState {
    pub addr: SocketAddr,
    pub in_flight: AtomicU32,
    /// Peak-EWMA of response latency, in nanoseconds (0 = no sample yet).
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    fails: AtomicU32,
    ejections: AtomicU32,
    ejected_until: AtomicU64,
}

impl EndpointState {
    fn new(addr: SocketAddr) -> Self {
        EndpointState {
            addr,
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            fails: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// A try failed as `proxy-next-upstream`'s `error` and `timeout` mean it: the connect was
    /// refused or timed out, the request could not be sent, or no valid answer head came in
    /// time. Returns true when this failure ejected the endpoint.
    pub fn failed(&self) -> bool {
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails < EJECT_AFTER {
            return false;
        }
        self.fails.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(4);
        let backoff = (EJECT_BASE * 2u32.pow(n)).min(EJECT_MAX);
        self.ejected_until.store(now_ns() + backoff.as_nanos() as u64, Ordering::Relaxed);
        true
    }

    /// The endpoint answered (any status): its run of failures ends.
    pub fn answered(&self) {
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 && !self.ejected(now_ns()) {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Records a response latency (peak-EWMA: a slower sample takes over at once, faster ones
    /// decay in).
    pub fn observe(&self, latency: Duration) {
        let rtt = latency.as_nanos() as u64;
        let now = now_ns();
        let prev = self.ewma_ns.load(Ordering::Relaxed);
        let at = self.ewma_at.swap(now, Ordering::Relaxed);
        let next = if prev == 0 || rtt > prev {
            rtt
        } else {
            let w = (-((now.saturating_sub(at)) as f64) / EWMA_TAU_NS).exp();
            (prev as f64 * w + rtt as f64 * (1.0 - w)) as u64
        };
        self.ewma_ns.store(next.max(1), Ordering::Relaxed);
    }

    fn load_score(&self) -> f64 {
        let ewma = self.ewma_ns.load(Ordering::Relaxed).max(1) as f64;
        ewma * (self.in_flight.load(Ordering::Relaxed) as f64 + 1.0)
    }
}

/// An endpoint's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    /// Taken out of balancing after consecutive connect failures, until its backoff ends.
    pub ejected: bool,
    /// Ejections in a row (resets once it connects again after its backoff).
    pub ejections: u32,
    pub in_flight: u32,
    /// Peak-EWMA response latency, once measured.
    pub latency_ms: Option<f64>,
}

/// Endpoint states by address and round-robin cursors by backend, shared by every config.
/// Entries live until a configuration without them is swapped in (`retain`).
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<SocketAddr, Arc<EndpointState>>>,
    cursors: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl Registry {
    pub fn endpoint(&self, addr: SocketAddr) -> Arc<EndpointState> {
        self.endpoints.lock().expect("registry lock").entry(addr).or_insert_with(|| Arc::new(EndpointState::new(addr))).clone()
    }

    pub fn cursor(&self, backend: &str) -> Arc<AtomicUsize> {
        let mut map = self.cursors.lock().expect("registry lock");
        if let Some(c) = map.get(backend) {
            return c.clone();
        }
        let c = Arc::new(AtomicUsize::new(0));
        map.insert(backend.to_string(), c.clone());
        c
    }

    /// What the balancer knows of one endpoint now, for operators; `None` before its first use.
    pub fn health(&self, addr: SocketAddr) -> Option<EndpointHealth> {
        let e = self.endpoints.lock().expect("registry lock").get(&addr).cloned()?;
        let ewma = e.ewma_ns.load(Ordering::Relaxed);
        Some(EndpointHealth {
            ejected: e.ejected(now_ns()),
            ejections: e.ejections.load(Ordering::Relaxed),
            in_flight: e.in_flight.load(Ordering::Relaxed),
            latency_ms: (ewma != 0).then(|| ewma as f64 / 1e6),
        })
    }

    /// Forgets endpoints and backends the live configuration no longer has.
    pub fn retain(&self, endpoints: &std::collections::HashSet<SocketAddr>, backends: &std::collections::HashSet<&str>) {
        self.endpoints.lock().expect("registry lock").retain(|a, _| endpoints.contains(a));
        self.cursors.lock().expect("registry lock").retain(|b, _| backends.contains(b.as_str()));
    }
}

/// The live state a backend balances with, bound once per backend per configuration.
#[derive(Debug)]
pub struct Bound {
    pub states: Vec<Arc<EndpointState>>,
    cursor: Arc<AtomicUsize>,
    ring: Vec<(u64, usize)>,
}

fn hash64(v: &impl Hash) -> u64 {
    // A fixed-key hasher: the same key maps to the same endpoint in every process.
    let mut h = FnvHasher(0xcbf2_9ce4_8422_2325);
    v.hash(&mut h);
    // Finalise (splitmix64) so that nearby inputs spread over the ring.
    let mut z = h.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

const VNODES: usize = 160;

impl Bound {
    pub fn new(backend: &Backend, registry: &Registry) -> Self {
        let states = backend.endpoints.iter().map(|a| registry.endpoint(*a)).collect();
        let ring = if matches!(backend.policy, Policy::Hash(_)) {
            let mut ring: Vec<(u64, usize)> = Vec::with_capacity(backend.endpoints.len() * VNODES);
            for (i, addr) in backend.endpoints.iter().enumerate() {
                for v in 0..VNODES {
                    ring.push((hash64(&(addr.to_string(), v)), i));
                }
            }
            ring.sort_unstable();
            ring
        } else {
            Vec::new()
        };
        Bound { states, cursor: registry.cursor(&backend.name), ring }
    }

    /// The endpoints not ejected now (all of them when every one is).
    pub fn healthy(&self) -> Vec<usize> {
        let now = now_ns();
        let healthy: Vec<usize> = (0..self.states.len()).filter(|i| !self.states[*i].ejected(now)).collect();
        if healthy.is_empty() { (0..self.states.len()).collect() } else { healthy }
    }

    /// The endpoints to try for one request, best first, at most `tries` of them. Ejected
    /// endpoints are skipped unless every endpoint is ejected.
    pub fn order(&self, policy: &Policy, key: Option<&[u8]>, tries: usize) -> Vec<usize> {
        let n = self.states.len();
        if n == 0 {
            return Vec::new();
        }
        let now = now_ns();
        // Usually no endpoint is ejected: then the pool is every endpoint, with no list built.
        let all = !self.states.iter().any(|s| s.ejected(now));
        let healthy: Vec<usize> = if all { Vec::new() } else { (0..n).filter(|i| !self.states[*i].ejected(now)).collect() };
        let all = all || healthy.is_empty();
        let pool = |p: usize| if all { p } else { healthy[p] };
        let m = if all { n } else { healthy.len() };
        let tries = tries.max(1).min(m);
        let first_pos = match (policy, key) {
            (Policy::Hash(_), Some(key)) if !self.ring.is_empty() => {
                let h = hash64(&key);
                let at = self.ring.partition_point(|(p, _)| *p < h);
                // Walk the ring to the first endpoint that is in the pool.
                let mut pos = None;
                for k in 0..self.ring.len() {
                    let idx = self.ring[(at + k) % self.ring.len()].1;
                    if let Some(p) = if all { Some(idx) } else { healthy.iter().position(|i| *i == idx) } {
                        pos = Some(p);
                        break;
                    }
                }
                pos.unwrap_or(0)
            }
            (Policy::LeastRequest, _) if m > 1 => {
                let r = crate::proxy::ids::random_u64();
                let a = (r % m as u64) as usize;
                let mut b = ((r >> 32) % (m as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                if self.states[pool(b)].load_score() < self.states[pool(a)].load_score() { b } else { a }
            }
            _ => self.cursor.fetch_add(1, Ordering::Relaxed) % m,
        };
        (0..tries).map(|k| pool((first_pos + k) % m)).collect()
    }
}

/// The bytes a request hashes on, per the backend's `upstream-hash-by` key.
pub fn hash_input<B>(key: &HashKey, req: &http::Request<B>, client: std::net::IpAddr) -> Vec<u8> {
    let mut out = Vec::new();
    for part in &key.parts {
        match part {
            HashPart::Literal(s) => out.extend_from_slice(s.as_bytes()),
            HashPart::RequestUri => out.extend_from_slice(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").as_bytes()),
            HashPart::Uri => out.extend_from_slice(req.uri().path().as_bytes()),
            HashPart::Host => out.extend_from_slice(crate::proxy::router::request_host(req).as_bytes()),
            HashPart::RemoteAddr => out.extend_from_slice(client.to_string().as_bytes()),
            HashPart::Header(name) => {
                if let Some(v) = req.headers().get(name.as_str()) {
                    out.extend_from_slice(v.as_bytes());
                }
            }
            HashPart::Cookie(name) => {
                for v in req.headers().get_all(http::header::COOKIE) {
                    for c in v.to_str().unwrap_or("").split(';') {
                        if let Some((k, val)) = c.trim().split_once('=') {
                            if k == name {
                                out.extend_from_slice(val.as_bytes());
                            }
                        }
                    }
                }
            }
            HashPart::Arg(name) => {
                for kv in req.uri().query().unwrap_or("").split('&') {
                    if let Some((k, v)) = kv.split_once('=') {
                        if k == name {
                            out.extend_from_slice(v.as_bytes());
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(n: u16, policy: Policy) -> Backend {
        let eps = (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i))).collect();
        let mut b = Backend::new(0, "ns", "svc", "80", eps, None);
        b.policy = policy;
        b
    }

    #[test]
    fn round_robin_cycles_and_skips_ejected() {
        let reg = Registry::default();
        let b = backend(3, Policy::RoundRobin);
        let bound = Bound::new(&b, &reg);
        let firsts: Vec<usize> = (0..6).map(|_| bound.order(&b.policy, None, 3)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
        for _ in 0..EJECT_AFTER {
            bound.states[1].failed();
        }
        assert!(bound.states[1].ejected(now_ns()));
        for _ in 0..6 {
            assert!(!bound.order(&b.policy, None, 3).contains(&1));
        }
        // Every endpoint ejected: try them anyway.
        for s in &bound.states {
            for _ in 0..EJECT_AFTER {
                s.failed();
            }
        }
        assert_eq!(bound.order(&b.policy, None, 3).len(), 3);
    }

    #[test]
    fn state_survives_rebinding() {
        let reg = Registry::default();
        let b = backend(2, Policy::RoundRobin);
        let bound1 = Bound::new(&b, &reg);
        bound1.states[0].in_flight.store(7, Ordering::Relaxed);
        bound1.order(&b.policy, None, 1);
        // The old configuration is gone before the new one binds.
        drop(bound1);
        let bound2 = Bound::new(&b, &reg);
        assert_eq!(bound2.states[0].in_flight.load(Ordering::Relaxed), 7);
        assert_eq!(bound2.order(&b.policy, None, 1), vec![1], "the rotation continues");
        // A configuration without the endpoint forgets it.
        reg.retain(&Default::default(), &Default::default());
        let bound3 = Bound::new(&b, &reg);
        assert_eq!(bound3.states[0].in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn consistent_hashing_is_stable_and_moves_little() {
        let reg = Registry::default();
        let key = HashKey { parts: vec![HashPart::RequestUri] };
        let b5 = backend(5, Policy::Hash(key.clone()));
        let b6 = backend(6, Policy::Hash(key));
        let (r5, r6) = (Bound::new(&b5, &reg), Bound::new(&b6, &reg));
        let mut moved = 0;
        for i in 0..1000 {
            let k = format!("/item/{i}");
            let a = r5.order(&b5.policy, Some(k.as_bytes()), 1)[0];
            assert_eq!(a, r5.order(&b5.policy, Some(k.as_bytes()), 1)[0]);
            if a != r6.order(&b6.policy, Some(k.as_bytes()), 1)[0] {
                moved += 1;
            }
        }
        // Adding a sixth endpoint moves about a sixth of the keys, not most of them.
        assert!(moved < 300, "{moved} of 1000 keys moved");
    }

    #[test]
    fn least_request_prefers_the_less_loaded() {
        let reg = Registry::default();
        let b = backend(2, Policy::LeastRequest);
        let bound = Bound::new(&b, &reg);
        bound.states[0].in_flight.store(50, Ordering::Relaxed);
        bound.states[0].observe(Duration::from_millis(50));
        bound.states[1].observe(Duration::from_millis(5));
        let picks1 = (0..100).filter(|_| bound.order(&b.policy, None, 1)[0] == 1).count();
        assert_eq!(picks1, 100);
    }
}
