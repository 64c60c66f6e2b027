//! The credentials every signed call needs, and where they come from.
//!
//! A [`CredentialsProvider`] hands out the current [`Credentials`]; each carries its source and,
//! when temporary, its expiry. [`resolve`] finds them the way Alibaba Cloud's SDKs do (the
//! default chain in [`chain`], or one provider pinned by `[credentials]`): long-lived keys become
//! a [`StaticCredentials`], temporary ones (RRSA/OIDC, an ECS RAM role, a credentials URI,
//! AssumeRole) a provider that refreshes them in the background ([`refresh`]), whose loop the
//! application runs among its tasks ([`CredentialsProvider::refresh_task`]).

mod assume_role;
mod chain;
mod ecs;
mod env;
mod error;
mod file;
mod fixed;
mod http;
mod identity;
mod oidc;
mod plan;
mod profile;
mod refresh;
mod settings;
mod sts;
#[cfg(all(test, feature = "sandbox"))]
mod testkit;
mod uri;
mod vars;

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::SystemTime};

use secrecy::{ExposeSecret, SecretString};

/// STS's and the metadata service's `Expiration` take Alibaba Cloud's one time format.
pub(crate) use crate::acs::{format_timestamp, parse_timestamp as parse_expiration};
pub use chain::resolve;
pub use env::{
    ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN, from_env, from_lookup,
};
pub use error::{CredentialsError, Tried};
pub use fixed::StaticCredentials;
pub use identity::{CallerIdentity, caller_identity, is_account_id};
pub use refresh::RefreshPolicy;
pub use settings::{AssumeRoleConfig, CredentialsConfig, ProviderChoice};
pub use vars::Vars;

/// Where a set of credentials came from; logged at startup and with every refresh, never secret.
/// The names are those of the official SDKs' providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (and `_SECURITY_TOKEN`).
    Environment,
    /// RRSA: an OIDC token traded at STS (`AssumeRoleWithOIDC`).
    OidcRoleArn,
    /// A profile of the aliyun CLI's `config.json`.
    CliProfile,
    /// A section of the credentials file (`credentials.ini`).
    CredentialsFile,
    /// The ECS instance's RAM role, from the metadata service.
    EcsRamRole,
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    CredentialsUri,
    /// STS `AssumeRole` on top of another source.
    RamRoleArn,
    /// Generated for an in-process simulated CAMS.
    Sandbox,
    /// Handed over by the embedding code (tests, benchmarks).
    Fixed,
}

impl CredentialSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
            Self::OidcRoleArn => "oidc_role_arn",
            Self::CliProfile => "cli_profile",
            Self::CredentialsFile => "credentials_file",
            Self::EcsRamRole => "ecs_ram_role",
            Self::CredentialsUri => "credentials_uri",
            Self::RamRoleArn => "ram_role_arn",
            Self::Sandbox => "sandbox",
            Self::Fixed => "fixed",
        }
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AccessKey pair, with an STS token when the pair is temporary. `Debug` shows no secret.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    /// When temporary credentials stop working; `None` for a long-lived AccessKey.
    expires_at: Option<SystemTime>,
    source: CredentialSource,
}

impl Credentials {
    /// Long-lived (or externally managed) credentials handed over by the caller.
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: SecretString,
        security_token: Option<SecretString>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
            expires_at: None,
            source: CredentialSource::Fixed,
        }
    }

    pub fn with_source(mut self, source: CredentialSource) -> Self {
        self.source = source;
        self
    }

    pub fn with_expiry(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose_secret()
    }

    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_ref().map(|t| t.expose_secret())
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    pub fn source(&self) -> CredentialSource {
        self.source
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"[REDACTED]")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("expires_at", &self.expires_at)
            .field("source", &self.source)
            .finish()
    }
}

/// The background work of a refreshing provider, for the application's task owner to run.
pub type RefreshTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where the signer gets the credentials for the next request.
#[async_trait::async_trait]
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// Credentials valid now. A provider that refreshes answers from what it holds and never
    /// makes the call wait while those are still valid.
    async fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError>;

    /// The loop that keeps the credentials fresh, handed out once (later calls get `None`), so
    /// that it runs among the application's background tasks and stops with them. Providers
    /// whose credentials never change have none.
    fn refresh_task(&self) -> Option<RefreshTask> {
        None
    }

    /// When the credentials held now expire (`None`: never), read without fetching anything or
    /// waking a refresh: for the gauge of their remaining lifetime, which must not turn a
    /// refresh's backoff into one attempt per scrape interval.
    fn held_expiry(&self) -> Option<SystemTime>;
}

/// One way of getting fresh credentials: what a refreshing provider calls at each refresh.
#[async_trait::async_trait]
pub(crate) trait Fetch: Send + Sync + fmt::Debug {
    fn source(&self) -> CredentialSource;

    async fn fetch(&self) -> Result<Credentials, CredentialsError>;
}

/// Credentials that are already at hand, as a [`Fetch`]: the source of an AssumeRole whose
/// source never changes.
#[derive(Debug)]
pub(crate) struct Unchanging(pub(crate) Credentials);

#[async_trait::async_trait]
impl Fetch for Unchanging {
    fn source(&self) -> CredentialSource {
        self.0.source()
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::new(
            "LTAIexample",
            SecretString::from("topsecret-value"),
            Some(SecretString::from("sts-token-value")),
        );
        let shown = format!("{c:?}");
        assert!(shown.contains("LTAIexample"));
        assert!(!shown.contains("topsecret-value"));
        assert!(!shown.contains("sts-token-value"));
    }
}
