//! `affinity: cookie`, `affinity-mode`, `affinity-canary-behavior` and `session-cookie-*`:
//! cookie session affinity. Invalid values fall back to their defaults (ingress-nginx keeps the
//! Ingress); Vestibule reports them.

use super::Reader;
use super::canary::{atoi, basic_chars, go_bool, value};
use crate::config::{Affinity, AffinityMode, SameSite};

pub const KEYS: &[&str] = &[
    "affinity",
    "affinity-mode",
    "affinity-canary-behavior",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-secure",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-change-on-failure",
];

/// What an Ingress asks for. `affinity.path` is empty unless `session-cookie-path` is set: the
/// route fills in its path as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AffinityAnn {
    pub affinity: Option<Affinity>,
    /// `affinity-canary-behavior: legacy`: a canary gets no affinity (else the mainline's).
    pub canary_legacy: bool,
}

/// Text that can go into a cookie attribute: no separators, spaces or controls.
fn attr_safe(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

fn boolean(r: &mut Reader, key: &str) -> bool {
    let Some((k, v)) = value(r, key) else { return false };
    go_bool(v).unwrap_or_else(|| {
        r.bad(&k, format!("{v:?} is not a boolean; false is used"));
        false
    })
}

/// ingress-nginx's `(^0|-?[1-9]\d*$)` for expires and max-age, read as an integer.
fn seconds(r: &mut Reader, key: &str) -> Option<i64> {
    let (k, v) = value(r, key)?;
    match atoi(v) {
        Some(n) if !v.starts_with('+') && (v == "0" || !v.trim_start_matches('-').starts_with('0')) => Some(n),
        _ => {
            r.bad(&k, format!("{v:?} is not a whole number of seconds; it is ignored"));
            None
        }
    }
}

fn text(r: &mut Reader, key: &str, ok: fn(&str) -> bool) -> Option<String> {
    let (k, v) = value(r, key)?;
    if ok(v) {
        return Some(v.to_string());
    }
    r.bad(&k, format!("{v:?} cannot be used in a cookie; it is ignored"));
    None
}

pub fn parse(r: &mut Reader) -> AffinityAnn {
    let canary_legacy = value(r, "affinity-canary-behavior").is_some_and(|(_, v)| v == "legacy");
    let kind = value(r, "affinity");
    match kind {
        Some((_, "cookie")) => {}
        Some((k, v)) => {
            r.bad(&k, format!("{v:?}: only \"cookie\" is supported; no affinity"));
            return AffinityAnn { affinity: None, canary_legacy };
        }
        None => return AffinityAnn { affinity: None, canary_legacy },
    }
    let mode = match value(r, "affinity-mode") {
        None | Some((_, "balanced")) => AffinityMode::Balanced,
        Some((_, "persistent")) => AffinityMode::Persistent,
        Some((k, v)) => {
            r.bad(&k, format!("{v:?}: must be balanced or persistent; balanced is used"));
            AffinityMode::Balanced
        }
    };
    let samesite = value(r, "session-cookie-samesite").and_then(|(k, v)| match v {
        "None" => Some(SameSite::None),
        "Lax" => Some(SameSite::Lax),
        "Strict" => Some(SameSite::Strict),
        // Accepted, but ingress-nginx's cookie library drops other casings silently.
        _ if ["none", "lax", "strict"].contains(&v.to_ascii_lowercase().as_str()) => None,
        _ => {
            r.bad(&k, format!("{v:?}: must be None, Lax or Strict; no SameSite is sent"));
            None
        }
    });
    let affinity = Affinity {
        mode,
        cookie_name: text(r, "session-cookie-name", |v| basic_chars(v) && !v.contains('/')).unwrap_or_else(|| "INGRESSCOOKIE".into()),
        path: text(r, "session-cookie-path", attr_safe).unwrap_or_default(),
        domain: text(r, "session-cookie-domain", attr_safe),
        expires: seconds(r, "session-cookie-expires"),
        max_age: seconds(r, "session-cookie-max-age"),
        secure: boolean(r, "session-cookie-secure"),
        samesite,
        conditional_samesite_none: boolean(r, "session-cookie-conditional-samesite-none"),
        change_on_failure: boolean(r, "session-cookie-change-on-failure"),
    };
    AffinityAnn { affinity: Some(affinity), canary_legacy }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};
    use super::*;

    fn aff(pairs: &[(&str, &str)]) -> (Option<Affinity>, usize) {
        let full: Vec<(String, String)> = pairs.iter().map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string())).collect();
        let refs: Vec<(&str, &str)> = full.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (a, e) = parse_default(&ing(&refs));
        (a.affinity.affinity, e.len())
    }

    #[test]
    fn values_and_defaults() {
        assert_eq!(aff(&[("affinity", " cookie ")]).0, Some(Affinity { path: String::new(), ..Default::default() }));
        assert_eq!(aff(&[("affinity", "Cookie")]), (None, 1));
        assert_eq!(aff(&[("session-cookie-name", "X")]), (None, 0), "no affinity: the cookie settings are unused");
        let (a, e) = aff(&[
            ("affinity", "cookie"),
            ("affinity-mode", "persistent"),
            ("session-cookie-name", "SERVERID"),
            ("session-cookie-expires", "172800"),
            ("session-cookie-max-age", "01"),
            ("session-cookie-secure", "True"),
            ("session-cookie-samesite", "lax"),
            ("session-cookie-change-on-failure", "maybe"),
        ]);
        let a = a.unwrap();
        assert_eq!((a.mode, a.cookie_name.as_str(), a.expires, a.max_age, a.secure, a.samesite, a.change_on_failure), (AffinityMode::Persistent, "SERVERID", Some(172800), None, true, None, false));
        assert_eq!(e, 2, "max-age 01 and change-on-failure maybe");
        assert_eq!(aff(&[("affinity", "cookie"), ("session-cookie-samesite", "Strict")]).0.unwrap().samesite, Some(SameSite::Strict));
    }
}
