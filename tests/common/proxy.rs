//! A TCP proxy on loopback in front of a real server (PostgreSQL, SurrealDB,
//! Redis, NATS), to make a client's connections fail mid-test without
//! touching the server other tests share: cut the open connections, refuse
//! new ones (a server that is down), hold them without an answer (a server
//! that hangs), or slip bytes into what the server sends. The client under
//! test runs its real code path: it only sees its connection drop, be
//! refused, hang or carry junk.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
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

/// One forwarded connection.
struct Link {
    tasks: Vec<JoinHandle<()>>,
    to_client: mpsc::UnboundedSender<Vec<u8>>,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listen on a free loopback port, forwarding to `server`.
    pub async fn start(server: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let accepted = links.clone();
        let (mode, watch_mode) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut watch_mode = watch_mode.clone();
                let now = *watch_mode.borrow_and_update();
                match now {
                    Mode::Refuse => {
                        drop(client);
                        continue;
                    }
                    Mode::Hang => {
                        tokio::spawn(async move {
                            let _ = watch_mode.changed().await;
                            drop(client);
                        });
                        continue;
                    }
                    Mode::Forward => {}
                }
                let connect = TcpStream::connect(server);
                let Ok(Ok(upstream)) = tokio::time::timeout(Duration::from_secs(2), connect).await
                else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = upstream.into_split();
                let (to_client, mut injected) = mpsc::unbounded_channel::<Vec<u8>>();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        tokio::select! {
                            read = server_read.read(&mut buf) => match read {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if client_write.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            },
                            Some(bytes) = injected.recv() => {
                                if client_write.write_all(&bytes).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                accepted.lock().unwrap().push(Link {
                    tasks: vec![up, down],
                    to_client,
                });
            }
        });
        Proxy {
            addr,
            links,
            mode,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> usize {
        self.links.lock().unwrap().len()
    }

    /// Drop every open connection (the client sees it reset or closed); new
    /// connections are handled as the mode says.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().iter() {
            for task in &link.tasks {
                task.abort();
            }
        }
    }

    /// Change what the proxy does with new connections; open ones are cut
    /// (held ones are let go).
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        self.cut();
    }

    /// Go down: refuse new connections and cut the open ones.
    pub fn go_down(&self) {
        self.set(Mode::Refuse);
    }

    /// Forward new connections again.
    pub fn come_back(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Send `bytes` to the client of the newest connection, between what
    /// the server sends (call it while the server is quiet, so the bytes land
    /// between two of its frames).
    pub fn inject(&self, bytes: Vec<u8>) {
        let links = self.links.lock().unwrap();
        let link = links.last().expect("a connection to inject into");
        link.to_client.send(bytes).expect("the connection is open");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Refuse);
        self.accept.abort();
        self.cut();
    }
}
