//! The admission webhook in `serve` mode: real AdmissionReviews over HTTPS (trusting only the
//! generated CA, at the admission Service's DNS name) against the live store of the manifests.

mod common;
mod fakeapi;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Harness, Ingress, manifest};
use fakeapi::admission::{post, review_of};
use serde_json::{Value, json};
use vestibule::webhook::{WebhookOptions, service_names};

const HOST: &str = "vestibule-controller-admission.vestibule.svc";
const PATH: &str = "/networking/v1/ingresses";

async fn start() -> Harness {
    let existing = Ingress::new("shop", "old").created("2020-01-01T00:00:00Z").host_path("shop.example.com", "/cart", "Prefix", "cart", 80).to_yaml();
    common::start_with(&manifest([existing]), |o| {
        o.webhook = Some(WebhookOptions { addr: "127.0.0.1:0".parse().unwrap(), cert_file: None, key_file: None, names: service_names("vestibule") });
    })
    .await
}

fn endpoint(h: &Harness) -> (SocketAddr, String) {
    let w = h.running.webhook.as_ref().expect("the webhook is on");
    (w.addr, w.ca_pem.clone().expect("a generated CA"))
}

/// Sends the review for `op` on `object`; returns (HTTP status, the AdmissionReview answer).
async fn send(h: &Harness, op: &str, object: &Value) -> (u16, Value, Value) {
    let (addr, ca) = endpoint(h);
    let review = review_of(op, Some(object), None);
    let (status, body) = post(addr, HOST, PATH, &ca, serde_json::to_vec(&review).unwrap(), Duration::from_secs(10)).await.expect("the webhook answers");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null), review)
}

fn web(name: &str) -> Ingress {
    Ingress::new("shop", name).host_path("web.example.com", "/", "Prefix", "web", 80)
}

/// Asserts a denial naming `field`; returns the message.
async fn denied(h: &Harness, object: &Value, field: &str) -> String {
    let (status, answer, review) = send(h, "CREATE", object).await;
    assert_eq!(status, 200);
    let r = &answer["response"];
    assert_eq!(r["uid"], review["request"]["uid"]);
    assert_eq!(r["allowed"], false, "{answer}");
    assert_eq!(r["status"]["code"], 400);
    let msg = r["status"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(field), "the message names {field}: {msg}");
    msg
}

#[tokio::test]
async fn a_valid_ingress_is_allowed_with_the_same_uid() {
    let h = start().await;
    let (status, answer, review) = send(&h, "CREATE", &web("new").to_json()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("status").is_none());
    // Unsupported annotations only warn.
    let (_, answer, _) = send(&h, "CREATE", &web("new").annotation("nginx.ingress.kubernetes.io/enable-opentelemetry", "true").to_json()).await;
    assert_eq!(answer["response"]["allowed"], true);
    let warnings = answer["response"]["warnings"].as_array().expect("warnings");
    assert!(warnings[0].as_str().unwrap().contains("enable-opentelemetry"), "{warnings:?}");
}

#[tokio::test]
async fn each_kind_of_invalid_ingress_is_denied_naming_the_field() {
    let h = start().await;
    denied(&h, &Ingress::new("shop", "x").host_path("web.example.com", "/", "Sometimes", "web", 80).to_json(), "spec.rules[0].http.paths[0].pathType").await;
    denied(&h, &web("x").annotation("nginx.ingress.kubernetes.io/backend-protocol", "FTP").to_json(), "metadata.annotations[nginx.ingress.kubernetes.io/backend-protocol]").await;
    let msg = denied(&h, &web("x").annotation("nginx.ingress.kubernetes.io/configuration-snippet", "return 200;").to_json(), "metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]").await;
    assert!(msg.contains("snippet"), "{msg}");
    let msg = denied(&h, &Ingress::new("shop", "x").host_path("shop.example.com", "/cart", "Prefix", "web", 80).to_json(), "spec.rules[0].http.paths[0]").await;
    assert!(msg.contains("Ingress shop/old"), "names who serves it: {msg}");
}

#[tokio::test]
async fn other_classes_and_deletes_are_allowed() {
    let h = start().await;
    let theirs = Ingress::new("shop", "x").class("nginx").host_path("shop.example.com", "/cart", "Sometimes", "web", 80).annotation("nginx.ingress.kubernetes.io/server-snippet", "x");
    let (_, answer, _) = send(&h, "CREATE", &theirs.to_json()).await;
    assert_eq!(answer["response"]["allowed"], true, "another class's Ingress is not ours to judge: {answer}");
    let bad = Ingress::new("shop", "old").host_path("web.example.com", "/", "Sometimes", "web", 80).to_json();
    let (addr, ca) = endpoint(&h);
    let review = review_of("DELETE", None, Some(&bad));
    let (status, body) = post(addr, HOST, PATH, &ca, serde_json::to_vec(&review).unwrap(), Duration::from_secs(10)).await.unwrap();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, &answer["response"]["allowed"]), (200, &json!(true)));
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_and_the_server_goes_on() {
    let h = start().await;
    let (addr, ca) = endpoint(&h);
    let (status, _) = post(addr, HOST, PATH, &ca, b"{not json".to_vec(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 400);
    let (status, _) = post(addr, HOST, PATH, &ca, b"{\"kind\": \"AdmissionReview\"}".to_vec(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 400, "a review without a request");
    let big = vec![b' '; 4 * 1024 * 1024];
    let (status, _) = post(addr, HOST, PATH, &ca, big, Duration::from_secs(20)).await.unwrap();
    assert_eq!(status, 413);
    // Without a Content-Length (chunked), the bounded reader stops at 3 MiB.
    let client = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()]).resolve(HOST, addr).build().unwrap();
    let chunks = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))));
    let resp = client.post(format!("https://{HOST}:{}{PATH}", addr.port())).body(reqwest::Body::wrap_stream(chunks)).send().await;
    assert!(resp.as_ref().map_or(true, |r| r.status() == 413), "{resp:?}");
        let (status, answer, _) = send(&h, "CREATE", &web("after").to_json()).await;
    assert_eq!((status, &answer["response"]["allowed"]), (200, &json!(true)), "the next review is answered");
    // Only the review path answers, and only to POST.
    let (status, _) = post(addr, HOST, "/", &ca, b"{}".to_vec(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 404);
    let metrics = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vestibule_admission_reviews_total{result=\"too_large\"} 2"), "both oversized bodies were refused:\n{metrics}");
    assert!(metrics.contains("vestibule_admission_reviews_total{result=\"bad_request\"} 2"), "{metrics}");
}

#[tokio::test]
async fn twenty_concurrent_reviews_are_all_answered() {
    let h = start().await;
    let mut tasks = Vec::new();
    let (addr, ca) = endpoint(&h);
    for i in 0..20 {
        let ca = ca.clone();
        let object = if i % 2 == 0 { web(&format!("w{i}")).to_json() } else { Ingress::new("shop", &format!("w{i}")).host_path("web.example.com", "/", "Sometimes", "web", 80).to_json() };
        tasks.push(tokio::spawn(async move {
            let review = review_of("CREATE", Some(&object), None);
            let (status, body) = post(addr, HOST, PATH, &ca, serde_json::to_vec(&review).unwrap(), Duration::from_secs(30)).await.unwrap();
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 200);
            assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
            (i, answer["response"]["allowed"] == true)
        }));
    }
    for t in tasks {
        let (i, allowed) = t.await.unwrap();
        assert_eq!(allowed, i % 2 == 0, "review {i}");
    }
    // The data plane kept serving meanwhile, and the admission metrics are exported.
    let metrics = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    for name in ["admission_tested_ingresses", "admission_tested_duration", "admission_render_ingresses", "admission_render_duration", "admission_config_size", "admission_roundtrip_duration"] {
        assert!(metrics.contains(&format!("nginx_ingress_controller_{name} ")), "{name} missing:\n{metrics}");
    }
    assert!(metrics.contains("nginx_ingress_controller_admission_render_ingresses 2.0"), "{metrics}");
    assert!(metrics.contains("vestibule_admission_reviews_total{result=\"denied\"} 10"), "{metrics}");
}

#[tokio::test]
async fn the_certificate_is_only_valid_for_the_service_names() {
    let h = start().await;
    let (addr, ca) = endpoint(&h);
    let review = serde_json::to_vec(&review_of("CREATE", Some(&web("x").to_json()), None)).unwrap();
    assert!(post(addr, "vestibule-controller-admission.vestibule.svc.cluster.local", PATH, &ca, review.clone(), Duration::from_secs(10)).await.is_ok());
    assert!(post(addr, "elsewhere.example.com", PATH, &ca, review, Duration::from_secs(10)).await.is_err());
}

#[test]
fn the_flags_are_ingress_nginx_names_in_serve() {
    use clap::Parser;
    let cli = vestibule::cli::Cli::try_parse_from(["vestibule", "serve", "--manifests", "x", "--validating-webhook", ":8443", "--validating-webhook-certificate", "/c.pem", "--validating-webhook-key", "/k.pem"]).unwrap();
    let vestibule::cli::Command::Serve(a) = cli.command else { panic!("serve") };
    let w = a.into_options().webhook.expect("on");
    assert_eq!(w.addr, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(w.cert_file.as_deref(), Some(std::path::Path::new("/c.pem")));
    assert!(vestibule::cli::Cli::try_parse_from(["vestibule", "serve", "--manifests", "x", "--validating-webhook", ":8443", "--validating-webhook-key", "/k.pem"]).is_err(), "a key needs its certificate");
    let off = vestibule::cli::Cli::try_parse_from(["vestibule", "serve", "--manifests", "x"]).unwrap();
    let vestibule::cli::Command::Serve(a) = off.command else { panic!("serve") };
    assert!(a.into_options().webhook.is_none(), "off by default");
}

#[tokio::test]
async fn certificate_files_are_served_as_given() {
    let issued = vestibule::tls::issue_with_ca(&[HOST]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&c, &issued.cert_pem).unwrap();
    std::fs::write(&k, &issued.key_pem).unwrap();
    let h = common::start_with("", |o| {
        o.webhook = Some(WebhookOptions { addr: "127.0.0.1:0".parse().unwrap(), cert_file: Some(c.clone()), key_file: Some(k.clone()), names: Vec::new() });
    })
    .await;
    let w = h.running.webhook.clone().unwrap();
    assert!(w.ca_pem.is_none());
    let review = serde_json::to_vec(&review_of("CREATE", Some(&web("x").to_json()), None)).unwrap();
    let (status, _) = post(w.addr, HOST, PATH, &issued.ca_pem, review, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 200);
}
