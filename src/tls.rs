//! Server TLS and mutual TLS, with certificates that can be replaced while the server runs.
//!
//! Mesh CAs rotate workload certificates (and sometimes the CA itself) every few hours, so the
//! whole rustls [`ServerConfig`] is rebuilt from the files on reload and swapped in atomically:
//! every new handshake uses the newest configuration, connections already open keep theirs.
//!
//! [`incoming`] turns a [`TcpListener`] into the stream of connections that tonic's
//! `serve_with_incoming_shutdown` takes. Each connection carries a [`ConnInfo`], which tonic puts
//! into every request's extensions: `request.extensions().get::<ConnInfo>()`.

use std::{
    fmt,
    fs::File,
    io::{self, IoSlice, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, Weak},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use futures_util::Stream;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    server::WebPkiClientVerifier,
    sign::{CertifiedKey, SingleCertAndKey},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer};

/// Long enough for a client across a slow link, short enough that silent connections do not pile
/// up: they hold a socket and a task until then.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress beyond this many stop further accepts (the kernel's backlog then holds
/// new connections) so that a flood of clients that never finish cannot take unbounded memory.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Out of file descriptors (or memory), accepting again at once would spin; the pause gives
/// closing connections time to free some.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// PEM files of certificates and keys are kilobytes; a CA bundle may be a few hundred. Anything
/// far larger is a wrong path (a log, a disk image) and is refused before it fills memory.
const MAX_PEM_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// gRPC runs over HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// Where the server's certificate, key and (for mutual TLS) client CA are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, RSA or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate that chains to one of the CAs in this PEM
    /// file (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

impl TlsSettings {
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert_file.clone(), self.key_file.clone()];
        files.extend(self.client_ca_file.clone());
        files
    }
}

/// The server's TLS state; certificates can be re-read at run time.
pub struct TlsServer {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    config: ArcSwap<ServerConfig>,
    /// The files' stamps taken just before the current configuration was read, so that a change
    /// made before the reloader starts is still noticed. Held through each reload: two reloads
    /// racing (SIGHUP and a file change) could otherwise store an older read after a newer one.
    loaded: Mutex<Vec<Option<FileStamp>>>,
}

// By hand, so that no future field holding key material can end up in a log.
impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads and checks the files; the error names the file and what is wrong (never key bytes).
    pub fn load(settings: TlsSettings) -> Result<Arc<Self>, String> {
        // Explicit provider: the process-wide default is unset when more than one is compiled in.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let loaded = stamps_now(&settings.files());
        let (config, leaf) = build_config(&settings, &provider)?;
        tracing::info!(
            cert_file = %settings.cert_file.display(),
            subject = %leaf.subject,
            serial = %leaf.serial,
            not_after = %leaf.not_after,
            client_auth = settings.client_ca_file.is_some(),
            "TLS certificate loaded"
        );
        leaf.warn_if_not_valid_now(&settings.cert_file);
        Ok(Arc::new(Self {
            settings,
            provider,
            config: ArcSwap::from_pointee(config),
            loaded: Mutex::new(loaded),
        }))
    }

    /// Re-reads the files and swaps them in for new handshakes; on error the old ones stay (and a
    /// warning is logged). Connections already open keep the configuration they started with.
    /// Reads files synchronously: from async code, call it through `spawn_blocking`.
    pub fn reload(&self) -> Result<(), String> {
        // The stamps are replaced whole, so a panic elsewhere while holding the lock cannot have
        // left them half-written.
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let stamps = stamps_now(&self.settings.files());
        match build_config(&self.settings, &self.provider) {
            Ok((config, leaf)) => {
                self.config.store(Arc::new(config));
                *loaded = stamps;
                tracing::info!(
                    cert_file = %self.settings.cert_file.display(),
                    subject = %leaf.subject,
                    serial = %leaf.serial,
                    not_after = %leaf.not_after,
                    "TLS certificates reloaded"
                );
                leaf.warn_if_not_valid_now(&self.settings.cert_file);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "TLS reload failed; keeping the previous certificates");
                Err(error)
            }
        }
    }

    /// Spawns a task that reloads on SIGHUP and when any of the files' modification time, size or
    /// inode changes, checked every `poll` (`Duration::ZERO`: on SIGHUP only). The task holds no
    /// strong reference: it ends once the last `Arc<TlsServer>` is dropped, or when aborted.
    /// Must be called within a Tokio runtime. Once it runs, SIGHUP no longer ends the process.
    pub fn spawn_reloader(self: &Arc<Self>, poll: Duration) -> JoinHandle<()> {
        let seen = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let server = Arc::downgrade(self);
        let files = self.settings.files();
        tokio::spawn(watch_and_reload(server, files, seen, poll))
    }

    /// The files this server reads.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// What is logged about the server's own certificate: all of it public.
struct LeafSummary {
    subject: String,
    serial: String,
    not_after: String,
    valid_now: bool,
}

impl LeafSummary {
    fn warn_if_not_valid_now(&self, cert_file: &Path) {
        if !self.valid_now {
            tracing::warn!(
                cert_file = %cert_file.display(),
                not_after = %self.not_after,
                "the TLS certificate is expired or not yet valid; clients will refuse it"
            );
        }
    }
}

fn build_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<(ServerConfig, LeafSummary), String> {
    let cert_file = &settings.cert_file;
    let key_file = &settings.key_file;
    let chain = read_certificates(cert_file, "TLS certificate file")?;
    let leaf = chain
        .first()
        .map(|der| summarize_leaf(der, cert_file))
        .transpose()?
        .ok_or_else(|| {
            format!(
                "TLS certificate file {}: no certificate found",
                cert_file.display()
            )
        })?;
    let key = read_private_key(key_file)?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "TLS private key file {}: unsupported or invalid private key: {e}",
            key_file.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; the handshake would still work.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "TLS private key file {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "TLS certificate file {}: unusable certificate: {e}",
                cert_file.display()
            ));
        }
    }

    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: no usable protocol version: {e}"))?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let roots = read_client_roots(ca_file)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .map_err(|e| {
                        format!("TLS client CA file {}: unusable: {e}", ca_file.display())
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((config, leaf))
}

fn read_capped(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(format!(
            "{what} {}: larger than {} MiB, not a PEM file",
            path.display(),
            MAX_PEM_FILE_BYTES / (1024 * 1024)
        ));
    }
    Ok(bytes)
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_capped(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: malformed PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM CERTIFICATE found",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_capped(path, "TLS private key file")?;
    // The PEM parser's own messages can quote lines of the file, so only the kind of failure
    // is reported: the file is a secret.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let what = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key found (expected PKCS#8, RSA or SEC1)"
            }
            _ => "malformed PEM",
        };
        format!("TLS private key file {}: {what}", path.display())
    })
}

fn read_client_roots(path: &Path) -> Result<RootCertStore, String> {
    let what = "TLS client CA file";
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certificates(path, what)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            format!(
                "{what} {}: certificate #{} is not a usable CA certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(roots)
}

fn summarize_leaf(der: &CertificateDer<'_>, path: &Path) -> Result<LeafSummary, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        format!(
            "TLS certificate file {}: the first certificate cannot be parsed: {e}",
            path.display()
        )
    })?;
    Ok(LeafSummary {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_after: cert.validity().not_after.to_string(),
        valid_now: cert.validity().is_valid(),
    })
}

/// What a file looked like when last checked; any difference means it was replaced or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
    /// Unlike mtime, ctime cannot be set back by the writer, so a same-size rewrite within one
    /// mtime tick still shows.
    #[cfg(unix)]
    changed: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    // metadata() follows symlinks: Kubernetes swaps a `..data` symlink, and the target's inode is
    // what changes then.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt as _;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: (meta.dev(), meta.ino()),
        #[cfg(unix)]
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

fn stamps_now(files: &[PathBuf]) -> Vec<Option<FileStamp>> {
    files.iter().map(|f| stamp(f)).collect()
}

async fn stamps(files: &Arc<[PathBuf]>) -> Vec<Option<FileStamp>> {
    let files = Arc::clone(files);
    // A slow (network) filesystem must not stall an async worker.
    tokio::task::spawn_blocking(move || stamps_now(&files))
        .await
        .unwrap_or_default()
}

/// `seen`: the stamps the current configuration was read under; any later change is reloaded.
async fn watch_and_reload(
    server: Weak<TlsServer>,
    files: Vec<PathBuf>,
    mut seen: Vec<Option<FileStamp>>,
    poll: Duration,
) {
    let files: Arc<[PathBuf]> = files.into();
    let mut hangup = hangup_signal();
    let mut ticks = (!poll.is_zero()).then(|| {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    if hangup.is_none() && ticks.is_none() {
        tracing::warn!("TLS certificates will not be reloaded: no SIGHUP handler and no polling");
        return;
    }
    // Stamps are always taken before the files are read, so a write landing during a reload is
    // seen as a change next time.
    loop {
        let cause = tokio::select! {
            () = next_hangup(&mut hangup) => {
                seen = stamps(&files).await;
                "SIGHUP"
            }
            () = next_tick(&mut ticks) => {
                let now = stamps(&files).await;
                if now == seen {
                    if server.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        let Some(server) = server.upgrade() else {
            return;
        };
        tracing::info!(cause, "reloading TLS certificates");
        // reload() logs its own outcome; a failure keeps the old certificates and is retried on
        // the next change or SIGHUP.
        let _ = tokio::task::spawn_blocking(move || server.reload()).await;
    }
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Option<Hangup> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; TLS reload only on file changes");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<Hangup> {
    None
}

async fn next_hangup(hangup: &mut Option<Hangup>) {
    #[cfg(unix)]
    if let Some(hangup) = hangup {
        if hangup.recv().await.is_some() {
            return;
        }
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

async fn next_tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

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
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, tcp) = match self {
            Self::Plain(tcp) => ("Plain", tcp),
            Self::Tls(tls) => ("Tls", tls.get_ref().0),
        };
        f.debug_tuple(kind).field(&tcp.peer_addr().ok()).finish()
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Self::Plain(tcp) => ConnInfo {
                remote_addr: tcp.peer_addr().ok(),
                peer: None,
            },
            Self::Tls(tls) => {
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

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

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
                            None => return Conn::Plain(tcp),
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
                Ok(Ok(tls)) => Some(Conn::Tls(Box::new(tls))),
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
    use super::*;
    use futures_util::StreamExt as _;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    use rustls::{ClientConfig, pki_types::ServerName};
    use tokio::io::AsyncReadExt as _;
    use tokio_rustls::TlsConnector;

    struct Ca {
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM)
    fn leaf(ca: &Ca, cn: &str, sans: Vec<SanType>) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    fn server_sans() -> Vec<SanType> {
        vec![
            SanType::DnsName("localhost".try_into().expect("dns")),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ]
    }

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

    fn client_config(ca: &Ca, identity: Option<(String, String)>) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der.clone()).expect("root");
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .expect("certs"),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
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
        let ca = ca("server CA");
        let (cert, key) = leaf(&ca, "server", server_sans());
        std::fs::write(dir.join("cert.pem"), cert).expect("write");
        std::fs::write(dir.join("key.pem"), key).expect("write");
        let client_ca_file = client_ca.map(|client_ca| {
            let path = dir.join("client-ca.pem");
            std::fs::write(&path, &client_ca.cert_pem).expect("write");
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
        let client_ca = ca("client CA");
        let (server_ca, addr, stream) =
            tls_server(dir.path(), Some(&client_ca), HANDSHAKE_TIMEOUT).await;
        let mut stream = Box::pin(stream);
        let client_cert = leaf(
            &client_ca,
            "api",
            vec![
                SanType::URI(
                    "spiffe://cluster.local/ns/billing/sa/api"
                        .try_into()
                        .expect("uri"),
                ),
                SanType::DnsName("api.billing.svc".try_into().expect("dns")),
            ],
        );
        let connector = TlsConnector::from(client_config(&server_ca, Some(client_cert)));
        let client = tokio::spawn(hold_open(connector, addr));
        let conn = stream.next().await.expect("a connection").expect("ok");
        let info = conn.connect_info();
        assert!(matches!(conn, Conn::Tls(_)));
        assert_eq!(
            info.peer,
            Some(PeerIdentity {
                uri_sans: vec!["spiffe://cluster.local/ns/billing/sa/api".to_owned()],
                dns_sans: vec!["api.billing.svc".to_owned()],
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
        assert!(matches!(conn, Conn::Plain(_)));
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
    fn tls_key_errors_name_the_file_and_never_quote_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_ca = ca("server CA");
        let (cert, key) = leaf(&server_ca, "server", server_sans());
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, cert).expect("write");
        // A key whose base64 body is corrupted: the PEM parser's message would quote it.
        let body: String = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n");
        let corrupted = format!(
            "-----BEGIN PRIVATE KEY-----\n{}!!\n-----END PRIVATE KEY-----\n",
            body
        );
        std::fs::write(&key_file, &corrupted).expect("write");
        let settings = TlsSettings {
            cert_file,
            key_file: key_file.clone(),
            client_ca_file: None,
        };
        let error = TlsServer::load(settings).expect_err("corrupt key");
        assert!(error.contains(&key_file.display().to_string()), "{error}");
        assert!(error.contains("malformed PEM"), "{error}");
        for line in body.lines() {
            assert!(!error.contains(line), "{error}");
        }
    }

    #[test]
    fn tls_peer_identity_of_a_certificate_without_sans_is_empty() {
        let ca = ca("CA");
        let (cert, _) = leaf(&ca, "no names", Vec::new());
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("der");
        assert_eq!(
            PeerIdentity::from_certificate(&der),
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
