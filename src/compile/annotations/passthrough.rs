//! `ssl-passthrough`: TLS for the Ingress's hosts is not terminated by Vestibule; the raw
//! connection goes to the backend of the host's `/` path (needs `--enable-ssl-passthrough`).
//! As in ingress-nginx, the Ingress's other annotations then do not apply to those connections.

use k8s_openapi::api::networking::v1::Ingress;

use super::{Reader, on_off};

pub const KEYS: &[&str] = &["ssl-passthrough"];

/// The key as ingress-nginx spells it, for diagnostics.
pub const FULL_KEY: &str = "nginx.ingress.kubernetes.io/ssl-passthrough";

/// Whether the annotation asks for passthrough; an invalid value is reported (and is off).
pub fn parse(r: &mut Reader) -> bool {
    let Some((key, v)) = r.get("ssl-passthrough") else { return false };
    match on_off(v) {
        Some(b) => b,
        None => {
            r.bad(&key, format!("{v:?}: must be \"true\" or \"false\""));
            false
        }
    }
}

/// The annotation's value, when it is valid.
pub fn value(ing: &Ingress) -> Option<bool> {
    super::get(ing, "ssl-passthrough").and_then(|(_, v)| on_off(v))
}
