//! `ssl-protocols`, `ssl-ciphers` and `ssl-session-tickets`: the HTTPS listener's TLS, mapped
//! from ingress-nginx's (OpenSSL's) names onto what rustls with aws-lc-rs offers.
//!
//! `ssl-ciphers` is an OpenSSL cipher list (`:`-separated). Names of suites rustls offers are
//! used in the order given; OpenSSL keywords and exclusions (`HIGH`, `!aNULL`, ...) have no
//! rustls meaning and are ignored with an Info; any other name (a suite rustls does not offer,
//! such as the DHE or CBC ones) is a Warning. As with nginx's `ssl_ciphers`, the list only
//! governs TLS 1.2 unless it names TLS 1.3 suites (`TLS_AES_128_GCM_SHA256`...): then those
//! are the TLS 1.3 suites offered. If nothing maps, the defaults stay, with an Error.

use std::collections::BTreeMap;

use super::diag::Severity;
use super::headers_settings::{Problem, openssl_suite, version};
use crate::config::http::TlsOptions;

pub fn apply(data: &BTreeMap<String, String>, t: &mut TlsOptions, out: &mut Vec<Problem>) {
    if let Some(v) = data.get("ssl-protocols") {
        let mut versions = Vec::new();
        for p in v.split_whitespace() {
            match version(p) {
                Some(Some(ver)) => versions.push(ver),
                Some(None) => out.push(("ssl-protocols", Severity::Warning, format!("{p} is not supported by Vestibule (TLS 1.2 and 1.3 only); it is left out"))),
                None => out.push(("ssl-protocols", Severity::Warning, format!("{p:?} is not a protocol name (TLSv1.2, TLSv1.3); it is left out"))),
            }
        }
        versions.sort();
        versions.dedup();
        if versions.is_empty() {
            out.push(("ssl-protocols", Severity::Error, format!("{v:?} names no protocol Vestibule serves; TLSv1.2 and TLSv1.3 stay")));
        } else {
            t.versions = versions;
        }
    }
    if let Some(v) = data.get("ssl-ciphers").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        ciphers(v, t, out);
    }
    if let Some(v) = data.get("ssl-session-tickets") {
        match super::configmap::boolean(v) {
            Some(b) => t.session_tickets = b,
            None => out.push(("ssl-session-tickets", Severity::Warning, format!("{v:?}: must be \"true\" or \"false\"; the default (false) is used"))),
        }
    }
}

fn ciphers(v: &str, t: &mut TlsOptions, out: &mut Vec<Problem>) {
    let mut suites = Vec::new();
    for name in v.split([':', ',', ' ']).map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(s) = openssl_suite(name) {
            if !suites.contains(&s) {
                suites.push(s);
            }
        } else if name.starts_with(['!', '-', '+', '@']) || name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            out.push(("ssl-ciphers", Severity::Info, format!("{name:?} is an OpenSSL keyword with no rustls equivalent; it is ignored")));
        } else {
            out.push(("ssl-ciphers", Severity::Warning, format!("{name:?} is not a cipher suite Vestibule offers; it is left out")));
        }
    }
    if suites.is_empty() {
        out.push(("ssl-ciphers", Severity::Error, format!("{v:?} names no cipher suite Vestibule offers; the default suites stay")));
        return;
    }
    // Only TLS 1.2 suites named: TLS 1.3 keeps all of its own, as with nginx.
    if !suites.iter().any(|s| format!("{s:?}").starts_with("TLS13_")) {
        suites.extend([rustls::CipherSuite::TLS13_AES_256_GCM_SHA384, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256]);
    }
    t.cipher_suites = Some(suites);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::http::TlsVersion;

    fn run(pairs: &[(&str, &str)]) -> (TlsOptions, Vec<Problem>) {
        let data = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (mut t, mut out) = (TlsOptions::default(), Vec::new());
        apply(&data, &mut t, &mut out);
        (t, out)
    }

    #[test]
    fn protocols_ciphers_tickets() {
        let (t, p) = run(&[("ssl-protocols", "TLSv1.1 TLSv1.3"), ("ssl-ciphers", "ECDHE-RSA-AES256-GCM-SHA384:!aNULL:DHE-RSA-AES128-GCM-SHA256"), ("ssl-session-tickets", "true")]);
        assert_eq!(t.versions, [TlsVersion::Tls13]);
        assert_eq!(t.cipher_suites.as_ref().unwrap()[0], rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384);
        assert!(t.session_tickets);
        let sev: Vec<Severity> = p.iter().map(|p| p.1).collect();
        assert_eq!(sev, [Severity::Warning, Severity::Info, Severity::Warning], "{p:?}");
        let (t, p) = run(&[("ssl-ciphers", "AES128-SHA:RC4-MD5")]);
        assert_eq!(t.cipher_suites, None);
        assert_eq!(p.last().unwrap().1, Severity::Error);
    }
}
