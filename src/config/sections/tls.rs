//! `[tls]`: the server's certificate and, for mutual TLS, the CAs client certificates must chain
//! to.

use std::path::PathBuf;

use super::bad;
use crate::{
    config::{ConfigError, keys::settings},
    server::TlsSettings,
};

settings! {
    /// `[tls]`: off unless both the certificate and its key are set.
    section struct TlsFiles in "tls." {
        /// PEM certificate chain the server presents (enables TLS, with --tls-key-file)
        key(value_name = "FILE", default = "off")
        #[serde(skip_serializing_if = "Option::is_none")]
        cert_file: Option<PathBuf>,
        /// PEM private key of --tls-cert-file
        key(value_name = "FILE", default = "off")
        #[serde(skip_serializing_if = "Option::is_none")]
        key_file: Option<PathBuf>,
        /// PEM CA certificates that client certificates must chain to (requires client
        /// certificates)
        key(value_name = "FILE", default = "off")
        #[serde(skip_serializing_if = "Option::is_none")]
        client_ca_file: Option<PathBuf>,
    }
}

impl TlsFiles {
    pub(super) fn validate(&self) -> Result<Option<TlsSettings>, ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                client_ca_file: self.client_ca_file.clone(),
            })),
            (None, None) if self.client_ca_file.is_none() => Ok(None),
            (None, None) => Err(bad(
                "tls.client_ca_file",
                "needs tls.cert_file and tls.key_file: client certificates are checked over TLS",
            )),
            (Some(_), None) => Err(bad("tls.key_file", "tls.cert_file is set, its key is not")),
            (None, Some(_)) => Err(bad(
                "tls.cert_file",
                "tls.key_file is set, its certificate is not",
            )),
        }
    }
}
