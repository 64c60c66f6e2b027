//! What the provider tests share: a simulated STS and metadata service on loopback, a home
//! directory of their own (so no test reads the machine's real `~/.aliyun` or
//! `~/.alibabacloud`), and the chain run over variables they choose.

use std::{path::PathBuf, sync::Arc, time::Duration};

use secrecy::SecretString;

use super::{
    CredentialsConfig, CredentialsError, CredentialsProvider, ProviderChoice, Vars, resolve,
};
use crate::{
    clock,
    sandbox::{Fault, Identity, IdentityConfig, IdentityHandle, Keyring},
};

pub(super) const SIGNER_ID: &str = "LTAIsigner";
pub(super) const SIGNER_SECRET: &str = "signer-secret-never-shown";
pub(super) const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2lnbmF0dXJl";

pub(super) struct World {
    pub identity: IdentityHandle,
    pub home: tempfile::TempDir,
    /// No metadata service here: a closed loopback port, so no test reaches 100.100.100.200.
    pub vars: Vars,
    /// Holds that port closed for as long as the world lives.
    pub closed: ClosedPort,
}

impl World {
    pub(super) async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub(super) async fn with(change: impl FnOnce(&mut IdentityConfig)) -> Self {
        let mut config = IdentityConfig::new(Arc::new(Keyring::default()));
        config.lifetime = Duration::from_secs(900);
        config.signers = vec![(
            SIGNER_ID.to_owned(),
            SecretString::from(SIGNER_SECRET.to_owned()),
        )];
        change(&mut config);
        let identity = Identity::bind(([127, 0, 0, 1], 0).into(), config)
            .await
            .expect("bind")
            .spawn();
        let home = tempfile::tempdir().expect("home");
        let closed = ClosedPort::new();
        let vars = Vars::from_pairs([
            ("HOME", home.path().display().to_string()),
            (
                "ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT",
                format!("http://{}", closed.addr),
            ),
        ]);
        Self {
            identity,
            home,
            vars,
            closed,
        }
    }

    pub(super) fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.set(name, value);
        self
    }

    /// STS and the metadata service are the simulated ones.
    pub(super) fn simulated(&mut self) -> &mut Self {
        let endpoint = self.identity.endpoint();
        self.set("ALIBABA_CLOUD_STS_ENDPOINT", &endpoint);
        self.set("ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT", &endpoint)
    }

    /// A file under the home directory.
    pub(super) fn file(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.home.path().join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    /// RRSA variables against the simulated STS, with `token` in the token file.
    pub(super) fn oidc(&mut self, token: &str) -> &mut Self {
        let path = self.file("token", token);
        self.simulated()
            .set("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1234:role/cams")
            .set(
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1234:oidc-provider/ack",
            )
            .set("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &path.display().to_string())
    }

    pub(super) fn sts_fault(&self, fault: Option<Fault>) {
        self.identity.set_sts_fault(fault);
    }

    pub(super) fn metadata_fault(&self, fault: Option<Fault>) {
        self.identity.set_metadata_fault(fault);
    }

    pub(super) async fn resolve(
        &self,
        provider: ProviderChoice,
    ) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
        self.resolve_with(CredentialsConfig {
            provider,
            ..CredentialsConfig::default()
        })
        .await
    }

    pub(super) async fn resolve_with(
        &self,
        config: CredentialsConfig,
    ) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
        resolve(&config, &self.vars, clock::system()).await
    }

    /// The error's whole text, which must never carry a secret.
    pub(super) async fn failure(&self, provider: ProviderChoice) -> String {
        let err = match self.resolve(provider).await {
            Ok(p) => panic!("credentials from {p:?} with {:?}", self.vars),
            Err(err) => err,
        };
        let text = crate::telemetry::ErrorChain(&err).to_string();
        for issued in self.identity.issued() {
            assert!(!text.contains(&issued.access_key_secret), "{text}");
            assert!(!text.contains(&issued.security_token), "{text}");
        }
        assert!(
            !text.contains(SIGNER_SECRET) && !text.contains(JWT),
            "{text}"
        );
        text
    }
}

/// A loopback port that refuses connections for as long as this lives: bound, so that nothing
/// else can take it meanwhile, and not listening, so that a connection is reset at once.
pub(super) struct ClosedPort {
    pub addr: std::net::SocketAddr,
    _bound: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub(super) fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind a loopback port");
        Self {
            addr: socket.local_addr().expect("addr"),
            _bound: socket,
        }
    }
}
