//! The ECS instance's RAM role, from the metadata service: a session token first (`PUT
//! /latest/api/token`, "IMDSv2", the hardened mode), then the role's temporary keys. When the
//! token is refused, or a read with it fails, the read is repeated without one (IMDSv1), as the
//! official SDKs do, unless `ALIBABA_CLOUD_IMDSV1_DISABLED` forbids it. Every exchange is bounded
//! by about a second: on a host that is not an ECS instance nothing answers at all.

use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};

use super::{
    CredentialSource, Credentials, CredentialsError, Fetch,
    http::{self, TemporaryKeys, Timeouts},
    vars::Vars,
};
use crate::clock::SharedClock;

pub(crate) const SERVICE: &str = "the ECS metadata service";
pub(crate) const ENV_ROLE_NAME: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub(crate) const ENV_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
pub(crate) const ENV_ENDPOINT: &str = "ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT";
pub(crate) const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";

const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
const TOKEN_PATH: &str = "latest/api/token";
const CREDENTIALS_PATH: &str = "latest/meta-data/ram/security-credentials/";
const TOKEN_TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The SDKs ask for the longest the service allows.
const TOKEN_TTL_SECONDS: u32 = 21_600;

#[derive(Debug)]
pub(crate) struct EcsFetch {
    http: reqwest::Client,
    base: Url,
    role: Option<String>,
    imdsv1_disabled: bool,
    timeouts: Timeouts,
    clock: SharedClock,
}

impl EcsFetch {
    /// `role` from a profile or the INI file wins over `ALIBABA_CLOUD_ECS_METADATA`.
    pub(crate) fn new(
        vars: &Vars,
        role: Option<&str>,
        timeouts: Timeouts,
        clock: SharedClock,
    ) -> Result<Self, CredentialsError> {
        let endpoint = vars.get(ENV_ENDPOINT).unwrap_or(DEFAULT_ENDPOINT);
        let url = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let mut base = Url::parse(&url).map_err(|e| {
            CredentialsError::setting(ENV_ENDPOINT, format!("{endpoint:?} is not a URL: {e}"))
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            // A proxy from the environment must not see the instance's keys.
            http: http::client(SERVICE, timeouts, false)?,
            base,
            role: role.or_else(|| vars.get(ENV_ROLE_NAME)).map(str::to_owned),
            imdsv1_disabled: vars.flag(ENV_IMDSV1_DISABLED),
            timeouts,
            clock,
        })
    }

    /// Whether the role was named: then a failure is a failure, not a sign that this host has
    /// no metadata service.
    pub(crate) fn role_named(&self) -> bool {
        self.role.is_some()
    }

    fn url(&self, path: &str) -> Result<Url, CredentialsError> {
        self.base.join(path).map_err(|e| {
            CredentialsError::setting(ENV_ENDPOINT, format!("cannot form the URL of {path}: {e}"))
        })
    }

    async fn session_token(&self) -> Result<SecretString, CredentialsError> {
        let request = self
            .http
            .request(Method::PUT, self.url(TOKEN_PATH)?)
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS);
        let (status, body) = http::exchange(SERVICE, self.timeouts, request).await?;
        if status != 200 {
            return Err(http::refused(SERVICE, status, &body));
        }
        let token = String::from_utf8(body).map_err(|_| CredentialsError::Malformed {
            service: SERVICE,
            detail: "the session token is not text".to_owned(),
        })?;
        Ok(SecretString::from(token.trim().to_owned()))
    }

    /// One GET, with the token when there is one; on failure with a token, once more without
    /// (unless IMDSv1 is disabled).
    async fn get(
        &self,
        path: &str,
        token: Option<&SecretString>,
    ) -> Result<Vec<u8>, CredentialsError> {
        let result = self.get_once(path, token).await;
        match result {
            Err(error) if token.is_some() && !self.imdsv1_disabled && !error.is_unreachable() => {
                tracing::debug!(%error, "metadata read with a session token failed; retrying without (IMDSv1)");
                self.get_once(path, None).await
            }
            other => other,
        }
    }

    async fn get_once(
        &self,
        path: &str,
        token: Option<&SecretString>,
    ) -> Result<Vec<u8>, CredentialsError> {
        let mut request = self.http.get(self.url(path)?);
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(token.expose_secret())
                .map_err(|_| CredentialsError::NotAHeaderValue("the metadata session token"))?;
            value.set_sensitive(true);
            request = request.header(TOKEN_HEADER, value);
        }
        let (status, body) = http::exchange(SERVICE, self.timeouts, request).await?;
        if status != 200 {
            return Err(http::refused(SERVICE, status, &body));
        }
        Ok(body)
    }
}

#[async_trait::async_trait]
impl Fetch for EcsFetch {
    fn source(&self) -> CredentialSource {
        CredentialSource::EcsRamRole
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = match self.session_token().await {
            Ok(token) => Some(token),
            // Nothing there at all: no fallback can help.
            Err(error) if error.is_unreachable() => return Err(error),
            Err(error) if self.imdsv1_disabled => {
                return Err(CredentialsError::ImdsV1Disabled {
                    cause: Box::new(error),
                });
            }
            Err(error) => {
                tracing::debug!(%error, "the metadata service gave no session token; using IMDSv1");
                None
            }
        };
        let role = match &self.role {
            Some(role) => role.clone(),
            None => {
                let body = self.get(CREDENTIALS_PATH, token.as_ref()).await?;
                let text = String::from_utf8_lossy(&body);
                let role = text.lines().next().unwrap_or_default().trim().to_owned();
                if role.is_empty() {
                    return Err(CredentialsError::Malformed {
                        service: SERVICE,
                        detail: "no RAM role is attached to this instance".to_owned(),
                    });
                }
                role
            }
        };
        let path = format!("{CREDENTIALS_PATH}{}", crate::acs::v3::encode(&role));
        let body = self.get(&path, token.as_ref()).await?;
        let keys: TemporaryKeys =
            serde_json::from_slice(&body).map_err(|e| http::malformed_json(SERVICE, &e))?;
        match keys.code.as_deref() {
            Some("Success") => {}
            code => {
                return Err(CredentialsError::NotSuccess {
                    service: SERVICE,
                    code: code.unwrap_or("(none)").to_owned(),
                });
            }
        }
        keys.into_credentials(SERVICE, CredentialSource::EcsRamRole, self.clock.now())
    }
}

#[cfg(all(test, feature = "sandbox"))]
#[path = "ecs_tests.rs"]
mod tests;
