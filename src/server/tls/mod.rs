//! Server TLS and mutual TLS, with certificates that can be replaced while the server runs.
//!
//! Mesh CAs rotate workload certificates (and sometimes the CA itself) every few hours, so the
//! whole rustls [`ServerConfig`] is rebuilt from the files on reload and swapped in atomically:
//! every new handshake uses the newest configuration, connections already open keep theirs.
//! The application's reload watcher ([`crate::reload`]) watches the files (and SIGHUP) for that;
//! [`TlsServer::reloader`] is a watcher of the certificates alone.

mod error;
mod pem;
mod reload;

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::WebPkiClientVerifier,
    sign::{CertifiedKey, SingleCertAndKey},
};
use tokio_rustls::TlsAcceptor;

pub use self::error::{TlsError, TlsFile};
use self::pem::{
    LeafSummary, read_certificates, read_client_roots, read_private_key, summarize_leaf,
};
use crate::reload::{FileStamp, stamps_now};

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
    pub fn load(settings: TlsSettings) -> Result<Arc<Self>, TlsError> {
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
    pub fn reload(&self) -> Result<(), TlsError> {
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
                tracing::warn!(
                    error = %error.chain(),
                    "TLS reload failed; keeping the previous certificates"
                );
                Err(error)
            }
        }
    }

    /// For one handshake: the newest configuration at the time of the call.
    pub(in crate::server) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

fn build_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<(ServerConfig, LeafSummary), TlsError> {
    let cert_file = &settings.cert_file;
    let key_file = &settings.key_file;
    let chain = read_certificates(cert_file, TlsFile::Certificate)?;
    let leaf = match chain.first() {
        Some(der) => summarize_leaf(der, cert_file)?,
        // read_certificates refuses an empty file; kept as an error rather than a panic.
        None => {
            return Err(TlsError::NoCertificate {
                file: TlsFile::Certificate,
                path: cert_file.clone(),
            });
        }
    };
    let key = read_private_key(key_file)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: key_file.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; the handshake would still work.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                key_path: key_file.clone(),
                cert_path: cert_file.clone(),
            });
        }
        Err(source) => {
            return Err(TlsError::UnusableCertificate {
                path: cert_file.clone(),
                source,
            });
        }
    }

    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::NoProtocolVersion { source })?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let roots = read_client_roots(ca_file)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .map_err(|source| TlsError::UnusableClientCa {
                        path: ca_file.clone(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((config, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::certs::Ca;

    #[test]
    fn tls_key_errors_name_the_file_and_never_quote_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leaf = Ca::new("server CA").server_leaf("server");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, &leaf.cert_pem).expect("write");
        // A key whose base64 body is corrupted: the PEM parser's message would quote it.
        let body: String = leaf
            .key_pem
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
        assert!(matches!(error, TlsError::MalformedKey { .. }), "{error:?}");
        let message = error.chain().to_string();
        assert!(message.contains("malformed PEM"), "{message}");
        // All that is ever shown of it: the message with its causes, and Debug.
        for shown in [message, format!("{error:?}")] {
            assert!(shown.contains(&key_file.display().to_string()), "{shown}");
            for line in body.lines() {
                assert!(!shown.contains(line), "{shown}");
            }
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch_naming_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("server CA");
        let (leaf, other) = (ca.server_leaf("server"), ca.server_leaf("other"));
        let settings = TlsSettings {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            client_ca_file: None,
        };
        std::fs::write(&settings.cert_file, &leaf.cert_pem).expect("write");
        std::fs::write(&settings.key_file, &other.key_pem).expect("write");
        let error = TlsServer::load(settings.clone()).expect_err("mismatch");
        let TlsError::KeyMismatch {
            key_path,
            cert_path,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(
            (key_path, cert_path),
            (&settings.key_file, &settings.cert_file)
        );
    }
}
