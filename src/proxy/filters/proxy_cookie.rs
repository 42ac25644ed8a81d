//! `proxy-cookie-path` / `proxy-cookie-domain`: the `Path` and `Domain` attributes of the
//! backend's `Set-Cookie` headers rewritten. A path whose start is `from` (compared exactly)
//! has that prefix replaced; a domain equal to `from` (ignoring case and a leading dot) is
//! replaced whole. The cookie's name, value and other attributes pass unchanged.

use http::{HeaderValue, Response, header};

use super::super::respond::RespBody;
use crate::config::filter::CookieRewrite;

pub fn on_response(path: Option<&CookieRewrite>, domain: Option<&CookieRewrite>, resp: &mut Response<RespBody>) {
    let h = resp.headers_mut();
    let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    h.remove(header::SET_COOKIE);
    for c in cookies {
        let out = c.to_str().ok().map(|s| rewrite(s, path, domain)).and_then(|s| HeaderValue::from_str(&s).ok()).unwrap_or(c);
        h.append(header::SET_COOKIE, out);
    }
}

fn rewrite(cookie: &str, path: Option<&CookieRewrite>, domain: Option<&CookieRewrite>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (i, part) in cookie.split(';').enumerate() {
        let lead = &part[..part.len() - part.trim_start().len()];
        let (name, value) = part.trim_start().split_once('=').unwrap_or((part.trim_start(), ""));
        let new_value = match (i, name.trim().to_ascii_lowercase().as_str()) {
            (0, _) => None,
            (_, "path") => path.and_then(|r| value.strip_prefix(r.from.as_str()).map(|rest| format!("{}{rest}", r.to))),
            (_, "domain") => domain.filter(|r| value.trim_start_matches('.').eq_ignore_ascii_case(r.from.trim_start_matches('.'))).map(|r| r.to.clone()),
            _ => None,
        };
        match new_value {
            Some(v) => parts.push(format!("{lead}{name}={v}")),
            None => parts.push(part.to_string()),
        }
    }
    parts.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(from: &str, to: &str) -> CookieRewrite {
        CookieRewrite { from: from.into(), to: to.into() }
    }

    #[test]
    fn attributes_are_rewritten() {
        let c = "sid=a=b; Path=/one/two; Domain=.Localhost; HttpOnly";
        assert_eq!(rewrite(c, Some(&r("/one/", "/")), Some(&r("localhost", "example.org"))), "sid=a=b; Path=/two; Domain=example.org; HttpOnly");
        assert_eq!(rewrite(c, Some(&r("/three/", "/")), None), c, "no match: unchanged");
        assert_eq!(rewrite("path=/one/; x=1", Some(&r("/one/", "/")), None), "path=/one/; x=1", "the cookie's own name is not an attribute");
    }
}
