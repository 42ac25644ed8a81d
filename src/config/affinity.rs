//! Cookie session affinity as data (ingress-nginx's `affinity: cookie` and `session-cookie-*`),
//! and the stable hashes its cookie values are made of.
//!
//! A cookie value is `KEY|BACKEND`: BACKEND is `stable_hash(backend name)` in hex, so a cookie
//! names the backend it was issued for (canary decisions read it). KEY is, in persistent mode,
//! `stable_hash(backend name, endpoint address)` — the endpoint itself, in every process and
//! configuration; in balanced mode a random number that rendezvous hashing maps onto the current
//! endpoints (so it may move when endpoints are added, as ingress-nginx's balanced mode does).

/// How a cookie maps to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AffinityMode {
    /// A random key hashed over the endpoints: rebalances when endpoints are added.
    #[default]
    Balanced,
    /// The key names the endpoint: never rebalances.
    Persistent,
}

/// `session-cookie-samesite`, only when written with ingress-nginx's exact casing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// The affinity of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub mode: AffinityMode,
    /// `session-cookie-name`, default `INGRESSCOOKIE`.
    pub cookie_name: String,
    /// `session-cookie-path`, else the Ingress path as written.
    pub path: String,
    pub domain: Option<String>,
    /// `session-cookie-expires`: seconds from now.
    pub expires: Option<i64>,
    /// `session-cookie-max-age`, as given.
    pub max_age: Option<i64>,
    /// `session-cookie-secure: true`: `Secure` even over plain HTTP (HTTPS always gets it).
    pub secure: bool,
    pub samesite: Option<SameSite>,
    /// Omit `SameSite=None` for user agents known to mishandle it.
    pub conditional_samesite_none: bool,
    /// After a failed attempt, pick a new endpoint and issue a new cookie.
    pub change_on_failure: bool,
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            mode: AffinityMode::Balanced,
            cookie_name: "INGRESSCOOKIE".into(),
            path: "/".into(),
            domain: None,
            expires: None,
            max_age: None,
            secure: false,
            samesite: None,
            conditional_samesite_none: false,
            change_on_failure: false,
        }
    }
}

/// FNV-1a over `parts` (each followed by a 0xff separator), finalised with splitmix64: fixed
/// keys, so the same input gives the same value in every process and version.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The BACKEND part of the cookies issued for `backend_name`.
pub fn backend_key(backend_name: &str) -> String {
    format!("{:016x}", stable_hash(&[backend_name.as_bytes()]))
}

/// The persistent-mode KEY of one endpoint of `backend_name`.
pub fn endpoint_key(backend_name: &str, addr: std::net::SocketAddr) -> u64 {
    stable_hash(&[backend_name.as_bytes(), addr.to_string().as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed() {
        // Cookies issued by another process or version must keep mapping: pin the values.
        assert_eq!(stable_hash(&[b"a"]), stable_hash(&[b"a"]));
        assert_ne!(stable_hash(&[b"a", b"b"]), stable_hash(&[b"ab"]));
        assert_eq!(backend_key("ns-web-80"), format!("{:016x}", stable_hash(&[b"ns-web-80"])));
        assert_eq!(backend_key("ns-web-80"), "8f7d9b0a6dda5eea");
    }
}
