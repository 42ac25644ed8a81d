//! `proxy-redirect-from` / `proxy-redirect-to`: the URL of the backend's `Location` header, and
//! of the `url=` part of its `Refresh` header, has the prefix `from` (compared exactly, as nginx
//! does) replaced by `to`. Anything else passes unchanged.

use http::{HeaderValue, Response, header};

use super::super::respond::RespBody;

pub fn on_response(from: &str, to: &str, resp: &mut Response<RespBody>) {
    let h = resp.headers_mut();
    if let Some(v) = h.get(header::LOCATION).and_then(|v| v.to_str().ok()).and_then(|v| rewrite(v, from, to))
        && let Ok(v) = HeaderValue::from_str(&v)
    {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = h.get(header::REFRESH).and_then(|v| v.to_str().ok()).and_then(|v| refresh(v, from, to))
        && let Ok(v) = HeaderValue::from_str(&v)
    {
        h.insert(header::REFRESH, v);
    }
}

fn rewrite(url: &str, from: &str, to: &str) -> Option<String> {
    url.strip_prefix(from).map(|rest| format!("{to}{rest}"))
}

/// `5; url=http://x/` → the URL after `url=` (its name in any case) rewritten.
fn refresh(v: &str, from: &str, to: &str) -> Option<String> {
    let at = v.to_ascii_lowercase().find("url=")? + 4;
    Some(format!("{}{}", &v[..at], rewrite(&v[at..], from, to)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_replaced() {
        assert_eq!(rewrite("http://internal:8080/a?b", "http://internal:8080/", "https://public.example/app/").as_deref(), Some("https://public.example/app/a?b"));
        assert_eq!(rewrite("http://other/a", "http://internal/", "/"), None);
        assert_eq!(rewrite("HTTP://internal/a", "http://internal/", "/"), None, "exact, as nginx compares");
        assert_eq!(refresh("5; URL=http://internal/x", "http://internal/", "/app/").as_deref(), Some("5; URL=/app/x"));
        assert_eq!(refresh("5", "http://internal/", "/"), None);
    }
}
