//! Certificates made for the tests: a CA, server and client leaves (rcgen).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use tonic::transport::Identity;

pub const SPIFFE_ID: &str = "spiffe://cluster.local/ns/billing/sa/api";
pub const CLIENT_DNS: &str = "api.billing.svc";

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

    pub fn server_leaf(&self, cn: &str) -> Leaf {
        self.issue(
            cn,
            vec![
                SanType::DnsName("localhost".try_into().expect("dns")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
        )
    }

    pub fn client_leaf(&self) -> Leaf {
        self.issue(
            "api",
            vec![
                SanType::URI(SPIFFE_ID.try_into().expect("uri")),
                SanType::DnsName(CLIENT_DNS.try_into().expect("dns")),
            ],
        )
    }
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl Ca {
    /// A client certificate whose only name is this URI SAN (a SPIFFE ID).
    pub fn client_with_uri(&self, uri: &str) -> Identity {
        self.issue("client", vec![SanType::URI(uri.try_into().expect("uri"))])
            .identity()
    }
}
