//! `enable-cors` and its `cors-*` settings, with ingress-nginx's defaults and value syntax.
//!
//! ingress-nginx validates each value (origins `http(s)://[*.]host[:port]` or `*`, methods
//! letters, headers `[A-Za-z0-9_-]`, expose headers those or `*`, max age a number), and an
//! invalid one drops the whole Ingress there. Vestibule instead reports an Error naming the
//! Ingress and key and does not apply that annotation (its default is used; an invalid entry of
//! `cors-allow-origin` is left out of the list); the rest of the Ingress serves.

use super::{Reader, go_bool};
use crate::config::cors::{CorsOrigins, CorsPolicy, OriginPattern};

pub const KEYS: &[&str] = &["enable-cors", "cors-allow-origin", "cors-allow-methods", "cors-allow-headers", "cors-expose-headers", "cors-allow-credentials", "cors-max-age"];

pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: i64 = 1728000;

/// The route's CORS policy, or `None` without `enable-cors: "true"`.
pub fn parse(r: &mut Reader) -> Option<CorsPolicy> {
    let (key, v) = r.get("enable-cors")?;
    match go_bool(v) {
        Some(true) => {}
        Some(false) => return None,
        None => {
            r.invalid(&key, format!("{v:?}: must be \"true\" or \"false\"; CORS stays off"));
            return None;
        }
    }
    let origins = origins(r);
    let allow_methods = list(r, "cors-allow-methods", DEFAULT_METHODS, |c| c.is_ascii_alphabetic(), false);
    let allow_headers = list(r, "cors-allow-headers", DEFAULT_HEADERS, header_char, false);
    let expose_headers = list(r, "cors-expose-headers", "", header_char, true);
    let allow_credentials = match r.get("cors-allow-credentials") {
        None => true,
        Some((k, v)) => go_bool(v).unwrap_or_else(|| {
            r.invalid(&k, format!("{v:?}: must be \"true\" or \"false\"; the default (true) is used"));
            true
        }),
    };
    let max_age = match r.get("cors-max-age") {
        None => DEFAULT_MAX_AGE,
        Some((k, v)) => v.trim().parse::<i64>().unwrap_or_else(|_| {
            r.invalid(&k, format!("{v:?}: must be a whole number of seconds; the default ({DEFAULT_MAX_AGE}) is used"));
            DEFAULT_MAX_AGE
        }),
    };
    Some(CorsPolicy { origins, allow_methods, allow_headers, expose_headers, allow_credentials, max_age, gateway: false })
}

fn header_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A list of tokens of `ok` characters separated by commas and/or spaces, sent as written.
fn list(r: &mut Reader, key: &str, default: &str, ok: fn(char) -> bool, star: bool) -> String {
    let Some((k, v)) = r.get(key) else { return default.to_string() };
    let v = v.trim();
    let tokens: Vec<&str> = v.split([',', ' ', '\t']).filter(|t| !t.is_empty()).collect();
    let valid = !tokens.is_empty() && tokens.iter().all(|t| (star && *t == "*") || t.chars().all(ok)) && !v.starts_with(',');
    if valid {
        return v.to_string();
    }
    let shown = if default.is_empty() { "none".to_string() } else { format!("the default ({default})") };
    r.invalid(&k, format!("{v:?}: must be a list of names separated by commas; {shown} is used"));
    default.to_string()
}

/// `cors-allow-origin`: a comma list; `*` anywhere allows every origin; absent is `*`.
fn origins(r: &mut Reader) -> CorsOrigins {
    let Some((k, v)) = r.get("cors-allow-origin") else { return CorsOrigins::Any };
    let mut out = Vec::new();
    for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if o == "*" {
            return CorsOrigins::Any;
        }
        match origin(o) {
            Some(p) => out.push(p),
            None => r.invalid(&k, format!("origin {o:?}: must be http(s)://HOST[:PORT] (HOST may start with *.) or *; it is left out")),
        }
    }
    if out.is_empty() {
        r.invalid(&k, format!("{v:?} names no valid origin: no origin gets CORS headers"));
    }
    CorsOrigins::List(out)
}

/// One origin as written (`http(s)://HOST[:PORT]`, HOST may start with `*.`), lowercase.
pub fn origin(o: &str) -> Option<OriginPattern> {
    let lower = o.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (wildcard, hostport) = match rest.strip_prefix("*.") {
        Some(h) => (true, h),
        None => (false, rest),
    };
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !host_ok || !port_ok {
        return None;
    }
    let prefix = format!("{scheme}://");
    let rest = if wildcard { format!(".{hostport}") } else { hostport.to_string() };
    Some(OriginPattern { prefix, rest, wildcard, multi_label: false })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};
    use super::*;

    #[test]
    fn defaults_and_values() {
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/enable-cors", "true")]));
        assert!(e.is_empty());
        let p = a.cors.unwrap();
        assert_eq!((p.origins, p.allow_methods.as_str(), p.allow_headers.as_str(), p.allow_credentials, p.max_age), (CorsOrigins::Any, DEFAULT_METHODS, DEFAULT_HEADERS, true, 1728000));
        let (a, e) = parse_default(&ing(&[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            ("nginx.ingress.kubernetes.io/cors-allow-origin", "https://a.test, https://*.b.test:8443, ftp://x, $host"),
            ("nginx.ingress.kubernetes.io/cors-allow-methods", "GET $request"),
            ("nginx.ingress.kubernetes.io/cors-max-age", "soon"),
        ]));
        assert_eq!(e.len(), 4, "{e:?}");
        let p = a.cors.unwrap();
        let CorsOrigins::List(l) = p.origins else { panic!() };
        assert_eq!(l.len(), 2);
        assert!(l[1].matches("https://x.b.test:8443"));
        assert_eq!((p.allow_methods.as_str(), p.max_age), (DEFAULT_METHODS, DEFAULT_MAX_AGE));
        let (a, _) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/enable-cors", "false")]));
        assert!(a.cors.is_none());
    }
}
