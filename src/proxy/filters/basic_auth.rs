//! `auth-type: basic`: a request passes with credentials that match one of the Secret's users;
//! else it is answered 401 with `WWW-Authenticate: Basic realm="..."`. The Authorization
//! header goes on to the backend, as ingress-nginx sends it.
//!
//! Verified credentials are remembered (keyed by a hash of the Authorization header and the
//! Secret's content version, seeded per process), so repeated requests don't pay for bcrypt.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::RespBody;
use super::htpasswd;
use crate::config::auth::BasicAuth;

/// How many verified credentials are remembered; the set starts over when full.
const CACHE_LIMIT: usize = 10_000;

struct Verified {
    seed: RandomState,
    keys: HashSet<u64>,
}

fn cache() -> &'static Mutex<Verified> {
    static CACHE: OnceLock<Mutex<Verified>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Verified { seed: RandomState::new(), keys: HashSet::new() }))
}

pub fn on_request<B>(auth: &BasicAuth, ctx: &Ctx<'_>, req: &Request<B>) -> Option<Response<RespBody>> {
    let value = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if value.is_some_and(|v| allowed(auth, v)) {
        return None;
    }
    let mut resp = ctx.fail(StatusCode::UNAUTHORIZED);
    if let Ok(v) = HeaderValue::from_str(&challenge(&auth.realm)) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    Some(resp)
}

/// `Basic realm="REALM"`, the realm's quotes and backslashes escaped.
pub fn challenge(realm: &str) -> String {
    let escaped: String = realm.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect();
    format!("Basic realm=\"{escaped}\"")
}

/// Whether the Authorization header's value names a user of `auth` with the right password.
fn allowed(auth: &BasicAuth, value: &[u8]) -> bool {
    let key = {
        let c = cache().lock().expect("basic auth cache");
        let k = c.seed.hash_one((auth.version, value));
        if c.keys.contains(&k) {
            return true;
        }
        k
    };
    let Some((user, password)) = credentials(value) else { return false };
    let Some((_, hash)) = auth.users.iter().find(|(u, _)| htpasswd::ct_eq(u.as_bytes(), &user)) else { return false };
    if !htpasswd::verify(&password, hash) {
        return false;
    }
    let mut c = cache().lock().expect("basic auth cache");
    if c.keys.len() >= CACHE_LIMIT {
        c.keys.clear();
    }
    c.keys.insert(key);
    true
}

/// The user and password of a `Basic` Authorization value.
fn credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    Some((raw[..colon].to_vec(), raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verified_credentials_cache_stays_within_its_bound() {
        use base64::Engine as _;
        use crate::config::auth::PasswordHash;
        use sha1::Digest as _;
        use std::sync::Arc;
        let hash: [u8; 20] = sha1::Sha1::digest(b"secret").into();
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:secret"));
        let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:guess"));
        // Each Secret version is its own cache space: walk over the bound with new versions.
        for version in 0..(CACHE_LIMIT as u64 + 500) {
            let auth = BasicAuth { realm: "r".into(), users: Arc::new(vec![("alice".into(), PasswordHash::Sha1(hash))]), version: 1 << 40 | version };
            assert!(allowed(&auth, header.as_bytes()));
            assert!(!allowed(&auth, wrong.as_bytes()), "a wrong password is never cached as right");
            assert!(cache().lock().unwrap().keys.len() <= CACHE_LIMIT);
        }
    }

    #[test]
    fn parses_credentials_and_quotes_realms() {
        assert_eq!(credentials(b"Basic Zm9vOmJhcjpiYXo="), Some((b"foo".to_vec(), b"bar:baz".to_vec())));
        assert_eq!(credentials(b"Bearer abc"), None);
        assert_eq!(challenge("a \"b\""), "Basic realm=\"a \\\"b\\\"\"");
    }
}
