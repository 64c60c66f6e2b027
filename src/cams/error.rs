use std::time::Duration;

use crate::{credentials::CredentialsError, telemetry::metrics::UpstreamOutcome};

/// An error CAMS reported in its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub http_status: u16,
    /// From `x-acs-retry-after` (milliseconds on the wire).
    pub retry_after: Option<Duration>,
    pub recommend: Option<String>,
}

/// What a CAMS error code means to a caller. Decided on the code, not the HTTP status: Alibaba
/// documents the same code under different statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    InvalidArgument,
    PermissionDenied,
    FailedPrecondition,
    Throttled,
    NotFound,
    /// The gateway's own credentials, clock or request shape were refused: an operator problem.
    GatewayMisconfigured,
    Unavailable,
    Unknown,
}

impl ApiError {
    pub fn kind(&self) -> ApiErrorKind {
        classify(&self.code, self.http_status)
    }
}

pub fn classify(code: &str, http_status: u16) -> ApiErrorKind {
    // `X` itself or `X.<anything>`, but not `Xsomething`.
    let family = |prefix: &str| {
        code.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    if family("Throttling") || code == "System.LimitControl" {
        ApiErrorKind::Throttled
    } else if family("InvalidAccessKeyId")
        || family("InvalidTimeStamp")
        || family("InvalidSecurityToken")
        || family("InvalidAction")
        || matches!(
            code,
            "SignatureDoesNotMatch"
                | "IncompleteSignature"
                | "SignatureNonceUsed"
                | "MissingSecurityToken"
                | "InvalidVersion"
        )
    {
        ApiErrorKind::GatewayMisconfigured
    } else if code.contains("NotFound") || code.contains("NotExist") {
        ApiErrorKind::NotFound
    } else if matches!(code, "Ram.PermissionDeny" | "Unknown.ResourceOwnerId")
        || family("Forbidden")
    {
        ApiErrorKind::PermissionDenied
    } else if code == "Product.Unsubscript" {
        ApiErrorKind::FailedPrecondition
    } else if code.starts_with("MissingParameter") || code.starts_with("InvalidParameter") {
        ApiErrorKind::InvalidArgument
    } else if family("ServiceUnavailable") || family("InternalError") || http_status >= 500 {
        ApiErrorKind::Unavailable
    } else {
        ApiErrorKind::Unknown
    }
}

/// Everything that can go wrong in one exchange with CAMS. What each means to a caller (its gRPC
/// code, whether another attempt may help, whether a stale answer may stand in) is decided once,
/// in `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum CamsError {
    #[error("CAMS answered {}: {}", .0.code, .0.message)]
    Api(ApiError),
    #[error("CAMS answered HTTP {http_status} with {detail}")]
    BadResponse { http_status: u16, detail: String },
    #[error("CAMS answered HTTP {http_status} with a body over {limit} bytes")]
    BodyTooLarge { http_status: u16, limit: usize },
    /// `detail` is the innermost cause (e.g. `Connection refused`), which is what an operator
    /// needs; the whole chain stays reachable through `source()`, without the URL.
    #[error("could not reach CAMS: {what}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Transport {
        what: &'static str,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("CAMS did not answer within the upstream timeout")]
    Timeout,
    #[error("no credentials to sign with: {0}")]
    Credentials(#[source] CredentialsError),
}

impl CamsError {
    /// How the attempt ended, for its metric and span.
    pub fn outcome(&self) -> UpstreamOutcome<'_> {
        match self {
            Self::Api(api) => UpstreamOutcome::Code(&api.code),
            Self::BadResponse { .. } => UpstreamOutcome::BadResponse,
            Self::BodyTooLarge { .. } => UpstreamOutcome::BodyTooLarge,
            Self::Transport { .. } => UpstreamOutcome::Transport,
            Self::Timeout => UpstreamOutcome::Timeout,
            Self::Credentials(_) => UpstreamOutcome::NotSent,
        }
    }

    /// The HTTP status CAMS (or whatever answered) sent, when there was an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api(api) => Some(api.http_status),
            Self::BadResponse { http_status, .. } | Self::BodyTooLarge { http_status, .. } => {
                Some(*http_status)
            }
            Self::Transport { .. } | Self::Timeout | Self::Credentials(_) => None,
        }
    }

    /// How long CAMS asked the gateway to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApiErrorKind::*;

    #[test]
    fn documented_codes() {
        let cases = [
            ("Product.Unsubscript", 400, FailedPrecondition),
            ("Ram.PermissionDeny", 400, PermissionDenied),
            ("System.LimitControl", 400, Throttled),
            ("Unknown.ResourceOwnerId", 400, PermissionDenied),
            ("Forbidden.RAM", 403, PermissionDenied),
            ("Throttling", 400, Throttled),
            ("Throttling.User", 400, Throttled),
            ("Throttling.Api", 400, Throttled),
            ("InvalidAccessKeyId.NotFound", 404, GatewayMisconfigured),
            ("InvalidAccessKeyId.Inactive", 400, GatewayMisconfigured),
            ("SignatureDoesNotMatch", 400, GatewayMisconfigured),
            ("IncompleteSignature", 400, GatewayMisconfigured),
            ("InvalidTimeStamp.Expired", 400, GatewayMisconfigured),
            ("SignatureNonceUsed", 400, GatewayMisconfigured),
            ("InvalidAction", 404, GatewayMisconfigured),
            ("Flow.NotExist", 404, NotFound),
            ("InvalidFlowId.NotFound", 404, NotFound),
            ("MissingParameter", 400, InvalidArgument),
            ("InvalidParameter", 400, InvalidArgument),
            ("InvalidParameterValue", 400, InvalidArgument),
            ("InternalError", 500, Unavailable),
            ("ServiceUnavailable", 503, Unavailable),
            ("Something.New", 502, Unavailable),
            ("Something.New", 400, Unknown),
            ("ThrottlingX", 400, Unknown),
        ];
        for (code, status, kind) in cases {
            assert_eq!(classify(code, status), kind, "{code}");
        }
    }
}
