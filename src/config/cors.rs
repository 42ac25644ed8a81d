//! CORS (ingress-nginx's `enable-cors` family): which request origins are answered with CORS
//! headers, and the header values, already validated. Pure data for `proxy/filters/cors.rs`.

/// The origins a route answers CORS for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: every request gets the headers, with `Access-Control-Allow-Origin: *`.
    Any,
    /// Only requests whose `Origin` matches one of these (compared ignoring case); the answer
    /// echoes the request's `Origin`. Empty: no origin matches.
    List(Vec<OriginPattern>),
}

/// One allowed origin: `scheme://host[:port]`, where a leading `*.` of the host stands for
/// exactly one DNS label (`[A-Za-z0-9-]+`), or with `multi_label` (the Gateway API's reading)
/// for one or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// Lowercase, `http://` or `https://` included; without the `*.` when `wildcard`.
    pub prefix: String,
    /// Lowercase host (after `*.` when `wildcard`) and port, as written.
    pub rest: String,
    pub wildcard: bool,
    pub multi_label: bool,
}

impl OriginPattern {
    /// Whether `origin` (the request's `Origin` header) is this one.
    pub fn matches(&self, origin: &str) -> bool {
        let o = origin.to_ascii_lowercase();
        if !self.wildcard {
            return o.len() == self.prefix.len() + self.rest.len() && o.starts_with(&self.prefix) && o.ends_with(&self.rest);
        }
        let Some(middle) = o.strip_prefix(&self.prefix).and_then(|m| m.strip_suffix(&self.rest)) else { return false };
        // The `*` stands for one label: the dot before `rest` is part of `rest` (".example.com").
        let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if self.multi_label { middle.split('.').all(label) } else { label(middle) }
    }
}

/// A route's CORS policy; the strings are sent as they are (validated at compile time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    pub origins: CorsOrigins,
    pub allow_methods: String,
    pub allow_headers: String,
    /// Sent only when not empty.
    pub expose_headers: String,
    /// `Access-Control-Allow-Credentials: true` is sent only when set.
    pub allow_credentials: bool,
    pub max_age: i64,
    /// The Gateway API's CORS filter rather than ingress-nginx's: preflights are answered 200;
    /// the allowed origin is always echoed (with `Vary: Origin`); an `allow_methods` or
    /// `allow_headers` of `*` answers with what the preflight asked for; the methods, headers
    /// and max age go on preflight answers only.
    pub gateway: bool,
}

impl CorsPolicy {
    /// The `Access-Control-Allow-Origin` value for a request with `origin`, or `None` when this
    /// request gets no CORS headers.
    pub fn allow_origin<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        match &self.origins {
            CorsOrigins::Any => Some("*"),
            CorsOrigins::List(list) => origin.filter(|o| list.iter().any(|p| p.matches(o))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(prefix: &str, rest: &str, wildcard: bool) -> OriginPattern {
        OriginPattern { prefix: prefix.into(), rest: rest.into(), wildcard, multi_label: false }
    }

    #[test]
    fn exact_and_one_label_wildcards() {
        let p = pat("https://", "a.example.com:8443", false);
        assert!(p.matches("https://A.example.com:8443"));
        assert!(!p.matches("https://a.example.com"));
        assert!(!p.matches("http://a.example.com:8443"));
        let w = pat("https://", ".example.com", true);
        assert!(w.matches("https://app.example.com"));
        assert!(!w.matches("https://example.com"));
        assert!(!w.matches("https://a.b.example.com"), "one label only");
        assert!(!w.matches("https://evil.com/.example.com"));
        let m = OriginPattern { multi_label: true, ..w };
        assert!(m.matches("https://a.b.example.com") && m.matches("https://app.example.com"));
        assert!(!m.matches("https://example.com") && !m.matches("https://a..example.com") && !m.matches("https://evil.com/.example.com"));
    }
}
