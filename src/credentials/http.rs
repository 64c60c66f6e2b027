//! What the providers that fetch over HTTP (STS, the metadata service, the credentials URI)
//! share: a client with both timeouts, errors without URLs, capped bodies, and the one JSON shape
//! of temporary credentials.

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;

use super::{CredentialSource, Credentials, CredentialsError, parse_expiration};

/// Credential answers are a few hundred bytes; anything past this is not one.
const MAX_BODY: usize = 64 * 1024;

/// Connect and whole-request bounds of one credential service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// One client per service: connect and request bounded, no redirects (a redirect would carry a
/// signed request or a token elsewhere), no proxy from the environment for the metadata service
/// (the caller decides).
pub(crate) fn client(
    service: &'static str,
    timeouts: Timeouts,
    use_proxy: bool,
) -> Result<reqwest::Client, CredentialsError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cams-flows/", env!("CARGO_PKG_VERSION")));
    if !use_proxy {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|source| CredentialsError::Client { service, source })
}

/// A transport failure, described without the URL (it can carry a signature or a token) and
/// without any header.
pub(crate) fn transport_error(
    service: &'static str,
    timeouts: Timeouts,
    err: reqwest::Error,
) -> CredentialsError {
    if err.is_timeout() {
        let after = if err.is_connect() {
            timeouts.connect
        } else {
            timeouts.request
        };
        return CredentialsError::Timeout { service, after };
    }
    let failure = crate::http_failure::describe(err);
    CredentialsError::Unreachable {
        service,
        what: failure.what,
        detail: failure.detail,
    }
}

/// Sends and reads the whole answer (up to the cap): (status, body).
pub(crate) async fn exchange(
    service: &'static str,
    timeouts: Timeouts,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), CredentialsError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(service, timeouts, e))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(service, timeouts, e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(CredentialsError::Malformed {
                service,
                detail: format!("the answer is over {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// A serde failure by its category and place only: its text can quote a value, which could be a
/// secret.
pub(crate) fn json_problem(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Eof => "JSON cut short",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

pub(crate) fn malformed_json(service: &'static str, err: &serde_json::Error) -> CredentialsError {
    CredentialsError::Malformed {
        service,
        detail: json_problem(err),
    }
}

/// The Alibaba Cloud error envelope.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Envelope {
    request_id: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// A non-200 answer: the envelope's code and message when there is one, else the status with the
/// body's size (not its text: an intermediary's page is no use in a log, and could echo a
/// request).
pub(crate) fn refused(service: &'static str, http_status: u16, body: &[u8]) -> CredentialsError {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            code: Some(code),
            message,
            request_id,
        }) => CredentialsError::Refused {
            service,
            http_status,
            code,
            message: message.unwrap_or_default(),
            request_id: request_id.unwrap_or_default().trim().to_owned(),
        },
        _ => CredentialsError::Status {
            service,
            http_status,
            detail: format!("a {}-byte answer that is not an error envelope", body.len()),
        },
    }
}

/// Temporary credentials as STS, the metadata service and the credentials URI write them.
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TemporaryKeys {
    pub code: Option<String>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub security_token: Option<String>,
    pub expiration: Option<String>,
}

impl TemporaryKeys {
    /// Checks every field and the expiry; `now` is the gateway's clock.
    pub(crate) fn into_credentials(
        self,
        service: &'static str,
        source: CredentialSource,
        now: SystemTime,
    ) -> Result<Credentials, CredentialsError> {
        let missing = |field: &str| CredentialsError::Malformed {
            service,
            detail: format!("{field} is missing"),
        };
        let id = self
            .access_key_id
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing("AccessKeyId"))?;
        let secret = self
            .access_key_secret
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing("AccessKeySecret"))?;
        let token = self
            .security_token
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing("SecurityToken"))?;
        let expiration = self.expiration.ok_or_else(|| missing("Expiration"))?;
        let at = parse_expiration(&expiration).ok_or_else(|| CredentialsError::Malformed {
            service,
            detail: format!("Expiration {expiration:?} is not yyyy-MM-ddTHH:mm:ssZ"),
        })?;
        if at <= now {
            return Err(CredentialsError::AlreadyExpired { service, at });
        }
        Ok(Credentials::new(
            id,
            SecretString::from(secret),
            Some(SecretString::from(token)),
        )
        .with_expiry(at)
        .with_source(source))
    }
}

/// The `Credentials` object inside an STS answer.
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct StsAnswer {
    pub credentials: Option<TemporaryKeys>,
}
