//! What can be wrong with the TLS files, each failure naming the file it concerns.
//!
//! The private key file is a secret: no variant about it carries the PEM parser's error (whose
//! message can quote lines of the file) or any bytes of it, only the kind of failure.

use std::{fmt, io, path::PathBuf};

/// The three files a [`super::TlsSettings`] names, as an operator knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Certificate,
    PrivateKey,
    ClientCa,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Certificate => "TLS certificate file",
            Self::PrivateKey => "TLS private key file",
            Self::ClientCa => "TLS client CA file",
        })
    }
}

/// Why the TLS configuration could not be (re)built. The underlying error, where there is one,
/// is the [`std::error::Error::source`]: `{:#}` on an `anyhow::Error` shows it, and so does
/// [`TlsError::chain`].
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{file} {}: cannot be read", path.display())]
    Unreadable {
        file: TlsFile,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file} {}: larger than {limit_mib} MiB, not a PEM file", path.display())]
    TooLarge {
        file: TlsFile,
        path: PathBuf,
        limit_mib: u64,
    },
    /// A certificate or CA file that is not valid PEM; certificates are public, so the parser's
    /// message is kept.
    #[error("{file} {}: malformed PEM", path.display())]
    MalformedPem {
        file: TlsFile,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{file} {}: no PEM CERTIFICATE found", path.display())]
    NoCertificate { file: TlsFile, path: PathBuf },
    #[error("TLS certificate file {}: the first certificate cannot be parsed", path.display())]
    UnparsableCertificate {
        path: PathBuf,
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error("TLS certificate file {}: unusable certificate", path.display())]
    UnusableCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// Deliberately without the parser's error: see the module documentation.
    #[error("TLS private key file {}: malformed PEM", path.display())]
    MalformedKey { path: PathBuf },
    #[error(
        "TLS private key file {}: no PEM private key found (expected PKCS#8, RSA or SEC1)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    /// rustls reports only the kind of key it could not use, never the key.
    #[error("TLS private key file {}: unsupported or invalid private key", path.display())]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "TLS private key file {} does not match the certificate in {}",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        key_path: PathBuf,
        cert_path: PathBuf,
    },
    #[error(
        "TLS client CA file {}: certificate #{number} is not a usable CA certificate",
        path.display()
    )]
    UnusableCaCertificate {
        path: PathBuf,
        /// Counted from 1, in file order.
        number: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS client CA file {}: unusable", path.display())]
    UnusableClientCa {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("TLS: no usable protocol version")]
    NoProtocolVersion {
        #[source]
        source: rustls::Error,
    },
}

impl TlsError {
    /// The message followed by each underlying cause, `: `-separated, for logs that show only
    /// `Display` (a failed reload is only ever seen as a warning).
    pub fn chain(&self) -> impl fmt::Display + '_ {
        Chain(self)
    }
}

struct Chain<'a>(&'a TlsError);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}
