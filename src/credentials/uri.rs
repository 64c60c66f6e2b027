//! `ALIBABA_CLOUD_CREDENTIALS_URI`: a local endpoint (a sidecar, a credentials helper) that
//! answers a plain GET with temporary keys. `Code` may be absent; if present it must be
//! `Success`.

use reqwest::Url;

use super::{
    CredentialSource, Credentials, CredentialsError, Fetch,
    http::{self, TemporaryKeys, Timeouts},
};
use crate::clock::SharedClock;

pub(crate) const SERVICE: &str = "the credentials URI";
pub(crate) const ENV_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";

pub(crate) struct UriFetch {
    http: reqwest::Client,
    url: Url,
    timeouts: Timeouts,
    clock: SharedClock,
}

/// Without the query, which may carry a token.
impl std::fmt::Debug for UriFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UriFetch")
            .field("host", &self.url.host_str())
            .field("path", &self.url.path())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl UriFetch {
    pub(crate) fn new(
        uri: &str,
        timeouts: Timeouts,
        clock: SharedClock,
    ) -> Result<Self, CredentialsError> {
        // The URI may carry a token in its query: errors name the variable, not the value.
        let url = Url::parse(uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| CredentialsError::setting(ENV_URI, "is not an http(s) URL"))?;
        Ok(Self {
            http: http::client(SERVICE, timeouts, true)?,
            url,
            timeouts,
            clock,
        })
    }
}

#[async_trait::async_trait]
impl Fetch for UriFetch {
    fn source(&self) -> CredentialSource {
        CredentialSource::CredentialsUri
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let request = self.http.get(self.url.clone());
        let (status, body) = http::exchange(SERVICE, self.timeouts, request).await?;
        if status != 200 {
            return Err(http::refused(SERVICE, status, &body));
        }
        let keys: TemporaryKeys =
            serde_json::from_slice(&body).map_err(|e| http::malformed_json(SERVICE, &e))?;
        if let Some(code) = keys.code.as_deref().filter(|c| *c != "Success") {
            return Err(CredentialsError::NotSuccess {
                service: SERVICE,
                code: code.to_owned(),
            });
        }
        keys.into_credentials(SERVICE, CredentialSource::CredentialsUri, self.clock.now())
    }
}
