//! Redirects: `ssl-redirect`, `force-ssl-redirect`, `use-port-in-redirects` (the HTTPS
//! redirect), `permanent-redirect(-code)`, `temporal-redirect(-code)` (a fixed Location) and
//! `from-to-www-redirect` (an extra host for the other name).
//!
//! ingress-nginx drops the whole Ingress when a fixed redirect, its code or
//! `from-to-www-redirect` is invalid; Vestibule instead reports an Error naming the key and
//! does not apply that annotation, and the rest of the Ingress serves.

use super::{Reader, go_bool, on_off, string};
use crate::compile::diag::Severity;

pub const KEYS: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "use-port-in-redirects",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "from-to-www-redirect",
];

/// The global settings (ConfigMap) the redirect annotations default to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// `http-redirect-code`: the status of the HTTPS and www redirects.
    pub code: u16,
    pub force_ssl_redirect: bool,
    pub use_port_in_redirects: bool,
    pub preserve_trailing_slash: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global { code: 308, force_ssl_redirect: false, use_port_in_redirects: false, preserve_trailing_slash: false }
    }
}

/// What an Ingress's redirect annotations ask for (besides `ssl-redirect`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    pub force_ssl_redirect: bool,
    pub use_port_in_redirects: bool,
    /// `(status, Location)` of `temporal-redirect` or `permanent-redirect`.
    pub fixed: Option<(u16, String)>,
    pub from_to_www: bool,
}

/// Whether this Ingress redirects: the annotation when valid, else `default` (the global
/// setting).
pub fn parse(r: &mut Reader, default: bool) -> bool {
    let Some((k, v)) = r.get("ssl-redirect") else { return default };
    match on_off(v) {
        Some(b) => b,
        None => {
            r.bad(&k, format!("{v:?}: must be \"true\" or \"false\""));
            default
        }
    }
}

fn flag(r: &mut Reader, key: &str, default: bool, severity: Severity) -> bool {
    let Some((k, v)) = r.get(key) else { return default };
    match go_bool(v) {
        Some(b) => b,
        None => {
            r.bad_with(&k, severity, format!("{v:?}: must be \"true\" or \"false\"; it is not applied"));
            default
        }
    }
}

/// ingress-nginx's URL validator for fixed redirects: `^[-._~a-zA-Z0-9/:,?&=]*$`.
fn url_chars(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/:,?&=".contains(&b))
}

fn url(r: &mut Reader, key: &str) -> Option<String> {
    let (k, v) = r.get(key)?;
    let v = string(v)?;
    if !url_chars(&v) {
        r.bad_with(&k, Severity::Error, format!("{v:?}: may only contain letters, digits and - . _ ~ / : , ? & =; it is not applied"));
        return None;
    }
    Some(v)
}

/// The status of a fixed redirect: `default` when absent or outside `range`.
fn code(r: &mut Reader, key: &str, range: std::ops::RangeInclusive<u16>, default: u16) -> u16 {
    let Some((k, v)) = r.get(key) else { return default };
    let Some(v) = string(v) else { return default };
    match v.parse::<i64>() {
        Ok(n) if n >= *range.start() as i64 && n <= *range.end() as i64 => n as u16,
        Ok(_) => {
            r.bad(&k, format!("{v:?}: must be between {} and {}; {default} is used", range.start(), range.end()));
            default
        }
        Err(_) => {
            r.bad_with(&k, Severity::Error, format!("{v:?}: must be a whole number; {default} is used"));
            default
        }
    }
}

/// The scheme of an absolute URL, lowercased, if it has one.
fn scheme(url: &str) -> Option<String> {
    let (s, _) = url.split_once(':')?;
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    ok.then(|| s.to_ascii_lowercase())
}

pub fn parse_redirects(r: &mut Reader, global: &Redirects) -> Redirects {
    let force_ssl_redirect = flag(r, "force-ssl-redirect", global.force_ssl_redirect, Severity::Warning);
    let use_port_in_redirects = flag(r, "use-port-in-redirects", global.use_port_in_redirects, Severity::Warning);
    let from_to_www = flag(r, "from-to-www-redirect", false, Severity::Error);
    let temporal = url(r, "temporal-redirect");
    let temporal_code = code(r, "temporal-redirect-code", 300..=307, 302);
    let permanent = url(r, "permanent-redirect");
    let permanent_code = code(r, "permanent-redirect-code", 300..=308, 301);
    let mut out = Redirects { force_ssl_redirect, use_port_in_redirects, fixed: None, from_to_www };
    if let Some(t) = temporal {
        // As ingress-nginx: a temporal redirect that is not an http(s) URL discards the whole
        // redirect group of the Ingress.
        if !scheme(&t).is_some_and(|s| s.starts_with("http")) {
            let (k, _) = r.get("temporal-redirect").expect("present");
            r.bad(&k, format!("{t:?}: must be an absolute http(s) URL; no redirect of this Ingress (temporal, permanent, from-to-www) is applied"));
            out.from_to_www = false;
            return out;
        }
        out.fixed = Some((temporal_code, t));
    } else if let Some(p) = permanent {
        out.fixed = Some((permanent_code, p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};

    const P: &str = "nginx.ingress.kubernetes.io/";

    #[test]
    fn table() {
        type Case = (&'static [(&'static str, &'static str)], Option<(u16, &'static str)>, bool, &'static [crate::compile::diag::Severity]);
        use crate::compile::diag::Severity::{Error as E, Warning as W};
        let cases: &[Case] = &[
            (&[("permanent-redirect", "http://redirect.example.com")], Some((301, "http://redirect.example.com")), false, &[]),
            (&[("permanent-redirect", "http://r.example.com"), ("permanent-redirect-code", "302")], Some((302, "http://r.example.com")), false, &[]),
            (&[("permanent-redirect", "/relative?a=1&b=2")], Some((301, "/relative?a=1&b=2")), false, &[]),
            (&[("permanent-redirect", "http://r.example.com"), ("permanent-redirect-code", "309")], Some((301, "http://r.example.com")), false, &[W]),
            (&[("permanent-redirect", "http://r.example.com"), ("permanent-redirect-code", "x")], Some((301, "http://r.example.com")), false, &[E]),
            (&[("permanent-redirect", "http://r.example.com/$request_uri")], None, false, &[E]),
            (&[("temporal-redirect", "https://t.example.com"), ("permanent-redirect", "http://p.example.com")], Some((302, "https://t.example.com")), false, &[]),
            (&[("temporal-redirect", "https://t.example.com"), ("temporal-redirect-code", "307")], Some((307, "https://t.example.com")), false, &[]),
            (&[("temporal-redirect", "https://t.example.com"), ("temporal-redirect-code", "308")], Some((302, "https://t.example.com")), false, &[W]),
            (&[("temporal-redirect", "/x"), ("permanent-redirect", "http://p.example.com"), ("from-to-www-redirect", "true")], None, false, &[W]),
            (&[("from-to-www-redirect", "true")], None, true, &[]),
            (&[("from-to-www-redirect", "sure")], None, false, &[E]),
        ];
        for (pairs, fixed, www, sevs) in cases {
            let full: Vec<(String, &str)> = pairs.iter().map(|(k, v)| (format!("{P}{k}"), *v)).collect();
            let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let (a, e) = parse_default(&ing(&refs));
            let got = a.redirect.fixed.as_ref().map(|(c, l)| (*c, l.as_str()));
            assert_eq!((got, a.redirect.from_to_www), (*fixed, *www), "{pairs:?}");
            assert_eq!(e.iter().map(|e| e.severity).collect::<Vec<_>>(), *sevs, "{pairs:?}: {e:?}");
        }
    }
}
