//! Two TCP streams joined: bytes copied each way until EOF, each EOF passed on as a half-close
//! (shutdown of the other side's write half), and the whole closed when neither direction has
//! moved a byte for the idle timeout (nginx's stream `proxy_timeout`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const BUF: usize = 64 * 1024;

/// When either direction last moved, in milliseconds since `base`.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn deadline(&self, idle: Duration) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// Copies `from` into `to` until EOF or an error, then shuts `to`'s write half down. Returns
/// the bytes copied.
async fn one_way<R, W>(mut from: R, mut to: W, activity: &Activity, counter: &Counter) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        activity.touch();
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        activity.touch();
        total += n as u64;
        counter.inc_by(n as u64);
    }
    let _ = to.shutdown().await;
    total
}

/// Joins `client` and `upstream` until both directions end or the connection is idle for
/// `idle`. Returns (bytes client → upstream, bytes upstream → client).
pub async fn splice(client: TcpStream, upstream: TcpStream, idle: Duration, up: &Counter, down: &Counter) -> (u64, u64) {
    let activity = Arc::new(Activity { base: Instant::now(), last_ms: AtomicU64::new(0) });
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let copy = async { tokio::join!(one_way(cr, uw, &activity, up), one_way(ur, cw, &activity, down)) };
    let watchdog = async {
        loop {
            let deadline = activity.deadline(idle);
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        r = copy => r,
        _ = watchdog => {
            tracing::debug!(?idle, "stream idle; closing");
            (0, 0)
        }
    }
}
