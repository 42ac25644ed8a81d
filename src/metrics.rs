//! Prometheus metrics: ingress-nginx's names and labels, which dashboards already query, and
//! Vestibule's own under `vestibule_`.
//!
//! Per-request metrics cost one read lock and a short scan: each route finds its statistics once
//! (by label content, so they survive configuration swaps), and a request then only bumps atomics.
//! Label cardinality is bounded: `path` is the Ingress rule's path, `host` the rule's host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub const DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
pub const SIZE_BUCKETS: &[f64] = &[10.0, 100.0, 1000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0];

/// A lock-free histogram with fixed buckets.
#[derive(Debug)]
pub struct Histo {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

impl Histo {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histo { bounds, buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), count: AtomicU64::new(0), sum_bits: AtomicU64::new(0f64.to_bits()) }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((f64::from_bits(b) + v).to_bits()));
    }

    /// (sum, count, per-bucket counts ending with +Inf). The encoder accumulates the buckets
    /// into the cumulative form Prometheus expects.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            out.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), b.load(Ordering::Relaxed)));
        }
        (f64::from_bits(self.sum_bits.load(Ordering::Relaxed)), self.count.load(Ordering::Relaxed), out)
    }
}

pub use crate::config::RouteLabels;

/// What a source of objects reports about its own health (the Kubernetes watches in controller
/// mode), exported with the other metrics.
pub trait SourceGauges: Send + Sync + std::fmt::Debug {
    /// The served configuration may be out of date.
    fn stale(&self) -> bool;
    fn failures(&self) -> u64;
    fn lists(&self) -> u64;
}

/// Statistics of one (route, status, method).
#[derive(Debug)]
pub struct RequestStats {
    pub requests: AtomicU64,
    pub request_duration: Histo,
    pub response_duration: Histo,
    pub connect_duration: Histo,
    pub request_size: Histo,
    pub response_size: Histo,
}

impl RequestStats {
    fn new() -> Self {
        RequestStats {
            requests: AtomicU64::new(0),
            request_duration: Histo::new(DURATION_BUCKETS),
            response_duration: Histo::new(DURATION_BUCKETS),
            connect_duration: Histo::new(DURATION_BUCKETS),
            request_size: Histo::new(SIZE_BUCKETS),
            response_size: Histo::new(SIZE_BUCKETS),
        }
    }
}

/// All statistics of one route.
#[derive(Debug)]
pub struct RouteStats {
    pub labels: RouteLabels,
    by: RwLock<Vec<(u16, &'static str, Arc<RequestStats>)>>,
}

/// Methods outside this list are counted as `OTHER`, to bound cardinality.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl RouteStats {
    pub fn get(&self, status: u16, method: &'static str) -> Arc<RequestStats> {
        if let Some((_, _, s)) = self.by.read().expect("stats lock").iter().find(|(st, m, _)| *st == status && *m == method) {
            return s.clone();
        }
        let mut w = self.by.write().expect("stats lock");
        if let Some((_, _, s)) = w.iter().find(|(st, m, _)| *st == status && *m == method) {
            return s.clone();
        }
        let s = Arc::new(RequestStats::new());
        w.push((status, method, s.clone()));
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// How a configuration was made (`full`, `incremental`, `endpoints`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModeLabels {
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TlsLabels {
    pub version: String,
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CertLabels {
    pub host: String,
    pub namespace: String,
    pub secret_name: String,
    pub identifier: String,
    pub issuer_common_name: String,
    pub issuer_organization: String,
    pub serial_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HostLabels {
    pub host: String,
    pub namespace: String,
    pub secret_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct L4Labels {
    /// `namespace/service`.
    pub service: String,
    /// The external port.
    pub port: String,
    /// `tcp`, `udp` or `passthrough`.
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct L4ByteLabels {
    pub service: String,
    pub port: String,
    pub protocol: String,
    /// `upstream` (client to endpoint) or `downstream`.
    pub direction: String,
}

/// Every metric the process exports.
#[derive(Debug)]
pub struct Metrics {
    routes: Mutex<HashMap<RouteLabels, Arc<RouteStats>>>,
    /// Requests no route matched (404 or a global default).
    pub unrouted: Arc<RouteStats>,
    pub config_last_reload_successful: Gauge,
    pub config_last_reload_successful_timestamp: Gauge,
    pub ssl_certificate_info: Family<CertLabels, Gauge>,
    pub ssl_expire_time: Family<HostLabels, Gauge>,
    pub config_changes: Family<ResultLabels, Counter>,
    pub config_applies: Family<ModeLabels, Counter>,
    pub compile_duration: Histogram,
    pub change_to_live: Histogram,
    pub diagnostics: Family<ReasonLabels, Gauge>,
    pub upstream_open: Arc<AtomicI64>,
    pub upstream_idle: Gauge,
    /// Tasks alive in the runtime, read at scrape time (a leak of tasks shows here).
    pub runtime_tasks: Gauge,
    pub endpoint_ejections: Counter,
    pub retries: Counter,
    pub tls_handshakes: Family<TlsLabels, Counter>,
    pub connections: Family<ProtocolLabels, Gauge>,
    pub access_log_dropped: Counter,
    /// The Kubernetes source's health, in controller mode.
    pub source: std::sync::OnceLock<Arc<dyn SourceGauges>>,
    /// TCP connections, UDP sessions and passthrough connections, per service and port.
    pub l4_connections: Family<L4Labels, Counter>,
    pub l4_bytes: Family<L4ByteLabels, Counter>,
    /// The admission webhook's last review, as ingress-nginx's `admission_*` gauges.
    pub admission_tested_ingresses: Gauge<f64, AtomicU64>,
    pub admission_tested_duration: Gauge<f64, AtomicU64>,
    pub admission_render_ingresses: Gauge<f64, AtomicU64>,
    pub admission_render_duration: Gauge<f64, AtomicU64>,
    pub admission_config_size: Gauge<f64, AtomicU64>,
    pub admission_roundtrip_duration: Gauge<f64, AtomicU64>,
    /// Reviews by result: allowed, denied, bad_request, too_large, error.
    pub admission_reviews: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::new(HashMap::new()),
            unrouted: Arc::new(RouteStats { labels: RouteLabels::none(), by: RwLock::new(Vec::new()) }),
            config_last_reload_successful: Gauge::default(),
            config_last_reload_successful_timestamp: Gauge::default(),
            ssl_certificate_info: Family::default(),
            ssl_expire_time: Family::default(),
            config_changes: Family::default(),
            config_applies: Family::default(),
            compile_duration: Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            change_to_live: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            diagnostics: Family::default(),
            upstream_open: Arc::new(AtomicI64::new(0)),
            upstream_idle: Gauge::default(),
            runtime_tasks: Gauge::default(),
            endpoint_ejections: Counter::default(),
            retries: Counter::default(),
            tls_handshakes: Family::default(),
            connections: Family::default(),
            access_log_dropped: Counter::default(),
            source: std::sync::OnceLock::new(),
            l4_connections: Family::default(),
            l4_bytes: Family::default(),
            admission_tested_ingresses: Gauge::default(),
            admission_tested_duration: Gauge::default(),
            admission_render_ingresses: Gauge::default(),
            admission_render_duration: Gauge::default(),
            admission_config_size: Gauge::default(),
            admission_roundtrip_duration: Gauge::default(),
            admission_reviews: Family::default(),
        }
    }
}

impl Metrics {
    /// The statistics of a route, shared by every configuration that has the same route.
    pub fn route(&self, labels: &RouteLabels) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.entry(labels.clone()).or_insert_with(|| Arc::new(RouteStats { labels: labels.clone(), by: RwLock::new(Vec::new()) })).clone()
    }

    /// Forgets the statistics of routes not in `live` (their series leave /metrics), so that
    /// churn through Ingress and route names does not grow the map without bound.
    /// Drops the statistics of routes that are gone.
    pub fn forget_routes(&self, gone: &[RouteLabels]) {
        if gone.is_empty() {
            return;
        }
        let mut routes = self.routes.lock().expect("routes lock");
        for l in gone {
            routes.remove(l);
        }
    }

    pub fn retain_routes(&self, live: &std::collections::HashSet<&RouteLabels>) {
        self.routes.lock().expect("routes lock").retain(|l, _| live.contains(l));
    }

    /// The registry to encode at scrape time. `idle` is read from the pool then.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(RequestCollector(self.clone())));
        let n = "nginx_ingress_controller_";
        r.register(format!("{n}config_last_reload_successful"), "Whether the last configuration change was applied without rejected manifests", self.config_last_reload_successful.clone());
        r.register(format!("{n}config_last_reload_successful_timestamp_seconds"), "Time of the last configuration applied", self.config_last_reload_successful_timestamp.clone());
        r.register(format!("{n}ssl_certificate_info"), "Certificates in use, by host", self.ssl_certificate_info.clone());
        r.register(format!("{n}ssl_expire_time_seconds"), "Expiry time of the certificate served for a host", self.ssl_expire_time.clone());
        r.register("vestibule_config_changes", "Configuration changes, applied or rejected", self.config_changes.clone());
        r.register("vestibule_config_applies", "Configurations made live, by how: full compile, incremental (the hosts a change reaches), endpoints (nothing compiled)", self.config_applies.clone());
        r.register("vestibule_compile_duration_seconds", "Time to compile the objects into a configuration", self.compile_duration.clone());
        r.register("vestibule_change_to_live_seconds", "Time from a change being seen to it serving", self.change_to_live.clone());
        r.register("vestibule_diagnostics", "Current diagnostics by reason", self.diagnostics.clone());
        r.register("vestibule_upstream_connections_idle", "Idle pooled connections to endpoints", self.upstream_idle.clone());
        r.register("vestibule_runtime_tasks_alive", "Tasks alive in the async runtime", self.runtime_tasks.clone());
        r.register("vestibule_endpoint_ejections", "Endpoints ejected by passive health checking", self.endpoint_ejections.clone());
        r.register("vestibule_upstream_retries", "Requests retried on another endpoint", self.retries.clone());
        r.register("vestibule_tls_handshakes", "TLS handshakes by version and result", self.tls_handshakes.clone());
        r.register("vestibule_connections_active", "Client connections open, by protocol", self.connections.clone());
        r.register("vestibule_access_log_dropped_lines", "Access log lines dropped because the writer fell behind", self.access_log_dropped.clone());
        r.register("vestibule_l4_connections", "TCP connections, UDP sessions and SSL passthrough connections, by service and port", self.l4_connections.clone());
        r.register("vestibule_l4_bytes", "Bytes carried by TCP and UDP services and SSL passthrough, by direction", self.l4_bytes.clone());
        self.register_admission(&mut r);
        r
    }

    /// ingress-nginx's admission gauges (set by the last review that compiled) and the count of
    /// reviews by result.
    fn register_admission(&self, r: &mut Registry) {
        let n = "nginx_ingress_controller_";
        r.register(format!("{n}admission_tested_ingresses"), "The number of Ingresses in the store the last review compiled", self.admission_tested_ingresses.clone());
        r.register(format!("{n}admission_tested_duration"), "The duration of the last review's test (float seconds)", self.admission_tested_duration.clone());
        r.register(format!("{n}admission_render_ingresses"), "The number of Ingresses the last review compiled", self.admission_render_ingresses.clone());
        r.register(format!("{n}admission_render_duration"), "The duration of the last review's compile (float seconds)", self.admission_render_duration.clone());
        r.register(format!("{n}admission_config_size"), "The size in bytes of the last AdmissionReview compiled (Vestibule renders no configuration text)", self.admission_config_size.clone());
        r.register(format!("{n}admission_roundtrip_duration"), "The complete duration of the last review, from request to answer (float seconds)", self.admission_roundtrip_duration.clone());
        r.register("vestibule_admission_reviews", "Admission reviews answered, by result", self.admission_reviews.clone());
    }

    /// The text exposition of every metric.
    pub fn encode(self: &Arc<Self>, idle: usize) -> String {
        self.upstream_idle.set(idle as i64);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks.set(rt.metrics().num_alive_tasks() as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry()).expect("encoding to a String cannot fail");
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReqLabelSet {
    host: String,
    path: String,
    namespace: String,
    ingress: String,
    service: String,
    canary: String,
    method: String,
    status: String,
}

/// Requests counted for one route so far, by class of status, for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteTotals {
    pub host: String,
    pub path: String,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
}

impl Metrics {
    /// The request totals of every route seen so far (the counters `/metrics` exports).
    pub fn route_totals(&self) -> Vec<RouteTotals> {
        let routes: Vec<Arc<RouteStats>> = self.routes.lock().expect("routes lock").values().cloned().collect();
        let mut out: Vec<RouteTotals> = routes
            .iter()
            .map(|r| {
                let (mut requests, mut errors) = (0, 0);
                for (status, _, s) in r.by.read().expect("stats lock").iter() {
                    let n = s.requests.load(Ordering::Relaxed);
                    requests += n;
                    if *status >= 500 {
                        errors += n;
                    }
                }
                let l = &r.labels;
                RouteTotals { host: l.host.to_string(), path: l.path.to_string(), namespace: l.namespace.to_string(), ingress: l.ingress.to_string(), service: l.service.to_string(), requests, errors }
            })
            .collect();
        out.sort_by(|a, b| (&a.host, &a.path, &a.namespace, &a.ingress).cmp(&(&b.host, &b.path, &b.namespace, &b.ingress)));
        out
    }
}

/// Encodes the per-route statistics as ingress-nginx's metric families.
#[derive(Debug)]
struct RequestCollector(Arc<Metrics>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut routes: Vec<Arc<RouteStats>> = self.0.routes.lock().expect("routes lock").values().cloned().collect();
        routes.push(self.0.unrouted.clone());
        let mut rows: Vec<(ReqLabelSet, Arc<RequestStats>)> = Vec::new();
        for r in &routes {
            for (status, method, s) in r.by.read().expect("stats lock").iter() {
                let l = &r.labels;
                rows.push((
                    ReqLabelSet {
                        host: l.host.to_string(),
                        path: l.path.to_string(),
                        namespace: l.namespace.to_string(),
                        ingress: l.ingress.to_string(),
                        service: l.service.to_string(),
                        canary: String::new(),
                        method: method.to_string(),
                        status: status.to_string(),
                    },
                    s.clone(),
                ));
            }
        }
        rows.sort_by(|a, b| (&a.0.host, &a.0.path, &a.0.status, &a.0.method).cmp(&(&b.0.host, &b.0.path, &b.0.status, &b.0.method)));
        let n = "nginx_ingress_controller_";
        // ingress-nginx exposes this counter without the `_total` suffix; the type is declared
        // unknown so that the name stays exactly what dashboards query.
        {
            let name = format!("{n}requests");
            let mut m = encoder.encode_descriptor(&name, "The total number of client requests", None, MetricType::Unknown)?;
            for (labels, s) in &rows {
                m.encode_family(labels)?.encode_gauge(&(s.requests.load(Ordering::Relaxed) as i64))?;
            }
        }
        type Pick = fn(&RequestStats) -> &Histo;
        let hists: [(&str, &str, Pick); 5] = [
            ("request_duration_seconds", "The request processing time in seconds", |s| &s.request_duration),
            ("response_duration_seconds", "The time spent receiving the response from the upstream server in seconds", |s| &s.response_duration),
            ("connect_duration_seconds", "The time spent establishing a connection with the upstream server in seconds", |s| &s.connect_duration),
            ("request_size", "The request length, including request line, headers and body", |s| &s.request_size),
            ("response_size", "The response length, including status line, headers and body", |s| &s.response_size),
        ];
        for (name, help, pick) in hists {
            let full = format!("{n}{name}");
            let mut m = encoder.encode_descriptor(&full, help, None, MetricType::Histogram)?;
            for (labels, s) in &rows {
                let h = pick(s);
                let (sum, count, buckets) = h.snapshot();
                if count == 0 && name == "connect_duration_seconds" {
                    continue;
                }
                m.encode_family(labels)?.encode_histogram::<ReqLabelSet>(sum, count, &buckets, None)?;
            }
        }
        if let Some(h) = self.0.source.get() {
            use prometheus_client::metrics::counter::ConstCounter;
            use prometheus_client::metrics::gauge::ConstGauge;
            let g = ConstGauge::new(h.stale() as i64);
            g.encode(encoder.encode_descriptor("vestibule_config_stale", "1 while the Kubernetes API cannot be watched and the served configuration may be out of date", None, g.metric_type())?)?;
            let c = ConstCounter::new(h.failures());
            c.encode(encoder.encode_descriptor("vestibule_kube_watch_failures", "Watch failures against the Kubernetes API", None, c.metric_type())?)?;
            let c = ConstCounter::new(h.lists());
            c.encode(encoder.encode_descriptor("vestibule_kube_lists", "Full lists from the Kubernetes API (first sync and resyncs)", None, c.metric_type())?)?;
        }
        {
            let open = self.0.upstream_open.load(Ordering::Relaxed);
            let g = prometheus_client::metrics::gauge::ConstGauge::new(open);
            let m = encoder.encode_descriptor("vestibule_upstream_connections_open", "Connections open to endpoints", None, g.metric_type())?;
            g.encode(m)?;
        }
        Ok(())
    }
}
