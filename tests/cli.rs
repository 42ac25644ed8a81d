//! The binary as users run it: the demo's printed commands work as printed, and `serve` answers
//! with the flags ingress-nginx users know.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vestibule"))
}

/// Reads lines from `r` until `pred` matches one (bounded in time), returning all lines read.
fn read_until(r: impl std::io::Read + Send + 'static, pred: impl Fn(&str) -> bool + Send + 'static) -> Vec<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let done = pred(&line);
            lines.push(line);
            if done {
                let _ = tx.send(lines.clone());
            }
        }
        let _ = tx.send(lines);
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the process printed what was expected in time")
}

#[test]
fn demo_prints_commands_that_work_as_printed() {
    let mut child = bin()
        // One worker thread: the single-threaded scheduler.
        .args(["--worker-threads", "1", "demo", "--bind-address", "127.0.0.1", "--http-port", "0", "--https-port", "0", "--healthz-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let lines = read_until(stdout, |l| l.contains("Ctrl-C stops"));
    let commands: Vec<String> = lines.iter().filter_map(|l| l.trim().strip_prefix("curl ").map(|c| format!("curl -sS {c}"))).collect();
    assert_eq!(commands.len(), 5, "{lines:#?}");
    let run = |c: &str| {
        let out = Command::new("bash").arg("-c").arg(c).output().unwrap();
        assert!(out.status.success(), "{c}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coffee = run(&commands[0]);
    assert!(coffee.contains("\"service\": \"coffee-svc\"") && coffee.contains("\"path\": \"/coffee\""), "{coffee}");
    let tea = run(&commands[1]);
    assert!(tea.contains("\"service\": \"tea-svc\""), "{tea}");
    let redirect = run(&commands[2]).to_ascii_lowercase();
    assert!(redirect.starts_with("http/1.1 308"), "{redirect}");
    assert!(redirect.contains("location: https://cafe.example.com:"), "{redirect}");
    let followed = run(&commands[3]);
    assert!(followed.contains("\"service\": \"tea-svc\"") && followed.contains("\"x-forwarded-proto\": \"https\""), "{followed}");
    let unknown = run(&commands[4]);
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
}

#[test]
fn serve_reports_its_addresses_and_turns_healthy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.yaml"), "# nothing yet\n").unwrap();
    let mut child = bin()
        .args(["serve", "--manifests"])
        .arg(dir.path())
        .args(["--bind-address", "127.0.0.1", "--http-port", "0", "--https-port", "0", "--healthz-port", "0", "--default-backend-service", "infra/fallback"])
        // Several worker threads (the multi-threaded scheduler) serve like one.
        .args(["--worker-threads", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Kill(child);
    let lines = read_until(stderr, |l| l.contains("vestibule serving"));
    let line = lines.iter().find(|l| l.contains("vestibule serving")).expect("serving line");
    let field = |name: &str| -> String {
        let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[start..].split_whitespace().next().unwrap().to_string()
    };
    let healthz = field("healthz");
    let http = field("http");
    let started = Instant::now();
    let out = loop {
        let out = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{healthz}/healthz")]).output().unwrap();
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        if code == "200" || started.elapsed() > Duration::from_secs(10) {
            break code;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(out, "200");
    // The default backend Service does not exist: unmatched requests answer 503, not 404.
    let out = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{http}/")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "503");
}

#[test]
fn help_lists_the_familiar_flags() {
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--manifests",
        "--http-port",
        "--https-port",
        "--healthz-port",
        "--ingress-class",
        "--controller-class",
        "--watch-ingress-without-class",
        "--default-backend-service",
        "--default-ssl-certificate",
        "--proxy-connect-timeout",
        "--proxy-read-timeout",
        "--proxy-body-size",
        "--ssl-redirect",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}:\n{help}");
    }
    let bad = bin().args(["serve", "--manifests", "x", "--default-backend-service", "a/b/c"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAMESPACE/NAME"));
}
