//! The admission webhook in controller mode against the fake API server: the generated CA is
//! patched into deploy/static/webhook.yaml's ValidatingWebhookConfiguration with nothing but
//! PATCH, and the fake then admits Ingress writes the way the API server does (through the
//! configuration's Service name, path and caBundle) against the live cluster store.

mod common;
mod fakeapi;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Ingress, IngressClass};
use fakeapi::FakeApi;
use serde_json::Value;
use vestibule::controller::{self, ControllerOptions, Running};
use vestibule::serve::ServeOptions;
use vestibule::webhook::WebhookOptions;

const CONFIG: &str = "vestibule-admission";

fn options(api: &FakeApi, dir: &std::path::Path, identity: &str) -> ControllerOptions {
    let serve = ServeOptions {
        webhook: Some(WebhookOptions { addr: "127.0.0.1:0".parse().unwrap(), cert_file: None, key_file: None, names: Vec::new() }),
        ..fakeapi::options::serve()
    };
    ControllerOptions { patch_webhook_ca: Some(CONFIG.into()), ..fakeapi::options::controller(api, dir, "token", identity, serve) }
}

/// The ValidatingWebhookConfiguration and the admission Service of deploy/static/webhook.yaml.
fn apply_deploy_webhook(api: &FakeApi) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/static/webhook.yaml")).unwrap();
    for doc in text.split("\n---\n") {
        let v: Value = serde_saphyr::from_str(doc).unwrap();
        if matches!(v["kind"].as_str(), Some("ValidatingWebhookConfiguration" | "Service")) {
            api.apply(v);
        }
    }
}

fn bundle(api: &FakeApi) -> Option<String> {
    let cfg = api.get("ValidatingWebhookConfiguration", "", CONFIG)?;
    let b = cfg["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
    Some(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap())
}

async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what}: not true after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn web(name: &str, path: &str) -> Ingress {
    Ingress::new("shop", name).class("vestibule").host_path("shop.example.com", path, "Prefix", "web", 80)
}

async fn started(api: &FakeApi, dir: &std::path::Path, identity: &str) -> Running {
    let run = controller::start(options(api, dir, identity)).await.expect("the controller starts");
    wait_for("the first configuration", Duration::from_secs(10), || run.applied().is_some()).await;
    run
}

#[tokio::test]
async fn the_ca_is_patched_and_reviews_see_the_live_cluster() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    apply_deploy_webhook(&api);
    api.apply(web("old", "/cart").to_json());
    let run = started(&api, dir.path(), "one").await;
    let endpoint = run.webhook.clone().expect("the webhook is on");
    let ca = endpoint.ca_pem.clone().expect("a generated CA");

    wait_for("the caBundle patch", Duration::from_secs(10), || bundle(&api).is_some_and(|b| b.contains(ca.trim()))).await;
    // Only PATCH touched the configuration: an empty merge patch to read, a JSON patch to write.
    let reqs: Vec<_> = api.requests().into_iter().filter(|r| r.path.ends_with(&format!("/validatingwebhookconfigurations/{CONFIG}"))).collect();
    assert!(reqs.iter().all(|r| r.method == "PATCH"), "{reqs:?}");
    assert!(reqs.iter().any(|r| r.content_type.starts_with("application/json-patch+json")));

    wait_for("the Ingress is live", Duration::from_secs(10), || run.applied().is_some_and(|a| a.store.ingresses.contains_key(&("shop".into(), "old".into())))).await;
    let addr = endpoint.addr;
    let ok = api.admit(CONFIG, addr, "CREATE", Some(&web("new", "/shoes").to_json()), None).await;
    assert!(ok.called && ok.allowed, "{ok:?}");
    let clash = api.admit(CONFIG, addr, "CREATE", Some(&web("new", "/cart").to_json()), None).await;
    assert!(!clash.allowed && clash.message.contains("spec.rules[0].http.paths[0]") && clash.message.contains("Ingress shop/old"), "{clash:?}");
    let bad = api.admit(CONFIG, addr, "CREATE", Some(&web("new", "/x").annotation("nginx.ingress.kubernetes.io/load-balance", "random").to_json()), None).await;
    assert!(!bad.allowed && bad.message.contains("metadata.annotations[nginx.ingress.kubernetes.io/load-balance]"), "{bad:?}");
    // Updating the live Ingress itself is no conflict; another class is not judged.
    let old = api.get("Ingress", "shop", "old").unwrap();
    let mut changed = old.clone();
    changed["metadata"]["labels"] = serde_json::json!({"tier": "front"});
    assert!(api.admit(CONFIG, addr, "UPDATE", Some(&changed), Some(&old)).await.allowed);
    let theirs = Ingress::new("shop", "x").class("nginx").host_path("shop.example.com", "/cart", "Prefix", "web", 80).to_json();
    assert!(api.admit(CONFIG, addr, "CREATE", Some(&theirs), None).await.allowed);
    // DELETE matches no rule: the API server does not even call.
    assert!(!api.admit(CONFIG, addr, "DELETE", None, Some(&old)).await.called);
    run.stop();
}

#[tokio::test]
async fn two_replicas_both_stay_trusted() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    apply_deploy_webhook(&api);
    let (a, b) = tokio::join!(started(&api, dir.path(), "a"), started(&api, dir.path(), "b"));
    let cas: Vec<String> = [&a, &b].iter().map(|r| r.webhook.as_ref().unwrap().ca_pem.clone().unwrap()).collect();
    assert_ne!(cas[0], cas[1], "each replica has its own certificate");
    wait_for("both CAs in the bundle", Duration::from_secs(15), || bundle(&api).is_some_and(|bd| cas.iter().all(|c| bd.contains(c.trim())))).await;
    for r in [&a, &b] {
        let got = api.admit(CONFIG, r.webhook.as_ref().unwrap().addr, "CREATE", Some(&web("new", "/").to_json()), None).await;
        assert!(got.allowed, "the API server trusts every replica: {got:?}");
    }
    a.stop();
    b.stop();
}

#[tokio::test]
async fn without_the_patch_the_api_server_cannot_trust_the_webhook() {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    apply_deploy_webhook(&api);
    let mut opts = options(&api, dir.path(), "solo");
    opts.patch_webhook_ca = None;
    let run = controller::start(opts).await.unwrap();
    let got = api.admit(CONFIG, run.webhook.as_ref().unwrap().addr, "CREATE", Some(&web("new", "/").to_json()), None).await;
    assert!(!got.allowed && got.message.contains("failed calling webhook"), "failurePolicy Fail refuses: {got:?}");
    assert!(bundle(&api).is_none());
    run.stop();
}
