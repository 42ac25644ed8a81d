//! The API server's side of admission: JSON patch (RFC 6902) for PATCHes with
//! `application/json-patch+json`, the AdmissionReview the API server builds for a write, and
//! the call to a webhook as a ValidatingWebhookConfiguration describes it (rules, Service
//! name and path, `caBundle`, `timeoutSeconds`, `failurePolicy`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::FakeApi;

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The parent of the value at `pointer` and the last token.
fn parent<'v>(doc: &'v mut Value, pointer: &str) -> Result<(&'v mut Value, String), String> {
    let tokens: Vec<String> = pointer.strip_prefix('/').ok_or_else(|| format!("{pointer:?} is not a JSON pointer"))?.split('/').map(unescape).collect();
    let (last, path) = tokens.split_last().ok_or("empty pointer")?;
    let mut cur = doc;
    for t in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| format!("{pointer}: no member {t:?}"))?,
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)).ok_or_else(|| format!("{pointer}: no index {t:?}"))?,
            _ => return Err(format!("{pointer}: {t:?} is inside a scalar")),
        };
    }
    Ok((cur, last.clone()))
}

/// Applies an RFC 6902 patch (add, replace, remove, test); all or nothing.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let mut work = doc.clone();
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("an operation without path")?;
        let (p, last) = parent(&mut work, path)?;
        match (op["op"].as_str().unwrap_or(""), p) {
            ("test", p) => {
                let actual = match p {
                    Value::Object(m) => m.get(&last),
                    Value::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                if actual != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            ("add" | "replace", Value::Object(m)) => {
                if op["op"] == "replace" && !m.contains_key(&last) {
                    return Err(format!("replace: nothing at {path}"));
                }
                m.insert(last, op["value"].clone());
            }
            ("add", Value::Array(a)) if last == "-" => a.push(op["value"].clone()),
            ("add" | "replace", Value::Array(a)) => {
                let i: usize = last.parse().map_err(|_| format!("{path}: not an index"))?;
                if i > a.len() || (op["op"] == "replace" && i >= a.len()) {
                    return Err(format!("{path}: index out of range"));
                }
                if op["op"] == "replace" {
                    a[i] = op["value"].clone();
                } else {
                    a.insert(i, op["value"].clone());
                }
            }
            ("remove", Value::Object(m)) => {
                m.remove(&last).ok_or_else(|| format!("remove: nothing at {path}"))?;
            }
            (other, _) => return Err(format!("unsupported operation {other:?} at {path}")),
        }
    }
    *doc = work;
    Ok(())
}

static UID: AtomicU64 = AtomicU64::new(1);

/// The AdmissionReview the API server sends for `operation` on an Ingress.
pub fn review_of(operation: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
    let meta = &object.or(old).expect("an object or an old object")["metadata"];
    let uid = format!("review-{}", UID.fetch_add(1, Ordering::Relaxed));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "requestKind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "requestResource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "name": meta["name"],
            "namespace": meta["namespace"].as_str().unwrap_or("default"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": if operation == "UPDATE" { "UpdateOptions" } else { "CreateOptions" }},
        }
    })
}

/// POSTs `body` over HTTPS to `https://{host}:{addr.port()}{path}`, `host` resolving to `addr`,
/// trusting only `ca_pem`. Returns the status and body.
pub async fn post(addr: SocketAddr, host: &str, path: &str, ca_pem: &str, body: Vec<u8>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?])
        .resolve(host, addr)
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("https://{host}:{}{path}", addr.port());
    let resp = client.post(url).header("content-type", "application/json").body(body).send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, bytes.to_vec()))
}

/// What the API server concluded from its webhooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub allowed: bool,
    pub message: String,
    pub warnings: Vec<String>,
    /// Whether any webhook was called (no rule matched otherwise).
    pub called: bool,
}

fn rule_matches(rule: &Value, operation: &str) -> bool {
    let has = |k: &str, v: &str| rule[k].as_array().is_some_and(|a| a.iter().any(|x| x == v || x == "*"));
    has("operations", operation) && has("apiGroups", "networking.k8s.io") && has("apiVersions", "v1") && has("resources", "ingresses")
}

impl FakeApi {
    /// Admits a write of an Ingress as the API server would through the
    /// ValidatingWebhookConfiguration `configuration`: every webhook whose rules match is
    /// called at its Service's DNS name (resolved to `addr`, where the Service's pods are),
    /// trusting only its `caBundle`; a failed call counts as a denial under `failurePolicy:
    /// Fail`.
    pub async fn admit(&self, configuration: &str, addr: SocketAddr, operation: &str, object: Option<&Value>, old: Option<&Value>) -> Admitted {
        let cfg = self.get("ValidatingWebhookConfiguration", "", configuration).unwrap_or_else(|| panic!("no ValidatingWebhookConfiguration {configuration}"));
        let mut out = Admitted { allowed: true, message: String::new(), warnings: Vec::new(), called: false };
        for w in cfg["webhooks"].as_array().cloned().unwrap_or_default() {
            if !w["rules"].as_array().is_some_and(|rs| rs.iter().any(|r| rule_matches(r, operation))) {
                continue;
            }
            out.called = true;
            let svc = &w["clientConfig"]["service"];
            let host = format!("{}.{}.svc", svc["name"].as_str().unwrap(), svc["namespace"].as_str().unwrap());
            let path = svc["path"].as_str().unwrap_or("/");
            let ca = w["clientConfig"]["caBundle"].as_str().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()).map(|b| String::from_utf8(b).unwrap()).unwrap_or_default();
            let timeout = Duration::from_secs(w["timeoutSeconds"].as_u64().unwrap_or(10));
            let review = review_of(operation, object, old);
            let fail_closed = w["failurePolicy"].as_str().unwrap_or("Fail") == "Fail";
            let answer = match post(addr, &host, path, &ca, serde_json::to_vec(&review).unwrap(), timeout).await {
                Ok((200, body)) => serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string()),
                Ok((code, body)) => Err(format!("webhook answered {code}: {}", String::from_utf8_lossy(&body))),
                Err(e) => Err(e),
            };
            let name = w["name"].as_str().unwrap_or("");
            match answer {
                Ok(v) => {
                    assert_eq!(v["response"]["uid"], review["request"]["uid"], "the webhook answers the review it was asked");
                    out.warnings.extend(v["response"]["warnings"].as_array().into_iter().flatten().filter_map(|w| w.as_str().map(str::to_string)));
                    if v["response"]["allowed"] != true {
                        out.allowed = false;
                        out.message = format!("admission webhook {name:?} denied the request: {}", v["response"]["status"]["message"].as_str().unwrap_or(""));
                    }
                }
                Err(e) if fail_closed => {
                    out.allowed = false;
                    out.message = format!("failed calling webhook {name:?}: {e}");
                }
                Err(_) => {}
            }
        }
        out
    }
}
