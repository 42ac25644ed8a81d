//! Command-line flags, named as ingress-nginx names them where they mean the same thing.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use crate::units::{parse_duration, parse_size};
use crate::proxy::ProxyOptions;
use crate::serve::ServeOptions;

#[derive(Parser, Debug)]
#[command(name = "vestibule", version, about = "A Kubernetes Ingress controller with its own L7 proxy")]
pub struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Worker threads for the proxy; defaults to the number of CPUs available to the process
    /// (cgroup limits respected).
    #[arg(long, global = true)]
    pub worker_threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve Ingress traffic from Kubernetes manifests in files, watched and applied live.
    Serve(ServeArgs),
    /// Run a JSON echo backend (for demos, tests and benchmarks).
    Echo(EchoArgs),
    /// Run the cafe example: echo backends, manifests, TLS, on ports 8080 and 8443.
    Demo(DemoArgs),
    /// Say which Ingress, rule, path, backend and certificate a request to URL would reach,
    /// and why the rules that came close lost.
    Explain(ExplainArgs),
    /// Validate manifests the way the proxy would; exit non-zero on errors.
    Check(CheckArgs),
    /// Run as a Kubernetes Ingress controller: watch the cluster, serve its Ingresses, publish
    /// their status and Events (in-cluster configuration, or --kubeconfig).
    Controller(ControllerArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The URL, e.g. https://cafe.example.com/coffee (http:// is assumed without a scheme).
    pub url: String,
    /// Manifest files or directories to explain against.
    #[arg(long = "manifests", required_unless_present = "server", conflicts_with = "server")]
    pub manifests: Vec<PathBuf>,
    /// Largest manifest file read (e.g. 16m); a larger one is reported and not read. 0 for no
    /// limit.
    #[arg(long, default_value = "16m", value_parser = parse_size)]
    pub max_manifest_size: u64,
    /// A running instance's health port, e.g. http://127.0.0.1:10254, to explain against.
    #[arg(long)]
    pub server: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub routing: RoutingArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Manifest files or directories to check.
    #[arg(long = "manifests", required = true)]
    pub manifests: Vec<PathBuf>,
    /// Largest manifest file read (e.g. 16m); a larger one is reported and not read. 0 for no
    /// limit.
    #[arg(long, default_value = "16m", value_parser = parse_size)]
    pub max_manifest_size: u64,
    /// Fail on warnings too (missing Services, conflicts, ignored classes...).
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub routing: RoutingArgs,
}

impl RoutingArgs {
    /// The compile settings these flags describe, with `fallback` as the default certificate.
    pub fn settings(&self, fallback: std::sync::Arc<rustls::sign::CertifiedKey>) -> crate::compile::Settings {
        let mut o = ServeOptions::default();
        apply_routing(&mut o, self);
        o.settings(fallback)
    }
}

/// `NS/NAME` (a bare NAME is in `default`).
pub fn parse_ns_name(s: &str) -> Result<(String, String), String> {
    let (ns, name) = s.split_once('/').unwrap_or(("default", s));
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(format!("{s:?}: expected NAMESPACE/NAME"));
    }
    Ok((ns.to_string(), name.to_string()))
}

#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Address the listeners bind to (all interfaces by default).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Address of the healthz port only (/healthz, /metrics, /debug/*), e.g. 127.0.0.1 to keep
    /// the operator endpoints off the network; defaults to --bind-address.
    #[arg(long)]
    pub admin_address: Option<IpAddr>,
    /// Port for plain HTTP (0 picks a free port).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Port for HTTPS (0 picks a free port).
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// Port for /healthz (0 picks a free port).
    #[arg(long, default_value_t = 10254)]
    pub healthz_port: u16,
    /// Serve HTTP/3 (QUIC) on the HTTPS port's UDP twin, advertised with Alt-Svc.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub http3: bool,
    /// Accept HTTP/3 0-RTT (early data) from resumed clients, for GET, HEAD and OPTIONS only;
    /// other methods sent early answer 425. Off by default: early data can be replayed.
    #[arg(long = "http3-0rtt", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub http3_0rtt: bool,
    /// UDP port for HTTP/3 (default: the HTTPS port).
    #[arg(long)]
    pub http3_port: Option<u16>,
    /// Serve the read-only web dashboard at /dashboard on the healthz port.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_dashboard: bool,
    /// On SIGTERM, how long /healthz reports unready while the listeners still accept, so that
    /// load balancers stop sending new connections first.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// On SIGTERM, how long requests, streams and WebSockets in flight get to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
}

/// The access log flags of `serve` and `controller`.
#[derive(Args, Debug, Clone)]
pub struct AccessLogArgs {
    /// Access log: on (one line per request on stdout) or off.
    #[arg(long = "access-log", default_value = "on", value_parser = ["on", "off"])]
    pub mode: String,
    /// Access log format: text (ingress-nginx's default fields and order) or json.
    #[arg(long = "access-log-format", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

impl AccessLogArgs {
    pub fn target(&self) -> crate::serve::AccessLogTarget {
        let format = if self.format == "json" { crate::accesslog::Format::Json } else { crate::accesslog::Format::Text };
        if self.mode == "off" { crate::serve::AccessLogTarget::Off } else { crate::serve::AccessLogTarget::Stdout(format) }
    }
}

/// The admission webhook's flags, as ingress-nginx names them (`serve` and `controller`).
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Address (ADDR:PORT, or :PORT for every interface) of the validating admission webhook,
    /// served over HTTPS at /networking/v1/ingresses; off when absent.
    #[arg(long, value_parser = parse_listen_addr)]
    pub validating_webhook: Option<SocketAddr>,
    /// The webhook's serving certificate (PEM); generated at start when absent.
    #[arg(long, requires = "validating_webhook_key")]
    pub validating_webhook_certificate: Option<PathBuf>,
    /// The webhook's private key (PEM).
    #[arg(long, requires = "validating_webhook_certificate")]
    pub validating_webhook_key: Option<PathBuf>,
}

impl WebhookArgs {
    pub fn options(&self) -> Option<crate::webhook::WebhookOptions> {
        self.validating_webhook.map(|addr| crate::webhook::WebhookOptions {
            addr,
            cert_file: self.validating_webhook_certificate.clone(),
            key_file: self.validating_webhook_key.clone(),
            names: Vec::new(),
        })
    }
}

/// `ADDR:PORT`, or `:PORT` (ingress-nginx's `:8443`) for every interface.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_string() };
    full.parse().map_err(|e| format!("{s:?}: expected ADDR:PORT or :PORT ({e})"))
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A manifest file or a directory of them (YAML or JSON); repeat for more.
    #[arg(long = "manifests", required = true)]
    pub manifests: Vec<PathBuf>,
    /// Largest manifest file read (e.g. 16m); a larger one is reported and not read. 0 for no
    /// limit.
    #[arg(long, default_value = "16m", value_parser = parse_size)]
    pub max_manifest_size: u64,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub access_log: AccessLogArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RoutingArgs {
    /// The ingress class name this instance answers to.
    #[arg(long, default_value = "vestibule")]
    pub ingress_class: String,
    /// The spec.controller of IngressClasses that are ours.
    #[arg(long, default_value = "vestibule.dev/ingress-controller")]
    pub controller_class: String,
    /// The spec.controllerName of GatewayClasses that are ours.
    #[arg(long, default_value = "vestibule.dev/gateway-controller")]
    pub gateway_controller_name: String,
    /// Also serve Ingresses that name no class.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub watch_ingress_without_class: bool,
    /// Service (NS/NAME) that answers requests no rule matches; the built-in 404 otherwise.
    #[arg(long, value_parser = parse_ns_name)]
    pub default_backend_service: Option<(String, String)>,
    /// TLS Secret (NS/NAME) served when no certificate matches the SNI name.
    #[arg(long, value_parser = parse_ns_name)]
    pub default_ssl_certificate: Option<(String, String)>,
    /// ConfigMap (NS/NAME) with ingress-nginx's global settings, applied over these flags and
    /// followed live: from the manifests in `serve`, from the cluster in `controller`.
    #[arg(long, value_parser = parse_ns_name)]
    pub configmap: Option<(String, String)>,
    /// Redirect HTTP to HTTPS (308) for hosts with TLS.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub ssl_redirect: bool,
    /// Timeout for connecting to an endpoint.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub proxy_connect_timeout: Duration,
    /// Longest wait for the next bytes from an endpoint.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub proxy_read_timeout: Duration,
    /// Largest request body accepted (413 above); 0 for no limit.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub proxy_body_size: u64,
    /// How long a client may take to send its request headers.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub client_header_timeout: Duration,
    /// Largest request head (request line and headers) accepted (431 above).
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    pub max_header_size: u64,
    /// Most request header fields accepted (431 above).
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// Tries per request across endpoints when connecting fails.
    #[arg(long, default_value_t = 3)]
    pub proxy_next_upstream_tries: usize,
    /// Expect a PROXY protocol (v1 or v2) header on every connection, from a load balancer in
    /// front; the client address it carries feeds X-Forwarded-For and X-Real-IP.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub use_proxy_protocol: bool,
    /// Connections accepted at once from one client address; 0 for no limit.
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_ip: usize,
    /// HTTP/2 streams a client may open at once on one connection.
    #[arg(long, default_value_t = 128)]
    pub http2_max_concurrent_streams: u32,
    /// Per-request Prometheus metrics on /metrics.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_metrics: bool,
    /// The HTTP/1.1 fast path: requests without a body to cleartext HTTP/1.1 backends are
    /// exchanged without hyper's client. `false` sends every request through the general path
    /// (the behaviour is the same; tests run both).
    #[arg(long, env = "VESTIBULE_HTTP1_FAST_PATH", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub http1_fast_path: bool,
    /// ConfigMap (NS/NAME) of TCP services: each key an external port, each value
    /// `namespace/service:port[:PROXY[:PROXY]]`. Followed live.
    #[arg(long, value_parser = parse_ns_name)]
    pub tcp_services_configmap: Option<(String, String)>,
    /// ConfigMap (NS/NAME) of UDP services, with the same syntax. Followed live.
    #[arg(long, value_parser = parse_ns_name)]
    pub udp_services_configmap: Option<(String, String)>,
    /// Honour the `ssl-passthrough` annotation: TLS for those hosts goes untouched to the backend.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_ssl_passthrough: bool,
}

impl ServeArgs {
    pub fn into_options(self) -> ServeOptions {
        let mut o = ServeOptions { manifests: self.manifests, max_manifest_size: self.max_manifest_size, ..Default::default() };
        apply_listen(&mut o, &self.listen);
        apply_routing(&mut o, &self.routing);
        o.access_log = self.access_log.target();
        o.webhook = self.webhook.options();
        o
    }
}

fn apply_listen(o: &mut ServeOptions, l: &ListenArgs) {
    o.shutdown_delay = l.shutdown_delay;
    o.shutdown_grace = l.shutdown_grace_period;
    o.bind = l.bind_address;
    o.admin_bind = l.admin_address;
    o.http_port = l.http_port;
    o.https_port = l.https_port;
    o.healthz_port = l.healthz_port;
    o.enable_dashboard = l.enable_dashboard;
    o.http3 = l.http3;
    o.http3_port = l.http3_port;
    o.http3_0rtt = l.http3_0rtt;
}

fn apply_routing(o: &mut ServeOptions, r: &RoutingArgs) {
    o.ingress_class = r.ingress_class.clone();
    o.controller_class = r.controller_class.clone();
    o.gateway_controller_name = r.gateway_controller_name.clone();
    o.watch_without_class = r.watch_ingress_without_class;
    o.default_backend_service = r.default_backend_service.clone();
    o.default_ssl_certificate = r.default_ssl_certificate.clone();
    o.ssl_redirect = r.ssl_redirect;
    o.configmap = r.configmap.clone();
    o.tcp_services = r.tcp_services_configmap.clone();
    o.udp_services = r.udp_services_configmap.clone();
    o.ssl_passthrough = r.enable_ssl_passthrough;
    o.proxy = ProxyOptions {
        connect_timeout: r.proxy_connect_timeout,
        read_timeout: r.proxy_read_timeout,
        body_limit: r.proxy_body_size,
        header_read_timeout: r.client_header_timeout,
        max_headers: r.max_headers,
        max_header_bytes: r.max_header_size.min(16 * 1024 * 1024) as usize,
        upstream_tries: r.proxy_next_upstream_tries.max(1),
        proxy_protocol: r.use_proxy_protocol,
        max_connections_per_ip: r.max_connections_per_ip,
        max_concurrent_streams: r.http2_max_concurrent_streams.max(1),
        metrics: r.enable_metrics,
        http1_fast_path: r.http1_fast_path,
        ..ProxyOptions::default()
    };
}

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Service name the echo reports.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Namespace the echo reports.
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// Pod name the echo reports.
    #[arg(long, default_value = "")]
    pub pod: String,
    /// Serve HTTPS with a generated self-signed certificate.
    #[arg(long)]
    pub tls: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Directory of the example manifests; a built-in copy is used when it does not exist.
    #[arg(long, default_value = "examples/cafe")]
    pub examples: PathBuf,
}

impl DemoArgs {
    pub fn into_options(self) -> crate::demo::DemoOptions {
        let mut serve = ServeOptions::default();
        apply_listen(&mut serve, &self.listen);
        crate::demo::DemoOptions { serve, examples: self.examples }
    }
}

/// `vestibule controller`: the flags of `serve` (except `--manifests`) plus the cluster's, named
/// as ingress-nginx names them. Ports default to 80/443/10254, and
/// `--watch-ingress-without-class` to false.
#[derive(Args, Debug, Clone)]
#[command(
    mut_arg("http_port", |a| a.default_value("80")),
    mut_arg("https_port", |a| a.default_value("443")),
    mut_arg("watch_ingress_without_class", |a| a.default_value("false"))
)]
pub struct ControllerArgs {
    /// Kubeconfig file to reach the API server with; the in-cluster service account when absent.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Only watch this namespace (empty: all namespaces).
    #[arg(long, default_value = "")]
    pub watch_namespace: String,
    /// Service (NS/NAME) whose load-balancer addresses (or external IPs) go into the status of
    /// our Ingresses.
    #[arg(long, value_parser = parse_ns_name)]
    pub publish_service: Option<(String, String)>,
    /// Addresses for the status of our Ingresses instead (comma-separated; IPs and host names).
    #[arg(long, value_delimiter = ',')]
    pub publish_status_address: Vec<String>,
    /// Name of the Lease (in the controller's namespace) that elects the leader.
    #[arg(long, default_value = "vestibule-leader")]
    pub election_id: String,
    /// Write the load-balancer addresses into the status of our Ingresses (leader only).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub update_status: bool,
    /// Clear those addresses when the last replica stops.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub update_status_on_shutdown: bool,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub access_log: AccessLogArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
    /// Put the generated webhook certificate's CA into the caBundle of this
    /// ValidatingWebhookConfiguration (needs `patch` on it).
    #[arg(long)]
    pub patch_webhook_ca: Option<String>,
}

impl ControllerArgs {
    pub fn into_options(self) -> crate::controller::ControllerOptions {
        let mut o = crate::controller::ControllerOptions::default();
        apply_listen(&mut o.serve, &self.listen);
        apply_routing(&mut o.serve, &self.routing);
        o.serve.access_log = self.access_log.target();
        o.serve.webhook = self.webhook.options();
        o.patch_webhook_ca = self.patch_webhook_ca.filter(|n| !n.is_empty());
        o.api = match self.kubeconfig {
            Some(path) => crate::controller::ApiConfig::Kubeconfig(path),
            None => crate::controller::ApiConfig::InCluster,
        };
        o.watch_namespace = Some(self.watch_namespace).filter(|n| !n.is_empty());
        o.configmap = self.routing.configmap.clone();
        o.publish_service = self.publish_service;
        o.publish_status_address = self.publish_status_address.into_iter().filter(|a| !a.trim().is_empty()).collect();
        o.election_id = self.election_id;
        o.update_status = self.update_status;
        o.update_status_on_shutdown = self.update_status_on_shutdown;
        o
    }
}
