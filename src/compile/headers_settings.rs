//! The controller ConfigMap's security and header keys: `hsts*`, `add-headers`,
//! `proxy-set-headers`, `hide-headers`, and the HTTPS listener's `ssl-protocols`, `ssl-ciphers`
//! and `ssl-session-tickets`, with ingress-nginx's defaults.
//!
//! ingress-nginx writes `add-headers` and `proxy-set-headers` values into its nginx
//! configuration, where `$name` expands to an nginx variable. Vestibule never interpolates:
//! every value is sent exactly as written (`$remote_addr` travels as those 12 characters).

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use rustls::CipherSuite as S;

use super::diag::Severity;
use crate::config::http::{HttpSettings, TlsVersion};
use crate::store::Store;

pub const KEYS: &[&str] = &[
    "hsts",
    "hsts-max-age",
    "hsts-include-subdomains",
    "hsts-preload",
    "add-headers",
    "proxy-set-headers",
    "hide-headers",
    "ssl-protocols",
    "ssl-ciphers",
    "ssl-session-tickets",
];

/// A problem with one key: the key, how bad, why.
pub type Problem = (&'static str, Severity, String);

/// Applies the keys of `data` over `s`, reading the ConfigMaps `add-headers` and
/// `proxy-set-headers` name from `store`.
pub fn apply(store: &Store, data: &BTreeMap<String, String>, s: &mut HttpSettings) -> Vec<Problem> {
    let mut out = Vec::new();
    hsts(data, s, &mut out);
    for key in ["add-headers", "proxy-set-headers"] {
        let Some(v) = data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else { continue };
        match headers_of(store, v, key == "proxy-set-headers") {
            Ok(h) if key == "add-headers" => s.add_headers = h,
            Ok(h) => s.proxy_set_headers = h,
            Err(e) => out.push((key, Severity::Error, format!("{e}; no headers are set from it"))),
        }
    }
    if let Some(v) = data.get("hide-headers") {
        s.hide_headers.clear();
        for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match HeaderName::from_bytes(n.as_bytes()) {
                Ok(h) => s.hide_headers.push(h),
                Err(_) => out.push(("hide-headers", Severity::Warning, format!("{n:?} is not a header name; it is left out"))),
            }
        }
    }
    super::tls_settings::apply(data, &mut s.tls, &mut out);
    out
}

/// `hsts`, `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload`: the header value, in
/// ingress-nginx's format `max-age=N[; includeSubDomains][; preload]`.
fn hsts(data: &BTreeMap<String, String>, s: &mut HttpSettings, out: &mut Vec<Problem>) {
    let mut flag = |key: &'static str, default: bool| match data.get(key) {
        None => default,
        Some(v) => super::configmap::boolean(v).unwrap_or_else(|| {
            out.push((key, Severity::Warning, format!("{v:?}: must be \"true\" or \"false\"; the default ({default}) is used")));
            default
        }),
    };
    let (on, sub, preload) = (flag("hsts", true), flag("hsts-include-subdomains", true), flag("hsts-preload", false));
    let max_age = match data.get("hsts-max-age") {
        None => 31536000,
        Some(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
            out.push(("hsts-max-age", Severity::Warning, format!("{v:?}: must be a whole number of seconds; the default (31536000) is used")));
            31536000
        }),
    };
    let value = format!("max-age={max_age}{}{}", if sub { "; includeSubDomains" } else { "" }, if preload { "; preload" } else { "" });
    s.hsts = on.then(|| HeaderValue::from_str(&value).expect("digits and ASCII"));
}

/// Headers a ConfigMap may not set on upstream requests: framing and the connection are
/// Vestibule's.
const NOT_SETTABLE: &[&str] = &["host", "connection", "content-length", "transfer-encoding", "upgrade", "te", "keep-alive", "proxy-connection", "trailer"];

/// The data of the ConfigMap `NAMESPACE/NAME` as headers: names `[A-Za-z0-9_-]`, values
/// printable ASCII, sent literally.
fn headers_of(store: &Store, v: &str, upstream: bool) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let Some((ns, name)) = v.split_once('/') else { return Err(format!("{v:?}: must be NAMESPACE/NAME of a ConfigMap")) };
    let Some(cm) = store.config_maps.get(&(ns.to_string(), name.to_string())) else { return Err(format!("ConfigMap {ns}/{name} not found")) };
    let mut out = Vec::new();
    for (k, val) in cm.data.iter().flatten() {
        let bad_name = k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if bad_name || (upstream && NOT_SETTABLE.contains(&k.to_ascii_lowercase().as_str())) {
            return Err(format!("header {k:?} in ConfigMap {ns}/{name} cannot be set"));
        }
        if !val.chars().all(|c| (' '..='~').contains(&c)) {
            return Err(format!("header {k:?} in ConfigMap {ns}/{name} has a value that is not printable ASCII"));
        }
        let n = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
        out.push((n, HeaderValue::from_str(val.trim()).map_err(|e| format!("header {k:?}: {e}"))?));
    }
    Ok(out)
}

/// OpenSSL's name of a cipher suite rustls (aws-lc-rs) offers.
pub fn openssl_suite(name: &str) -> Option<S> {
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_AES_128_GCM_SHA256" => S::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => S::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => S::TLS13_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

pub fn version(name: &str) -> Option<Option<TlsVersion>> {
    match name {
        "TLSv1.2" => Some(Some(TlsVersion::Tls12)),
        "TLSv1.3" => Some(Some(TlsVersion::Tls13)),
        // Known to nginx, not served by rustls.
        "TLSv1" | "TLSv1.1" | "SSLv2" | "SSLv3" => Some(None),
        _ => None,
    }
}
