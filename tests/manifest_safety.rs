//! What a running Vestibule makes of what it is handed: signals, the files of its manifests
//! directory, EndpointSlices, and who can reach its operator port. The real binary, real files,
//! real sockets on 127.0.0.1.

mod fakeapi;
#[path = "common/child.rs"]
mod child;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use child::Proc;
use serde_json::Value;
use vestibule::echo::{self, EchoOptions, Identity};

// ---------------------------------------------------------------------------------------------
// Helpers

/// An echo backend on 127.0.0.1 answering as `service`.
struct Echo {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(service: &str) -> Echo {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let identity = Identity { service: service.into(), namespace: "default".into(), pod: format!("{service}-pod") };
    Echo { addr, task: echo::spawn(l, EchoOptions { identity, tls: false }) }
}

/// A Service `svc` (port `http`, 80) and its EndpointSlice `{svc}-abc` with `port` and `addrs`.
fn backend(svc: &str, port: &str, addrs: &[&str]) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: default\nspec:\n  ports:\n  - name: http\n    port: 80\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-abc\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {svc}\n\
         addressType: IPv4\nports:\n- name: http\n  port: {port}\nendpoints:\n- addresses: [{}]\n---\n",
        addrs.join(", ")
    )
}

fn echo_backend(svc: &str, e: &Echo) -> String {
    backend(svc, &e.addr.port().to_string(), &["127.0.0.1"])
}

fn ingress(name: &str, host: &str, svc: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n---\n"
    )
}

/// Replaces a file atomically (write + rename), as editors and volumes do.
fn replace(path: &Path, content: impl AsRef<[u8]>) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A temporary directory with the manifests in `k8s/`.
fn manifests(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let k8s = tmp.path().join("k8s");
    std::fs::create_dir(&k8s).unwrap();
    for (name, text) in files {
        std::fs::write(k8s.join(name), text).unwrap();
    }
    (tmp, k8s)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(0).build().unwrap()
}

/// The status of a GET to `host` through the proxy, and the echo service that answered.
async fn route(http: SocketAddr, host: &str) -> (u16, Option<String>) {
    let resp = client().get(format!("http://{http}/")).header("host", host).send().await.expect("the proxy answers");
    let status = resp.status().as_u16();
    let body: Option<Value> = resp.json().await.ok();
    (status, body.and_then(|v| v["service"].as_str().map(str::to_string)))
}

/// Waits (up to `timeout`) until `host` routes to `expect`; returns how long it took.
async fn wait_route(http: SocketAddr, host: &str, expect: (u16, Option<&str>), timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, svc) = route(http, host).await;
        if status == expect.0 && svc.as_deref() == expect.1 {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{host}: expected {expect:?}, still ({status}, {svc:?}) after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const LONG: Duration = Duration::from_secs(5);

impl Proc {
    /// Peak resident memory, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
        kib / 1024
    }
}

async fn debug_config(healthz: SocketAddr) -> (String, Value) {
    let text = client().get(format!("http://{healthz}/debug/config")).send().await.unwrap().text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (text, v)
}

/// `vestibule check ARGS`: exit code and stdout; fails the test if it runs for 30 s.
fn check(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vestibule")).arg("check").args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vestibule check {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, reader.join().unwrap())
}

// ---------------------------------------------------------------------------------------------
// SIGHUP

/// A change made through a hard link outside the watched directory is invisible to the
/// watcher: only the rescan that SIGHUP asks for can bring it in. The process lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_manifests_again_and_the_process_keeps_serving() {
    let (one, two) = (echo("one").await, echo("two").await);
    let (tmp, k8s) = manifests(&[("backends.yaml", &(echo_backend("one", &one) + &echo_backend("two", &two)))]);
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("app.yaml"), ingress("app", "a.test", "one")).unwrap();
    std::fs::hard_link(outside.join("app.yaml"), k8s.join("app.yaml")).unwrap();
    let mut p = Proc::serve(&k8s, &[]);
    wait_route(p.http, "a.test", (200, Some("one")), LONG).await;

    std::fs::write(outside.join("app.yaml"), ingress("app", "a.test", "two")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(route(p.http, "a.test").await, (200, Some("one".into())), "the watcher saw nothing");

    p.hup();
    wait_route(p.http, "a.test", (200, Some("two")), LONG).await;
    p.expect_log("INFO&SIGHUP: reading the manifests again");
    assert!(p.alive(), "SIGHUP ended the process:\n{}", p.log());

    // Again, with nothing changed: still alive, still healthy, and file changes still go live.
    p.hup();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(p.alive());
    let health = client().get(format!("http://{}/healthz", p.healthz)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    replace(&k8s.join("app.yaml"), ingress("app", "a.test", "one"));
    wait_route(p.http, "a.test", (200, Some("one")), LONG).await;
}

/// The controller has nothing to rescan (the API server pushes changes): SIGHUP is logged and
/// the process goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_leaves_the_controller_running() {
    let api = fakeapi::FakeApi::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(tmp.path(), "token");
    let mut p = controller(&kubeconfig);
    p.hup();
    p.expect_log("INFO&SIGHUP: nothing to reload");
    assert!(p.alive(), "SIGHUP ended the controller:\n{}", p.log());
    let health = client().get(format!("http://{}/healthz", p.healthz)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

fn controller(kubeconfig: &Path) -> Proc {
    let mut args = vec!["controller", "--kubeconfig", kubeconfig.to_str().unwrap(), "--bind-address", "127.0.0.1"];
    args.extend(["--http-port", "0", "--https-port", "0", "--healthz-port", "0", "--access-log", "off"]);
    args.extend(["--watch-ingress-without-class", "--update-status=false"]);
    Proc::start(&args, &[("POD_NAMESPACE", "vestibule")], None, "vestibule controller started")
}

// ---------------------------------------------------------------------------------------------
// Reading manifests: only regular files, with a size limit, as UTF-8

/// A FIFO would block the reader forever and /dev/zero would fill memory: both are refused by
/// name, the rest serves, later edits go live at once, and memory stays small. `check` says
/// the same and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_and_link_to_dev_zero_are_refused_without_blocking_or_filling_memory() {
    let (one, two) = (echo("one").await, echo("two").await);
    let all = echo_backend("one", &one) + &echo_backend("two", &two);
    let (_tmp, k8s) = manifests(&[("backends.yaml", &all), ("app.yaml", &ingress("app", "a.test", "one"))]);
    let made = Command::new("mkfifo").arg(k8s.join("pipe.yaml")).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", k8s.join("zero.yaml")).unwrap();

    let p = Proc::serve(&k8s, &[]);
    wait_route(p.http, "a.test", (200, Some("one")), LONG).await;
    p.expect_log("ERROR&k8s/pipe.yaml: a FIFO; only regular files are read");
    p.expect_log("ERROR&k8s/zero.yaml: a device; only regular files are read");

    replace(&k8s.join("app.yaml"), ingress("app", "a.test", "two"));
    let took = wait_route(p.http, "a.test", (200, Some("two")), LONG).await;
    assert!(took < Duration::from_millis(1500), "the edit took {took:?}");
    let peak = p.peak_rss_mib();
    assert!(peak < 200, "peak memory {peak} MiB");

    let (code, out) = check(&["--manifests", k8s.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: k8s/pipe.yaml: a FIFO") && out.contains("error: k8s/zero.yaml: a device"), "{out}");
}

/// A file over `--max-manifest-size` is named by `check` (exit 1) and not read; under the
/// default limit the same file is fine.
#[test]
fn check_names_a_manifest_over_the_size_limit() {
    let big = format!("{}{}\n", backend("web", "8080", &["10.0.0.1"]), "#".repeat(3000));
    let (_tmp, k8s) = manifests(&[("big.yaml", &big), ("app.yaml", &ingress("app", "a.test", "web"))]);
    let root = k8s.to_str().unwrap();
    let (code, out) = check(&["--manifests", root, "--max-manifest-size", "2k"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l == "error: k8s/big.yaml: larger than --max-manifest-size (2048 bytes); not read"), "{out}");
    let (code, out) = check(&["--manifests", root]);
    assert_eq!(code, 0, "{out}");
}

/// A good file replaced by one that is not UTF-8, or that grew past the limit: the error is
/// logged and shown in /debug/config, naming the file, and the last good objects keep serving
/// until the file is good again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_replacement_is_an_error_and_the_last_good_version_serves() {
    let (one, two) = (echo("one").await, echo("two").await);
    let all = echo_backend("one", &one) + &echo_backend("two", &two);
    let (_tmp, k8s) = manifests(&[("backends.yaml", &all), ("app.yaml", &ingress("app", "a.test", "one"))]);
    let p = Proc::serve(&k8s, &["--max-manifest-size", "4k"]);
    wait_route(p.http, "a.test", (200, Some("one")), LONG).await;

    let mut not_utf8 = ingress("app", "a.test", "two").into_bytes();
    not_utf8.extend_from_slice(b"# caf\xe9\n");
    let oversize = format!("{}{}\n", ingress("app", "a.test", "two"), "#".repeat(5000)).into_bytes();
    for (content, why) in [(not_utf8, "not valid UTF-8"), (oversize, "larger than --max-manifest-size (4096 bytes)")] {
        replace(&k8s.join("app.yaml"), content);
        let line = p.expect_log(&format!("ERROR&k8s/app.yaml: {why}"));
        assert!(line.contains("the last good version of its objects keeps serving"), "{line}");
        let (_, config) = debug_config(p.healthz).await;
        let errors = config["manifestErrors"].as_array().unwrap();
        assert!(errors.len() == 1 && errors[0].as_str().unwrap().starts_with(&format!("k8s/app.yaml: {why}")), "{config:#}");
        assert_eq!(route(p.http, "a.test").await, (200, Some("one".into())));
        p.clear_log();
    }

    replace(&k8s.join("app.yaml"), ingress("app", "a.test", "two"));
    wait_route(p.http, "a.test", (200, Some("two")), LONG).await;
    let (_, config) = debug_config(p.healthz).await;
    assert_eq!(config["manifestErrors"], serde_json::json!([]));
}

/// A new file that is not UTF-8 is an error, in the log and in `check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_that_is_not_utf8_is_reported() {
    let one = echo("one").await;
    let (_tmp, k8s) = manifests(&[("backends.yaml", &echo_backend("one", &one)), ("app.yaml", &ingress("app", "a.test", "one"))]);
    std::fs::write(k8s.join("latin1.yaml"), b"# caf\xe9\n").unwrap();

    let p = Proc::serve(&k8s, &[]);
    wait_route(p.http, "a.test", (200, Some("one")), LONG).await;
    p.expect_log("ERROR&k8s/latin1.yaml: not valid UTF-8 (byte 5); not read");

    let (code, out) = check(&["--manifests", k8s.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l == "error: k8s/latin1.yaml: not valid UTF-8 (byte 5); not read"), "{out}");
}

/// What the file source only warns about (a dangling link, a kind Vestibule does not use) is
/// logged at warn level, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_warnings_are_logged_at_warn_level() {
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
    let (_tmp, k8s) = manifests(&[("app.yaml", &ingress("app", "a.test", "one")), ("deploy.yaml", deployment)]);
    std::os::unix::fs::symlink(k8s.join("nowhere"), k8s.join("gone.yaml")).unwrap();
    let p = Proc::serve(&k8s, &[]);
    p.expect_log("WARN&k8s/gone.yaml: No such file or directory");
    let line = p.expect_log("WARN&k8s/deploy.yaml: document 1: skipping Deployment web");
    let log = p.log();
    assert_eq!(log.matches("skipping Deployment web").count(), 1, "logged once: {line}\n{log}");
}

// ---------------------------------------------------------------------------------------------
// EndpointSlices

/// Port 0 and an address that is not an IP are refused with the slice and field named; an
/// unspecified address (which would reach this host) is refused too. Requests to those
/// Services get 503 (no endpoints), never a 502 from dialling them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_with_undialable_ports_or_addresses_are_reported_and_not_used() {
    let good = echo("good").await;
    let port = good.addr.port().to_string();
    let mut m = echo_backend("good", &good);
    m += &backend("zero", "0", &["127.0.0.1"]);
    m += &backend("noip", &port, &["not-an-ip"]);
    m += &backend("any", &port, &["0.0.0.0"]);
    for svc in ["good", "zero", "noip", "any"] {
        m += &ingress(svc, &format!("{svc}.test"), svc);
    }
    let (_tmp, k8s) = manifests(&[("all.yaml", &m)]);
    let p = Proc::serve(&k8s, &[]);
    wait_route(p.http, "good.test", (200, Some("good")), LONG).await;
    for host in ["zero.test", "noip.test", "any.test"] {
        assert_eq!(route(p.http, host).await, (503, None), "{host}");
    }

    let (code, out) = check(&["--manifests", k8s.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for (slice, field, why) in [
        ("zero-abc", "ports[0].port", "0: must be 1-65535"),
        ("noip-abc", "endpoints[0].addresses[0]", "\"not-an-ip\": must be an IP address"),
        ("any-abc", "endpoints[0].addresses[0]", "\"0.0.0.0\": must be the address of one host"),
    ] {
        let want = format!("EndpointSlice default/{slice}: {field}: {why}");
        assert!(out.lines().any(|l| l.starts_with("error: k8s/all.yaml: document") && l.contains(&want)), "{want} in:\n{out}");
    }
}

/// From the API server a slice is not checked on arrival: the port is left out at compile, and
/// the diagnostic names the slice and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_slice_from_the_api_with_port_zero_is_reported_and_not_used() {
    let api = fakeapi::FakeApi::start().await;
    api.apply_yaml(&backend("web", "0", &["127.0.0.1"]));
    api.apply_yaml(&ingress("web", "web.test", "web"));
    let tmp = tempfile::tempdir().unwrap();
    let p = controller(&api.kubeconfig(tmp.path(), "token"));
    let start = Instant::now();
    let diag = loop {
        let (_, config) = debug_config(p.healthz).await;
        let found = config["diagnostics"].as_array().unwrap().iter().find(|d| d["reason"] == "InvalidEndpoint").cloned();
        if let Some(d) = found {
            break d;
        }
        assert!(start.elapsed() < LONG, "no InvalidEndpoint diagnostic: {config:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((diag["object"].as_str(), diag["field"].as_str()), (Some("EndpointSlice default/web-abc"), Some("ports[0].port")), "{diag:#}");
    assert_eq!(route(p.http, "web.test").await, (503, None));
}

// ---------------------------------------------------------------------------------------------
// Where manifests are shown from

/// /debug/config names files from their `--manifests` directory, never by where that directory
/// is on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_config_shows_no_host_paths() {
    let (tmp, k8s) = manifests(&[("bad.yaml", "apiVersion: v1\nkind: Service\n")]);
    let p = Proc::serve(&k8s, &[]);
    let (text, config) = debug_config(p.healthz).await;
    assert_eq!(config["manifestErrors"].as_array().unwrap().len(), 1, "{config:#}");
    assert!(config["manifestErrors"][0].as_str().unwrap().starts_with("k8s/bad.yaml: document 1"), "{config:#}");
    let host_path = tmp.path().to_str().unwrap();
    assert!(!text.contains(host_path), "{host_path} in {text}");
}

// ---------------------------------------------------------------------------------------------
// The operator port

/// `--admin-address` moves only the operator port (/healthz, /metrics, /debug/*); without it
/// that port is on the bind address, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_address_binds_only_the_operator_port() {
    let (_tmp, k8s) = manifests(&[("app.yaml", &ingress("app", "a.test", "one"))]);
    let p = Proc::serve(&k8s, &["--bind-address", "127.0.0.2", "--admin-address", "127.0.0.1"]);
    assert_eq!((p.http.ip().to_string(), p.healthz.ip().to_string()), ("127.0.0.2".into(), "127.0.0.1".into()));
    let health = client().get(format!("http://{}/healthz", p.healthz)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let p = Proc::serve(&k8s, &[]);
    assert_eq!((p.http.ip().to_string(), p.healthz.ip().to_string()), ("127.0.0.1".into(), "127.0.0.1".into()));
}
