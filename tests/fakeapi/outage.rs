//! A gate in front of the fake API server, for outages the server itself cannot play: the
//! network path that hangs (connections accepted, nothing answered, open ones frozen), and the
//! server that is down (the port refuses, every connection is cut), each for as long as the
//! test says, then back on the same address.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::AbortHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Pass,
    /// New connections are accepted and never answered; open ones carry nothing.
    Hang,
    /// The port refuses connections; open ones are cut.
    Down,
}

pub struct Gate {
    pub addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: Mutex<Option<AbortHandle>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Gate {
    /// A gate on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let gate = Gate { addr, target, mode, accept: Mutex::new(None), conns: Arc::default() };
        gate.serve(listener);
        gate
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (target, mode, conns) = (self.target, self.mode.clone(), self.conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let mode = mode.subscribe();
                let h = tokio::spawn(forward(client, target, mode));
                let mut c = conns.lock().unwrap();
                c.retain(|h| !h.is_finished());
                c.push(h.abort_handle());
            }
        });
        *self.accept.lock().unwrap() = Some(task.abort_handle());
    }

    /// Changes the mode; `Down` closes the port, and leaving it opens the port again.
    pub async fn set(&self, to: Mode) {
        let from = *self.mode.borrow();
        self.mode.send_replace(to);
        if to == Mode::Down && from != Mode::Down {
            if let Some(a) = self.accept.lock().unwrap().take() {
                a.abort();
            }
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
        if from == Mode::Down && to != Mode::Down {
            let mut tries = 0;
            let listener = loop {
                match tokio::net::TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("rebinding {}: {e}", self.addr),
                }
            };
            self.serve(listener);
        }
    }

    /// A kubeconfig that reaches the fake API server through this gate.
    pub fn kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join(format!("kubeconfig-gate-{token}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: {token}\n    namespace: vestibule\ncurrent-context: fake\nusers:\n- name: {token}\n  user:\n    token: {token}\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Waits while the gate hangs; false once it is down.
async fn passable(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Pass => return true,
            Mode::Down => return false,
            Mode::Hang => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

async fn forward(client: tokio::net::TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // A connection made while hanging is never answered, even once the gate passes again: the
    // client has to give up on it, as on a black-holed connection.
    if *mode.borrow() != Mode::Pass {
        let _ = mode.wait_for(|m| *m == Mode::Down).await;
        return;
    }
    let Ok(server) = tokio::net::TcpStream::connect(target).await else { return };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = copy(cr, sw, mode.clone()) => {}
        _ = copy(sr, cw, mode) => {}
    }
}

async fn copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !passable(&mut mode).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // What was read while the gate hangs is held until it passes.
        if !passable(&mut mode).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
