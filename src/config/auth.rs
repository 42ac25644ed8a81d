//! Authentication policies as data: the users of `auth-type: basic` (parsed htpasswd hashes,
//! never the Secret's text) and an `auth-url` sub-request.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

/// A password hash of an htpasswd line, by format (the whole hash as written; verification
/// recomputes it from the password and the salt it carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$`, `$2b$`.
    Bcrypt(String),
    /// Apache's MD5 (`$apr1$salt$hash`).
    Apr1(String),
    /// `{SHA}` + base64 of the SHA-1 of the password.
    Sha1([u8; 20]),
    /// crypt SHA-256 (`$5$`) and SHA-512 (`$6$`).
    ShaCrypt(String),
}

/// The most work one password check may take: every login attempt pays it on a request
/// thread, so a Secret must not be able to ask for minutes of CPU per attempt.
pub const MAX_BCRYPT_COST: u32 = 15;
pub const MAX_SHA_CRYPT_ROUNDS: u64 = 1_000_000;

impl PasswordHash {
    /// The format of `hash`, or `None` when Vestibule cannot verify it (an unknown format, or a
    /// cost above `MAX_BCRYPT_COST` / `MAX_SHA_CRYPT_ROUNDS`).
    pub fn parse(hash: &str) -> Option<Self> {
        use base64::Engine;
        let h = hash.trim();
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| h.starts_with(p)) {
            let cost: u32 = h.get(4..6)?.parse().ok()?;
            return (cost <= MAX_BCRYPT_COST).then(|| PasswordHash::Bcrypt(h.to_string()));
        }
        if h.starts_with("$apr1$") && h.split('$').count() == 4 {
            return Some(PasswordHash::Apr1(h.to_string()));
        }
        if let Some(b) = h.strip_prefix("{SHA}") {
            let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
            return raw.try_into().ok().map(PasswordHash::Sha1);
        }
        if (h.starts_with("$5$") || h.starts_with("$6$")) && h.split('$').count() >= 4 {
            if let Some(r) = h[3..].strip_prefix("rounds=") {
                let rounds: u64 = r.split('$').next()?.parse().ok()?;
                if rounds > MAX_SHA_CRYPT_ROUNDS {
                    return None;
                }
            }
            return Some(PasswordHash::ShaCrypt(h.to_string()));
        }
        None
    }
}

/// `auth-type: basic`: who may pass, and the realm a 401 names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub realm: String,
    /// User name → hash, in Secret order (the first line of a user wins, as nginx).
    pub users: Arc<Vec<(String, PasswordHash)>>,
    /// Identifies the Secret's content: verified credentials are cached per version.
    pub version: u64,
}

/// One part of an `auth-cache-key`: text, or a request variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Text(String),
    /// `$http_NAME`: a request header.
    Header(HeaderName),
    /// `$cookie_NAME`.
    Cookie(String),
    /// `$arg_NAME`: a query parameter.
    Arg(String),
    Host,
    RemoteAddr,
    RequestUri,
    Uri,
    Method,
}

/// `auth-cache-key` + `auth-cache-duration`: answers with one of `codes` are kept `ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCache {
    pub key: Vec<KeyPart>,
    pub codes: Vec<u16>,
    pub ttl: Duration,
}

/// `auth-url`: a sub-request decides whether a request passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAuth {
    /// `http` or `https`, with a host; the path and query as written.
    pub url: http::Uri,
    pub method: Method,
    /// `auth-signin`: 401 answers become a 302 here.
    pub signin: Option<String>,
    pub signin_redirect_param: String,
    /// `auth-response-headers`: copied from a 2xx answer onto the upstream request.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` sent (else the request URI).
    pub request_redirect: Option<HeaderValue>,
    pub cache: Option<AuthCache>,
    /// `auth-proxy-set-headers`: sent to the auth service.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// `auth-always-set-cookie`: the auth answer's Set-Cookie goes on every answer, not only
    /// successful ones.
    pub always_set_cookie: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_that_would_cost_minutes_per_login_are_refused() {
        assert!(PasswordHash::parse("$6$rounds=5000$salt$abc").is_some());
        assert!(PasswordHash::parse("$6$salt$abc").is_some(), "default rounds");
        assert!(PasswordHash::parse("$6$rounds=999999999$salt$abc").is_none());
        assert!(PasswordHash::parse("$5$rounds=x$salt$abc").is_none());
        assert!(PasswordHash::parse("$2y$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01").is_some());
        assert!(PasswordHash::parse("$2y$31$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01").is_none());
    }
}
