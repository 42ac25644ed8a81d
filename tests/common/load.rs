//! Client load for the fault tests: a few loops, each with its own keep-alive client, sending
//! requests through the proxy one after another and counting every answer. A request fails when
//! it gets no answer, or an answer its check refuses; the failures are kept for the report.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one request came to: Ok, or why it failed.
pub type Outcome = Result<(), String>;

/// The request one loop sends, given its client and its loop number and request number.
pub type Send = Arc<dyn Fn(reqwest::Client, usize, u64) -> Pin<Box<dyn Future<Output = Outcome> + std::marker::Send>> + std::marker::Send + Sync>;

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<(Duration, usize, String)>>,
}

/// Running loops; `stop` ends them and gives the totals.
pub struct Load {
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

/// Totals of a load run.
#[derive(Debug, Clone)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    /// The first failures: when (since the start), which loop, and why.
    pub failures: Vec<(Duration, usize, String)>,
    pub elapsed: Duration,
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }
}

/// A keep-alive client that does not follow redirects and uses no proxy from the environment.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().timeout(timeout).pool_max_idle_per_host(1).build().unwrap()
}

impl Load {
    /// Starts `loops` loops sending `send`, each pausing `pause` between requests.
    pub fn start(loops: usize, pause: Duration, timeout: Duration, send: Send) -> Load {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks = (0..loops)
            .map(|i| {
                let (counters, stop, send) = (counters.clone(), stop.clone(), send.clone());
                let client = client(timeout);
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        match send(client.clone(), i, n).await {
                            Ok(()) => drop(counters.ok.fetch_add(1, Ordering::Relaxed)),
                            Err(why) => {
                                counters.failed.fetch_add(1, Ordering::Relaxed);
                                let mut f = counters.failures.lock().unwrap();
                                if f.len() < 20 {
                                    f.push((started.elapsed(), i, why));
                                }
                            }
                        }
                        n += 1;
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load { counters, stop, tasks, started }
    }

    /// Loops that GET `http://ADDR/PATH` with `Host: host` and accept only `expect` (status, and
    /// the echo service names one of `services`, when not empty).
    pub fn get(addr: SocketAddr, host: &'static str, path: &'static str, loops: usize, pause: Duration, services: &'static [&'static str]) -> Load {
        let send: Send = Arc::new(move |client: reqwest::Client, _, _| Box::pin(get_echo(client, addr, host, path, services)));
        Load::start(loops, pause, Duration::from_secs(5), send)
    }

    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Ends the loops (each finishes the request it is in) and gives the totals.
    pub async fn stop(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let c = &self.counters;
        Stats { ok: c.ok.load(Ordering::Relaxed), failed: c.failed.load(Ordering::Relaxed), failures: c.failures.lock().unwrap().clone(), elapsed: self.started.elapsed() }
    }
}

/// One GET through the proxy that must be a 200 from one of `services` (any echo when empty).
pub async fn get_echo(client: reqwest::Client, addr: SocketAddr, host: &str, path: &str, services: &[&str]) -> Outcome {
    let resp = client.get(format!("http://{addr}{path}")).header("host", host).send().await.map_err(|e| format!("{host}{path}: {e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("{host}{path}: body: {e:?}"))?;
    if status != 200 {
        return Err(format!("{host}{path}: status {status}"));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| format!("{host}{path}: not an echo answer: {text:.80}"))?;
    let svc = v["service"].as_str().unwrap_or("");
    if !services.is_empty() && !services.contains(&svc) {
        return Err(format!("{host}{path}: answered by {svc:?}, expected one of {services:?}"));
    }
    Ok(())
}

/// User plus system CPU time a process has used so far (from /proc/PID/stat).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the name and state.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}
