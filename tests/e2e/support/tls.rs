//! TLS as the tests set it up: a server's certificate files on disk, and the client side's
//! config.

use std::path::{Path, PathBuf};

use cams_flows::server::TlsSettings;
use tempfile::TempDir;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::certs::{Ca, Leaf};

/// Replaces a file the way rotation tools do: a complete new file renamed over the old one.
pub fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A server certificate, its key and (for mutual TLS) a client CA, as files in a directory of
/// their own that lives as long as this.
pub struct TlsFiles {
    _dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl TlsFiles {
    pub fn new(server: &Leaf, client_ca: Option<&Ca>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Self {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: dir.path().join("client-ca.crt"),
            _dir: dir,
        };
        replace(&files.cert, &server.cert_pem);
        replace(&files.key, &server.key_pem);
        if let Some(ca) = client_ca {
            replace(&files.client_ca, &ca.pem);
        }
        files
    }

    /// The settings that serve these files, requiring client certificates if `mtls`.
    pub fn settings(&self, mtls: bool) -> TlsSettings {
        TlsSettings {
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            client_ca_file: mtls.then(|| self.client_ca.clone()),
        }
    }
}

/// A tonic client's TLS: trusts the CA in `ca_pem` for `localhost`, and presents `identity` if
/// given.
pub fn client_tls(ca_pem: &str, identity: Option<Identity>) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    match identity {
        Some(identity) => tls.identity(identity),
        None => tls,
    }
}
