//! `canary` and `canary-by-*` / `canary-weight*`: a canary Ingress's traffic policy. Every
//! invalid value falls back to its default, as in ingress-nginx (the Ingress is kept); Vestibule
//! reports it. `canary-*` without `canary: true` is discarded: the Ingress is a normal one.

use super::Reader;
use crate::config::route::Pattern;
use crate::config::{CanaryRule, HeaderPattern};

pub const KEYS: &[&str] = &["canary", "canary-by-header", "canary-by-header-value", "canary-by-header-pattern", "canary-by-cookie", "canary-weight", "canary-weight-total"];

/// Go's `strconv.ParseBool`.
pub fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.Atoi` (an optional sign, decimal digits).
pub fn atoi(v: &str) -> Option<i64> {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// ingress-nginx's BasicChars: letters, digits and `/ . - _ ~ :`.
pub fn basic_chars(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.-_~:".contains(&b))
}

/// A trimmed, non-empty value of `key`, with its full key.
pub fn value<'a>(r: &Reader<'a>, key: &str) -> Option<(String, &'a str)> {
    r.get(key).map(|(k, v)| (k, v.trim())).filter(|(_, v)| !v.is_empty())
}

fn basic(r: &mut Reader, key: &str) -> Option<String> {
    let (k, v) = value(r, key)?;
    if basic_chars(v) {
        return Some(v.to_string());
    }
    r.bad(&k, format!("{v:?}: only letters, digits and / . - _ ~ : are allowed; it is ignored"));
    None
}

fn int(r: &mut Reader, key: &str, default: i64) -> i64 {
    let Some((k, v)) = value(r, key) else { return default };
    atoi(v).unwrap_or_else(|| {
        r.bad(&k, format!("{v:?} is not an integer; {default} is used"));
        default
    })
}

/// The canary rule, when `canary` is true.
pub fn parse(r: &mut Reader) -> Option<CanaryRule> {
    let on = match value(r, "canary") {
        None => false,
        Some((k, v)) => go_bool(v).unwrap_or_else(|| {
            r.bad(&k, format!("{v:?} is not a boolean; the Ingress is not a canary"));
            false
        }),
    };
    if !on {
        if let Some(k) = KEYS[1..].iter().find_map(|k| r.get(k).map(|(full, _)| full)) {
            r.bad(&k, "set without canary: \"true\"; the canary settings are ignored and the Ingress is served normally".into());
        }
        return None;
    }
    let header = basic(r, "canary-by-header").and_then(|h| {
        let name = http::HeaderName::from_bytes(h.as_bytes()).ok();
        if name.is_none()
            && let Some((k, _)) = r.get("canary-by-header")
        {
            r.bad(&k, format!("{h:?} is not a header name; it is ignored"));
        }
        name
    });
    let header_value = basic(r, "canary-by-header-value");
    let header_pattern = value(r, "canary-by-header-pattern").map(|(k, v)| match Pattern::new(v) {
        Ok(p) => HeaderPattern::Valid(p),
        Err(e) => {
            r.bad(&k, format!("{v:?} does not compile ({e}); requests carrying the header go to the mainline, as ingress-nginx does on a regex error"));
            HeaderPattern::Invalid
        }
    });
    let cookie = basic(r, "canary-by-cookie");
    let weight = int(r, "canary-weight", 0);
    let weight_total = int(r, "canary-weight-total", 100);
    Some(CanaryRule { header, header_value, header_pattern, cookie, weight, weight_total })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};
    use super::*;

    const P: &str = "nginx.ingress.kubernetes.io/";

    fn rule(pairs: &[(&str, &str)]) -> (Option<CanaryRule>, usize) {
        let full: Vec<(String, String)> = pairs.iter().map(|(k, v)| (format!("{P}{k}"), v.to_string())).collect();
        let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (a, e) = parse_default(&ing(&refs));
        (a.canary, e.len())
    }

    #[test]
    fn parsing_follows_go_and_defaults() {
        assert_eq!(rule(&[("canary", "True")]).0, Some(CanaryRule { weight_total: 100, ..Default::default() }));
        assert_eq!(rule(&[("canary", "yes"), ("canary-weight", "10")]), (None, 2));
        assert_eq!(rule(&[("canary-weight", "10")]), (None, 1), "canary-* without canary is a normal Ingress");
        let (r, e) = rule(&[("canary", "1"), ("canary-weight", "+30"), ("canary-weight-total", "x"), ("canary-by-header", "X-Canary"), ("canary-by-cookie", "a b")]);
        let r = r.unwrap();
        assert_eq!((r.weight, r.weight_total, r.total(), e), (30, 100, 100, 2));
        assert_eq!(r.header.unwrap().as_str(), "x-canary");
        assert!(r.cookie.is_none());
        let (r, e) = rule(&[("canary", "true"), ("canary-by-header-pattern", "[][**da?$&*"), ("canary-weight-total", "50")]);
        assert_eq!((r.as_ref().unwrap().header_pattern.clone(), r.unwrap().total(), e), (Some(HeaderPattern::Invalid), 100, 1));
        assert_eq!(atoi("-5"), Some(-5));
        assert_eq!(atoi("5s"), None);
    }
}
