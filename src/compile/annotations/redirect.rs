//! `ssl-redirect`: whether plain HTTP to a TLS host is redirected to HTTPS (default: yes).

use super::{Reader, on_off};

pub const KEYS: &[&str] = &["ssl-redirect"];

/// `false` turns the HTTP→HTTPS redirect off for this Ingress.
pub fn parse(r: &mut Reader) -> bool {
    let Some((k, v)) = r.get("ssl-redirect") else { return true };
    match on_off(v) {
        Some(b) => b,
        None => {
            r.bad(&k, format!("{v:?}: must be \"true\" or \"false\""));
            true
        }
    }
}
