//! Credentials the signer asks for on every call. Today they come from the environment; the
//! provider trait is the seam for credentials that refresh (RRSA/OIDC, ECS RAM role).

use std::{fmt, sync::Arc};

use secrecy::{ExposeSecret, SecretString};

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// An AccessKey pair, with an STS token when the pair is temporary. `Debug` shows no secret.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: SecretString,
        security_token: Option<SecretString>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret,
            security_token,
        }
    }

    /// Reads the standard Alibaba Cloud variables; the error names what is missing.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
            (Some(id), Some(secret)) => Ok(Self::new(
                id.trim(),
                SecretString::from(secret.trim().to_owned()),
                get(ENV_SECURITY_TOKEN).map(|t| SecretString::from(t.trim().to_owned())),
            )),
            (id, secret) => {
                let missing: Vec<&str> = [
                    (id.is_none(), ENV_ACCESS_KEY_ID),
                    (secret.is_none(), ENV_ACCESS_KEY_SECRET),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name))
                .collect();
                Err(format!(
                    "no CAMS credentials: set {} (and {ENV_SECURITY_TOKEN} for STS credentials), \
                     or run with --sandbox",
                    missing.join(" and ")
                ))
            }
        }
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
            .finish()
    }
}

/// Where the signer gets the credentials for the next request.
#[async_trait::async_trait]
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    async fn credentials(&self) -> Result<Arc<Credentials>, String>;
}

/// Fixed credentials (environment variables, the sandbox).
#[derive(Debug, Clone)]
pub struct StaticCredentials(Arc<Credentials>);

impl StaticCredentials {
    pub fn new(credentials: Credentials) -> Self {
        Self(Arc::new(credentials))
    }
}

#[async_trait::async_trait]
impl CredentialsProvider for StaticCredentials {
    async fn credentials(&self) -> Result<Arc<Credentials>, String> {
        Ok(Arc::clone(&self.0))
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

    #[test]
    fn missing_variables_are_named() {
        let err = Credentials::from_lookup(|_| None).expect_err("no env");
        assert!(
            err.contains(ENV_ACCESS_KEY_ID) && err.contains(ENV_ACCESS_KEY_SECRET),
            "{err}"
        );
        let err = Credentials::from_lookup(|n| (n == ENV_ACCESS_KEY_ID).then(|| "id".into()))
            .expect_err("no secret");
        assert!(
            err.contains(ENV_ACCESS_KEY_SECRET) && !err.contains(&format!("{ENV_ACCESS_KEY_ID} ")),
            "{err}"
        );
        let ok = Credentials::from_lookup(|n| Some(format!("v-{n}"))).expect("all set");
        assert_eq!(ok.security_token(), Some("v-ALIBABA_CLOUD_SECURITY_TOKEN"));
    }
}
