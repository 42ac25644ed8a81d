//! Shared test harness: real echo backends, a real Vestibule on ephemeral loopback ports,
//! manifests written to a temporary directory, and real clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::echo::{self, EchoOptions, Identity};
use vestibule::serve::{self, Running, ServeOptions};

mod objects;
pub mod recorder;
pub mod gateway;
pub use objects::*;

/// A port on 127.0.0.1 that is free for both TCP and UDP, for a listener that cannot ask for
/// port 0 (a Gateway listener, an L4 service) or an address nothing listens on.
///
/// Picked below the kernel's ephemeral range, which `bind(0)` never hands out: a port taken from
/// `bind(0)` and closed again can be given to the next backend another test binds, and then the
/// listener meant for it fails with "address in use". A per-process counter keeps picks in one
/// test binary apart; the process id spreads binaries that run at the same time.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&lo| lo > LOW + 1_000)
        .unwrap_or(32_768);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOW} and {high}");
}

/// A loopback address nothing listens on: connections to it are refused.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// An echo backend on 127.0.0.1 that reports `service` as its name.
pub struct Echo {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn echo(service: &str) -> Echo {
    echo_opts(service, false).await
}

pub async fn echo_opts(service: &str, tls: bool) -> Echo {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let identity = Identity { service: service.into(), namespace: "default".into(), pod: format!("{service}-pod") };
    let task = echo::spawn(l, EchoOptions { identity, tls });
    Echo { addr, task }
}

/// A Vestibule serving manifests from a temporary directory on ephemeral loopback ports.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub running: Running,
    pub client: reqwest::Client,
}

pub async fn start(manifests: &str) -> Harness {
    start_with(manifests, |_| {}).await
}

pub async fn start_with(manifests: &str, f: impl FnOnce(&mut ServeOptions)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifests.yaml"), manifests).unwrap();
    let mut opts = ServeOptions {
        manifests: vec![dir.path().to_path_buf()],
        bind: "127.0.0.1".parse().unwrap(),
        http_port: 0,
        https_port: 0,
        healthz_port: 0,
        access_log: serve::AccessLogTarget::Off,
        ..Default::default()
    };
    f(&mut opts);
    let running = serve::start(opts).await.expect("vestibule starts");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(0).build().unwrap();
    Harness { dir, running, client }
}

impl Harness {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Replaces a manifest file atomically (write + rename), as editors and volumes do.
    pub fn write(&self, file: &str, content: &str) {
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.path(file)).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.path(file)).unwrap();
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http)
    }

    /// GET over plain HTTP with a Host header.
    pub async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        let mut req = self.client.get(self.http(path));
        if !host.is_empty() {
            req = req.header("host", host);
        }
        req.send().await.expect("request succeeds")
    }

    /// The status and (for echo answers) the service that answered.
    pub async fn route(&self, host: &str, path: &str) -> (u16, Option<String>) {
        let resp = self.get(host, path).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let service = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["service"].as_str().map(str::to_string));
        (status, service)
    }

    /// Waits (up to `timeout`) until `host` + `path` routes to `expect` (status, service).
    pub async fn wait_route(&self, host: &str, path: &str, expect: (u16, Option<&str>), timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let (s, svc) = self.route(host, path).await;
            if s == expect.0 && svc.as_deref() == expect.1 {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("{host}{path}: expected {expect:?}, still ({s}, {svc:?}) after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client that resolves `hosts` to this instance and trusts `ca_pem`.
    pub fn https_client(&self, hosts: &[&str], ca_pem: &str) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
        for h in hosts {
            b = b.resolve(h, self.running.https);
        }
        b.build().unwrap()
    }

    pub fn https(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.running.https.port())
    }
}

/// Sends raw bytes and reads until the server closes or `timeout` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Accepts any server certificate and remembers the one it was shown.
#[derive(Debug)]
pub struct Recorder(pub std::sync::Mutex<Option<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, _: &[u8], _: &rustls_pki_types::CertificateDer<'_>, _: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(&self, _: &[u8], _: &rustls_pki_types::CertificateDer<'_>, _: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// What a TLS handshake with `addr` shows: the leaf certificate (DER), the protocol version and
/// the ALPN protocol. `sni` None sends no SNI (an IP address is used as the name).
pub async fn handshake(addr: SocketAddr, sni: Option<&str>, versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]) -> (Vec<u8>, rustls::ProtocolVersion, Option<Vec<u8>>) {
    vestibule::tls::install_provider();
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let mut cfg = rustls::ClientConfig::builder_with_protocol_versions(versions).dangerous().with_custom_certificate_verifier(rec.clone()).with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = match sni {
        Some(n) => rustls_pki_types::ServerName::try_from(n.to_string()).unwrap(),
        None => rustls_pki_types::ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("handshake succeeds");
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version().unwrap();
    let alpn = conn.alpn_protocol().map(|a| a.to_vec());
    let cert = rec.0.lock().unwrap().clone().unwrap();
    (cert, version, alpn)
}

/// The DER of the first certificate in a PEM string.
pub fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).next().unwrap().unwrap().to_vec()
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("VESTIBULE_LOG").unwrap_or_else(|_| "warn".into())).with_test_writer().try_init();
}

/// The objects of a manifest text as the file source stores them; a parse error fails the test.
pub fn store_of(text: &str) -> vestibule::store::Store {
    let parsed = vestibule::source::parse::parse_text(std::path::Path::new("objects.yaml"), text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let mut store = vestibule::store::Store::default();
    for obj in parsed.objects {
        store.insert(obj);
    }
    store
}

/// Compile settings with the built-in defaults and a generated fallback certificate.
pub fn compile_settings() -> vestibule::compile::Settings {
    vestibule::tls::install_provider();
    vestibule::compile::Settings::new(vestibule::tls::self_signed(&["vestibule.invalid"]).unwrap().0)
}

/// Everything a configuration serves, without the dense ids: what a full and an incremental
/// compile of the same store must agree on.
pub fn served(c: &vestibule::compile::Compiled) -> String {
    let ids = regex::Regex::new(r"\bid: \d+").unwrap();
    let snapshot = vestibule::engine::Snapshot { diagnostics: c.diagnostics.clone(), ..Default::default() };
    let mut out = serde_json::to_string_pretty(&vestibule::debug::config_json(&c.config, &snapshot)).unwrap();
    let config: &vestibule::config::Config = &c.config;
    let mut hosts: Vec<_> = config.exact.iter().map(|(h, v)| (h.clone(), v)).chain(config.wildcard.iter().map(|(h, v)| (format!("*.{h}"), v))).collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    for (h, v) in hosts.into_iter().chain(config.hostless.iter().map(|v| ("*".to_string(), v))) {
        out.push_str(&format!("\n{h}: {}", ids.replace_all(&format!("{v:?}"), "id: _")));
    }
    out
}
