//! Operability: Prometheus metrics after known traffic, access log lines, `explain` (library,
//! binary and debug endpoint), `check`, and the debug endpoints, which never show key material.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::accesslog::Format;
use vestibule::compile::explain::{self, Explanation};
use vestibule::serve::AccessLogTarget;
use vestibule::store::{Object, Store};

// ---------------------------------------------------------------------------------------------
// Manifests

/// An Ingress with one rule: `host`, one path of `path_type` to `svc` port 80.
fn simple_ingress(name: &str, created: &str, host: &str, path: &str, path_type: &str, svc: &str) -> String {
    format!("{}---\n", Ingress::new("default", name).created(created).host_path(host, path, path_type, svc, 80).to_yaml())
}

/// An EndpointSlice with one ready endpoint on 127.0.0.1:`port` for `svc`.
fn slice(name: &str, svc: &str, port: u16) -> String {
    format!("{}---\n", EndpointSlice::new("", name, svc).port("http", port).ready("127.0.0.1").to_yaml())
}

fn service(svc: &str) -> String {
    format!("{}---\n", service_yaml("default", svc))
}

fn backend(svc: &str, addr: SocketAddr) -> String {
    format!("{}\n---\n", backend_yaml("default", svc, &[addr]))
}

/// An Ingress that serves `host` with the TLS Secret `secret`.
fn tls_ingress(name: &str, host: &str, secret: &str, svc: &str) -> String {
    let ing = Ingress::new("default", name).created("2020-01-01T00:00:00Z").tls(&[host], secret).host_path(host, "/", "Prefix", svc, 80);
    format!("{}---\n", ing.to_yaml())
}

// ---------------------------------------------------------------------------------------------
// Prometheus text

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let b = r.as_bytes();
            let mut i = 0;
            loop {
                while i < b.len() && (b[i] == b',' || b[i] == b' ') {
                    i += 1;
                }
                if b[i] == b'}' {
                    i += 1;
                    break;
                }
                let eq = i + r[i..].find('=').expect("label has =");
                let key = r[i..eq].to_string();
                assert_eq!(b[eq + 1], b'"', "label value is quoted in {line:?}");
                let mut j = eq + 2;
                let mut val = String::new();
                while b[j] != b'"' {
                    if b[j] == b'\\' {
                        j += 1;
                        val.push(match b[j] {
                            b'n' => '\n',
                            c => c as char,
                        });
                    } else {
                        let ch = r[j..].chars().next().unwrap();
                        val.push(ch);
                        j += ch.len_utf8() - 1;
                    }
                    j += 1;
                }
                labels.insert(key, val);
                i = j + 1;
            }
            rest = &r[i..];
        }
        let v = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value in {line:?}"));
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push(Sample { name, labels, value });
    }
    out
}

fn series<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))).collect()
}

/// The value of the one series of `name` with `labels` (a subset of its labels).
fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = series(samples, name, labels);
    assert_eq!(found.len(), 1, "expected exactly one series {name}{labels:?}, found {found:#?}");
    found[0].value
}

async fn scrape(h: &Harness) -> (String, Vec<Sample>) {
    let resp = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let samples = parse_metrics(&text);
    (text, samples)
}

/// Scrapes until `pred` holds for the series (0 when absent), bounded by `timeout`.
async fn wait_metric(h: &Harness, name: &str, labels: &[(&str, &str)], pred: impl Fn(f64) -> bool, timeout: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let (text, samples) = scrape(h).await;
        let found = series(&samples, name, labels);
        let v = found.first().map(|s| s.value).unwrap_or(0.0);
        if found.len() <= 1 && pred(v) {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("{name}{labels:?} did not reach the expected value; last {v} in:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// Dates (computed here, independently of the product's own X.509 and log code)

fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for yr in 1970..y {
        days += if leap(yr) { 366 } else { 365 };
    }
    let month_len = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    days += month_len[..(m - 1) as usize].iter().sum::<i64>();
    days + d - 1
}

/// Unix seconds of a DER UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(s: &str) -> i64 {
    let (y, rest) = if s.len() == 13 {
        let yy: i64 = s[..2].parse().unwrap();
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
    } else {
        (s[..4].parse().unwrap(), &s[4..])
    };
    let n = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap() };
    days_since_epoch(y, n(0), n(2)) * 86400 + n(4) * 3600 + n(6) * 60 + n(8)
}

/// The certificate's notAfter (the second time in the DER, after notBefore), in Unix seconds.
fn not_after(der: &[u8]) -> i64 {
    let mut times = Vec::new();
    let mut i = 0;
    while i + 2 < der.len() {
        let len = match (der[i], der[i + 1]) {
            (0x17, 13) => 13,
            (0x18, 15) => 15,
            _ => 0,
        };
        if len > 0 && i + 2 + len <= der.len() {
            let body = &der[i + 2..i + 2 + len];
            if body[len - 1] == b'Z' && body[..len - 1].iter().all(u8::is_ascii_digit) {
                times.push(asn1_time(std::str::from_utf8(body).unwrap()));
                i += 2 + len;
                continue;
            }
        }
        i += 1;
    }
    assert!(times.len() >= 2, "no validity in the certificate");
    times[1]
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` → Unix seconds.
fn parse_time_local(s: &str) -> i64 {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    assert_eq!(s.len(), 26, "time_local {s:?}");
    assert!(s.ends_with(" +0000"), "time_local in UTC: {s:?}");
    let b = s.as_bytes();
    assert!(b[2] == b'/' && b[6] == b'/' && b[11] == b':' && b[14] == b':' && b[17] == b':', "time_local {s:?}");
    let num = |r: std::ops::Range<usize>| -> i64 { s[r].parse().unwrap_or_else(|_| panic!("time_local {s:?}")) };
    let m = MONTHS.iter().position(|m| *m == &s[3..6]).unwrap_or_else(|| panic!("month in {s:?}")) as i64 + 1;
    days_since_epoch(num(7..11), m, num(0..2)) * 86400 + num(12..14) * 3600 + num(15..17) * 60 + num(18..20)
}

// ---------------------------------------------------------------------------------------------
// The binary

fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vestibule")).args(args).output().expect("run vestibule");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn run_bin_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || run_bin(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

fn manifest_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

// =============================================================================================
// 1. Metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_count_known_traffic_by_rule_not_by_request() {
    init_tracing();
    let api = echo("api").await;
    let mut m = backend("api", api.addr);
    m.push_str(&format!("{}\n---\n", backend_yaml("default", "nobody", &[])));
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    m.push_str(&simple_ingress("broken", "2020-01-01T00:00:00Z", "empty.example.com", "/", "Prefix", "nobody"));
    m.push_str(&simple_ingress("ghost", "2020-01-01T00:00:00Z", "ghost.example.com", "/", "Prefix", "does-not-exist"));
    let h = start(&m).await;

    let mut get_body_bytes = 0usize;
    for p in ["/api/x/1", "/api/y/2", "/api"] {
        let resp = h.get("shop.example.com", p).await;
        assert_eq!(resp.status(), 200, "{p}");
        get_body_bytes += resp.bytes().await.unwrap().len();
    }
    const BODY: usize = 5000;
    for _ in 0..2 {
        let resp = h.client.post(h.http("/api/upload")).header("host", "shop.example.com").body(vec![b'x'; BODY]).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["body_bytes"], BODY as u64);
    }
    assert_eq!(h.get("empty.example.com", "/").await.status(), 503);
    for _ in 0..2 {
        assert_eq!(h.get("unknown.example.com", "/some/where").await.status(), 404);
    }

    // A connection held open shows in the active connections gauge.
    let mut held = tokio::net::TcpStream::connect(h.running.http).await.unwrap();
    held.write_all(b"HEAD /api HTTP/1.1\r\nHost: shop.example.com\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = held.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));

    // The responses' bodies have all been sent when the clients have read them; the counters are
    // bumped as the body ends, so poll briefly for the last one.
    let head = [("host", "shop.example.com"), ("method", "HEAD"), ("status", "200")];
    wait_metric(&h, "nginx_ingress_controller_requests", &head, |v| v == 1.0, Duration::from_secs(5)).await;
    let (text, s) = scrape(&h).await;

    let route = [("host", "shop.example.com"), ("path", "/api"), ("namespace", "default"), ("ingress", "shop"), ("service", "api")];
    let get200: Vec<(&str, &str)> = route.iter().copied().chain([("method", "GET"), ("status", "200")]).collect();
    let post200: Vec<(&str, &str)> = route.iter().copied().chain([("method", "POST"), ("status", "200")]).collect();
    let req = "nginx_ingress_controller_requests";
    assert_eq!(one(&s, req, &get200), 3.0, "{text}");
    assert_eq!(one(&s, req, &post200), 2.0, "{text}");
    // The path label is the rule's path: /api/x/1, /api/y/2, /api and /api/upload are all "/api"
    // (one series per method).
    for sample in series(&s, req, &[("host", "shop.example.com")]) {
        assert_eq!(sample.labels["path"], "/api", "{sample:?}");
    }
    assert_eq!(series(&s, req, &[("host", "shop.example.com")]).len(), 3, "GET, POST and HEAD:\n{text}");
    assert!(!text.contains("/api/x/1") && !text.contains("/api/y/2") && !text.contains("/some/where"), "request paths never become labels:\n{text}");

    let no_endpoints = [("host", "empty.example.com"), ("path", "/"), ("namespace", "default"), ("ingress", "broken"), ("service", "nobody"), ("method", "GET"), ("status", "503")];
    assert_eq!(one(&s, req, &no_endpoints), 1.0, "{text}");
    assert_eq!(one(&s, req, &[("status", "404")]), 2.0, "{text}");
    let unrouted = series(&s, req, &[("status", "404")]);
    assert_eq!((unrouted[0].labels["host"].as_str(), unrouted[0].labels["ingress"].as_str(), unrouted[0].labels["method"].as_str()), ("", "", "GET"));

    // Histograms agree with the counters.
    let dur = "nginx_ingress_controller_request_duration_seconds";
    assert_eq!(one(&s, &format!("{dur}_count"), &get200), 3.0);
    assert_eq!(one(&s, &format!("{dur}_count"), &post200), 2.0);
    assert_eq!(one(&s, &format!("{dur}_count"), &no_endpoints), 1.0);
    assert_eq!(one(&s, &format!("{dur}_count"), &[("status", "404")]), 2.0);
    let dsum = one(&s, &format!("{dur}_sum"), &get200);
    assert!(dsum > 0.0 && dsum < 20.0, "duration sum {dsum}");

    // Request sizes: the POSTs carry their bodies, the GETs only their heads.
    let size = "nginx_ingress_controller_request_size";
    assert_eq!(one(&s, &format!("{size}_count"), &post200), 2.0);
    let post_avg = one(&s, &format!("{size}_sum"), &post200) / 2.0;
    let get_avg = one(&s, &format!("{size}_sum"), &get200) / 3.0;
    assert!(get_avg > 30.0 && get_avg < 1000.0, "a GET's size is its request line and headers: {get_avg}");
    assert!(post_avg >= BODY as f64 + 30.0, "a POST's size includes its {BODY}-byte body: {post_avg}");
    assert!(post_avg - get_avg >= BODY as f64 && post_avg - get_avg < BODY as f64 + 200.0, "POST {post_avg} vs GET {get_avg}");

    let rsize = "nginx_ingress_controller_response_size";
    assert_eq!(one(&s, &format!("{rsize}_count"), &get200), 3.0);
    let rsum = one(&s, &format!("{rsize}_sum"), &get200);
    assert!(rsum >= get_body_bytes as f64, "response sizes {rsum} cover at least the bodies ({get_body_bytes} bytes)");

    // Configuration state.
    assert_eq!(one(&s, "nginx_ingress_controller_config_last_reload_successful", &[]), 1.0);
    let ts = one(&s, "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds", &[]) as i64;
    assert!((now_secs() - ts).abs() < 120, "last reload at {ts}, now {}", now_secs());
    assert_eq!(one(&s, "vestibule_config_changes_total", &[("result", "applied")]), 1.0, "the one configuration loaded at start:\n{text}");
    assert!(series(&s, "vestibule_config_changes_total", &[("result", "rejected")]).iter().all(|r| r.value == 0.0), "nothing was rejected:\n{text}");
    assert_eq!(one(&s, "vestibule_diagnostics", &[("reason", "ServiceNotFound")]), 1.0, "{text}");
    assert_eq!(one(&s, "vestibule_diagnostics", &[("reason", "NoReadyEndpoints")]), 1.0, "{text}");
    assert!(series(&s, "vestibule_diagnostics", &[("reason", "PathConflict")]).is_empty(), "{text}");

    // Active connections: exactly the one held open once the clients above have gone (their
    // connections are not kept alive), back to zero when it closes too.
    wait_metric(&h, "vestibule_connections_active", &[("protocol", "http")], |v| v == 1.0, Duration::from_secs(10)).await;
    drop(held);
    wait_metric(&h, "vestibule_connections_active", &[("protocol", "http")], |v| v == 0.0, Duration::from_secs(10)).await;
    assert!(text.contains("vestibule_upstream_retries_total 0"), "no retry happened yet:\n{text}");
}

async fn shop_harness() -> (Harness, Echo) {
    let api = echo("api").await;
    let mut m = backend("api", api.addr);
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    (start(&m).await, api)
}

const SHOP_GET_200: [(&str, &str); 7] =
    [("host", "shop.example.com"), ("path", "/api"), ("namespace", "default"), ("ingress", "shop"), ("service", "api"), ("method", "GET"), ("status", "200")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_buckets_are_cumulative_and_end_at_the_count() {
    init_tracing();
    let (h, _api) = shop_harness().await;
    for _ in 0..3 {
        let resp = h.get("shop.example.com", "/api/a").await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    wait_metric(&h, "nginx_ingress_controller_requests", &SHOP_GET_200, |v| v == 3.0, Duration::from_secs(5)).await;
    let (text, s) = scrape(&h).await;
    for hist in ["request_duration_seconds", "response_duration_seconds", "request_size", "response_size"] {
        let name = format!("nginx_ingress_controller_{hist}");
        assert_eq!(one(&s, &format!("{name}_count"), &SHOP_GET_200), 3.0, "{text}");
        let mut buckets: Vec<(f64, f64)> = series(&s, &format!("{name}_bucket"), &SHOP_GET_200)
            .iter()
            .map(|b| (if b.labels["le"] == "+Inf" { f64::INFINITY } else { b.labels["le"].parse().unwrap() }, b.value))
            .collect();
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(buckets.len() > 5 && buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}: cumulative {buckets:?}");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 3.0), "{name}: the +Inf bucket equals the count (3 requests): {buckets:?}");
        assert!(buckets.iter().all(|b| b.1 <= 3.0), "{name}: no bucket holds more than the 3 observations: {buckets:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_size_includes_the_status_line_and_headers() {
    init_tracing();
    let (h, _api) = shop_harness().await;
    let mut body_bytes = 0usize;
    for _ in 0..3 {
        let resp = h.get("shop.example.com", "/api/a").await;
        assert_eq!(resp.status(), 200);
        body_bytes += resp.bytes().await.unwrap().len();
    }
    wait_metric(&h, "nginx_ingress_controller_requests", &SHOP_GET_200, |v| v == 3.0, Duration::from_secs(5)).await;
    let (text, s) = scrape(&h).await;
    let rsum = one(&s, "nginx_ingress_controller_response_size_sum", &SHOP_GET_200);
    // ingress-nginx's response_size is $bytes_sent: status line, headers and body, as the
    // metric's own help text says. Each response has at least a status line, Date,
    // Content-Length and X-Request-ID (no Server header: server-tokens is off by default).
    let min_head = "HTTP/1.1 200 OK\r\ndate: Sun, 22 Nov 2026 05:03:41 GMT\r\nx-request-id: 0123456789abcdef0123456789abcdef\r\n\r\n".len();
    assert!(
        rsum >= (body_bytes + 3 * min_head) as f64,
        "response_size counts status line and headers as well as the body: sum {rsum}, bodies alone {body_bytes}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_configuration_change_that_keeps_the_route() {
    init_tracing();
    let api = echo("api").await;
    let other = echo("other").await;
    let mut m = backend("api", api.addr);
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    let h = start(&m).await;
    for _ in 0..3 {
        assert_eq!(h.get("shop.example.com", "/api/a").await.status(), 200);
    }
    let labels = [("host", "shop.example.com"), ("path", "/api"), ("ingress", "shop"), ("method", "GET"), ("status", "200")];
    wait_metric(&h, "nginx_ingress_controller_requests", &labels, |v| v == 3.0, Duration::from_secs(5)).await;
    let (_, s) = scrape(&h).await;
    let applied = one(&s, "vestibule_config_changes_total", &[("result", "applied")]);
    let stamp = one(&s, "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds", &[]);

    // A second file adds a host; the shop route stays as it was.
    let mut extra = backend("other", other.addr);
    extra.push_str(&simple_ingress("extra", "2020-01-01T00:00:00Z", "other.example.com", "/", "Prefix", "other"));
    h.write("extra.yaml", &extra);
    h.wait_route("other.example.com", "/", (200, Some("other")), Duration::from_secs(10)).await;
    let after = wait_metric(&h, "vestibule_config_changes_total", &[("result", "applied")], |v| v > applied, Duration::from_secs(5)).await;
    assert_eq!(after, applied + 1.0, "one new file is one applied change");

    let (text, s) = scrape(&h).await;
    assert_eq!(one(&s, "nginx_ingress_controller_requests", &labels), 3.0, "the swap did not reset the route's counter:\n{text}");
    assert_eq!(one(&s, "nginx_ingress_controller_request_duration_seconds_count", &labels), 3.0);
    assert!(one(&s, "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds", &[]) >= stamp);
    assert_eq!(one(&s, "nginx_ingress_controller_config_last_reload_successful", &[]), 1.0);

    // New requests keep adding to the same series.
    assert_eq!(h.get("shop.example.com", "/api/b").await.status(), 200);
    wait_metric(&h, "nginx_ingress_controller_requests", &labels, |v| v == 4.0, Duration::from_secs(5)).await;

    // A rewrite of the shop file that changes the backend's endpoints but keeps the rule.
    let api2 = echo("api").await;
    let mut m2 = backend("api", api2.addr);
    m2.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    h.write("manifests.yaml", &m2);
    let before = after;
    let after = wait_metric(&h, "vestibule_config_changes_total", &[("result", "applied")], |v| v > before, Duration::from_secs(10)).await;
    assert_eq!(after, before + 1.0, "one rewrite is one applied change");
    drop(api);
    assert_eq!(h.get("shop.example.com", "/api/c").await.status(), 200);
    wait_metric(&h, "nginx_ingress_controller_requests", &labels, |v| v == 5.0, Duration::from_secs(5)).await;

    // A rejected manifest is counted as such, and the last reload is reported unsuccessful.
    h.write("broken.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n");
    wait_metric(&h, "vestibule_config_changes_total", &[("result", "rejected")], |v| v >= 1.0, Duration::from_secs(10)).await;
    wait_metric(&h, "nginx_ingress_controller_config_last_reload_successful", &[], |v| v == 0.0, Duration::from_secs(10)).await;
    let (text, s) = scrape(&h).await;
    assert_eq!(one(&s, "vestibule_config_changes_total", &[("result", "rejected")]), 1.0, "one broken file is one rejected change:\n{text}");
    assert_eq!(one(&s, "nginx_ingress_controller_requests", &labels), 5.0);
}

/// A change made only of a broken file applies nothing: it counts as rejected, not also as
/// applied ("Configuration changes, applied or rejected").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_rejected_change_is_not_also_counted_as_applied() {
    init_tracing();
    let (h, _api) = shop_harness().await;
    let (text, s) = scrape(&h).await;
    assert_eq!(one(&s, "vestibule_config_changes_total", &[("result", "applied")]), 1.0, "{text}");
    h.write("broken.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n");
    wait_metric(&h, "vestibule_config_changes_total", &[("result", "rejected")], |v| v >= 1.0, Duration::from_secs(10)).await;
    // Give a second (wrong) count time to land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (text, s) = scrape(&h).await;
    assert_eq!(one(&s, "vestibule_config_changes_total", &[("result", "rejected")]), 1.0, "{text}");
    assert_eq!(one(&s, "vestibule_config_changes_total", &[("result", "applied")]), 1.0, "the broken file applied nothing:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_counted_when_an_endpoint_refuses_connections() {
    init_tracing();
    let live = echo("flaky").await;
    let mut m = service("flaky");
    m.push_str(&slice("flaky-live", "flaky", live.addr.port()));
    m.push_str(&slice("flaky-dead", "flaky", free_port()));
    m.push_str(&simple_ingress("flaky", "2020-01-01T00:00:00Z", "flaky.example.com", "/", "Prefix", "flaky"));
    let h = start(&m).await;
    let (_, s) = scrape(&h).await;
    assert_eq!(one(&s, "vestibule_upstream_retries_total", &[]), 0.0);
    // Round-robin: of any two requests, one starts at the refusing endpoint and is retried.
    for _ in 0..4 {
        assert_eq!(h.route("flaky.example.com", "/").await, (200, Some("flaky".into())));
    }
    let (text, s) = scrape(&h).await;
    let retries = one(&s, "vestibule_upstream_retries_total", &[]);
    // Two refused connects stay below the ejection threshold: the endpoint stays in rotation.
    assert!(vestibule::proxy::balance::EJECT_AFTER > 2);
    assert_eq!(retries, 2.0, "4 requests, 2 of them starting at the refusing endpoint:\n{text}");
    let ok = [("host", "flaky.example.com"), ("status", "200"), ("method", "GET")];
    assert_eq!(one(&s, "nginx_ingress_controller_requests", &ok), 4.0, "a retried request counts once:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_and_certificate_expiry_are_exported() {
    init_tracing();
    let web = echo("web").await;
    let issued = vestibule::tls::issue_with_ca(&["secure.example.com"]).unwrap();
    let mut m = backend("web", web.addr);
    m.push_str(&secret_yaml("default", "secure-tls", &issued.cert_pem, &issued.key_pem));
    m.push_str("\n---\n");
    m.push_str(&tls_ingress("secure", "secure.example.com", "secure-tls", "web"));
    let h = start(&m).await;

    let (cert, version, _) = handshake(h.running.https, Some("secure.example.com"), &[&rustls::version::TLS13], &[b"http/1.1"]).await;
    assert_eq!(cert, der_of(&issued.cert_pem), "the Secret's certificate is served");
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    let ok13 = [("version", "TLSv1.3"), ("result", "ok")];
    wait_metric(&h, "vestibule_tls_handshakes_total", &ok13, |v| v >= 1.0, Duration::from_secs(5)).await;
    handshake(h.running.https, Some("secure.example.com"), &[&rustls::version::TLS12], &[]).await;
    wait_metric(&h, "vestibule_tls_handshakes_total", &[("version", "TLSv1.2"), ("result", "ok")], |v| v >= 1.0, Duration::from_secs(5)).await;

    // A client that gives up mid-handshake counts as a failed handshake.
    let mut junk = tokio::net::TcpStream::connect(h.running.https).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: secure.example.com\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), junk.read_to_end(&mut sink)).await;
    wait_metric(&h, "vestibule_tls_handshakes_total", &[("result", "error")], |v| v >= 1.0, Duration::from_secs(5)).await;

    let (text, s) = scrape(&h).await;
    assert_eq!(one(&s, "vestibule_tls_handshakes_total", &ok13), 1.0, "{text}");
    let expiry = one(&s, "nginx_ingress_controller_ssl_expire_time_seconds", &[("host", "secure.example.com"), ("namespace", "default"), ("secret_name", "secure-tls")]);
    assert_eq!(expiry as i64, not_after(&der_of(&issued.cert_pem)), "{text}");
    let info = series(&s, "nginx_ingress_controller_ssl_certificate_info", &[("host", "secure.example.com"), ("secret_name", "secure-tls")]);
    assert_eq!(info.len(), 1, "{text}");
    assert_eq!(info[0].labels["issuer_common_name"], "Vestibule Demo CA");
    // Only certificates from Secrets are described: the generated default has no expiry series.
    assert_eq!(series(&s, "nginx_ingress_controller_ssl_expire_time_seconds", &[]).len(), 1, "{text}");

    // The HTTPS request counts under the route, and the connection under its protocol.
    let client = h.https_client(&["secure.example.com"], &issued.ca_pem);
    let resp = client.get(h.https("secure.example.com", "/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    wait_metric(&h, "nginx_ingress_controller_requests", &[("host", "secure.example.com"), ("ingress", "secure"), ("status", "200")], |v| v == 1.0, Duration::from_secs(5)).await;
    let (text, s) = scrape(&h).await;
    assert!(!series(&s, "vestibule_connections_active", &[]).iter().all(|c| c.labels["protocol"] == "http"), "{text}");
    // Every handshake counted once: two TLS 1.3 (the probe and the HTTPS request), one TLS 1.2,
    // one failed.
    assert_eq!(one(&s, "vestibule_tls_handshakes_total", &ok13), 2.0, "{text}");
    assert_eq!(one(&s, "vestibule_tls_handshakes_total", &[("version", "TLSv1.2"), ("result", "ok")]), 1.0, "{text}");
    assert_eq!(one(&s, "vestibule_tls_handshakes_total", &[("result", "error")]), 1.0, "{text}");
    assert_no_key_material(text.as_bytes(), &issued.key_pem, "/metrics");
}

// =============================================================================================
// 2. Access log

/// An access log writer whose output the test reads back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits for the one line that contains `needle`.
    async fn line_with(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
            if !lines.is_empty() {
                assert_eq!(lines.len(), 1, "one line per request: {lines:#?}");
                return lines[0].to_string();
            }
            if start.elapsed() > Duration::from_secs(5) {
                panic!("no access log line with {needle:?} in:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn start_logged(m: &str, format: Format) -> (Harness, Sink) {
    let sink = Sink::default();
    let w = sink.clone();
    let h = start_with(m, move |o| o.access_log = AccessLogTarget::Writer(format, Mutex::new(Some(Box::new(w))))).await;
    (h, sink)
}

/// Splits a text log line into fields: `"..."` and `[...]` are one field each.
fn log_fields(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let end = match b[i] {
            b'"' => i + 1 + line[i + 1..].find('"').unwrap_or_else(|| panic!("unterminated quote in {line:?}")) + 1,
            b'[' => i + 1 + line[i + 1..].find(']').unwrap_or_else(|| panic!("unterminated bracket in {line:?}")) + 1,
            _ => line[i..].find(' ').map(|e| i + e).unwrap_or(b.len()),
        };
        out.push(line[i..end].to_string());
        i = end;
    }
    out
}

fn is_secs3(s: &str) -> bool {
    let Some((a, b)) = s.split_once('.') else { return false };
    !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.len() == 3 && b.bytes().all(|c| c.is_ascii_digit())
}

fn logged_manifests(addr: SocketAddr) -> String {
    let mut m = backend("api", addr);
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/path", "Prefix", "api"));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_text_line_has_every_field_in_ingress_nginx_order() {
    init_tracing();
    let api = echo("api").await;
    let (h, sink) = start_logged(&logged_manifests(api.addr), Format::Text).await;

    let resp = h
        .client
        .get(h.http("/path?q=1"))
        .header("host", "shop.example.com")
        .header("referer", "http://ref.example/page")
        .header("user-agent", "operability-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    let line = sink.line_with(&id).await;
    let f = log_fields(&line);
    assert_eq!(f.len(), 18, "{line}\n{f:#?}");
    assert_eq!(f[0], "127.0.0.1", "remote address: {line}");
    assert_eq!((f[1].as_str(), f[2].as_str()), ("-", "-"), "a literal dash, then the remote user: {line}");
    let t = f[3].strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or_else(|| panic!("time in brackets: {line}"));
    assert!((parse_time_local(t) - now_secs()).abs() < 60, "time_local {t} is now");
    assert_eq!(f[4], "\"GET /path?q=1 HTTP/1.1\"", "request line: {line}");
    assert_eq!(f[5], "200");
    assert_eq!(f[6], body.len().to_string(), "body bytes sent: {line}");
    assert_eq!(f[7], "\"http://ref.example/page\"");
    assert_eq!(f[8], "\"operability-test/1.0\"");
    let request_length: u64 = f[9].parse().unwrap_or_else(|_| panic!("request length: {line}"));
    let min = "GET /path?q=1 HTTP/1.1\r\nhost: shop.example.com\r\nreferer: http://ref.example/page\r\nuser-agent: operability-test/1.0\r\n\r\n".len() as u64;
    assert!(request_length >= min && request_length < min + 200, "request length {request_length}, the head alone is {min}");
    assert!(is_secs3(&f[10]), "request time with 3 decimals: {line}");
    assert_eq!(f[11], "[default-api-80]", "upstream name namespace-service-port: {line}");
    assert_eq!(f[12], "[]", "alternative upstream name: {line}");
    assert_eq!(f[13], api.addr.to_string(), "upstream address: {line}");
    assert_eq!(f[14], body.len().to_string(), "upstream response length: {line}");
    assert!(is_secs3(&f[15]), "upstream response time: {line}");
    let (rt, urt): (f64, f64) = (f[10].parse().unwrap(), f[15].parse().unwrap());
    assert!(urt <= rt + 0.001, "the upstream's time is part of the request's: {rt} {urt}");
    assert_eq!(f[16], "200", "upstream status: {line}");
    assert_eq!(f[17], id, "request id: {line}");

    // No upstream: a 404 logs dashes for the upstream fields.
    let resp = h.get("nowhere.example.com", "/x").await;
    assert_eq!(resp.status(), 404);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    let line = sink.line_with(&id).await;
    let f = log_fields(&line);
    assert_eq!(f.len(), 18, "{line}");
    assert_eq!(f[4], "\"GET /x HTTP/1.1\"");
    assert_eq!(f[5], "404");
    assert_eq!(f[6], body.len().to_string());
    assert_eq!(f[7], "\"-\"", "no referer: {line}");
    assert_eq!(&f[13..17], &["-", "-", "-", "-"], "no upstream: {line}");
    assert_eq!(f[17], id);

    // A client-sent request ID is the one logged.
    let resp = h.client.get(h.http("/path")).header("host", "shop.example.com").header("x-request-id", "client-chosen-id-42").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-id-42");
    resp.bytes().await.unwrap();
    let line = sink.line_with("client-chosen-id-42").await;
    assert!(line.ends_with(" client-chosen-id-42"), "{line}");
    assert!(sink.text().ends_with('\n'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_json_has_the_same_fields() {
    init_tracing();
    let api = echo("api").await;
    let (h, sink) = start_logged(&logged_manifests(api.addr), Format::Json).await;
    let resp = h
        .client
        .post(h.http("/path/sub?q=1"))
        .header("host", "shop.example.com")
        .header("referer", "http://ref.example/")
        .header("user-agent", "json \"agent\"")
        .body(vec![b'b'; 300])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    let line = sink.line_with(&id).await;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["remote_addr"], "127.0.0.1");
    assert!((parse_time_local(v["time_local"].as_str().unwrap()) - now_secs()).abs() < 60, "{line}");
    assert_eq!(v["request"], "POST /path/sub?q=1 HTTP/1.1");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/path/sub?q=1");
    assert_eq!(v["host"], "shop.example.com");
    assert_eq!(v["status"], 200);
    assert_eq!(v["body_bytes_sent"], body.len() as u64);
    assert_eq!(v["http_referer"], "http://ref.example/");
    assert_eq!(v["http_user_agent"], "json \"agent\"", "JSON escaping keeps the value exact");
    assert!(v["request_length"].as_u64().unwrap() >= 300 + 40, "{line}");
    assert!(v["request_time"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["proxy_upstream_name"], "default-api-80");
    assert_eq!(v["upstream_addr"], api.addr.to_string());
    assert_eq!(v["upstream_response_length"], body.len() as u64);
    assert!(v["upstream_response_time"].as_f64().unwrap() <= v["request_time"].as_f64().unwrap() + 0.001);
    assert_eq!(v["upstream_status"], 200);
    assert_eq!(v["req_id"], id.as_str());

    let resp = h.get("nowhere.example.com", "/").await;
    assert_eq!(resp.status(), 404);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    resp.bytes().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&sink.line_with(&id).await).unwrap();
    assert_eq!(v["status"], 404);
    assert!(v["upstream_addr"].is_null() && v["upstream_status"].is_null() && v["upstream_response_time"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_escapes_client_controlled_values_so_lines_cannot_be_forged() {
    init_tracing();
    let api = echo("api").await;
    let (h, sink) = start_logged(&logged_manifests(api.addr), Format::Text).await;
    // HTTP parsers refuse a raw CR or LF inside a header value, so a line break cannot arrive
    // that way; the quote, tab, backslash and non-ASCII byte here can, and must be escaped.
    let mut req = b"GET /path?x=q HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\nX-Request-ID: forge-1\r\nReferer: r\\\"ef\r\nUser-Agent: evil\" 200 0 \"-\"\t\"x".to_vec();
    req.extend_from_slice(&[0xff]);
    req.extend_from_slice(b"\r\n\r\n");
    let resp = raw(h.running.http, &req, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    if resp.starts_with("HTTP/1.1 200") {
        let line = sink.line_with("forge-1").await;
        assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "printable ASCII only: {line:?}");
        assert!(line.contains("\"evil\\x22 200 0 \\x22-\\x22\\x09\\x22x"), "quotes and tab escaped as \\xHH: {line}");
        assert!(line.contains("\"r\\x5C\\x22ef\""), "backslash and quote in the referer escaped: {line}");
        let f = log_fields(&line);
        assert_eq!(f.len(), 18, "the user agent cannot add fields: {f:#?}");
        assert_eq!(f[5], "200");
        assert_eq!(f[17], "forge-1");
    }

    // The escape applies to every request: one ordinary request after it is one line.
    let resp = h.client.get(h.http("/path")).header("host", "shop.example.com").header("user-agent", "a\tb\"c").header("x-request-id", "forge-2").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let line = sink.line_with("forge-2").await;
    assert!(line.contains("\"a\\x09b\\x22c\""), "{line}");
    assert_eq!(log_fields(&line).len(), 18);
    for l in sink.text().lines() {
        assert_eq!(log_fields(l).len(), 18, "every line keeps the field structure: {l}");
    }
}

// =============================================================================================
// 3. Explain

fn fallback_settings() -> vestibule::compile::Settings {
    vestibule::compile::Settings::new(vestibule::tls::self_signed(&["x"]).unwrap().0)
}


fn explain_in(store: &Store, url: &str) -> Explanation {
    explain::explain(store, &fallback_settings(), url).unwrap()
}

fn ep(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn candidate<'a>(x: &'a Explanation, ingress: &str) -> &'a explain::Candidate {
    x.candidates.iter().find(|c| c.ingress == ingress).unwrap_or_else(|| panic!("no candidate {ingress} in {:#?}", x.candidates))
}

fn shop_store() -> Store {
    let mut m = backend("api", ep(8080));
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    store_of(&m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_matched_route_names_ingress_rule_backend_and_endpoints() {
    let x = explain_in(&shop_store(), "http://shop.example.com/api/items?page=2");
    assert_eq!(x.outcome, "proxied");
    assert_eq!((x.host.as_str(), x.path.as_str()), ("shop.example.com", "/api/items"));
    let m = x.matched.as_ref().expect("matched");
    assert_eq!(m.ingress, "default/shop");
    assert_eq!(m.via, "route");
    assert_eq!((m.host.as_str(), m.path.as_str(), m.path_type.as_str()), ("shop.example.com", "/api", "Prefix"));
    assert_eq!(m.service, "default/api");
    assert_eq!(m.endpoints, vec!["10.0.0.1:8080".to_string()]);
    assert!(m.problem.is_none());
    assert_eq!(candidate(&x, "default/shop").verdict, "matched");
    assert!(x.redirect.is_none() && x.certificate.is_none());
    let t = x.text();
    for want in ["Ingress default/shop", "host shop.example.com", "path /api (Prefix)", "Service default/api", "10.0.0.1:8080", "answer: proxied", "[matched]"] {
        assert!(t.contains(want), "{want:?} in:\n{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_wrong_host() {
    let x = explain_in(&shop_store(), "http://shop.example.org/api");
    assert_eq!(x.outcome, "404");
    assert!(x.matched.is_none());
    let c = candidate(&x, "default/shop");
    assert_eq!(c.verdict, "wrong host");
    assert!(c.why.contains("shop.example.com") && c.why.contains("shop.example.org"), "{}", c.why);
    let t = x.text();
    assert!(t.contains("nothing matches") && t.contains("answer: 404") && t.contains("[wrong host]"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_wrong_path() {
    let x = explain_in(&shop_store(), "http://shop.example.com/apix/1");
    assert_eq!(x.outcome, "404", "Prefix /api does not match /apix");
    let c = candidate(&x, "default/shop");
    assert_eq!(c.verdict, "wrong path");
    assert!(c.why.contains("/apix/1") && c.why.contains("Prefix /api"), "{}", c.why);
    assert!(x.text().contains("[wrong path]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_path_type_mismatch_says_the_other_type_would_match() {
    let mut m = backend("api", ep(8080));
    m.push_str(&simple_ingress("exact", "2020-01-01T00:00:00Z", "shop.example.com", "/foo", "Exact", "api"));
    let x = explain_in(&store_of(&m), "http://shop.example.com/foo/bar");
    assert_eq!(x.outcome, "404");
    let c = candidate(&x, "default/exact");
    assert_eq!(c.verdict, "path type mismatch");
    assert!(c.why.contains("Exact /foo") && c.why.contains("Prefix would"), "{}", c.why);
    assert!(x.text().contains("Prefix would"), "{}", x.text());
    // And the request Exact matches is routed.
    assert_eq!(explain_in(&store_of(&m), "http://shop.example.com/foo").outcome, "proxied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_class_ignored() {
    let mut m = backend("api", ep(8080));
    let foreign = Ingress::new("default", "foreign").created("2020-01-01T00:00:00Z").class("other-class").host_path("shop.example.com", "/", "Prefix", "api", 80);
    m.push_str(&format!("{}---\n", foreign.to_yaml()));
    let x = explain_in(&store_of(&m), "http://shop.example.com/");
    assert_eq!(x.outcome, "404");
    let c = candidate(&x, "default/foreign");
    assert_eq!(c.verdict, "class ignored");
    assert!(c.why.contains("other-class"), "{}", c.why);
    assert!(x.text().contains("[class ignored]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_invalid_ingress() {
    // An object the API server would refuse never passes the file source, so build it directly,
    // as a store filled by another source could hold it.
    let mut store = store_of(&backend("api", ep(8080)));
    let ing: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "bad", "namespace": "default", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 70000}}}}
        ]}}]}
    }))
    .unwrap();
    store.insert(Object::Ingress(ing));
    let x = explain_in(&store, "http://shop.example.com/api");
    assert_eq!(x.outcome, "404", "an invalid Ingress is skipped");
    let c = candidate(&x, "default/bad");
    assert_eq!(c.verdict, "invalid");
    assert!(c.why.contains("spec.rules[0].http.paths[0].backend.service.port.number") && c.why.contains("70000"), "{}", c.why);
    assert!(x.text().contains("[invalid]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_missing_service_answers_503_and_names_it() {
    let m = simple_ingress("ghost", "2020-01-01T00:00:00Z", "ghost.example.com", "/", "Prefix", "nowhere");
    let x = explain_in(&store_of(&m), "http://ghost.example.com/a");
    assert_eq!(x.outcome, "503");
    let mt = x.matched.as_ref().unwrap();
    assert_eq!(mt.ingress, "default/ghost");
    assert!(mt.endpoints.is_empty());
    let problem = mt.problem.as_deref().expect("a problem is reported");
    assert!(problem.contains("default/nowhere") && problem.contains("not found"), "{problem}");
    let c = candidate(&x, "default/ghost");
    assert_eq!(c.verdict, "matched");
    assert!(c.why.contains("default/nowhere"), "{}", c.why);
    let t = x.text();
    assert!(t.contains("problem: ") && t.contains("answer: 503"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_no_ready_endpoints() {
    let mut m = service("sleepy");
    let sleepy = EndpointSlice::new("", "sleepy-1", "sleepy").port("http", 8080).endpoint(Endpoint::at("10.0.0.9").ready(false));
    m.push_str(&format!("{}---\n", sleepy.to_yaml()));
    m.push_str(&simple_ingress("sleepy", "2020-01-01T00:00:00Z", "sleepy.example.com", "/", "Prefix", "sleepy"));
    let x = explain_in(&store_of(&m), "http://sleepy.example.com/");
    assert_eq!(x.outcome, "503");
    let mt = x.matched.as_ref().unwrap();
    assert!(mt.endpoints.is_empty());
    assert!(mt.problem.as_deref().unwrap_or("").contains("no ready endpoints"), "{mt:?}");
    let t = x.text();
    assert!(t.contains("no ready endpoints") && t.contains("answer: 503") && !t.contains("10.0.0.9"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_conflict_lost_names_the_older_ingress() {
    let mut m = backend("old-svc", ep(1001));
    m.push_str(&backend("new-svc", ep(1002)));
    // The newer one sorts first by name.
    m.push_str(&simple_ingress("a-new", "2022-01-01T00:00:00Z", "dup.example.com", "/x", "Prefix", "new-svc"));
    m.push_str(&simple_ingress("z-old", "2020-01-01T00:00:00Z", "dup.example.com", "/x", "Prefix", "old-svc"));
    let x = explain_in(&store_of(&m), "http://dup.example.com/x/1");
    assert_eq!(x.outcome, "proxied");
    let mt = x.matched.as_ref().unwrap();
    assert_eq!((mt.ingress.as_str(), mt.service.as_str()), ("default/z-old", "default/old-svc"));
    assert_eq!(candidate(&x, "default/z-old").verdict, "matched");
    let lost = candidate(&x, "default/a-new");
    assert_eq!(lost.verdict, "conflict lost");
    assert!(lost.why.contains("default/z-old"), "{}", lost.why);
    assert!(x.text().contains("[conflict lost] Ingress default/a-new"), "{}", x.text());
}

fn tls_store() -> (Store, vestibule::tls::IssuedCert) {
    let issued = vestibule::tls::issue_with_ca(&["secure.example.com"]).unwrap();
    let mut m = backend("web", ep(8443));
    m.push_str(&secret_yaml("default", "secure-tls", &issued.cert_pem, &issued.key_pem));
    m.push_str("\n---\n");
    m.push_str(&tls_ingress("secure", "secure.example.com", "secure-tls", "web"));
    (store_of(&m), issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_http_url_to_a_tls_host_is_a_308_redirect() {
    let (store, _) = tls_store();
    let x = explain_in(&store, "http://secure.example.com/account");
    assert_eq!(x.outcome, "308");
    assert_eq!(x.redirect.as_deref(), Some("https://secure.example.com/account"));
    assert_eq!(x.matched.as_ref().unwrap().ingress, "default/secure", "the route is still named");
    let t = x.text();
    assert!(t.contains("308 redirect to https://secure.example.com/account") && t.contains("answer: 308"), "{t}");
    // Over HTTPS the same URL is proxied.
    assert_eq!(explain_in(&store, "https://secure.example.com/account").outcome, "proxied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_https_url_shows_the_certificate_secret() {
    let (store, issued) = tls_store();
    let x = explain_in(&store, "https://secure.example.com/");
    assert!(x.redirect.is_none());
    let c = x.certificate.as_ref().expect("a certificate for https");
    assert_eq!(c.sni, "secure.example.com");
    assert_eq!(c.source, "Secret default/secure-tls");
    assert_eq!(c.subject, "secure.example.com");
    assert_eq!(c.dns_names, vec!["secure.example.com".to_string()]);
    assert_eq!(c.not_after, Some(not_after(&der_of(&issued.cert_pem))));
    assert!(x.text().contains("SNI secure.example.com -> Secret default/secure-tls"), "{}", x.text());
    // Another name gets the generated default.
    let other = explain_in(&store, "https://other.example.com/");
    assert_eq!(other.certificate.unwrap().source, "the generated default certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_binary_prints_text_and_json() {
    let mut m = backend("api", ep(8080));
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    let dir = manifest_dir(&[("shop.yaml", &m)]);
    let d = dir.path().to_str().unwrap().to_string();
    let url = "http://shop.example.com/api/x";

    let (code, out, err) = run_bin_async(vec!["explain".into(), url.into(), "--manifests".into(), d.clone()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, explain_in(&store_of(&m), url).text(), "the binary prints the library's explanation");
    assert!(out.contains("Ingress default/shop") && out.contains("10.0.0.1:8080"), "{out}");

    let (code, out, err) = run_bin_async(vec!["explain".into(), url.into(), "--manifests".into(), d.clone(), "--json".into()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["outcome"], "proxied");
    assert_eq!(v["matched"]["ingress"], "default/shop");
    assert_eq!(v["matched"]["endpoints"][0], "10.0.0.1:8080");

    let (code, out, _) = run_bin_async(vec!["explain".into(), "ftp://shop.example.com/".into(), "--manifests".into(), d]).await;
    assert_ne!(code, 0, "a URL that cannot be explained is an error: {out}");
}

// =============================================================================================
// 4. check

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exit_codes_follow_errors_warnings_and_strict() {
    let mut good = backend("api", ep(8080));
    good.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    let dir = manifest_dir(&[("good.yaml", &good)]);
    let (code, out, err) = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
    let (code, out, _) = run_bin(&["check", "--strict", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "no warnings, strict passes: {out}");

    // YAML syntax error: the file and line are printed.
    let syntax = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports: [ {port: 80\n";
    let dir = manifest_dir(&[("good.yaml", &good), ("syntax.yaml", syntax)]);
    let (code, out, err) = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let e = out.lines().find(|l| l.starts_with("error:") && l.contains("syntax.yaml")).unwrap_or_else(|| panic!("an error naming the file: {out}"));
    assert!(e.contains(", line "), "{e}");

    // An invalid field: the file, its line and the field are printed.
    let invalid = simple_ingress("bad", "2020-01-01T00:00:00Z", "shop.example.com", "relative", "Prefix", "api");
    let line = invalid.lines().position(|l| l.trim() == "- path: relative").unwrap() + 1;
    let dir = manifest_dir(&[("good.yaml", &good), ("invalid.yaml", &invalid)]);
    let (code, out, err) = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let e = out.lines().find(|l| l.starts_with("error:") && l.contains("invalid.yaml")).unwrap_or_else(|| panic!("{out}"));
    assert!(e.contains(&format!("line {line}")), "line {line} in {e}");
    assert!(e.contains("spec.rules[0].http.paths[0].path") && e.contains("Ingress default/bad"), "{e}");

    // A missing Service is a warning: 0, but 1 with --strict.
    let warn = simple_ingress("ghost", "2020-01-01T00:00:00Z", "ghost.example.com", "/", "Prefix", "nowhere");
    let dir = manifest_dir(&[("good.yaml", &good), ("warn.yaml", &warn)]);
    let (code, out, err) = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("warning:") && l.contains("Ingress default/ghost") && l.contains("ServiceNotFound")), "{out}");
    assert!(out.contains("0 error(s), 1 warning(s)"), "{out}");
    let (code, out, _) = run_bin(&["check", "--strict", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");

    // A path that does not exist.
    let missing = dir.path().join("no-such-dir");
    let (code, out, _) = run_bin(&["check", "--manifests", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no-such-dir"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_annotations_vestibule_does_not_implement() {
    // Keys under ingress-nginx's prefix or ours that no annotation family owns are warnings
    // naming the Ingress and the key; other prefixes (kubectl's, the legacy class) never are.
    let mut m = backend("api", ep(8080));
    let shop = Ingress::new("default", "shop")
        .created("2020-01-01T00:00:00Z")
        .annotations(&[
            ("nginx.ingress.kubernetes.io/enable-opentelemetry", "true"),
            ("vestibule.dev/no-such-thing", "on"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ])
        .host_path("shop.example.com", "/api", "Prefix", "api", 80);
    m.push_str(&format!("{}---\n", shop.to_yaml()));
    let foreign = Ingress::new("default", "foreign").class("other").annotation("nginx.ingress.kubernetes.io/rewrite-target", "/").host_path("other.example.com", "/", "Prefix", "api", 80);
    m.push_str(&format!("{}---\n", foreign.to_yaml()));
    let dir = manifest_dir(&[("shop.yaml", &m)]);
    let (code, out, err) = run_bin_async(vec!["check".into(), "--manifests".into(), dir.path().to_str().unwrap().into()]).await;
    assert_eq!(code, 0, "warnings alone pass without --strict: {out}{err}");
    let warned: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:") && l.contains("AnnotationNotSupported")).collect();
    assert_eq!(warned.len(), 2, "{out}");
    for key in ["nginx.ingress.kubernetes.io/enable-opentelemetry", "vestibule.dev/no-such-thing"] {
        let line = warned.iter().find(|l| l.contains(&format!("metadata.annotations[{key}]"))).unwrap_or_else(|| panic!("no warning for {key}: {out}"));
        assert!(line.contains("Ingress default/shop") && line.contains("not supported by Vestibule; it is ignored"), "{line}");
    }
    assert!(!out.contains("kubectl.kubernetes.io") && !out.contains("ssl-redirect"), "{out}");
    assert!(!warned.iter().any(|l| l.contains("default/foreign")), "another class's Ingress is not ours to judge: {out}");
    assert!(out.contains("0 error(s), 2 warning(s)"), "{out}");
    let (code, out, _) = run_bin_async(vec!["check".into(), "--strict".into(), "--manifests".into(), dir.path().to_str().unwrap().into()]).await;
    assert_eq!(code, 1, "--strict fails on them: {out}");
}

// =============================================================================================
// 5. Debug endpoints

/// Fails if `body` holds any form of the private key in `key_pem`.
fn assert_no_key_material(body: &[u8], key_pem: &str, what: &str) {
    use base64::Engine;
    use rustls_pki_types::pem::PemObject;
    let text = String::from_utf8_lossy(body);
    assert!(!text.contains("PRIVATE KEY"), "{what} shows a PEM private key header");
    for l in key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16) {
        assert!(!text.contains(l), "{what} contains a base64 line of the key PEM: {l}");
    }
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let der = der.secret_der();
    assert!(der.len() > 32);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    for w in b64.as_bytes().chunks(24).filter(|c| c.len() == 24) {
        assert!(!text.contains(std::str::from_utf8(w).unwrap()), "{what} contains base64 of the key");
    }
    for w in der.chunks(16).filter(|c| c.len() == 16) {
        assert!(!body.windows(16).any(|b| b == w), "{what} contains raw key bytes");
        let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!text.to_ascii_lowercase().contains(&hex), "{what} contains the key in hex");
    }
}

async fn debug_harness() -> (Harness, Echo, vestibule::tls::IssuedCert) {
    let api = echo("api").await;
    let issued = vestibule::tls::issue_with_ca(&["secure.example.com"]).unwrap();
    let mut m = backend("api", api.addr);
    m.push_str(&secret_yaml("default", "secure-tls", &issued.cert_pem, &issued.key_pem));
    m.push_str("\n---\n");
    m.push_str(&simple_ingress("shop", "2020-01-01T00:00:00Z", "shop.example.com", "/api", "Prefix", "api"));
    m.push_str(&tls_ingress("secure", "secure.example.com", "secure-tls", "api"));
    m.push_str(&simple_ingress("ghost", "2020-01-01T00:00:00Z", "ghost.example.com", "/", "Prefix", "nowhere"));
    let h = start(&m).await;
    (h, api, issued)
}

async fn admin_get(h: &Harness, path_and_query: &str) -> (u16, String, String) {
    let resp = h.client.get(format!("http://{}{path_and_query}", h.running.healthz)).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_config_shows_hosts_routes_backends_and_no_key_material() {
    init_tracing();
    let (h, api, issued) = debug_harness().await;
    let (status, ct, body) = admin_get(&h, "/debug/config").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    let host = |name: &str| hosts.iter().find(|x| x["host"] == name).unwrap_or_else(|| panic!("host {name} in {body}"));
    let shop = host("shop.example.com");
    assert_eq!(shop["tls"], false);
    let r = &shop["routes"][0];
    assert_eq!((r["path"].as_str(), r["pathType"].as_str(), r["ingress"].as_str()), (Some("/api"), Some("Prefix"), Some("default/shop")));
    assert_eq!(r["backend"]["name"], "default-api-80");
    assert_eq!(r["backend"]["service"], "api");
    assert_eq!(r["backend"]["endpoints"], serde_json::json!([api.addr.to_string()]));
    let secure = host("secure.example.com");
    assert_eq!(secure["tls"], true);
    assert_eq!(secure["routes"][0]["sslRedirect"], true);
    let ghost = &host("ghost.example.com")["routes"][0]["backend"];
    assert_eq!(ghost["endpoints"], serde_json::json!([]));
    assert!(ghost["unavailable"].as_str().unwrap_or("").contains("default/nowhere"), "{ghost}");
    let certs = v["certificates"].as_array().unwrap();
    let c = certs.iter().find(|c| c["secret"] == "default/secure-tls").unwrap_or_else(|| panic!("{body}"));
    assert_eq!(c["hosts"], serde_json::json!(["secure.example.com"]));
    assert_eq!(c["notAfter"].as_i64(), Some(not_after(&der_of(&issued.cert_pem))));
    assert!(v["diagnostics"].as_array().unwrap().iter().any(|d| d["reason"] == "ServiceNotFound" && d["object"] == "Ingress default/ghost"), "{body}");
    assert_no_key_material(body.as_bytes(), &issued.key_pem, "/debug/config");

    let (_, _, metrics) = admin_get(&h, "/metrics").await;
    assert_no_key_material(metrics.as_bytes(), &issued.key_pem, "/metrics");

    // Read-only: anything but GET/HEAD is refused.
    let resp = h.client.post(format!("http://{}/debug/config", h.running.healthz)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_explain_json_text_and_the_binary_against_the_server_agree() {
    init_tracing();
    let (h, api, issued) = debug_harness().await;

    for url in ["https%3A%2F%2Fsecure.example.com%2F", "http%3A%2F%2Fsecure.example.com%2Fx", "http%3A%2F%2Fshop.example.com%2Fapi%2Fx"] {
        let (status, ct, body) = admin_get(&h, &format!("/debug/explain?url={url}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
        assert_no_key_material(body.as_bytes(), &issued.key_pem, "/debug/explain");
        let (_, _, text) = admin_get(&h, &format!("/debug/explain?url={url}&format=text")).await;
        assert_no_key_material(text.as_bytes(), &issued.key_pem, "/debug/explain text");
    }

    let (_, _, body) = admin_get(&h, "/debug/explain?url=https%3A%2F%2Fsecure.example.com%2F").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["certificate"]["source"], "Secret default/secure-tls");
    assert_eq!(v["outcome"], "proxied");

    let (status, ct, text) = admin_get(&h, "/debug/explain?url=http%3A%2F%2Fshop.example.com%2Fapi%2Fx&format=text").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(text.starts_with("http://shop.example.com/api/x\n"), "{text}");
    assert!(text.contains("-> Ingress default/shop: host shop.example.com, path /api (Prefix)") && text.contains(&api.addr.to_string()), "{text}");
    assert!(text.contains("answer: proxied"), "{text}");

    // The redirect explained names the live HTTPS port, as the proxy's redirect does.
    let (_, _, redirect) = admin_get(&h, "/debug/explain?url=http%3A%2F%2Fsecure.example.com%2Fx&format=text").await;
    let port = h.running.https.port();
    assert!(redirect.contains(&format!("308 redirect to https://secure.example.com:{port}/x")), "{redirect}");

    // The binary against the running instance prints the same explanation.
    let server = format!("http://{}", h.running.healthz);
    let (code, out, err) = run_bin_async(vec!["explain".into(), "http://shop.example.com/api/x".into(), "--server".into(), server.clone()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, text);
    let (code, out, err) = run_bin_async(vec!["explain".into(), "http://shop.example.com/api/x".into(), "--server".into(), server.clone(), "--json".into()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matched"]["ingress"], "default/shop");

    // Errors: no url, and a URL that cannot be explained.
    assert_eq!(admin_get(&h, "/debug/explain").await.0, 400);
    assert_eq!(admin_get(&h, "/debug/explain?url=ftp%3A%2F%2Fa.com%2F").await.0, 400);
    assert_eq!(admin_get(&h, "/debug/nothing").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explained_redirect_matches_the_proxy_location_including_the_query() {
    init_tracing();
    let (h, _api, _issued) = debug_harness().await;
    let resp = h.get("secure.example.com", "/x/y?a=1&b=2").await;
    assert_eq!(resp.status(), 308);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("https://secure.example.com:{}/x/y?a=1&b=2", h.running.https.port()));
    let (status, _, body) = admin_get(&h, "/debug/explain?url=http%3A%2F%2Fsecure.example.com%2Fx%2Fy%3Fa%3D1%26b%3D2").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["outcome"], "308");
    assert_eq!(v["redirect"].as_str(), Some(location.as_str()), "explain says where the proxy redirects, query included");
}
