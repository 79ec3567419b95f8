//! A TCP forwarder a test puts between a client and a real server, to make a
//! real driver's connections fail: cut the open connections, refuse new
//! ones for a while (the server "goes down"), or slip bytes into what the
//! server sends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One forwarded connection.
struct Link {
    tasks: Vec<JoinHandle<()>>,
    to_client: mpsc::UnboundedSender<Vec<u8>>,
}

/// Forwards every connection made to [`Proxy::addr`] to the server.
pub struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    down: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listen on a free local port, forwarding to `server`.
    pub async fn start(server: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let accepted = links.clone();
        let down = Arc::new(AtomicBool::new(false));
        let refusing = down.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    // Down: accept and close at once.
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(server).await else {
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
            down,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections made so far.
    pub fn connections(&self) -> usize {
        self.links.lock().unwrap().len()
    }

    /// Drop every open connection (the client sees it reset or closed); new
    /// connections are still forwarded.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().iter() {
            for task in &link.tasks {
                task.abort();
            }
        }
    }

    /// Go down: refuse new connections (accept and close each) and cut the
    /// open ones.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Forward new connections again.
    pub fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
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
        self.accept.abort();
        self.cut();
    }
}
