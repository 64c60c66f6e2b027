//! Certificates made for tests with rcgen: CAs, and server and client leaves they sign.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use tonic::transport::Identity;

/// The names [`Ca::issue`] takes; re-exported so that callers need no rcgen of their own.
pub use rcgen::SanType;

/// The URI SAN of [`Ca::client_leaf`], a SPIFFE ID as mesh CAs issue them.
pub const SPIFFE_ID: &str = "spiffe://cluster.local/ns/billing/sa/api";
/// The DNS SAN of [`Ca::client_leaf`].
pub const CLIENT_DNS: &str = "api.billing.svc";

/// A self-signed CA that issues leaves.
pub struct Ca {
    pub pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf with this common name and these subjectAltNames, signed by this CA.
    pub fn issue(&self, cn: &str, sans: Vec<SanType>) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate valid for `localhost` and `127.0.0.1`.
    pub fn server_leaf(&self, cn: &str) -> Leaf {
        self.issue(
            cn,
            vec![
                SanType::DnsName("localhost".try_into().expect("dns")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
        )
    }

    /// A client certificate named [`SPIFFE_ID`] and [`CLIENT_DNS`].
    pub fn client_leaf(&self) -> Leaf {
        self.issue(
            "api",
            vec![
                SanType::URI(SPIFFE_ID.try_into().expect("uri")),
                SanType::DnsName(CLIENT_DNS.try_into().expect("dns")),
            ],
        )
    }

    /// A client certificate whose only name is this URI SAN (a SPIFFE ID).
    pub fn client_with_uri(&self, uri: &str) -> Identity {
        self.issue("client", vec![SanType::URI(uri.try_into().expect("uri"))])
            .identity()
    }
}

/// A certificate and its private key, both PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// For a tonic client that presents this certificate.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}
