//! The credentials every signed call needs, and where they come from.
//!
//! A [`CredentialsProvider`] hands out the current [`Credentials`]; each carries its source and,
//! when temporary, its expiry, so that a provider that refreshes (RRSA/OIDC, an ECS RAM role,
//! AssumeRole) can slot in beside the fixed ones without the client changing.

mod env;
mod fixed;

use std::{fmt, sync::Arc, time::SystemTime};

use secrecy::{ExposeSecret, SecretString};

pub use env::{
    ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN, from_env, from_lookup,
};
pub use fixed::StaticCredentials;

/// Where a set of credentials came from; logged at startup, never secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (and `_SECURITY_TOKEN`).
    Environment,
    /// Generated for an in-process simulated CAMS.
    Sandbox,
    /// Handed over by the embedding code (tests, benchmarks).
    Fixed,
}

impl CredentialSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environment => "environment",
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

/// Why no credentials could be had. The texts name variables, files and providers, never a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no CAMS credentials: set {} (and {ENV_SECURITY_TOKEN} for STS credentials), or run with \
         --sandbox",
        .missing.join(" and ")
    )]
    MissingVariables { missing: Vec<&'static str> },
    #[error("the {provider} credentials expired at {}", humantime::format_rfc3339_seconds(*.at))]
    Expired {
        provider: CredentialSource,
        at: SystemTime,
    },
    #[error("{0} is not a valid header value")]
    NotAHeaderValue(&'static str),
}

/// Where the signer gets the credentials for the next request.
#[async_trait::async_trait]
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// Credentials valid now. A provider that refreshes answers from what it holds and never
    /// makes the call wait while those are still valid.
    async fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError>;
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
