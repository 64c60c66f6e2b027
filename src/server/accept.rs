//! The accept loop: TCP connections in, plain or TLS [`Conn`]s out.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use futures_util::Stream;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use super::{Conn, TlsServer, deadline::sleep_until_opt};

/// Long enough for a client across a slow link, short enough that silent connections do not pile
/// up: they hold a socket and a task until then.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress beyond this many stop further accepts (the kernel's backlog then holds
/// new connections) so that a flood of clients that never finish cannot take unbounded memory.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Out of file descriptors (or memory), accepting again at once would spin; the pause gives
/// closing connections time to free some.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Accepts connections on `listener`; with `tls`, performs each handshake in its own task,
/// bounded by [`HANDSHAKE_TIMEOUT`], so one slow client never holds up others. A failed handshake
/// is logged at debug and dropped. The stream never ends and never yields an error: accept errors
/// are logged and retried (after a pause when out of file descriptors), since tonic would only
/// log them. Dropping the stream closes the listener and abandons handshakes in progress.
///
/// TCP_NODELAY is set on every connection: tonic's `Server::tcp_nodelay` does not apply to a
/// stream of connections made elsewhere.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
) -> impl Stream<Item = Result<Conn, io::Error>> + Send + 'static {
    incoming_with_timeout(listener, tls, HANDSHAKE_TIMEOUT)
}

fn incoming_with_timeout(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    handshake_timeout: Duration,
) -> impl Stream<Item = Result<Conn, io::Error>> + Send + 'static {
    let acceptor = Acceptor {
        listener,
        tls,
        handshake_timeout,
        handshakes: JoinSet::new(),
        paused_until: None,
    };
    futures_util::stream::unfold(acceptor, |mut acceptor| async move {
        let conn = acceptor.next().await;
        Some((Ok(conn), acceptor))
    })
}

struct Acceptor {
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    handshake_timeout: Duration,
    handshakes: JoinSet<Option<Conn>>,
    paused_until: Option<Instant>,
}

impl Acceptor {
    async fn next(&mut self) -> Conn {
        loop {
            let accepting =
                self.paused_until.is_none() && self.handshakes.len() < MAX_PENDING_HANDSHAKES;
            let resume_at = self.paused_until;
            tokio::select! {
                accepted = self.listener.accept(), if accepting => match accepted {
                    Ok((tcp, remote)) => {
                        if let Err(error) = tcp.set_nodelay(true) {
                            tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
                        }
                        match &self.tls {
                            None => return Conn(Either::Left(tcp)),
                            Some(tls) => self.spawn_handshake(tls.acceptor(), tcp, remote),
                        }
                    }
                    Err(error) if is_per_connection(&error) => {
                        tracing::debug!(%error, "accept failed for one connection");
                    }
                    Err(error) => {
                        tracing::warn!(%error, pause = ?ACCEPT_ERROR_PAUSE, "accept failed; pausing");
                        self.paused_until = Some(Instant::now() + ACCEPT_ERROR_PAUSE);
                    }
                },
                Some(joined) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match joined {
                        Ok(Some(conn)) => return conn,
                        Ok(None) => {}
                        Err(error) => tracing::debug!(%error, "TLS handshake task ended abnormally"),
                    }
                }
                () = sleep_until_opt(resume_at), if resume_at.is_some() => {
                    self.paused_until = None;
                }
                // Unreachable with the guards above (a full handshake set is non-empty); present
                // so that select! can never panic for lack of an enabled branch.
                else => self.paused_until = None,
            }
        }
    }

    fn spawn_handshake(&mut self, acceptor: TlsAcceptor, tcp: TcpStream, remote: SocketAddr) {
        let timeout = self.handshake_timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some(Conn(Either::Right(Box::new(tls)))),
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%remote, ?timeout, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

/// Errors that concern only the connection being accepted; anything else (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) is the process or system running short, where retrying at once would spin.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures_util::StreamExt as _;
    use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
    use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
    use tokio::io::AsyncReadExt as _;
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::{
        server::{PeerIdentity, TlsSettings},
        testing::certs::{CLIENT_DNS, Ca, Leaf, SPIFFE_ID},
    };

    /// A TLS client that completes its handshake, then keeps the connection open until the
    /// server side has been inspected and closes it. Returns the negotiated ALPN protocol.
    async fn hold_open(connector: TlsConnector, addr: SocketAddr) -> Option<Vec<u8>> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut byte = [0u8; 1];
        let _ = tls.read(&mut byte).await;
        alpn
    }

    fn client_config(ca: &Ca, identity: Option<&Leaf>) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).expect("root");
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![leaf.der.clone()],
                    PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key"),
                )
                .expect("client auth"),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    async fn tls_server(
        dir: &Path,
        client_ca: Option<&Ca>,
        handshake_timeout: Duration,
    ) -> (
        Ca,
        SocketAddr,
        impl Stream<Item = Result<Conn, io::Error>> + Send + 'static,
    ) {
        let ca = Ca::new("server CA");
        let leaf = ca.server_leaf("server");
        std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).expect("write");
        std::fs::write(dir.join("key.pem"), &leaf.key_pem).expect("write");
        let client_ca_file = client_ca.map(|client_ca| {
            let path = dir.join("client-ca.pem");
            std::fs::write(&path, &client_ca.pem).expect("write");
            path
        });
        let server = TlsServer::load(TlsSettings {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            client_ca_file,
        })
        .expect("load");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stream = incoming_with_timeout(listener, Some(server), handshake_timeout);
        (ca, addr, stream)
    }

    #[tokio::test]
    async fn tls_connect_info_carries_the_verified_client_sans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client_ca = Ca::new("client CA");
        let (server_ca, addr, stream) =
            tls_server(dir.path(), Some(&client_ca), HANDSHAKE_TIMEOUT).await;
        let mut stream = Box::pin(stream);
        let client_cert = client_ca.client_leaf();
        let connector = TlsConnector::from(client_config(&server_ca, Some(&client_cert)));
        let client = tokio::spawn(hold_open(connector, addr));
        let conn = stream.next().await.expect("a connection").expect("ok");
        let info = conn.connect_info();
        assert!(matches!(conn.0, Either::Right(_)));
        assert_eq!(
            info.peer,
            Some(PeerIdentity {
                uri_sans: vec![SPIFFE_ID.to_owned()],
                dns_sans: vec![CLIENT_DNS.to_owned()],
            })
        );
        assert!(info.remote_addr.is_some_and(|a| a.ip().is_loopback()));
        drop(conn);
        client.await.expect("client");
    }

    #[tokio::test]
    async fn tls_without_client_auth_has_no_peer_and_plain_has_no_peer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server_ca, addr, stream) = tls_server(dir.path(), None, HANDSHAKE_TIMEOUT).await;
        let mut stream = Box::pin(stream);
        let connector = TlsConnector::from(client_config(&server_ca, None));
        let client = tokio::spawn(hold_open(connector, addr));
        let conn = stream.next().await.expect("a connection").expect("ok");
        let info = conn.connect_info();
        assert_eq!(info.peer, None);
        assert!(info.remote_addr.is_some());
        drop(conn);
        assert_eq!(client.await.expect("client"), Some(b"h2".to_vec()));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let plain_addr = listener.local_addr().expect("addr");
        let mut plain = Box::pin(incoming(listener, None));
        let _client = TcpStream::connect(plain_addr).await.expect("connect");
        let conn = plain.next().await.expect("a connection").expect("ok");
        let Either::Left(tcp) = &conn.0 else {
            panic!("a TLS connection without TLS: {conn:?}");
        };
        assert!(tcp.nodelay().expect("nodelay"), "TCP_NODELAY is set");
        let info = conn.connect_info();
        assert_eq!(info.peer, None);
        assert!(info.remote_addr.is_some());
    }

    #[tokio::test]
    async fn tls_silent_client_is_dropped_after_the_handshake_timeout_without_blocking_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server_ca, addr, stream) =
            tls_server(dir.path(), None, Duration::from_millis(300)).await;
        let mut stream = Box::pin(stream);
        let mut silent = TcpStream::connect(addr).await.expect("connect");

        // While the silent client holds its handshake, another one completes.
        let connector = TlsConnector::from(client_config(&server_ca, None));
        let client = tokio::spawn(hold_open(connector, addr));
        let conn = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the second client is not held up")
            .expect("a connection")
            .expect("ok");
        drop(conn);
        client.await.expect("client");

        // The stream has to be polled for the timed-out handshake task to be reaped, as tonic
        // does; the silent client then sees the server close its socket.
        let poller = tokio::spawn(async move { while stream.next().await.is_some() {} });
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte))
            .await
            .expect("closed within the timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        poller.abort();
    }

    #[test]
    fn only_errors_of_one_connection_are_retried_at_once() {
        for kind in [io::ErrorKind::ConnectionAborted, io::ErrorKind::Interrupted] {
            assert!(is_per_connection(&io::Error::from(kind)), "{kind:?}");
        }
        // EMFILE: the process is out of file descriptors.
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)));
        assert!(!is_per_connection(&io::Error::from(
            io::ErrorKind::OutOfMemory
        )));
    }
}
