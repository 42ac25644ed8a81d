//! Global HTTP settings from the controller ConfigMap that shape every proxied request: which
//! forwarded headers are trusted, the request ID, the `Server` header. ingress-nginx's keys and
//! defaults; see `compile/http_settings.rs` for how they are read.

/// The highest annotation risk ingress-nginx accepts (`annotations-risk-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum RiskLevel {
    Low,
    Medium,
    #[default]
    High,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `use-forwarded-headers`: trust the client's `X-Forwarded-*` (Vestibule is behind another
    /// proxy). Off: they are replaced, and the client's values only travel as
    /// `X-Original-Forwarded-*`.
    pub use_forwarded_headers: bool,
    /// `forwarded-for-header`, lowercase: where the client address is read from when trusted.
    pub forwarded_for_header: String,
    /// `forwarded-host-header`, lowercase: echoed upstream as `X-Original-Forwarded-Host`.
    pub forwarded_host_header: String,
    /// `compute-full-forwarded-for` (with `use_forwarded_headers`): `X-Forwarded-For` is the
    /// client's list with the peer appended, not the client address alone.
    pub compute_full_forwarded_for: bool,
    /// `enable-real-ip`: the client address comes from `forwarded_for_header` even when the
    /// other forwarded headers are not trusted.
    pub enable_real_ip: bool,
    /// `proxy-add-original-uri-header`: send the target as the client sent it in `X-Original-URI`.
    pub proxy_add_original_uri_header: bool,
    /// `generate-request-id`: without a client `X-Request-ID`, make one up and send it upstream.
    pub generate_request_id: bool,
    /// `server-tokens`: send a `Server` header on responses (ingress-nginx sends none by default).
    pub server_tokens: bool,
    /// `allow-snippet-annotations`: accepted for compatibility; snippets never run either way.
    pub allow_snippet_annotations: bool,
    /// `annotations-risk-level`: accepted for compatibility.
    pub annotations_risk_level: RiskLevel,
    /// `proxy-real-ip-cidr`: the forwarders trusted to name the client in `forwarded_for_header`
    /// (all, by default). The header is read from the right and the first address outside these
    /// is the client (nginx's realip with `real_ip_recursive`).
    pub real_ip_cidrs: Vec<ipnet::IpNet>,
    /// `block-cidrs`: clients answered 403 on every host and path.
    pub block_cidrs: Vec<ipnet::IpNet>,
    /// `whitelist-source-range` and `denylist-source-range`: the lists of Ingresses that set none.
    pub allow_source_range: Vec<ipnet::IpNet>,
    pub deny_source_range: Vec<ipnet::IpNet>,
    /// One of those two could not be parsed: routes without their own list answer 403.
    pub source_range_closed: bool,
    /// `limit-req-status-code`, `limit-conn-status-code`: the answer over a limit (503).
    pub limit_req_status: u16,
    pub limit_conn_status: u16,
    /// `hsts*`: the `Strict-Transport-Security` value sent on HTTPS answers; `None` when off.
    pub hsts: Option<http::HeaderValue>,
    /// `add-headers`: set on every answer, values literal.
    pub add_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `proxy-set-headers`: set on every request sent upstream, values literal.
    pub proxy_set_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `hide-headers`: removed from the backends' answers.
    pub hide_headers: Vec<http::HeaderName>,
    /// `ssl-protocols`, `ssl-ciphers`, `ssl-session-tickets`: the HTTPS listener's TLS.
    pub tls: TlsOptions,
    /// `keep-alive`: a client connection (HTTP/1.1 or HTTP/2) with no request in flight is
    /// closed after this long without a new one; zero closes it after each answer.
    pub keep_alive: std::time::Duration,
    /// `keep-alive-requests`: a client connection is closed (HTTP/2: GOAWAY) once it has carried
    /// this many requests.
    pub keep_alive_requests: u64,
    /// `max-worker-connections`: client connections open at once, per worker thread (0: no
    /// bound but the descriptor limit).
    pub max_worker_connections: usize,
}

/// A TLS protocol version Vestibule can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// What the HTTPS listener's TLS configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Never empty.
    pub versions: Vec<TlsVersion>,
    /// The cipher suites offered, in preference order; `None` for the provider's defaults.
    pub cipher_suites: Option<Vec<rustls::CipherSuite>>,
    /// Stateless session tickets (`ssl-session-tickets`, off by default as in ingress-nginx).
    pub session_tickets: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { versions: vec![TlsVersion::Tls12, TlsVersion::Tls13], cipher_suites: None, session_tickets: false }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            use_forwarded_headers: false,
            forwarded_for_header: "x-forwarded-for".into(),
            forwarded_host_header: "x-forwarded-host".into(),
            compute_full_forwarded_for: false,
            enable_real_ip: false,
            proxy_add_original_uri_header: false,
            generate_request_id: true,
            server_tokens: false,
            allow_snippet_annotations: false,
            annotations_risk_level: RiskLevel::High,
            real_ip_cidrs: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
            block_cidrs: Vec::new(),
            allow_source_range: Vec::new(),
            deny_source_range: Vec::new(),
            source_range_closed: false,
            limit_req_status: 503,
            limit_conn_status: 503,
            hsts: Some(http::HeaderValue::from_static("max-age=31536000; includeSubDomains")),
            add_headers: Vec::new(),
            proxy_set_headers: Vec::new(),
            hide_headers: Vec::new(),
            tls: TlsOptions::default(),
            keep_alive: std::time::Duration::from_secs(75),
            keep_alive_requests: 1000,
            max_worker_connections: 16384,
        }
    }
}

impl HttpSettings {
    /// Whether the client address is read from `forwarded_for_header`.
    pub fn real_ip_from_header(&self) -> bool {
        self.use_forwarded_headers || self.enable_real_ip
    }
}
