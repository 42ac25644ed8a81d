//! Cookie session affinity in the data plane: which endpoint a request's cookie names, the
//! endpoints to try when it names none (a new pick), and the `Set-Cookie` issued for a new pick.
//! The cookie formats are described in `config/affinity.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue, SET_COOKIE, USER_AGENT};

use super::balance::Bound;
use crate::config::affinity::{backend_key, endpoint_key, stable_hash};
use crate::config::{Affinity, AffinityMode, Backend, Policy, SameSite};

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// One request's affinity: the key its cookie carries for this backend, if any.
pub struct Sticky<'a> {
    aff: &'a Affinity,
    backend: &'a Backend,
    bkey: String,
    key: Option<u64>,
    https: bool,
    /// The user agent mishandles `SameSite=None`.
    no_samesite_none: bool,
}

/// The endpoint balanced mode maps `key` to among `candidates`: rendezvous hashing.
fn rendezvous(key: u64, bound: &Bound, candidates: impl Iterator<Item = usize>) -> Option<usize> {
    candidates.max_by_key(|&i| stable_hash(&[&key.to_le_bytes(), bound.states[i].addr.to_string().as_bytes()]))
}

/// User agents that reject or mistreat `SameSite=None`.
fn samesite_none_incompatible(ua: &str) -> bool {
    ["Chrome/4", "Chrome/5", "Chrome/6", "CPU iPhone OS 12", "iPad; CPU OS 12"].iter().any(|s| ua.contains(s))
        || (ua.contains("Mac OS X 10_14") && ua.contains("Safari") && !ua.contains("Chrome") && !ua.contains("Chromium"))
}

impl<'a> Sticky<'a> {
    pub fn read(aff: &'a Affinity, backend: &'a Backend, headers: &HeaderMap, https: bool) -> Self {
        let bkey = backend_key(&backend.name);
        let key = cookie(headers, &aff.cookie_name).and_then(|v| {
            let (k, b) = v.split_once('|')?;
            if b != bkey {
                return None;
            }
            u64::from_str_radix(k, 16).ok()
        });
        let no_samesite_none = aff.conditional_samesite_none && headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).is_some_and(samesite_none_incompatible);
        Sticky { aff, backend, bkey, key, https, no_samesite_none }
    }

    /// The endpoint the cookie names, if it is still there and not ejected.
    fn current(&self, bound: &Bound, healthy: &[usize]) -> Option<usize> {
        let key = self.key?;
        let n = bound.states.len();
        let at = match self.aff.mode {
            AffinityMode::Persistent => (0..n).find(|&i| endpoint_key(&self.backend.name, bound.states[i].addr) == key),
            AffinityMode::Balanced => rendezvous(key, bound, 0..n),
        }?;
        healthy.contains(&at).then_some(at)
    }

    /// A new endpoint among `untried` and the key that names it.
    /// `order`: the backend's own balancing order for this request (persistent mode).
    fn new_pick(&self, bound: &Bound, order: &[usize], untried: &[usize]) -> (usize, Option<u64>) {
        match self.aff.mode {
            AffinityMode::Persistent => {
                let at = order.iter().copied().find(|i| untried.contains(i)).unwrap_or(untried[0]);
                (at, Some(endpoint_key(&self.backend.name, bound.states[at].addr)))
            }
            AffinityMode::Balanced => {
                for _ in 0..64 {
                    let key = super::ids::random_u64();
                    if let Some(at) = rendezvous(key, bound, 0..bound.states.len())
                        && untried.contains(&at)
                    {
                        return (at, Some(key));
                    }
                }
                (untried[0], None)
            }
        }
    }

    /// The endpoints to try, in order, each with the key to issue a cookie for when it answers
    /// (`None`: the request's cookie stays). A valid cookie keeps its endpoint for every try
    /// unless `session-cookie-change-on-failure` is set; then later tries are new picks.
    pub fn plan(&self, bound: &Bound, policy: &Policy, hash_key: Option<&[u8]>, tries: usize) -> Vec<(usize, Option<u64>)> {
        let n = bound.states.len();
        if n == 0 {
            return Vec::new();
        }
        let tries = tries.max(1);
        let healthy = bound.healthy();
        let mut out: Vec<(usize, Option<u64>)> = Vec::new();
        if let Some(at) = self.current(bound, &healthy) {
            if !self.aff.change_on_failure {
                return vec![(at, None); tries];
            }
            out.push((at, None));
        }
        // One balancing decision per request (each call moves the round-robin cursor).
        let order = match self.aff.mode {
            AffinityMode::Persistent => bound.order(policy, hash_key, n),
            AffinityMode::Balanced => Vec::new(),
        };
        while out.len() < tries.min(healthy.len()) {
            let untried: Vec<usize> = healthy.iter().copied().filter(|i| !out.iter().any(|(j, _)| j == i)).collect();
            if untried.is_empty() {
                break;
            }
            out.push(self.new_pick(bound, &order, &untried));
        }
        out
    }

    /// Adds the `Set-Cookie` for a new pick named by `key`.
    pub fn issue<B>(&self, resp: &mut http::Response<B>, key: u64) {
        if let Ok(v) = HeaderValue::from_str(&self.set_cookie(key, unix_now())) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }

    /// `NAME=VALUE; Expires=…; Max-Age=…; Domain=…; Path=…; Secure; HttpOnly; SameSite=…`,
    /// the absent ones skipped.
    pub fn set_cookie(&self, key: u64, now: i64) -> String {
        let a = self.aff;
        let mut s = format!("{}={key:016x}|{}", a.cookie_name, self.bkey);
        if let Some(e) = a.expires {
            s.push_str(&format!("; Expires={}", cookie_time(now + e)));
        }
        if let Some(m) = a.max_age {
            s.push_str(&format!("; Max-Age={m}"));
        }
        if let Some(d) = &a.domain {
            s.push_str(&format!("; Domain={d}"));
        }
        s.push_str(&format!("; Path={}", a.path));
        if a.secure || self.https {
            s.push_str("; Secure");
        }
        s.push_str("; HttpOnly");
        match a.samesite {
            Some(SameSite::None) if self.no_samesite_none => {}
            Some(ss) => s.push_str(&format!("; SameSite={}", ss.as_str())),
            None => {}
        }
        s
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// nginx's `cookie_time`: `Thu, 18-Nov-27 11:27:35 GMT` (two-digit year, dashes).
pub fn cookie_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    const WDAY: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let wday = WDAY[days.rem_euclid(7) as usize];
    format!("{wday}, {day:02}-{}-{:02} {:02}:{:02}:{:02} GMT", MON[(month - 1) as usize], year.rem_euclid(100), secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_time_format() {
        assert_eq!(cookie_time(0), "Thu, 01-Jan-70 00:00:00 GMT");
        assert_eq!(cookie_time(1_826_537_255), "Thu, 18-Nov-27 11:27:35 GMT");
        assert_eq!(cookie_time(951_782_400), "Tue, 29-Feb-00 00:00:00 GMT");
    }

    #[test]
    fn set_cookie_attributes_in_order() {
        let b = Backend::new(0, "ns", "web", "80", vec![], None);
        let mut aff = Affinity { path: "/something".into(), expires: Some(10), max_age: Some(20), domain: Some("foo.bar".into()), samesite: Some(SameSite::None), conditional_samesite_none: true, ..Default::default() };
        let h = HeaderMap::new();
        let s = Sticky::read(&aff, &b, &h, true).set_cookie(0xab, 0);
        assert_eq!(s, format!("INGRESSCOOKIE=00000000000000ab|{}; Expires=Thu, 01-Jan-70 00:00:10 GMT; Max-Age=20; Domain=foo.bar; Path=/something; Secure; HttpOnly; SameSite=None", backend_key("ns-web-80")));
        let mut old = HeaderMap::new();
        old.insert(USER_AGENT, "Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X)".parse().unwrap());
        aff.expires = None;
        assert!(!Sticky::read(&aff, &b, &old, false).set_cookie(1, 0).contains("SameSite"));
        assert!(!Sticky::read(&aff, &b, &old, false).set_cookie(1, 0).contains("Secure"));
    }
}
