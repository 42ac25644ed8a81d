//! `ssl-redirect`: whether plain HTTP to a TLS host is redirected to HTTPS (default: yes).

use super::{Reader, on_off};

pub const KEYS: &[&str] = &["ssl-redirect"];

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
