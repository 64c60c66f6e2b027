//! Why no credentials could be had. Every text names variables, files, services and providers,
//! and never a secret: no key, token or OIDC token, no signed URL, no response body that could
//! carry one.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use super::{CredentialSource, ENV_SECURITY_TOKEN, format_timestamp};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no CAMS credentials: set {} (and {ENV_SECURITY_TOKEN} for STS credentials), or run with \
         --sandbox",
        .missing.join(" and ")
    )]
    MissingVariables { missing: Vec<&'static str> },
    /// The chain (or the pinned provider) found nothing usable; one entry per provider tried.
    #[error(
        "no CAMS credentials (or run with --sandbox); providers tried: {}",
        Tried::list(.tried)
    )]
    NoProvider { tried: Vec<Tried> },
    /// The credentials held expired (or are about to) and could not be refreshed in time.
    #[error(
        "the {provider} credentials expire at {} and were not refreshed in time{}",
        format_timestamp(*.at),
        .last_error.as_ref().map(|e| format!("; the last refresh failed: {e}")).unwrap_or_default()
    )]
    Expired {
        provider: CredentialSource,
        at: SystemTime,
        last_error: Option<Arc<CredentialsError>>,
    },
    #[error("{0} is not a valid header value")]
    NotAHeaderValue(&'static str),
    #[error("cannot read {what} {}: {source}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problem}", .path.display())]
    BadFile { path: PathBuf, problem: String },
    /// A setting (variable, profile field or `[credentials]` key) that cannot be used.
    #[error("{setting}: {problem}")]
    Setting { setting: String, problem: String },
    /// An Alibaba Cloud error envelope (STS: `AuthenticationFail.OIDCToken.Expired`, ...).
    #[error(
        "{service} answered HTTP {http_status} {code}: {message}{}",
        if .request_id.is_empty() { String::new() } else { format!(" (RequestId {})", .request_id) }
    )]
    Refused {
        service: &'static str,
        http_status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    /// A non-success answer that is not an envelope (an HTML 404 from the metadata service).
    #[error("{service} answered HTTP {http_status} ({detail})")]
    Status {
        service: &'static str,
        http_status: u16,
        detail: String,
    },
    /// The answer could not be read (bad JSON, missing fields, a bad `Expiration`).
    #[error("{service} sent a malformed answer: {detail}")]
    Malformed {
        service: &'static str,
        detail: String,
    },
    /// The metadata service or the credentials URI answered, but not with `Code: Success`.
    #[error("{service} answered Code {code:?}")]
    NotSuccess { service: &'static str, code: String },
    /// `detail` is the innermost cause (`Connection refused`), never a URL.
    #[error("could not reach {service}: {what}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Unreachable {
        service: &'static str,
        what: &'static str,
        detail: String,
    },
    #[error("{service} did not answer within {}", humantime::format_duration(*.after))]
    Timeout {
        service: &'static str,
        after: Duration,
    },
    #[error("{service} handed out credentials that expired at {}", format_timestamp(*.at))]
    AlreadyExpired {
        service: &'static str,
        at: SystemTime,
    },
    #[error(
        "the metadata service refused a session token ({cause}) and ALIBABA_CLOUD_IMDSV1_DISABLED \
         forbids the fallback to IMDSv1"
    )]
    ImdsV1Disabled { cause: Box<CredentialsError> },
    #[error("the source credentials of AssumeRole: {0}")]
    Source(#[source] Box<CredentialsError>),
    #[error("cannot build the HTTP client for {service}")]
    Client {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

impl CredentialsError {
    /// No service answered at all (nothing listens there, or nothing answered in time): on a
    /// host without a metadata service, the ECS provider does not apply.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. })
    }

    pub(crate) fn setting(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Setting {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

/// Why RRSA does not apply: some of its three variables are not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} not set", .missing.join(", "))]
pub(crate) struct OidcUnset {
    pub missing: Vec<&'static str>,
}

/// One provider of the chain and why it did not yield credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub provider: CredentialSource,
    pub outcome: String,
}

impl Tried {
    fn list(tried: &[Tried]) -> String {
        tried
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.outcome)
    }
}
