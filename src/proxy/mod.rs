//! The data plane: listeners accept connections, each request runs the phases in
//! `handler.rs` against the live `Config`, and the upstream pool carries it to an endpoint.
//! It reads `config`, never `compile` or a source.

pub mod admit;
pub mod affinity;
pub mod balance;
pub mod h1;
pub mod h3;
pub mod body;
pub mod client_auth;
pub mod conn_limit;
pub mod context;
pub mod error_pages;
pub mod filters;
pub mod forget;
pub mod forward;
pub mod forwarded;
pub mod handler;
pub mod head;
pub mod ids;
pub mod limits;
pub mod l4;
pub mod listener;
pub mod log;
pub mod proxy_protocol;
pub mod respond;
pub mod router;
pub mod sni;
pub mod sniff;
pub mod split;
pub mod tunnel;
pub mod upgrade;
pub mod upstream;

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::accesslog::AccessLog;
use crate::config::{Backend, Config, RouteLabels};
use crate::metrics::{Metrics, RouteStats};
use upstream::Pool;

/// Limits and timeouts of the data plane, set by flags.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `--proxy-connect-timeout`: establishing a connection to an endpoint.
    pub connect_timeout: Duration,
    /// `--proxy-read-timeout`: the longest wait for the next bytes from an endpoint.
    pub read_timeout: Duration,
    /// `--proxy-body-size`: the largest request body accepted (413 above).
    pub body_limit: u64,
    /// How long a client may take to send its request headers; also how long a keep-alive
    /// connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// The most request header fields accepted.
    pub max_headers: usize,
    /// The largest request head (request line and headers) accepted, in bytes (431 above).
    pub max_header_bytes: usize,
    /// Tries per request across endpoints when connecting fails.
    pub upstream_tries: usize,
    /// The HTTPS port clients see, for redirects.
    pub https_port: u16,
    /// Expect a PROXY protocol (v1 or v2) header on every connection.
    pub proxy_protocol: bool,
    /// Connections accepted per client address; 0 for no limit.
    pub max_connections_per_ip: usize,
    /// HTTP/2 streams open at once per connection.
    pub max_concurrent_streams: u32,
    /// Per-request Prometheus metrics (`--enable-metrics`).
    pub metrics: bool,
    /// `--http1-fast-path`: the raw HTTP/1.1 exchange (`h1`) where it applies. Its default
    /// follows `VESTIBULE_HTTP1_FAST_PATH`, so that a test run can take either path.
    pub http1_fast_path: bool,
}

/// `VESTIBULE_HTTP1_FAST_PATH`, unless it says `false`, `off` or `0`: on.
pub fn fast_path_default() -> bool {
    !matches!(std::env::var("VESTIBULE_HTTP1_FAST_PATH").as_deref(), Ok("false" | "off" | "0" | "no" | "n" | "f"))
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            body_limit: 1024 * 1024,
            header_read_timeout: Duration::from_secs(60),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            upstream_tries: 3,
            https_port: 443,
            proxy_protocol: false,
            max_connections_per_ip: 0,
            max_concurrent_streams: 128,
            metrics: true,
            http1_fast_path: fast_path_default(),
        }
    }
}

/// What every request handler shares: the live configuration, readiness and the pool.
#[derive(Debug)]
pub struct Shared {
    pub live: ArcSwap<Live>,
    pub ready: AtomicBool,
    pub opts: ProxyOptions,
    pub pool: Arc<Pool>,
    pub registry: balance::Registry,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    /// The open listeners, reconciled with each configuration.
    pub listeners: listener::Listeners,
    /// The HTTPS port redirects name: `opts.https_port` when set, else the HTTPS listener's.
    https_port: AtomicU16,
    /// Open connections and tunnels, and the signal that tells them to finish.
    pub drain: Arc<Drain>,
    pub per_ip: admit::PerIp,
    /// The open TCP and UDP service sockets, reconciled with each configuration.
    pub l4: l4::L4Listeners,
    /// Rate-limit buckets and connection counts, kept across configuration swaps.
    pub limits: limits::Limits,
    /// The `Alt-Svc` value HTTPS answers carry once HTTP/3 listens (`h3=":PORT"; ma=86400`).
    pub alt_svc: std::sync::OnceLock<http::HeaderValue>,
    /// `max-worker-connections`, over the HTTP listeners.
    pub conn_limit: Arc<conn_limit::ConnLimit>,
    /// What the live configuration no longer uses, forgotten after a change is live.
    forget: forget::Forget,
}

/// Graceful shutdown: one signal for every connection and tunnel, and a count of those still
/// open.
#[derive(Debug)]
pub struct Drain {
    stop: tokio::sync::watch::Sender<bool>,
    active: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    /// Set when shutdown begins: /healthz answers 503 from then on.
    pub draining: AtomicBool,
}

/// Keeps a connection counted as open.
pub struct Active(Arc<Drain>);

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    fn new() -> Arc<Self> {
        Arc::new(Drain { stop: tokio::sync::watch::channel(false).0, active: Default::default(), idle: Default::default(), draining: AtomicBool::new(false) })
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn track(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Stops accepting and asks every connection to finish.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until every connection has finished, or `timeout`; returns how many remain.
    pub async fn wait(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active();
            }
        }
    }
}

/// The live configuration and the data plane's state for it: balancing order per backend and
/// statistics per route, in tables indexed by the configuration's dense ids and made on first
/// use. A new configuration starts new tables; what must outlive a swap (endpoint health,
/// cursors, counters) lives in the registries these point into.
#[derive(Debug)]
pub struct Live {
    pub config: Arc<Config>,
    bound: Box<[OnceLock<balance::Bound>]>,
    stats: Box<[OnceLock<Arc<RouteStats>>]>,
}

impl Live {
    pub fn new(config: Config) -> Self {
        // Compile hands out backend ids below `backend_count`, so only a configuration built by
        // hand without it is walked for its largest id: at 10,000 Ingresses the walk cost as
        // much as the rest of a swap.
        let walk = || config.backends().map(|b| b.id + 1).max().unwrap_or(0);
        let backends = match config.backend_count {
            0 => walk(),
            n => {
                debug_assert!(walk() <= n, "a backend id at or above backend_count {n}");
                n
            }
        };
        let routes = config.route_count.max(1);
        Live { bound: (0..backends).map(|_| OnceLock::new()).collect(), stats: (0..routes).map(|_| OnceLock::new()).collect(), config: Arc::new(config) }
    }

    /// The balancing state of `backend` (one of this configuration's).
    pub fn bound(&self, backend: &Backend, registry: &balance::Registry) -> &balance::Bound {
        self.bound[backend.id].get_or_init(|| balance::Bound::new(backend, registry))
    }

    /// The statistics of route `id`, shared with every other configuration's same route.
    pub fn stats(&self, id: usize, labels: &RouteLabels, metrics: &Metrics) -> &Arc<RouteStats> {
        match self.stats.get(id) {
            Some(slot) => slot.get_or_init(|| metrics.route(labels)),
            None => self.stats[0].get_or_init(|| metrics.route(labels)),
        }
    }
}

impl Shared {
    pub fn new(initial: Config, opts: ProxyOptions) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        Self::with_observability(initial, opts, metrics.clone(), AccessLog::off(metrics))
    }

    pub fn with_observability(initial: Config, opts: ProxyOptions, metrics: Arc<Metrics>, access_log: AccessLog) -> Arc<Self> {
        let pool = Arc::new(Pool::new(metrics.upstream_open.clone()));
        Arc::new(Shared {
            live: ArcSwap::from_pointee(Live::new(initial)),
            ready: AtomicBool::new(false),
            opts,
            pool,
            registry: balance::Registry::default(),
            metrics,
            access_log,
            listeners: listener::Listeners::default(),
            https_port: AtomicU16::new(0),
            drain: Drain::new(),
            per_ip: admit::PerIp::default(),
            limits: limits::Limits::default(),
            alt_svc: std::sync::OnceLock::new(),
            conn_limit: Arc::default(),
            l4: l4::L4Listeners::default(),
            forget: forget::Forget::default(),
        })
    }

    /// The live configuration and its tables.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// The HTTPS port redirects name.
    pub fn https_port(&self) -> u16 {
        match self.opts.https_port {
            0 => self.https_port.load(Ordering::Relaxed),
            p => p,
        }
    }

    /// Makes `config` live for every request that starts from now on, opens and closes
    /// listeners to match it, and soon after forgets what it no longer uses (see [`forget`]).
    /// Must run inside the runtime. Returns the listeners that could not be opened.
    pub fn swap(self: &Arc<Self>, config: Config) -> Vec<listener::ListenError> {
        let mut errors = self.listeners.reconcile(&config.listeners, self);
        errors.extend(self.l4.reconcile(&config.l4, self));
        if let Some(https) = config.listeners.iter().find(|l| l.protocol == crate::config::ListenerProtocol::Https) {
            if let Some(addr) = self.listeners.local_addr(&https.name) {
                self.https_port.store(addr.port(), Ordering::Relaxed);
            }
        }
        let live = Arc::new(Live::new(config));
        self.conn_limit.set(live.config.http.max_worker_connections);
        let config = live.config.clone();
        let old = self.live.swap(live);
        self.ready.store(true, Ordering::Release);
        // The statistics of routes that are gone leave /metrics now; idle connections and
        // balancer state soon after, with one sweep for a burst of changes.
        self.metrics.forget_routes(&config.route_labels_gone(&old.config));
        self.forget.later(self);
        errors
    }

    /// Drops idle upstream connections and balancer state of endpoints no backend of the live
    /// configuration uses, and the request series of routes it no longer has.
    pub fn forget_unused(&self) {
        let live = self.live();
        let config = &live.config;
        let keep: std::collections::HashSet<std::net::SocketAddr> = config.backends().flat_map(|b| b.endpoints.iter().copied()).collect();
        let names: std::collections::HashSet<&str> = config.backends().map(|b| b.name.as_str()).collect();
        self.metrics.retain_routes(&config.route_labels());
        self.pool.retain(&keep);
        self.registry.retain(&keep, &names);
    }

    /// Ready: a configuration is live and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.drain.draining.load(Ordering::Acquire)
    }

    /// Graceful shutdown: /healthz turns unready at once; after `delay` the listeners close
    /// and every connection is asked to finish (HTTP/2 GOAWAY, WebSocket close frames); they
    /// get up to `grace` to do so. Returns how many connections were still open at the end.
    pub async fn shutdown(&self, delay: Duration, grace: Duration) -> usize {
        self.drain.draining.store(true, Ordering::Release);
        tracing::info!(?delay, ?grace, "shutting down: unready now, closing listeners after the delay");
        tokio::time::sleep(delay).await;
        self.drain.stop();
        self.listeners.close_all();
        self.l4.close_all();
        let left = self.drain.wait(grace).await;
        self.pool.clear();
        if left > 0 {
            tracing::warn!(connections = left, "grace period over; closing the connections still open");
        } else {
            tracing::info!("every connection finished");
        }
        left
    }
}
