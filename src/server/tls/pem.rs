//! Reading the PEM files and checking what they hold, before rustls is given any of it.

use std::{fs::File, io::Read, path::Path};

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use super::{TlsError, TlsFile};

/// PEM files of certificates and keys are kilobytes; a CA bundle may be a few hundred. Anything
/// far larger is a wrong path (a log, a disk image) and is refused before it fills memory.
const MAX_PEM_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What is logged about the server's own certificate: all of it public.
pub(super) struct LeafSummary {
    pub(super) subject: String,
    pub(super) serial: String,
    pub(super) not_after: String,
    pub(super) valid_now: bool,
}

impl LeafSummary {
    pub(super) fn warn_if_not_valid_now(&self, cert_file: &Path) {
        if !self.valid_now {
            tracing::warn!(
                cert_file = %cert_file.display(),
                not_after = %self.not_after,
                "the TLS certificate is expired or not yet valid; clients will refuse it"
            );
        }
    }
}

fn read_capped(path: &Path, file: TlsFile) -> Result<Vec<u8>, TlsError> {
    let unreadable = |source| TlsError::Unreadable {
        file,
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(unreadable)?
        .take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::TooLarge {
            file,
            path: path.to_owned(),
            limit_mib: MAX_PEM_FILE_BYTES / (1024 * 1024),
        });
    }
    Ok(bytes)
}

/// Every certificate in the file, in order; at least one.
pub(super) fn read_certificates(
    path: &Path,
    file: TlsFile,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_capped(path, file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::MalformedPem {
            file,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

pub(super) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_capped(path, TlsFile::PrivateKey)?;
    // The PEM parser's own messages can quote lines of the file, so only the kind of failure
    // is kept: the file is a secret.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        _ => TlsError::MalformedKey {
            path: path.to_owned(),
        },
    })
}

pub(super) fn read_client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certificates(path, TlsFile::ClientCa)?
        .into_iter()
        .enumerate()
    {
        roots
            .add(cert)
            .map_err(|source| TlsError::UnusableCaCertificate {
                path: path.to_owned(),
                number: i + 1,
                source,
            })?;
    }
    Ok(roots)
}

/// Parses the leaf for what is logged about it; a leaf that does not parse is refused here
/// rather than by every client.
pub(super) fn summarize_leaf(
    der: &CertificateDer<'_>,
    path: &Path,
) -> Result<LeafSummary, TlsError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|source| TlsError::UnparsableCertificate {
            path: path.to_owned(),
            source,
        })?;
    Ok(LeafSummary {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_after: cert.validity().not_after.to_string(),
        valid_now: cert.validity().is_valid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_far_larger_than_any_pem_is_refused_unparsed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge.pem");
        let file = File::create(&path).expect("create");
        file.set_len(MAX_PEM_FILE_BYTES + 1).expect("grow");
        let error = read_certificates(&path, TlsFile::Certificate).expect_err("too large");
        assert!(
            matches!(error, TlsError::TooLarge { limit_mib: 4, .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_keeps_its_io_error_as_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.pem");
        let error = read_private_key(&path).expect_err("missing");
        let TlsError::Unreadable { file, source, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*file, TlsFile::PrivateKey);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(
            error.chain().to_string().ends_with(&source.to_string()),
            "{}",
            error.chain()
        );
    }

    #[test]
    fn a_file_without_a_key_or_certificate_says_which_it_lacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "just text\n").expect("write");
        assert!(matches!(
            read_private_key(&path),
            Err(TlsError::NoPrivateKey { .. })
        ));
        assert!(matches!(
            read_client_roots(&path),
            Err(TlsError::NoCertificate {
                file: TlsFile::ClientCa,
                ..
            })
        ));
    }
}
