//! A TCP proxy on loopback in front of a real server (Redis, NATS), to cut,
//! refuse or stall the connection mid-test without touching the server that
//! other tests share. The client under test runs its real code path: it
//! only sees its connection drop, be refused, or hang.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the server.
    Forward,
    /// Close every connection at once (a server that is down).
    Refuse,
    /// Accept and hold every connection, forwarding nothing (a server that
    /// hangs).
    Hang,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listen on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (mode, watch_mode) = watch::channel(Mode::Forward);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut watch_mode = watch_mode.clone();
                tokio::spawn(async move {
                    let now = *watch_mode.borrow_and_update();
                    match now {
                        Mode::Refuse => drop(client),
                        Mode::Hang => {
                            let _ = watch_mode.changed().await;
                            drop(client);
                        }
                        Mode::Forward => {
                            let Ok(Ok(server)) = tokio::time::timeout(
                                Duration::from_secs(2),
                                TcpStream::connect(target),
                            )
                            .await
                            else {
                                return;
                            };
                            let (mut client, mut server) = (client, server);
                            tokio::select! {
                                _ = copy_bidirectional(&mut client, &mut server) => {}
                                _ = watch_mode.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        Proxy { addr, mode, task }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Change what the proxy does; open connections are cut.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Refuse);
        self.task.abort();
    }
}
