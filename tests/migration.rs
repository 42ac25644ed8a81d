//! Migrating from ingress-nginx: `vestibule check` names, per Ingress, every annotation it
//! ignores or refuses, and `serve` starts on what users deploy. On `examples/ingress-nginx`
//! (ours) and, when it is present, on the shared corpus of real-world manifests (read in
//! place, never copied into the repository).

#[allow(unused_imports)]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use vestibule::compile::annotations::is_supported;

const PREFIX: &str = "nginx.ingress.kubernetes.io/";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ingress-nginx")
}

fn check(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vestibule")).arg("check").args(args).output().expect("run vestibule check");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The migration line of `ingress` ("ns/name"), split into its ignored and refused keys.
fn migration_line(out: &str, ingress: &str) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let head = format!("migration: Ingress {ingress}");
    let line = out.lines().find(|l| l.starts_with(&head) && l[head.len()..].starts_with([':', ' ']))?;
    let (_, lists) = line.split_once("): ").or_else(|| line[head.len()..].split_once(": ")).unwrap();
    let (mut ignored, mut refused) = (BTreeSet::new(), BTreeSet::new());
    for part in lists.split("; ") {
        let (which, keys) = part.split_once(' ').unwrap();
        let set = if which == "ignored" { &mut ignored } else { &mut refused };
        set.extend(keys.split(", ").map(str::to_string));
    }
    Some((ignored, refused))
}

fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|k| format!("{PREFIX}{k}")).collect()
}

#[test]
fn check_on_the_example_names_each_ingress_and_key() {
    let dir = examples();
    let (code, out) = check(&["--ingress-class", "nginx", "--configmap", "ingress-nginx/ingress-nginx-controller", "--manifests", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "snippets are errors: {out}");
    // Every annotation under the prefix in the example, per Ingress: those no family owns must
    // be named as ignored, the snippets as refused, and nothing else.
    let all: [(&str, &[&str]); 7] = [
        ("shop/storefront", &["use-regex", "rewrite-target", "proxy-body-size", "ssl-redirect", "configuration-snippet"]),
        ("shop/cart", &["affinity", "session-cookie-name", "session-cookie-max-age", "load-balance", "configuration-snippet"]),
        ("shop/cart-canary", &["canary", "canary-weight", "canary-by-header"]),
        ("api/api", &["enable-cors", "cors-allow-origin", "cors-allow-methods", "limit-rps", "limit-burst-multiplier", "upstream-hash-by", "proxy-read-timeout"]),
        ("api/api-grpc", &["backend-protocol", "server-snippet"]),
        ("admin/grafana", &["auth-url", "auth-signin", "auth-response-headers", "whitelist-source-range", "force-ssl-redirect"]),
        ("admin/oauth2-proxy", &["proxy-buffer-size"]),
    ];
    let (mut n_ignored, mut n_refused, mut n_ingresses, mut distinct) = (0, 0, 0, BTreeSet::new());
    for (ing, keys_of) in all {
        let ignored: Vec<&str> = keys_of.iter().copied().filter(|k| !vestibule::compile::annotations::is_owned(k)).collect();
        let refused: Vec<&str> = keys_of.iter().copied().filter(|k| k.ends_with("-snippet")).collect();
        if ignored.is_empty() && refused.is_empty() {
            assert!(migration_line(&out, ing).is_none(), "{ing} has nothing to report:\n{out}");
            continue;
        }
        n_ingresses += 1;
        n_ignored += ignored.len();
        n_refused += refused.len();
        distinct.extend(ignored.iter().chain(&refused).map(|k| k.to_string()));
        let got = migration_line(&out, ing).unwrap_or_else(|| panic!("no migration line for {ing}:\n{out}"));
        assert_eq!(got, (keys(&ignored), keys(&refused)), "{ing}:\n{out}");
        for k in &ignored {
            let l = format!("warning: Ingress {ing}: metadata.annotations[{PREFIX}{k}]: not supported by Vestibule; it is ignored (AnnotationNotSupported)");
            assert!(out.lines().any(|x| x == l), "{l}\n{out}");
        }
        for k in &refused {
            let l = format!("error: Ingress {ing}: metadata.annotations[{PREFIX}{k}]: snippets are not supported: nothing in an object is executed");
            assert!(out.lines().any(|x| x.starts_with(&l) && x.ends_with("(SnippetRefused)")), "{l}\n{out}");
        }
    }
    let summary = format!("annotations not honoured: {n_ignored} ignored, {n_refused} refused, on {n_ingresses} Ingress(es); {} distinct key(s)", distinct.len());
    assert!(out.contains(&summary), "{summary}\n{out}");
    // What Vestibule honours is not listed; the ConfigMap keys it knows are not reported.
    for k in ["load-balance", "upstream-hash-by", "backend-protocol", "ssl-redirect"] {
        assert!(!out.contains(&format!("{PREFIX}{k}]")) && !out.contains(&format!("{PREFIX}{k},")), "{k} is honoured:\n{out}");
    }
    assert!(out.contains("data.enable-brotli") && !out.contains("data.use-forwarded-headers") && !out.contains("data.server-tokens"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_example_serves_the_ingress_with_a_snippet_and_applies_the_configmap() {
    let cart = echo("cart").await;
    // The canary's backend too: 10% of requests go to it (canary-weight).
    let cart_v2 = echo("cart-v2").await;
    let mut all = Vec::new();
    for f in ["backends.yaml", "shop.yaml", "api.yaml", "admin.yaml", "configmap.yaml"] {
        all.push(std::fs::read_to_string(examples().join(f)).unwrap());
    }
    let m = all.join("\n---\n").replace("port: 19282", &format!("port: {}", cart.addr.port())).replace("port: 19283", &format!("port: {}", cart_v2.addr.port()));
    let h = start_with(&m, |o| {
        o.ingress_class = "nginx".into();
        o.configmap = Some(("ingress-nginx".into(), "ingress-nginx-controller".into()));
    })
    .await;
    // `X-Canary: never` keeps this request on the mainline (the canary takes 10% otherwise).
    let resp = h.client.get(h.http("/cart/items")).header("host", "shop.example.com").header("x-forwarded-for", "1.2.3.4").header("x-canary", "never").send().await.unwrap();
    assert_eq!(resp.status(), 200, "the Ingress with a snippet is served");
    assert!(resp.headers().get("cache-control").is_none(), "the snippet did not run: {:?}", resp.headers());
    assert!(resp.headers().get("server").is_none(), "server-tokens: false");
    let j: Value = resp.json().await.unwrap();
    assert_eq!(j["service"], "cart", "{j:#}");
    // use-forwarded-headers and compute-full-forwarded-for from the ConfigMap.
    assert_eq!(j["headers"]["x-real-ip"], "1.2.3.4", "{j:#}");
    assert_eq!(j["headers"]["x-forwarded-for"], "1.2.3.4, 127.0.0.1", "{j:#}");
    let resp = h.client.get(h.http("/cart/items")).header("host", "shop.example.com").header("x-canary", "always").send().await.unwrap();
    let j: Value = resp.json().await.unwrap();
    assert_eq!(j["service"], "cart-v2", "the canary answers by header: {j:#}");
}

/// The `nginx.ingress.kubernetes.io/*` keys of every Ingress in `text`, or None when the file
/// is not YAML at all.
fn corpus_keys(text: &str) -> Option<BTreeSet<String>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).ok()?;
    let mut objects = Vec::new();
    for d in docs {
        match d.get("items").and_then(|i| i.as_array()) {
            Some(items) => objects.extend(items.iter().cloned()),
            None => objects.push(d),
        }
    }
    let ingresses = objects.into_iter().filter(|o| o.get("kind").and_then(|k| k.as_str()) == Some("Ingress"));
    let annotations = ingresses.filter_map(|o| o.pointer("/metadata/annotations").and_then(|a| a.as_object()).cloned());
    Some(annotations.flat_map(|a| a.into_iter().map(|(k, _)| k)).filter(|k| k.starts_with(PREFIX)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_world_corpus_is_reported_and_served() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/ingress-nginx");
    if !corpus.is_dir() {
        eprintln!("note: {} not found; the corpus test is skipped", corpus.display());
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml")).collect();
    files.sort();
    assert!(!files.is_empty());
    let (mut all, mut failures) = (BTreeSet::new(), Vec::new());
    let mut rejected = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let (_, out) = check(&["--ingress-class", "nginx", "--manifests", file.to_str().unwrap()]);
        assert!(out.lines().last().is_some_and(|l| l.contains(" error(s), ")), "{name}: check did not finish its report:\n{out}");
        match corpus_keys(&text) {
            None => assert!(out.lines().any(|l| l.starts_with("error:") && l.contains(&name)), "{name}: not YAML, and check does not say so:\n{out}"),
            Some(keys) => {
                let named: Vec<&str> = out.lines().filter(|l| l.starts_with("migration: ")).collect();
                for k in keys.iter().filter(|k| !is_supported(&k[PREFIX.len()..])) {
                    if !named.iter().any(|l| l.contains(&format!(" {k},")) || l.contains(&format!(" {k};")) || l.ends_with(&format!(" {k}"))) {
                        failures.push(format!("{name}: {k} is not honoured but check does not name it"));
                    }
                }
                // An Ingress the source rejected is still reported, and the error names the file.
                if out.contains("(the Ingress itself is rejected") && !out.lines().any(|l| l.starts_with("error:") && l.contains(&name)) {
                    failures.push(format!("{name}: a rejected Ingress, but no error names the file:\n{out}"));
                }
                rejected += out.contains("(the Ingress itself is rejected") as usize;
                all.extend(keys);
            }
        }
        // serve starts on the file, whatever is wrong in it, and answers health checks.
        let h = start_with(&text, |o| o.ingress_class = "nginx".into()).await;
        let health = tokio::time::timeout(Duration::from_secs(5), h.client.get(format!("http://{}/healthz", h.running.healthz)).send()).await;
        let ok = matches!(&health, Ok(Ok(r)) if r.status() == 200);
        if !ok {
            failures.push(format!("{name}: serve does not answer /healthz: {health:?}"));
        }
    }
    let honoured: Vec<&String> = all.iter().filter(|k| is_supported(&k[PREFIX.len()..])).collect();
    eprintln!("corpus: {rejected} files with an Ingress rejected when read");
    eprintln!("corpus: {} files, {} distinct {PREFIX}* keys: {} honoured ({honoured:?}), {} named as not honoured", files.len(), all.len(), honoured.len(), all.len() - honoured.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// docs/annotations.md's table says of each ingress-nginx annotation whether Vestibule honours
/// it: that must be what the annotation registry does.
#[test]
fn the_annotations_table_matches_the_registry() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/annotations.md")).unwrap();
    let table = doc.split("| annotation | status | details |").nth(1).expect("the table").split("\n\n").next().unwrap();
    let mut rows = 0;
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let key = line.split('`').nth(1).unwrap();
        let status = line.split('|').nth(2).unwrap().trim();
        let owned = vestibule::compile::annotations::is_owned(key);
        if status.starts_with("not supported") {
            assert!(!owned, "{key} is marked {status:?} but a family owns it");
        } else {
            assert!(owned, "{key} is marked {status:?} but no family owns it");
        }
        rows += 1;
    }
    assert!(rows > 100, "{rows} rows");
}
