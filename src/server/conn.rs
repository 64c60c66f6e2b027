//! An accepted connection, plain or TLS, and what it tells about the peer.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use rustls_pki_types::CertificateDer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tonic::transport::server::Connected;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

/// Who is on the other end of a connection, as far as the transport can tell.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The TCP peer: behind a proxy or sidecar, that is the proxy.
    pub remote_addr: Option<SocketAddr>,
    /// Present when the client presented a certificate that verified against `client_ca_file`.
    pub peer: Option<PeerIdentity>,
}

/// The names in a verified client certificate's subjectAltName extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// e.g. `spiffe://cluster.local/ns/billing/sa/api`
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
}

impl PeerIdentity {
    /// `None` when the certificate cannot be parsed; a certificate without the extension has an
    /// identity with no names.
    fn from_certificate(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut identity = Self {
            uri_sans: Vec::new(),
            dns_sans: Vec::new(),
        };
        let san = cert.subject_alternative_name().ok()?;
        for name in san.iter().flat_map(|san| &san.value.general_names) {
            match name {
                GeneralName::URI(uri) => identity.uri_sans.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => identity.dns_sans.push((*dns).to_owned()),
                _ => {}
            }
        }
        Some(identity)
    }
}

/// A plain or TLS connection, ready for tonic's `serve_with_incoming_shutdown`.
///
/// A newtype so that the connection can say who is on the other end; the I/O is `Either`'s. The TLS side is boxed: its session state is kilobytes, which
/// plain connections need not carry.
pub struct Conn(pub(super) Either<TcpStream, Box<TlsStream<TcpStream>>>);

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, tcp) = match &self.0 {
            Either::Left(tcp) => ("Plain", tcp),
            Either::Right(tls) => ("Tls", tls.get_ref().0),
        };
        f.debug_tuple(kind).field(&tcp.peer_addr().ok()).finish()
    }
}

impl Conn {
    /// Who is on the other end, as the transport can tell.
    pub fn connect_info(&self) -> ConnInfo {
        match &self.0 {
            Either::Left(tcp) => ConnInfo {
                remote_addr: tcp.peer_addr().ok(),
                peer: None,
            },
            Either::Right(tls) => {
                let (tcp, session) = tls.get_ref();
                let remote_addr = tcp.peer_addr().ok();
                // rustls only asks for a client certificate when a verifier is configured and
                // only completes the handshake once it verified, so a certificate here is trusted.
                let peer = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| {
                        let identity = PeerIdentity::from_certificate(leaf);
                        if identity.is_none() {
                            tracing::debug!(
                                ?remote_addr,
                                "verified client certificate has an unreadable subjectAltName"
                            );
                        }
                        identity
                    });
                ConnInfo { remote_addr, peer }
            }
        }
    }
}

/// So that the accepted connections can also be served by tonic's own server.
impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        Conn::connect_info(self)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::certs::Ca;

    #[test]
    fn tls_peer_identity_of_a_certificate_without_sans_is_empty() {
        let leaf = Ca::new("CA").issue("no names", Vec::new());
        assert_eq!(
            PeerIdentity::from_certificate(&leaf.der),
            Some(PeerIdentity {
                uri_sans: Vec::new(),
                dns_sans: Vec::new()
            })
        );
        assert_eq!(
            PeerIdentity::from_certificate(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }
}
