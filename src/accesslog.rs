//! Access logs: one line per request on stdout, in ingress-nginx's default (`upstreaminfo`)
//! field order, or as JSON with the same fields.
//!
//! The request path never blocks on logging: entries go through a bounded queue to a writer
//! thread; when the queue is full the entry is dropped and counted.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Everything one log line says.
#[derive(Debug, Clone)]
pub struct Entry {
    pub remote_addr: IpAddr,
    pub remote_user: String,
    pub time: SystemTime,
    pub method: String,
    pub uri: String,
    pub protocol: &'static str,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: String,
    pub user_agent: String,
    pub request_length: u64,
    pub request_time: Duration,
    pub upstream_name: String,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_response_length: Option<u64>,
    pub upstream_response_time: Option<Duration>,
    pub upstream_status: Option<u16>,
    pub request_id: String,
    pub host: String,
}

fn dash<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// `22/Nov/2026:04:35:38 +0000`, nginx's `$time_local` in UTC.
pub fn time_local(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, m, d) = crate::x509::civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000", MONTHS[(m - 1) as usize], s / 3600, (s / 60) % 60, s % 60)
}

fn secs3(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Escapes a value for the text format the way nginx does (`\xHH` for quotes, backslashes and
/// non-printable bytes), so that a client cannot forge log lines.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

impl Entry {
    /// The text line: `$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time
    /// [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr
    /// $upstream_response_length $upstream_response_time $upstream_status $req_id`.
    pub fn text(&self) -> String {
        format!(
            "{} - {} [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} {} [{}] [] {} {} {} {} {}",
            self.remote_addr,
            or_dash(&escape(&self.remote_user)),
            time_local(self.time),
            escape(&self.method),
            escape(&self.uri),
            self.protocol,
            self.status,
            self.body_bytes_sent,
            or_dash(&escape(&self.referer)),
            or_dash(&escape(&self.user_agent)),
            self.request_length,
            secs3(self.request_time),
            escape(&self.upstream_name),
            dash(&self.upstream_addr),
            dash(&self.upstream_response_length),
            self.upstream_response_time.map(secs3).unwrap_or_else(|| "-".into()),
            dash(&self.upstream_status),
            escape(&self.request_id),
        )
    }

    pub fn json(&self) -> String {
        let v = serde_json::json!({
            "remote_addr": self.remote_addr.to_string(),
            "remote_user": self.remote_user,
            "time_local": time_local(self.time),
            "request": format!("{} {} {}", self.method, self.uri, self.protocol),
            "method": self.method,
            "uri": self.uri,
            "protocol": self.protocol,
            "host": self.host,
            "status": self.status,
            "body_bytes_sent": self.body_bytes_sent,
            "http_referer": self.referer,
            "http_user_agent": self.user_agent,
            "request_length": self.request_length,
            "request_time": self.request_time.as_secs_f64(),
            "proxy_upstream_name": self.upstream_name,
            "proxy_alternative_upstream_name": "",
            "upstream_addr": self.upstream_addr.map(|a| a.to_string()),
            "upstream_response_length": self.upstream_response_length,
            "upstream_response_time": self.upstream_response_time.map(|d| d.as_secs_f64()),
            "upstream_status": self.upstream_status,
            "req_id": self.request_id,
        });
        v.to_string()
    }
}

/// Where access log entries go; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Entry>>,
    metrics: Arc<Metrics>,
}

const QUEUE: usize = 16 * 1024;

impl AccessLog {
    /// Logging switched off.
    pub fn off(metrics: Arc<Metrics>) -> Self {
        AccessLog { tx: None, metrics }
    }

    /// Lines go to `out` from a writer thread.
    pub fn to_writer(format: Format, out: Box<dyn Write + Send>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer(rx, format, out)).expect("spawn the access log writer");
        AccessLog { tx: Some(tx), metrics }
    }

    pub fn stdout(format: Format, metrics: Arc<Metrics>) -> Self {
        Self::to_writer(format, Box::new(std::io::stdout()), metrics)
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an entry; never waits.
    pub fn log(&self, entry: Entry) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(entry) {
                self.metrics.access_log_dropped.inc();
            }
        }
    }
}

fn writer(rx: Receiver<Entry>, format: Format, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(e) = next {
            let line = match format {
                Format::Text => e.text(),
                Format::Json => e.json(),
            };
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
            next = rx.try_recv().ok();
        }
        // The queue is empty: flush so lines appear promptly.
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_like_nginx() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(time_local(t), "18/Nov/2026:11:06:40 +0000");
    }

    #[test]
    fn escapes_quotes_and_controls() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\x22b\\x5Cc\\x0Ad");
    }

    /// A sink that blocks every write until it is let go.
    struct Stalled(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry(i: usize) -> Entry {
        Entry {
            remote_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            remote_user: String::new(),
            time: SystemTime::now(),
            method: "GET".into(),
            uri: format!("/{i}"),
            protocol: "HTTP/1.1",
            status: 200,
            body_bytes_sent: 0,
            referer: String::new(),
            user_agent: String::new(),
            request_length: 0,
            request_time: Duration::ZERO,
            upstream_name: String::new(),
            upstream_addr: None,
            upstream_response_length: None,
            upstream_response_time: None,
            upstream_status: None,
            request_id: String::new(),
            host: String::new(),
        }
    }

    #[test]
    fn a_stalled_writer_costs_dropped_lines_not_memory_or_waiting() {
        let gate = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let metrics = Arc::new(Metrics::default());
        let log = AccessLog::to_writer(Format::Text, Box::new(Stalled(gate.clone())), metrics.clone());
        let extra = 5_000;
        let started = std::time::Instant::now();
        for i in 0..QUEUE + extra {
            log.log(entry(i));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "logging never waits for the writer");
        // The writer takes lines until its 64 KiB buffer is full (lines are over 64 bytes) and then
        // blocks; the queue fills and what does not fit is dropped and counted.
        let dropped = metrics.access_log_dropped.get() as usize;
        assert!(dropped >= extra - 64 * 1024 / 64 && dropped <= extra, "dropped {dropped}");
        assert!(dropped > 0);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }
}
