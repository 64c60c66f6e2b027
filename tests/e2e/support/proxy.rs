//! A TCP proxy in the test process, between a client and a Redis node: what the network between
//! them does that a killed or frozen process does not. A Redis node that vanished without closing
//! its sockets (a node lost with its host, a pod moved while a Service address stays), where the
//! client's connection looks alive and never answers; a Service address that now leads to
//! another node; connections reset by the network.
//!
//! The proxy runs on a runtime of its own, on its own thread, so that it relays whatever the test
//! does with its own runtime (a blocking client included), and stops with everything it holds
//! when dropped.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
};

/// How long connecting to the target may take before the client's connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`Proxy::freeze`] and [`Proxy::cut`] wait for every connection to have done it.
const APPLY: Duration = Duration::from_secs(5);

/// What a connection does, as the test orders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Relay = 0,
    Frozen = 1,
    Cut = 2,
    /// Not an order: the connection's task has ended.
    Closed = 3,
}

struct Conn {
    order: watch::Sender<Mode>,
    /// What the connection's task does now (the order, once it has seen it).
    applied: AtomicU8,
}

struct Shared {
    target: Mutex<String>,
    accepted: AtomicUsize,
    open: AtomicUsize,
    conns: Mutex<Vec<Arc<Conn>>>,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and relays every connection to `target`
    /// ("127.0.0.1:port"), both ways.
    pub fn start(target: &str) -> Proxy {
        let listener = StdListener::bind("127.0.0.1:0").expect("a free port for the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            target: Mutex::new(target.to_owned()),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("proxy {addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept(listener, serving) => {}
                    }
                });
                // Dropping the runtime drops every connection's task, and with it the sockets.
            })
            .expect("the proxy's thread");
        Proxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// "127.0.0.1:port", where clients connect.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    #[allow(dead_code, reason = "for the tests of the gateway on these topologies")]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// "redis://127.0.0.1:port".
    #[allow(dead_code, reason = "for the tests of the gateway on these topologies")]
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The connections open now stop relaying, both ways, for good, but stay open: the proxy
    /// keeps reading (and dropping) what their clients send, so the kernel keeps acknowledging
    /// it and the client sees a live socket that never answers. Connections accepted afterwards
    /// are relayed as usual. Returns once every such connection has stopped relaying.
    pub fn freeze(&self) {
        self.order(Mode::Frozen);
    }

    /// Closes every open connection, with a reset (RST, `SO_LINGER` 0) to its client and a
    /// plain close (FIN) to the target. Returns once they are closed. New connections are
    /// relayed as usual.
    pub fn cut(&self) {
        self.order(Mode::Cut);
    }

    /// Connections accepted from now on go to `target` ("127.0.0.1:port"); the open ones keep
    /// theirs (a Service whose endpoint changed).
    pub fn retarget(&self, target: &str) {
        *self.shared.target.lock().expect("target") = target.to_owned();
    }

    /// How many connections the proxy accepted since it started.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many of them are open now (relayed or frozen).
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    fn order(&self, mode: Mode) {
        let conns: Vec<Arc<Conn>> = self.shared.conns.lock().expect("conns").clone();
        for conn in &conns {
            conn.order.send_if_modified(|current| {
                let change = *current == Mode::Relay || (mode == Mode::Cut && *current != mode);
                if change {
                    *current = mode;
                }
                change
            });
        }
        // The proxy's own thread applies the order; this waits for it, not for a condition in
        // the system under test, and on loopback it is a matter of microseconds.
        let end = Instant::now() + APPLY;
        while !conns.iter().all(|c| {
            let applied = c.applied.load(Ordering::SeqCst);
            applied == mode as u8 || applied == Mode::Closed as u8
        }) {
            assert!(
                Instant::now() < end,
                "the proxy's connections did not apply {mode:?} within {APPLY:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: let the test's side close some.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        shared.open.fetch_add(1, Ordering::SeqCst);
        let (order, orders) = watch::channel(Mode::Relay);
        let conn = Arc::new(Conn {
            order,
            applied: AtomicU8::new(Mode::Relay as u8),
        });
        {
            let mut conns = shared.conns.lock().expect("conns");
            conns.retain(|c| c.applied.load(Ordering::SeqCst) != Mode::Closed as u8);
            conns.push(Arc::clone(&conn));
        }
        let target = shared.target.lock().expect("target").clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Ok(Ok(upstream)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target)).await
            {
                relay(client, upstream, orders, &conn).await;
            }
            conn.applied.store(Mode::Closed as u8, Ordering::SeqCst);
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Relays both ways while the order is to; once frozen, reads and drops whatever comes from
/// either side (and keeps the client's socket open even if the target closes); once cut, resets
/// the client's socket. Ends when the client closes (or, relaying, when the target does).
async fn relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mut orders: watch::Receiver<Mode>,
    conn: &Conn,
) {
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_upstream = vec![0u8; 16 * 1024];
    let mut upstream_open = true;
    loop {
        let mode = *orders.borrow_and_update();
        conn.applied.store(mode as u8, Ordering::SeqCst);
        if mode == Mode::Cut {
            let _ = client.set_zero_linger();
            return;
        }
        let relaying = mode == Mode::Relay;
        tokio::select! {
            biased;
            changed = orders.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = client.read(&mut from_client) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if relaying => {
                    if upstream.write_all(&from_client[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
            read = upstream.read(&mut from_upstream), if upstream_open => match read {
                Ok(0) | Err(_) if relaying => return,
                Ok(0) | Err(_) => upstream_open = false,
                Ok(n) if relaying => {
                    if client.write_all(&from_upstream[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
        }
    }
}
