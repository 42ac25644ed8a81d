//! The read-only web dashboard on the healthz port: one page, its script and its style sheet,
//! embedded in the binary (no CDN, nothing fetched from elsewhere). The page polls
//! `/debug/config`, `/debug/live` and `/debug/explain` on the same port; everything it shows
//! is rendered as text, never as markup, since hosts and paths come from users.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::proxy::Shared;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The policy every dashboard answer carries: only this port's own script, style and JSON.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded asset at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/dashboard" | "/dashboard/" => Some(("text/html; charset=utf-8", INDEX)),
        "/dashboard/app.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/dashboard/style.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

/// What changes between configurations: each endpoint's health as the balancer sees it, and
/// the request totals per route (the counters `/metrics` exports), for rates in the page.
pub fn live_json(shared: &Shared) -> Value {
    let config = shared.config();
    let mut endpoints: BTreeMap<String, Value> = BTreeMap::new();
    for b in config.backends() {
        for addr in b.endpoints.iter() {
            let health = shared.registry.health(*addr);
            endpoints.entry(addr.to_string()).or_insert_with(|| match health {
                Some(h) => serde_json::to_value(h).unwrap_or(Value::Null),
                None => json!({ "ejected": false, "ejections": 0, "inFlight": 0, "latencyMs": null }),
            });
        }
    }
    json!({
        "endpoints": endpoints,
        "routes": shared.metrics.route_totals(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_the_page_loads_only_its_own() {
        let (ct, page) = asset("/dashboard").unwrap();
        assert!(ct.starts_with("text/html"));
        assert!(page.contains("src=\"/dashboard/app.js\"") && page.contains("href=\"/dashboard/style.css\""));
        for attr in ["src=\"", "href=\""] {
            for (i, _) in page.match_indices(attr) {
                assert!(page[i + attr.len()..].starts_with("/dashboard/"), "no asset from elsewhere");
            }
        }
        assert!(asset("/dashboard/app.js").unwrap().1.contains("/debug/config"));
        assert!(asset("/dashboard/nope").is_none());
        // Data from objects is set as text, never parsed as markup.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }
}
