//! `custom-http-errors`, `default-backend` and `disable-proxy-intercept-errors`: which answers
//! are replaced by an error backend's, and the Service that serves them (and serves the
//! Ingress's rules whose Service has no endpoints).

use super::Reader;
use super::go_bool;

pub const KEYS: &[&str] = &["custom-http-errors", "default-backend", "disable-proxy-intercept-errors"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    /// The codes replaced (the annotation's list replaces the ConfigMap's).
    pub codes: Vec<u16>,
    /// A Service name in the Ingress's namespace.
    pub default_backend: Option<String>,
    pub disable_intercept: bool,
}

/// ingress-nginx's `^(?:[4,5]\d{2},?)*$` after removing spaces: 4xx and 5xx codes.
pub fn codes(v: &str) -> Result<Vec<u16>, String> {
    let t: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    for c in t.split(',').filter(|c| !c.is_empty()) {
        match c.parse::<u16>() {
            Ok(n) if c.len() == 3 && (400..600).contains(&n) => out.push(n),
            _ => return Err(format!("{c:?}: must be a 4xx or 5xx status code")),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A DNS-1035 label: what a Service name is.
fn dns1035(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.starts_with(|c: char| c.is_ascii_lowercase()) && !s.ends_with('-') && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn parse(r: &mut Reader, default_codes: &[u16]) -> Errors {
    let mut e = Errors { codes: default_codes.to_vec(), ..Default::default() };
    if let Some((k, v)) = r.get("custom-http-errors") {
        match codes(v) {
            Ok(c) => e.codes = c,
            // ingress-nginx drops the whole Ingress; Vestibule reports an Error and keeps the
            // global list for it.
            Err(msg) => r.invalid(&k, format!("{msg}; the global custom-http-errors apply")),
        }
    }
    if let Some((k, v)) = r.get("default-backend") {
        let v = v.trim();
        if dns1035(v) {
            e.default_backend = Some(v.to_string());
        } else {
            // ingress-nginx drops the whole Ingress; Vestibule reports an Error and ignores it.
            r.invalid(&k, format!("{v:?} is not a valid Service name; it is not used"));
        }
    }
    if let Some((k, v)) = r.get("disable-proxy-intercept-errors") {
        match go_bool(v) {
            Some(b) => e.disable_intercept = b,
            None => r.bad(&k, format!("{v:?}: must be \"true\" or \"false\"; false is used")),
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists() {
        assert_eq!(codes("404, 500,404"), Ok(vec![404, 500]));
        assert_eq!(codes(""), Ok(vec![]));
        assert!(codes("302").is_err() && codes("4044").is_err() && codes("abc").is_err());
        assert!(dns1035("from-annotation") && !dns1035("Bad_Name") && !dns1035("1abc"));
    }
}
