//! The Helm chart under deploy/helm/vestibule. No helm binary is available to render it, so
//! this checks what can be checked without one: Chart.yaml and values.yaml parse and carry
//! ingress-nginx's value names, every `.Values.X` a template uses exists in values.yaml, the
//! template actions are balanced, and the templates create the same kinds and names as the
//! kustomize webhook overlay (the namespace aside, which is the release's).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/vestibule")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn templates() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "templates: {out:?}");
    out
}

/// The contents of every `{{ ... }}` action in a template.
fn actions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let j = rest[i..].find("}}").unwrap_or_else(|| panic!("an unclosed action in {rest}"));
        out.push(rest[i + 2..i + j].trim_matches(|c: char| c == '-' || c.is_whitespace()).to_string());
        rest = &rest[i + j + 2..];
    }
    out
}

#[test]
fn chart_and_values_parse() {
    let c = yaml(&chart().join("Chart.yaml"));
    assert_eq!(c["apiVersion"], "v2");
    assert_eq!(c["name"], "vestibule");
    assert!(c["version"].is_string() && c["appVersion"].is_string());

    let v = yaml(&chart().join("values.yaml"));
    let ctl = &v["controller"];
    assert_eq!(ctl["replicaCount"], 2);
    assert_eq!(ctl["service"]["type"], "NodePort");
    let class = &ctl["ingressClassResource"];
    assert_eq!(class["name"], "vestibule");
    assert_eq!(class["enabled"], true);
    assert_eq!(class["default"], false);
    assert_eq!(class["controllerValue"], "vestibule.dev/ingress-controller");
    assert!(ctl["config"].is_object());
    assert_eq!(ctl["admissionWebhooks"]["enabled"], true);
    assert_eq!(ctl["scope"]["enabled"], false);
    assert_eq!(ctl["scope"]["namespace"], "");
    assert!(v["tcp"].is_object() && v["udp"].is_object());
}

#[test]
fn every_value_a_template_uses_exists() {
    let values = yaml(&chart().join("values.yaml"));
    let mut used = BTreeSet::new();
    for (name, text) in &templates() {
        let mut depth = 0i32;
        for a in actions(text) {
            let word = a.split_whitespace().next().unwrap_or("");
            match word {
                "if" | "with" | "range" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{name}: an `end` without its block");
            let mut rest = a.as_str();
            while let Some(i) = rest.find(".Values.") {
                let path: String = rest[i + 8..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_').collect();
                rest = &rest[i + 8 + path.len()..];
                let mut v = &values;
                for key in path.split('.') {
                    v = v.get(key).unwrap_or_else(|| panic!("{name}: .Values.{path} is not in values.yaml"));
                }
                used.insert(path);
            }
        }
        assert_eq!(depth, 0, "{name}: unbalanced if/with/range and end");
    }
    for name in ["controller.replicaCount", "controller.service.type", "controller.ingressClassResource.enabled", "controller.ingressClassResource.default", "controller.admissionWebhooks.enabled", "controller.scope.enabled", "controller.scope.namespace", "controller.config", "tcp", "udp"] {
        assert!(used.contains(name), "no template uses .Values.{name}: {used:?}");
    }
}

/// (kind, name) of the objects a set of YAML documents declares, reading only the top-level
/// `kind:` and the first `  name:` under `metadata:` of each document.
fn kinds_and_names(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for doc in text.split("\n---\n") {
        let kind = doc.lines().find_map(|l| l.strip_prefix("kind: "));
        let name = doc.lines().skip_while(|l| *l != "metadata:").find_map(|l| l.strip_prefix("  name: "));
        if let (Some(k), Some(n)) = (kind, name) {
            out.insert((k.trim().to_string(), n.trim().to_string()));
        }
    }
    out
}

#[test]
fn templates_declare_the_webhook_overlay_objects() {
    let mut chart_objects = BTreeSet::new();
    for (_, text) in templates() {
        chart_objects.extend(kinds_and_names(&text));
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut overlay = BTreeSet::new();
    // With controller.scope.enabled, the objects of the namespaced manifest.
    for f in ["static/vestibule.yaml", "static/webhook.yaml", "static/vestibule-namespaced.yaml"] {
        overlay.extend(kinds_and_names(&std::fs::read_to_string(deploy.join(f)).unwrap()));
    }
    // The chart installs into the release's namespace instead of creating one, and names the
    // IngressClass from controller.ingressClassResource.name.
    overlay.remove(&("Namespace".to_string(), "vestibule".to_string()));
    overlay.remove(&("IngressClass".to_string(), "vestibule".to_string()));
    assert!(chart_objects.remove(&("IngressClass".to_string(), "{{ .Values.controller.ingressClassResource.name }}".to_string())));
    assert_eq!(chart_objects, overlay);
}

// A renderer for the subset of Go templates (and Helm's functions) the chart uses: `if`,
// `with` and `range $k, $v :=` blocks with `else`, trim markers, `.` paths, `$` variables,
// string and number literals, and the functions quote, toYaml, nindent, eq and default. Anything else
// panics, so that a template growing past the subset fails here rather than going unchecked.

enum Node {
    Text(String),
    Expr(String),
    If(String, Vec<Node>, Vec<Node>),
    With(String, Vec<Node>, Vec<Node>),
    Range(String, String, String, Vec<Node>),
}

fn tokens(text: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(i) = rest.find("{{") {
        let mut before = rest[..i].to_string();
        if trim_next {
            before = before.trim_start().to_string();
        }
        let j = i + rest[i..].find("}}").expect("an unclosed action");
        let inner = &rest[i + 2..j];
        if inner.starts_with('-') {
            before = before.trim_end().to_string();
        }
        trim_next = inner.ends_with('-');
        out.push((false, before));
        out.push((true, inner.trim_matches(|c: char| c == '-' || c.is_whitespace()).to_string()));
        rest = &rest[j + 2..];
    }
    out.push((false, if trim_next { rest.trim_start() } else { rest }.to_string()));
    out
}

/// Parses nodes up to an `else` or `end` (returned) or the end of the input.
fn parse(toks: &mut std::iter::Peekable<std::vec::IntoIter<(bool, String)>>) -> (Vec<Node>, Option<String>) {
    let mut out = Vec::new();
    while let Some((action, s)) = toks.next() {
        if !action {
            out.push(Node::Text(s));
            continue;
        }
        let (word, arg) = s.split_once(' ').map(|(w, a)| (w, a.trim().to_string())).unwrap_or((s.as_str(), String::new()));
        match word {
            "else" | "end" => return (out, Some(word.to_string())),
            "if" | "with" | "range" => {
                let (body, stop) = parse(toks);
                let (other, stop2) = if stop.as_deref() == Some("else") { parse(toks) } else { (Vec::new(), stop.clone()) };
                assert_eq!(stop2.as_deref(), Some("end"), "`{s}` without its end");
                out.push(match word {
                    "if" => Node::If(arg, body, other),
                    "with" => Node::With(arg, body, other),
                    _ => {
                        let (vars, pipe) = arg.split_once(":=").expect("range $k, $v := ...");
                        let (k, v) = vars.split_once(',').expect("range $k, $v := ...");
                        assert!(other.is_empty(), "range with else");
                        Node::Range(k.trim().to_string(), v.trim().to_string(), pipe.trim().to_string(), body)
                    }
                });
            }
            _ => out.push(Node::Expr(s.clone())),
        }
    }
    (out, None)
}

struct Scope<'a> {
    root: &'a Value,
    dot: Value,
    vars: BTreeMap<String, Value>,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn lookup(mut v: &Value, path: &str, what: &str) -> Value {
    for key in path.split('.').filter(|k| !k.is_empty()) {
        v = v.get(key).unwrap_or_else(|| panic!("{what}: no `{key}`"));
    }
    v.clone()
}

fn term(t: &str, sc: &Scope) -> Value {
    if let Some(s) = t.strip_prefix('"') {
        return Value::String(s.strip_suffix('"').expect("a closed string").to_string());
    }
    if let Ok(n) = t.parse::<i64>() {
        return n.into();
    }
    if let Some(path) = t.strip_prefix("$.") {
        return lookup(sc.root, path, t);
    }
    if t.starts_with('$') {
        return sc.vars.get(t).unwrap_or_else(|| panic!("no variable {t}")).clone();
    }
    assert!(t.starts_with('.'), "unsupported term `{t}`");
    lookup(&sc.dot, &t[1..], t)
}

fn to_yaml(v: &Value, indent: usize) -> String {
    match v {
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| match x {
                Value::Object(m) if !m.is_empty() => format!("{}{k}:\n{}", " ".repeat(indent), to_yaml(x, indent + 2)),
                _ => format!("{}{k}: {}", " ".repeat(indent), to_yaml(x, 0)),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pipeline(p: &str, sc: &Scope) -> Value {
    let mut acc: Option<Value> = None;
    for cmd in p.split('|') {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let mut args: Vec<Value> = words.iter().skip(1).map(|w| term(w, sc)).collect();
        args.extend(acc.take());
        acc = Some(match words[0] {
            "quote" => Value::String(serde_json::to_string(&show(&args[0])).unwrap()),
            "toYaml" => Value::String(to_yaml(&args[0], 0)),
            "nindent" => {
                let n = args[0].as_u64().unwrap() as usize;
                Value::String(show(&args[1]).lines().map(|l| format!("\n{}{l}", " ".repeat(n))).collect())
            }
            "eq" => Value::Bool(args[0] == args[1]),
            "default" => if truthy(&args[1]) { args[1].clone() } else { args[0].clone() },
            w if words.len() == 1 && args.len() <= 1 => args.pop().unwrap_or_else(|| term(w, sc)),
            w => panic!("unsupported function `{w}`"),
        });
    }
    acc.unwrap()
}

fn exec(nodes: &[Node], sc: &mut Scope, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Expr(e) => out.push_str(&show(&pipeline(e, sc))),
            Node::If(p, a, b) => exec(if truthy(&pipeline(p, sc)) { a } else { b }, sc, out),
            Node::With(p, a, b) => {
                let v = pipeline(p, sc);
                if truthy(&v) {
                    let dot = std::mem::replace(&mut sc.dot, v);
                    exec(a, sc, out);
                    sc.dot = dot;
                } else {
                    exec(b, sc, out);
                }
            }
            Node::Range(k, v, p, body) => {
                let items = pipeline(p, sc);
                for (key, val) in items.as_object().expect("range over a map") {
                    sc.vars.insert(k.clone(), Value::String(key.clone()));
                    sc.vars.insert(v.clone(), val.clone());
                    let dot = std::mem::replace(&mut sc.dot, val.clone());
                    exec(body, sc, out);
                    sc.dot = dot;
                }
            }
        }
    }
}

/// Renders every template with values.yaml merged with `overrides` (a JSON merge patch),
/// in the namespace `vestibule`, into objects keyed by (kind, namespace, name).
fn helm_render(overrides: Value) -> BTreeMap<(String, String, String), Value> {
    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => b.into_iter().for_each(|(k, v)| merge(a.entry(k).or_insert(Value::Null), v)),
            (a, b) => *a = b,
        }
    }
    let mut values = yaml(&chart().join("values.yaml"));
    merge(&mut values, overrides);
    let root = serde_json::json!({ "Values": values, "Release": { "Namespace": "vestibule", "Name": "vestibule" }, "Chart": chart_object() });
    let mut out = BTreeMap::new();
    for (name, text) in templates() {
        let (nodes, stop) = parse(&mut tokens(&text).into_iter().peekable());
        assert!(stop.is_none(), "{name}: a stray {stop:?}");
        let mut sc = Scope { root: &root, dot: root.clone(), vars: BTreeMap::new() };
        let mut rendered = String::new();
        exec(&nodes, &mut sc, &mut rendered);
        if name == "NOTES.txt" {
            assert!(rendered.contains("ingressClassName"), "{rendered}");
            continue;
        }
        for doc in rendered.split("\n---\n") {
            let v: Value = serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{name}: {e}\n{rendered}"));
            if v.is_null() {
                continue;
            }
            let s = |x: &Value| x.as_str().unwrap_or("").to_string();
            let key = (s(&v["kind"]), s(&v["metadata"]["namespace"]), s(&v["metadata"]["name"]));
            assert!(out.insert(key.clone(), v).is_none(), "{name}: {key:?} twice");
        }
    }
    out
}

/// Chart.yaml as templates see it (`.Chart.Name`, `.Chart.AppVersion`, ...).
fn chart_object() -> Value {
    let c = yaml(&chart().join("Chart.yaml"));
    serde_json::json!({ "Name": c["name"], "Version": c["version"], "AppVersion": c["appVersion"], "Description": c["description"] })
}

fn static_objects(files: &[&str]) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(f)).unwrap();
        for doc in text.split("\n---\n") {
            let v: Value = serde_saphyr::from_str(doc).unwrap();
            let s = |x: &Value| x.as_str().unwrap_or("").to_string();
            if s(&v["kind"]) != "Namespace" {
                out.insert((s(&v["kind"]), s(&v["metadata"]["namespace"]), s(&v["metadata"]["name"])), v);
            }
        }
    }
    out
}

#[test]
fn default_values_render_the_webhook_overlay() {
    assert_eq!(helm_render(serde_json::json!({})), static_objects(&["static/vestibule.yaml", "static/webhook.yaml"]));
}

#[test]
fn values_change_what_is_rendered() {
    // Without the webhook: the controller overlay's objects, less the webhook flags and port.
    let mut expected = static_objects(&["static/vestibule.yaml"]);
    let key = ("Deployment".to_string(), "vestibule".to_string(), "vestibule-controller".to_string());
    let c = &mut expected.get_mut(&key).unwrap()["spec"]["template"]["spec"]["containers"][0];
    c["args"].as_array_mut().unwrap().retain(|a| !a.as_str().unwrap().contains("webhook"));
    c["ports"].as_array_mut().unwrap().retain(|p| p["name"] != "webhook");
    assert_eq!(helm_render(serde_json::json!({ "controller": { "admissionWebhooks": { "enabled": false } } })), expected);

    let r = helm_render(serde_json::json!({
        "controller": { "replicaCount": 3, "service": { "type": "LoadBalancer" }, "config": { "use-forwarded-headers": "true" },
                        "ingressClassResource": { "name": "edge", "default": true, "controllerValue": "example.com/edge" } },
        "tcp": { "5432": "db/postgres:5432" }, "udp": { "53": "kube-system/kube-dns:53" },
    }));
    let get = |kind: &str, ns: &str, name: &str| r.get(&(kind.to_string(), ns.to_string(), name.to_string())).unwrap_or_else(|| panic!("no {kind} {name}")).clone();
    let d = get("Deployment", "vestibule", "vestibule-controller");
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--ingress-class=edge") && args.contains(&"--controller-class=example.com/edge"), "{args:?}");
    let ports: Vec<(i64, &str)> = c["ports"].as_array().unwrap().iter().map(|p| (p["containerPort"].as_i64().unwrap(), p["protocol"].as_str().unwrap())).collect();
    assert!(ports.contains(&(5432, "TCP")) && ports.contains(&(53, "UDP")), "{ports:?}");
    let s = get("Service", "vestibule", "vestibule-controller");
    assert_eq!(s["spec"]["type"], "LoadBalancer");
    assert_eq!(s["spec"]["externalTrafficPolicy"], "Local");
    let sp: Vec<(i64, &str)> = s["spec"]["ports"].as_array().unwrap().iter().map(|p| (p["port"].as_i64().unwrap(), p["protocol"].as_str().unwrap())).collect();
    assert!(sp.contains(&(5432, "TCP")) && sp.contains(&(53, "UDP")), "{sp:?}");
    let class = get("IngressClass", "", "edge");
    assert_eq!(class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"], "true");
    assert_eq!(class["spec"]["controller"], "example.com/edge");
    assert_eq!(get("ConfigMap", "vestibule", "vestibule-controller")["data"]["use-forwarded-headers"], "true");
    assert_eq!(get("ConfigMap", "vestibule", "vestibule-tcp-services")["data"]["5432"], "db/postgres:5432");
    assert_eq!(get("ConfigMap", "vestibule", "vestibule-udp-services")["data"]["53"], "kube-system/kube-dns:53");
    let off = helm_render(serde_json::json!({ "controller": { "ingressClassResource": { "enabled": false } } }));
    assert!(!off.keys().any(|k| k.0 == "IngressClass"));
}

/// The resources of `rules` with their verbs, as (group, resource, verb, resourceNames).
fn grants(rules: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    let strs = |v: &Value| v.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>()).unwrap_or_default();
    for r in rules.as_array().unwrap() {
        for g in strs(&r["apiGroups"]) {
            for res in strs(&r["resources"]) {
                for v in strs(&r["verbs"]) {
                    out.insert((g.clone(), res.clone(), v, strs(&r["resourceNames"]).join(",")));
                }
            }
        }
    }
    out
}

#[test]
fn scope_renders_the_namespaced_manifest() {
    // Without the webhook and watching the release's namespace: the static namespaced file.
    let scoped = serde_json::json!({ "controller": { "scope": { "enabled": true }, "admissionWebhooks": { "enabled": false } } });
    assert_eq!(helm_render(scoped), static_objects(&["static/vestibule-namespaced.yaml"]));
}

#[test]
fn scope_namespace_moves_the_reads_into_a_role_there() {
    let r = helm_render(serde_json::json!({ "controller": { "scope": { "enabled": true, "namespace": "team-a" } } }));
    let get = |kind: &str, ns: &str, name: &str| r.get(&(kind.to_string(), ns.to_string(), name.to_string())).unwrap_or_else(|| panic!("no {kind} {ns}/{name}: {:?}", r.keys())).clone();
    let args = get("Deployment", "vestibule", "vestibule-controller")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(args.as_array().unwrap().contains(&"--watch-namespace=team-a".into()), "{args}");

    // Cluster-wide, only cluster-scoped kinds, and of the Namespaces only the watched one.
    let cluster_scoped = ["namespaces", "ingressclasses", "gatewayclasses", "gatewayclasses/status", "validatingwebhookconfigurations"];
    for ((kind, _, name), obj) in &r {
        if kind == "ClusterRole" {
            for (g, res, verb, names) in grants(&obj["rules"]) {
                assert!(cluster_scoped.contains(&res.as_str()), "ClusterRole {name} grants {verb} on the namespaced {g}/{res}");
                if res == "namespaces" {
                    assert_eq!(names, "team-a", "ClusterRole {name}: Namespaces only by the watched one's name");
                }
            }
        }
    }
    assert!(grants(&get("ClusterRole", "", "vestibule")["rules"]).contains(&("networking.k8s.io".into(), "ingressclasses".into(), "list".into(), String::new())));

    // The watched namespace's Role, bound to the controller's ServiceAccount.
    let role = grants(&get("Role", "team-a", "vestibule-watch")["rules"]);
    let secrets: BTreeSet<&str> = role.iter().filter(|g| g.1 == "secrets").map(|g| g.2.as_str()).collect();
    assert_eq!(secrets, BTreeSet::from(["get", "watch"]), "Secrets are read by name only");
    for res in ["ingresses", "services", "endpointslices", "httproutes"] {
        assert!(role.iter().any(|g| g.1 == res && g.2 == "watch"), "the Role reads {res}: {role:?}");
    }
    assert!(role.iter().any(|g| g.1 == "ingresses/status" && g.2 == "update"));
    assert!(!role.iter().any(|g| g.1 == "configmaps"), "no ConfigMap of the watched namespace is read");
    let rb = get("RoleBinding", "team-a", "vestibule-watch");
    assert_eq!(rb["roleRef"]["name"], "vestibule-watch");
    assert_eq!(rb["subjects"], serde_json::json!([{ "kind": "ServiceAccount", "name": "vestibule", "namespace": "vestibule" }]));

    // Its own namespace: only its own objects, by name (the EndpointSlices are listed by label).
    let own = grants(&get("Role", "vestibule", "vestibule")["rules"]);
    for (_, res, verb, names) in &own {
        assert!(!names.is_empty() || matches!((res.as_str(), verb.as_str()), ("leases", "create") | ("events", "create") | ("endpointslices", "list")), "{res} {verb} not by name");
    }
    assert!(!r.keys().any(|k| k.1 == "team-a" && k.0 != "Role" && k.0 != "RoleBinding"), "nothing else is installed into the watched namespace");
    let hook = get("ValidatingWebhookConfiguration", "", "vestibule-admission");
    assert_eq!(hook["webhooks"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "team-a");
}
