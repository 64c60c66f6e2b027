//! Every label value a metric can carry, as a closed set: each series is created once, at start,
//! and a call picks its handle by index. Nothing a caller sends becomes a label value.

pub use crate::domain::CacheResult;
use tonic::Code;

/// `grpc_code` as go-grpc-middleware writes it (grpc-go's `Code.String()`), so that stock gRPC
/// dashboards and alerts match; indexed by the code's number.
pub(super) const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

pub(super) fn grpc_code_index(code: Code) -> usize {
    // tonic's codes are gRPC's numbers, 0 to 16.
    (code as usize).min(GRPC_CODES.len() - 1)
}

/// Why the gateway itself refused a call, named as the `google.rpc.ErrorInfo` reason the caller
/// gets, so that a refusal a client reports and the series that counts it read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    InvalidArgument,
    Unauthenticated,
    CallerRateLimited,
    TenantNotAllowed,
    TenantRateLimited,
    AccountRateLimited,
    QuotaStoreUnavailable,
    CredentialsUnavailable,
    Overloaded,
    DeadlineExceeded,
    ShuttingDown,
}

impl Rejection {
    pub(super) const ALL: [Self; 11] = [
        Self::InvalidArgument,
        Self::Unauthenticated,
        Self::CallerRateLimited,
        Self::TenantNotAllowed,
        Self::TenantRateLimited,
        Self::AccountRateLimited,
        Self::QuotaStoreUnavailable,
        Self::CredentialsUnavailable,
        Self::Overloaded,
        Self::DeadlineExceeded,
        Self::ShuttingDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::CallerRateLimited => "CALLER_RATE_LIMITED",
            Self::TenantNotAllowed => "TENANT_NOT_ALLOWED",
            Self::TenantRateLimited => "TENANT_RATE_LIMITED",
            Self::AccountRateLimited => "ACCOUNT_RATE_LIMITED",
            Self::QuotaStoreUnavailable => "QUOTA_STORE_UNAVAILABLE",
            Self::CredentialsUnavailable => "CREDENTIALS_UNAVAILABLE",
            Self::Overloaded => "OVERLOADED",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::ShuttingDown => "SHUTTING_DOWN",
        }
    }
}

/// The CAMS `Code`s worth a series of their own: the documented ones and those the gateway
/// treats specially. Any other code CAMS sends is counted as `other` (its exact text is in the
/// call's log line), so that a new or garbled code cannot add series.
pub(super) const CAMS_CODES: [&str; 23] = [
    "OK",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "System.LimitControl",
    "ServiceUnavailable",
    "InternalError",
    "Flow.NotExist",
    "InvalidFlowId.NotFound",
    "Ram.PermissionDeny",
    "Forbidden.RAM",
    "Unknown.ResourceOwnerId",
    "Product.Unsubscript",
    "MissingParameter",
    "InvalidParameter",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "SignatureNonceUsed",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "InvalidSecurityToken.Expired",
    "InvalidSecurityToken.Mismatch",
    "InvalidTimeStamp.Expired",
];

/// How one attempt at CAMS ended: the CAMS `Code` it answered, or why there was no envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome<'a> {
    /// CAMS answered with this `Code` (`OK` for a success).
    Code(&'a str),
    /// The connection failed or broke off.
    Transport,
    /// No answer within `upstream.request_timeout_ms`.
    Timeout,
    /// Something other than a CAMS envelope came back (a proxy's page, a broken body).
    BadResponse,
    BodyTooLarge,
    /// The call's bound passed with the attempt still under way.
    Abandoned,
    /// The request could not be made (its signature is not a valid header value).
    NotSent,
}

impl<'a> UpstreamOutcome<'a> {
    /// The outcome as a span attribute shows it: CAMS's code as sent, or the transport outcome.
    pub fn name(self) -> &'a str {
        match self {
            Self::Code(code) => code,
            other => TRANSPORT_OUTCOMES[outcome_index(other) - CAMS_CODES.len() - 1],
        }
    }
}

/// The transport outcomes, after the codes in [`CAMS_CODES`] and `other`.
pub(super) const TRANSPORT_OUTCOMES: [&str; 6] = [
    "transport",
    "timeout",
    "bad_response",
    "body_too_large",
    "abandoned",
    "not_sent",
];

/// Index into `CAMS_CODES ++ ["other"] ++ TRANSPORT_OUTCOMES`.
pub(super) fn outcome_index(outcome: UpstreamOutcome<'_>) -> usize {
    let other = CAMS_CODES.len();
    match outcome {
        UpstreamOutcome::Code(code) => CAMS_CODES.iter().position(|c| *c == code).unwrap_or(other),
        UpstreamOutcome::Transport => other + 1,
        UpstreamOutcome::Timeout => other + 2,
        UpstreamOutcome::BadResponse => other + 3,
        UpstreamOutcome::BodyTooLarge => other + 4,
        UpstreamOutcome::Abandoned => other + 5,
        UpstreamOutcome::NotSent => other + 6,
    }
}

pub(super) fn outcome_names() -> impl Iterator<Item = &'static str> {
    CAMS_CODES
        .iter()
        .copied()
        .chain(std::iter::once("other"))
        .chain(TRANSPORT_OUTCOMES.iter().copied())
}

/// Why the account quota turned an attempt away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    QueueFull,
    WouldWaitTooLong,
    StoreUnavailable,
}

impl QuotaRefusal {
    pub(super) const ALL: [Self; 3] = [
        Self::QueueFull,
        Self::WouldWaitTooLong,
        Self::StoreUnavailable,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::WouldWaitTooLong => "would_wait_too_long",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

/// How a refresh-ahead ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    /// A new answer was stored.
    Ok,
    /// CAMS (or the quota) failed it; the cached answer stays until its TTL.
    Failed,
    /// Another replica refreshes (or just refreshed) the flow.
    LeftToOthers,
}

impl RefreshResult {
    pub(super) const ALL: [Self; 3] = [Self::Ok, Self::Failed, Self::LeftToOthers];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::LeftToOthers => "left_to_others",
        }
    }
}

/// The value of `tenant` for a tenant not named in `[limits.tenants]`.
pub(super) const OTHER_TENANT: &str = "_other";
/// The value of `tenant` for the account's own space (`CustSpaceId` empty), when it is named.
pub(super) const OWN_SPACE: &str = "_own_space";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_has_its_go_name() {
        assert_eq!(GRPC_CODES[grpc_code_index(Code::Ok)], "OK");
        assert_eq!(GRPC_CODES[grpc_code_index(Code::Cancelled)], "Canceled");
        assert_eq!(
            GRPC_CODES[grpc_code_index(Code::ResourceExhausted)],
            "ResourceExhausted"
        );
        assert_eq!(
            GRPC_CODES[grpc_code_index(Code::Unauthenticated)],
            "Unauthenticated"
        );
    }

    #[test]
    fn unknown_cams_codes_are_grouped() {
        let names: Vec<_> = outcome_names().collect();
        let name = |o| names[outcome_index(o)];
        assert_eq!(
            name(UpstreamOutcome::Code("Throttling.User")),
            "Throttling.User"
        );
        assert_eq!(name(UpstreamOutcome::Code("Brand.New")), "other");
        assert_eq!(name(UpstreamOutcome::Code("")), "other");
        assert_eq!(name(UpstreamOutcome::Timeout), "timeout");
        assert_eq!(name(UpstreamOutcome::Abandoned), "abandoned");
        assert_eq!(UpstreamOutcome::NotSent.name(), "not_sent");
        assert_eq!(UpstreamOutcome::Code("Brand.New").name(), "Brand.New");
    }
}
