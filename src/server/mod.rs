//! The transport under the gRPC services: accepting connections, TLS, who the peer is, and
//! HTTP/2 with the bounds a hostile client meets.
//!
//! The accept path, in order:
//!
//! 1. [`incoming`] accepts TCP connections from a [`TcpListener`](tokio::net::TcpListener) and
//!    sets TCP_NODELAY on each. Errors of one connection are skipped; running out of file
//!    descriptors pauses accepting for a second instead of spinning.
//! 2. Without TLS, the connection is handed to tonic at once. With a [`TlsServer`], each
//!    handshake runs in its own task with the configuration current at accept time, bounded by
//!    [`HANDSHAKE_TIMEOUT`]; at most a fixed number run at once, beyond which accepting waits
//!    (the kernel's backlog holds the rest). A failed or timed-out handshake is dropped.
//! 3. The result is a [`Conn`], whose [`ConnInfo`] (remote address, and the [`PeerIdentity`]
//!    from a verified client certificate) goes into every request's extensions:
//!    `request.extensions().get::<ConnInfo>()`.
//! 4. [`serve`] runs HTTP/2 on each connection in its own task (`http.rs`): the connection cap,
//!    the preface and idle deadlines, the PRIORITY frame budget (`guard.rs`), and the drain.
//!    Every request passes `layers.rs` first: content-type, the bound on the time to a response
//!    from the stream's arrival, and the end of long-lived streams at the drain.
//!
//! The certificates behind [`TlsServer`] are read by [`TlsServer::load`] and replaced while the
//! server runs by [`TlsServer::reload`], which the application's reload watcher
//! ([`crate::reload`], one for the certificates and the configuration file) calls on SIGHUP and
//! when the files change; [`TlsServer::reloader`] is such a watcher for the certificates alone,
//! owned by its caller (who spawns it, and stops it).

mod accept;
mod conn;
mod deadline;
mod guard;
mod http;
mod layers;
mod tls;

pub use self::{
    accept::{HANDSHAKE_TIMEOUT, incoming},
    conn::{Conn, ConnInfo, PeerIdentity},
    http::{Drain, HttpLimits, serve},
    layers::Answers,
    tls::{TlsError, TlsFile, TlsServer, TlsSettings},
};
