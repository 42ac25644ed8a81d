//! `--patch-webhook-ca NAME`: puts the generated CA into `webhooks[*].clientConfig.caBundle` of
//! the ValidatingWebhookConfiguration NAME, with nothing but the `patch` verb on that one
//! object: an empty merge patch reads it (a PATCH answers with the object), then a JSON patch
//! writes each webhook's bundle, guarded by `test` operations so that a concurrent writer (the
//! other replica) makes it retry instead of losing its CA.
//!
//! Every replica generates its own certificate, and the Service sends each review to any of
//! them: so the bundle keeps the CAs already there after this replica's (the newest
//! `KEEP_CAS`), and the API server trusts every replica. Their keys live only in the pods.

use std::time::Duration;

use base64::Engine as _;
use kube::Client;
use serde_json::{Value, json};

/// CAs kept in a bundle: this replica's and the newest others (replicas, rolling updates).
pub const KEEP_CAS: usize = 8;

fn path(name: &str) -> String {
    format!("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}")
}

async fn send(client: &Client, name: &str, content_type: &str, body: &Value) -> Result<Value, kube::Error> {
    let req = http::Request::patch(path(name)).header(http::header::CONTENT_TYPE, content_type).body(serde_json::to_vec(body).unwrap_or_default()).expect("a valid request");
    client.request::<Value>(req).await
}

/// The PEM CERTIFICATE blocks of `pem`, each ending in a newline.
fn blocks(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in pem.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// `ours` first, then the CAs of `current` (base64 of PEM) that are not it, `KEEP_CAS` in all.
pub fn merged_bundle(current: Option<&str>, ours: &str) -> String {
    let old = current.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let mine = blocks(ours);
    let mut all = mine.clone();
    all.extend(blocks(&old).into_iter().filter(|b| !mine.contains(b)));
    all.truncate(KEEP_CAS.max(mine.len()));
    base64::engine::general_purpose::STANDARD.encode(all.concat())
}

/// The JSON patch writing `ca_pem` into every webhook of `current`.
pub fn operations(current: &Value, ca_pem: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    for (i, w) in current["webhooks"].as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w["name"]}));
        // The whole clientConfig as read: a bundle another replica wrote meanwhile, even
        // where there was none, fails the patch instead of being overwritten.
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/clientConfig"), "value": w["clientConfig"]}));
        let bundle = w["clientConfig"]["caBundle"].as_str();
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": merged_bundle(bundle, ca_pem)}));
    }
    ops
}

/// One attempt: returns how many webhooks now carry the CA.
pub async fn patch_once(client: &Client, name: &str, ca_pem: &str) -> Result<usize, kube::Error> {
    let current = send(client, name, "application/merge-patch+json", &json!({})).await?;
    let ops = operations(&current, ca_pem);
    let n = current["webhooks"].as_array().map(Vec::len).unwrap_or(0);
    if n > 0 {
        send(client, name, "application/json-patch+json", &Value::Array(ops)).await?;
    }
    Ok(n)
}

/// Patches until it works (the configuration may not exist yet, or another replica may be
/// writing it at the same moment), backing off up to a minute.
pub fn spawn(client: Client, name: String, ca_pem: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match patch_once(&client, &name, &ca_pem).await {
                Ok(0) => tracing::warn!(configuration = %name, "--patch-webhook-ca: the ValidatingWebhookConfiguration has no webhooks; retrying"),
                Ok(n) => {
                    tracing::info!(configuration = %name, webhooks = n, "--patch-webhook-ca: caBundle patched");
                    return;
                }
                Err(e) => tracing::warn!(configuration = %name, error = %e, "--patch-webhook-ca: patching the caBundle failed; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    fn decode(b: &str) -> String {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
    }

    #[test]
    fn ours_goes_first_and_others_are_kept_once() {
        assert_eq!(decode(&merged_bundle(None, A)), A);
        let with_b = merged_bundle(None, B);
        assert_eq!(decode(&merged_bundle(Some(&with_b), A)), format!("{A}{B}"));
        let both = merged_bundle(Some(&with_b), A);
        assert_eq!(decode(&merged_bundle(Some(&both), A)), format!("{A}{B}"), "patching again changes nothing");
    }

    #[test]
    fn every_webhook_is_guarded_and_written() {
        let cur = json!({"webhooks": [{"name": "a", "clientConfig": {}}, {"name": "b", "clientConfig": {"caBundle": merged_bundle(None, B)}}]});
        let ops = operations(&cur, A);
        let paths: Vec<(&str, &str)> = ops.iter().map(|o| (o["op"].as_str().unwrap(), o["path"].as_str().unwrap())).collect();
        assert_eq!(
            paths,
            [
                ("test", "/webhooks/0/name"),
                ("test", "/webhooks/0/clientConfig"),
                ("add", "/webhooks/0/clientConfig/caBundle"),
                ("test", "/webhooks/1/name"),
                ("test", "/webhooks/1/clientConfig"),
                ("add", "/webhooks/1/clientConfig/caBundle")
            ]
        );
    }
}
