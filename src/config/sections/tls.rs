//! The server's certificate and, for mutual TLS, the CAs client certificates must chain to.

use super::bad;
use crate::{
    config::{ConfigError, settings::TlsFiles},
    server::TlsSettings,
};

pub(super) fn tls(s: &TlsFiles) -> Result<Option<TlsSettings>, ConfigError> {
    match (&s.cert_file, &s.key_file) {
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            client_ca_file: s.client_ca_file.clone(),
        })),
        (None, None) if s.client_ca_file.is_none() => Ok(None),
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
