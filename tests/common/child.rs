//! `vestibule` as a child process, for what an in-process instance cannot take: SIGKILL, SIGHUP,
//! a low file descriptor limit, a log read as it is written. Its log (stderr) is kept for assertions and failure messages.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The addresses its start line gave (`http=`, `healthz=`).
    pub http: SocketAddr,
    pub healthz: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `vestibule ARGS` with `env`, with the open file limit `nofile` when given (set by
    /// the shell that execs it), and waits (bounded) for the log line containing `ready`.
    pub fn start(args: &[&str], env: &[(&str, &str)], nofile: Option<u64>, ready: &str) -> Proc {
        let bin = env!("CARGO_BIN_EXE_vestibule");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(["--worker-threads", "2"])
            .args(args)
            .env("VESTIBULE_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut p = Proc { child, lines, http: ([0, 0, 0, 0], 0).into(), healthz: ([0, 0, 0, 0], 0).into() };
        let line = p.wait_log(ready, Duration::from_secs(30)).unwrap_or_else(|| panic!("no {ready:?} line in time; the log:\n{}", p.log()));
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 2;
            line[start..].split_whitespace().next().unwrap().parse().unwrap()
        };
        (p.http, p.healthz) = (field("http"), field("healthz"));
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Log lines containing `word`.
    pub fn count_log(&self, word: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(word)).count()
    }

    /// `vestibule serve` on ephemeral ports, on 127.0.0.1 unless `more` says otherwise.
    pub fn serve(root: &std::path::Path, more: &[&str]) -> Proc {
        let mut args = vec!["serve", "--manifests", root.to_str().unwrap(), "--http-port", "0", "--https-port", "0", "--healthz-port", "0"];
        if !more.contains(&"--bind-address") {
            args.extend(["--bind-address", "127.0.0.1"]);
        }
        args.extend(["--access-log", "off"]);
        args.extend(more);
        Proc::start(&args, &[], None, "vestibule serving")
    }

    /// The first log line containing every one of `words` (separated by `&`), waiting up to
    /// `timeout` for it.
    pub fn wait_log(&self, words: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| words.split('&').all(|w| l.contains(w))) {
                return Some(l.clone());
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Forgets the lines logged so far, so the next wait sees only new ones.
    pub fn clear_log(&self) {
        self.lines.lock().unwrap().clear();
    }

    pub fn expect_log(&self, words: &str) -> String {
        self.wait_log(words, Duration::from_secs(5)).unwrap_or_else(|| panic!("no log line with {words:?}:\n{}", self.log()))
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn hup(&self) {
        let ok = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn sigkill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}
