//! The `proxy-*` annotations: per-Ingress limits, timeouts and retries over the global values
//! (ConfigMap, flags), and the rewriting of the backend's redirects and cookies. As in
//! ingress-nginx, an invalid value never drops the Ingress: it is reported and the global value
//! is used.

use std::time::Duration;

use super::Reader;
use crate::config::filter::CookieRewrite;
use crate::config::{NextUpstream, ProxySettings};

pub const KEYS: &[&str] = &[
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "proxy-next-upstream-timeout",
    "proxy-request-buffering",
    "proxy-buffering",
    "proxy-http-version",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-cookie-path",
    "proxy-cookie-domain",
];

/// How the backend's answers are rewritten (`proxy-redirect-*`, `proxy-cookie-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseRewrite {
    /// `(from, to)`: a redirect prefix replaced.
    pub redirect: Option<(String, String)>,
    pub cookie_path: Option<CookieRewrite>,
    pub cookie_domain: Option<CookieRewrite>,
}

/// `proxy-body-size`: ingress-nginx's `^\d+[bkmgBKMG]?$` (spaces removed), `0` for no limit.
pub fn body_size(v: &str) -> Result<u64, String> {
    let t: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = t.trim_end_matches(|c: char| "bkmgBKMG".contains(c));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || t.len() - digits.len() > 1 {
        return Err(format!("{v:?}: must be a size such as 8m, 512k or 1048576 (0 for no limit)"));
    }
    if t.ends_with(['b', 'B']) {
        // Valid for ingress-nginx's parser, but never rendered into nginx's configuration.
        return Err(format!("{v:?}: the b suffix is not applied by ingress-nginx; write the number alone"));
    }
    crate::units::parse_size(&t)
}

/// A timeout as ingress-nginx's annotations write it: whole seconds, no unit, more than 0.
pub fn whole_seconds(v: &str) -> Result<Duration, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err(format!("{v:?}: must be a whole number of seconds, more than 0, without a unit")),
    }
}

/// `proxy-next-upstream`: space-separated tokens; `off` alone turns retries off.
pub fn next_upstream(v: &str) -> Result<NextUpstream, String> {
    let mut n = NextUpstream::off();
    let tokens: Vec<&str> = v.split_whitespace().collect();
    if tokens.is_empty() {
        return Err(format!("{v:?}: no token"));
    }
    for t in &tokens {
        match *t {
            "error" => n.error = true,
            "timeout" => n.timeout = true,
            "invalid_header" => n.invalid_header = true,
            "non_idempotent" => n.non_idempotent = true,
            "off" if tokens.len() == 1 => {}
            "http_500" | "http_502" | "http_503" | "http_504" | "http_403" | "http_404" | "http_429" => n.statuses.push(t[5..].parse().expect("three digits")),
            other => {
                return Err(format!(
                    "{other:?}: must be error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent, or off alone"
                ));
            }
        }
    }
    Ok(n)
}

/// `proxy-next-upstream-tries`: tries in all, the first included; 0 for no limit.
pub fn tries(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(0) => Ok(usize::MAX),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{v:?}: must be a whole number (0 for no limit)")),
    }
}

/// `proxy-next-upstream-timeout`: whole seconds, 0 for no limit.
pub fn retry_window(v: &str) -> Result<Option<Duration>, String> {
    match v.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(Duration::from_secs(n))),
        Err(_) => Err(format!("{v:?}: must be a whole number of seconds (0 for no limit)")),
    }
}

/// `on` or `off`, as written (ingress-nginx compares case-sensitively).
pub fn on_off_exact(v: &str) -> Result<bool, String> {
    match v.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{v:?}: must be on or off")),
    }
}

/// `proxy-http-version`: `1.0` (true) or `1.1`.
pub fn http10(v: &str) -> Result<bool, String> {
    match v.trim() {
        "1.0" => Ok(true),
        "1.1" => Ok(false),
        _ => Err(format!("{v:?}: must be 1.0 or 1.1")),
    }
}

/// Reads one value with `parse` into `slot`; an invalid value is reported and `slot` kept.
fn set<T>(r: &mut Reader, key: &str, slot: &mut T, parse: impl Fn(&str) -> Result<T, String>) {
    let Some((k, v)) = r.get(key) else { return };
    if v.trim().is_empty() {
        return;
    }
    match parse(v) {
        Ok(x) => *slot = x,
        Err(e) => r.bad(&k, format!("{e}; the global value is used")),
    }
}

/// The route's proxy settings: `defaults` (the global ones) with this Ingress's annotations.
pub fn parse(r: &mut Reader, defaults: &ProxySettings) -> ProxySettings {
    let mut p = defaults.clone();
    set(r, "proxy-body-size", &mut p.body_limit, body_size);
    set(r, "proxy-connect-timeout", &mut p.connect_timeout, whole_seconds);
    set(r, "proxy-read-timeout", &mut p.read_timeout, whole_seconds);
    set(r, "proxy-send-timeout", &mut p.send_timeout, whole_seconds);
    set(r, "proxy-next-upstream", &mut p.next_upstream, next_upstream);
    // ingress-nginx appends non_idempotent when the ConfigMap's retry-non-idempotent is on.
    p.next_upstream.non_idempotent |= defaults.next_upstream.non_idempotent;
    set(r, "proxy-next-upstream-tries", &mut p.upstream_tries, tries);
    set(r, "proxy-next-upstream-timeout", &mut p.next_upstream_timeout, retry_window);
    set(r, "proxy-request-buffering", &mut p.request_buffering, on_off_exact);
    set(r, "proxy-buffering", &mut p.response_buffering, on_off_exact);
    set(r, "proxy-http-version", &mut p.http10, http10);
    p
}

/// ingress-nginx's URL charset for `proxy-redirect-*` and `proxy-cookie-path`: printable, no
/// quotes, braces or semicolons (spaces only where a pair is written).
fn url_chars(v: &str, spaces: bool) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() && !"\"'{};\\`".contains(c) || (spaces && c == ' '))
}

/// `off`, or `<from> <to>`.
fn pair(v: &str, ok: impl Fn(&str) -> bool) -> Result<Option<CookieRewrite>, String> {
    let v = v.trim();
    if v == "off" {
        return Ok(None);
    }
    match v.split_whitespace().collect::<Vec<_>>()[..] {
        [from, to] if ok(from) && ok(to) => Ok(Some(CookieRewrite { from: from.into(), to: to.into() })),
        _ => Err(format!("{v:?}: must be off, or what to replace and its replacement, separated by a space")),
    }
}

/// `proxy-redirect-from`/`-to` and `proxy-cookie-path`/`-domain`.
pub fn parse_rewrite(r: &mut Reader) -> ResponseRewrite {
    let mut out = ResponseRewrite::default();
    let from = r.get("proxy-redirect-from").map(|(k, v)| (k, v.trim().to_string()));
    let to = r.get("proxy-redirect-to").map(|(k, v)| (k, v.trim().to_string()));
    let valid = |r: &mut Reader, kv: Option<(String, String)>| match kv {
        Some((k, v)) if !url_chars(&v, false) => {
            r.bad(&k, format!("{v:?}: must be a URL or URL prefix; off is used"));
            None
        }
        Some((_, v)) => Some(v),
        None => None,
    };
    let (from, to) = (valid(r, from), valid(r, to));
    // `off` and `default` leave redirects as the backend sent them (see docs/annotations.md).
    if let (Some(from), Some(to)) = (from, to)
        && from != "off"
        && from != "default"
        && to != "off"
    {
        out.redirect = Some((from, to));
    }
    if let Some((k, v)) = r.get("proxy-cookie-path") {
        match pair(v, |s| url_chars(s, false)) {
            Ok(p) => out.cookie_path = p,
            Err(e) => r.bad(&k, format!("{e}; off is used")),
        }
    }
    if let Some((k, v)) = r.get("proxy-cookie-domain") {
        match pair(v, |s| s.chars().all(|c| c.is_ascii_alphanumeric() || "-._~/:".contains(c))) {
            Ok(p) => out.cookie_domain = p,
            Err(e) => r.bad(&k, format!("{e}; off is used")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(body_size("8m"), Ok(8 << 20));
        assert_eq!(body_size(" 1 k"), Ok(1024));
        assert_eq!(body_size("0"), Ok(u64::MAX));
        assert!(body_size("15r").is_err() && body_size("8b").is_err() && body_size("1mm").is_err() && body_size("").is_err());
        assert_eq!(whole_seconds("50"), Ok(Duration::from_secs(50)));
        assert!(whole_seconds("50k").is_err() && whole_seconds("5s").is_err() && whole_seconds("0").is_err() && whole_seconds("-1").is_err());
        let n = next_upstream("error timeout http_502").unwrap();
        assert!(n.error && n.timeout && !n.non_idempotent && n.statuses == [502]);
        assert_eq!(next_upstream("off"), Ok(NextUpstream::off()));
        assert!(next_upstream("off error").is_err() && next_upstream("http_418").is_err());
        assert_eq!(tries("0"), Ok(usize::MAX));
        assert_eq!(retry_window("0"), Ok(None));
        assert_eq!(on_off_exact("off"), Ok(false));
        assert!(on_off_exact("Off").is_err());
        assert_eq!(http10("1.0"), Ok(true));
        assert!(http10("2").is_err());
        assert_eq!(pair("/one/ /", |_| true), Ok(Some(CookieRewrite { from: "/one/".into(), to: "/".into() })));
        assert_eq!(pair("off", |_| true), Ok(None));
        assert!(pair("/one/", |_| true).is_err());
    }
}
