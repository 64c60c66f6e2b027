//! Every failure of the request path becomes a `tonic::Status` here, in one match, with the
//! `google.rpc` details the proto documents.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{CAMS_DOMAIN, LOCAL_DOMAIN};
use crate::{
    cams::{ApiError, ApiErrorKind, CamsError},
    error::Error,
    telemetry::metrics::Rejection,
};

/// Back-off suggested for upstream throttling when CAMS sends no `x-acs-retry-after`: the quota
/// is counted per second.
const DEFAULT_THROTTLE_RETRY: Duration = Duration::from_secs(1);

/// Back-off suggested when the gateway sheds load: long enough for in-flight calls to drain.
const OVERLOAD_RETRY: Duration = Duration::from_millis(100);

/// Back-off suggested when the gateway is going away: another replica can take the call now.
const SHUTDOWN_RETRY: Duration = Duration::from_millis(100);

/// What the server answers on its own, before or around the services (see `server::Answers`).
pub fn answers() -> crate::server::Answers {
    crate::server::Answers {
        deadline_exceeded: || to_status(&Error::DeadlineExceeded),
        shutting_down: || to_status(&Error::ShuttingDown),
    }
}

/// Trailer that gRPC clients with retry support read as the server's pushback.
pub const RETRY_PUSHBACK_TRAILER: &str = "grpc-retry-pushback-ms";

/// The status of a failure: its code as [`Error::disposition`] decides, and the details the
/// proto documents for it.
pub fn to_status(error: &Error) -> Status {
    let code = error.disposition().code;
    match error {
        Error::InvalidArgument(violations) => {
            let mut details = ErrorDetails::new();
            for v in violations {
                details.add_bad_request_violation(v.field, &v.description);
            }
            details.set_error_info("INVALID_ARGUMENT", LOCAL_DOMAIN, HashMap::new());
            Status::with_error_details(code, error.to_string(), details)
        }
        Error::TenantRateLimited {
            tenant,
            quota,
            retry_after,
        } => rate_limited(
            code,
            error,
            "TENANT_RATE_LIMITED",
            ("tenant", tenant.as_str()),
            format!("tenant:{}", tenant.as_str()),
            format!("calls of this tenant, all RPCs: {}", quota.describe()),
            *retry_after,
        ),
        Error::AccountRateLimited {
            tenant,
            action,
            account_rps,
            retry_after,
            ..
        } => rate_limited(
            code,
            error,
            "ACCOUNT_RATE_LIMITED",
            ("tenant", tenant.as_str()),
            "account".to_owned(),
            format!(
                "CAMS {action} calls of the whole account: {account_rps} per sliding second, \
                 shared by all tenants"
            ),
            *retry_after,
        ),
        Error::CallerRateLimited {
            caller,
            quota,
            retry_after,
        } => rate_limited(
            code,
            error,
            "CALLER_RATE_LIMITED",
            ("caller", caller),
            format!("caller:{caller}"),
            format!("calls of this caller, all RPCs: {}", quota.describe()),
            *retry_after,
        ),
        Error::QuotaStoreUnavailable { retry_after } => come_back(
            code,
            "QUOTA_STORE_UNAVAILABLE",
            HashMap::new(),
            error,
            *retry_after,
        ),
        Error::Unauthenticated(e) => local(code, e.reason(), error, None),
        Error::TenantNotAllowed { caller, tenant } => {
            let mut details = ErrorDetails::new();
            details.set_error_info(
                "TENANT_NOT_ALLOWED",
                LOCAL_DOMAIN,
                HashMap::from([
                    ("tenant".to_owned(), tenant.as_str().to_owned()),
                    ("caller".to_owned(), caller.clone()),
                ]),
            );
            Status::with_error_details(code, error.to_string(), details)
        }
        Error::AdminRoleRequired { caller } => {
            let mut details = ErrorDetails::new();
            details.set_error_info(
                "ADMIN_ROLE_REQUIRED",
                LOCAL_DOMAIN,
                HashMap::from([("caller".to_owned(), caller.clone())]),
            );
            Status::with_error_details(code, error.to_string(), details)
        }
        Error::SharedCacheUnavailable => local(code, "SHARED_CACHE_UNAVAILABLE", error, None),
        Error::Overloaded { max_in_flight } => come_back(
            code,
            "OVERLOADED",
            HashMap::from([("maxInFlight".to_owned(), max_in_flight.to_string())]),
            error,
            OVERLOAD_RETRY,
        ),
        Error::DeadlineExceeded => local(code, "DEADLINE_EXCEEDED", error, None),
        Error::ShuttingDown => {
            come_back(code, "SHUTTING_DOWN", HashMap::new(), error, SHUTDOWN_RETRY)
        }
        Error::Internal(_) => local(code, "INTERNAL", error, None),
        Error::Cams(cams) => cams_status(code, cams),
    }
}

fn cams_status(code: Code, error: &CamsError) -> Status {
    match error {
        CamsError::Api(api) => api_status(code, api),
        CamsError::BadResponse { http_status, .. } => {
            local(code, "UPSTREAM_BAD_RESPONSE", error, Some(*http_status))
        }
        CamsError::BodyTooLarge { http_status, .. } => {
            local(code, "UPSTREAM_BODY_TOO_LARGE", error, Some(*http_status))
        }
        CamsError::Transport { .. } => local(code, "UPSTREAM_UNREACHABLE", error, None),
        CamsError::Timeout => local(code, "UPSTREAM_TIMEOUT", error, None),
        CamsError::Credentials(_) => local(
            code,
            "CREDENTIALS_UNAVAILABLE",
            "the gateway has no usable CAMS credentials; see its logs",
            None,
        ),
    }
}

fn local(code: Code, reason: &str, message: impl ToString, http_status: Option<u16>) -> Status {
    let mut details = ErrorDetails::new();
    let metadata: HashMap<String, String> = http_status
        .map(|s| ("httpStatus".to_owned(), s.to_string()))
        .into_iter()
        .collect();
    details.set_error_info(reason, LOCAL_DOMAIN, metadata);
    Status::with_error_details(code, message.to_string(), details)
}

/// A local refusal that tells the caller when to come back: `RetryInfo` and the pushback
/// trailer.
fn come_back(
    code: Code,
    reason: &str,
    metadata: HashMap<String, String>,
    error: &Error,
    wait: Duration,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, LOCAL_DOMAIN, metadata);
    details.set_retry_info(Some(wait));
    let mut status = Status::with_error_details(code, error.to_string(), details);
    add_pushback(&mut status, wait);
    status
}

/// A refusal by one of the gateway's own limits. `who` names the party in `ErrorInfo` (the
/// tenant, or the caller), `subject` the `QuotaFailure` violation.
fn rate_limited(
    code: Code,
    error: &Error,
    reason: &str,
    who: (&str, &str),
    subject: String,
    description: String,
    retry_after: Duration,
) -> Status {
    // Whole milliseconds, rounded up, so that RetryInfo and the pushback trailer agree and a
    // client that waits exactly that long finds capacity.
    let retry_after = Duration::from_millis(ceil_millis(retry_after).max(1));
    let mut details = ErrorDetails::new();
    details.set_error_info(
        reason,
        LOCAL_DOMAIN,
        HashMap::from([
            (who.0.to_owned(), who.1.to_owned()),
            ("limit".to_owned(), description.clone()),
        ]),
    );
    details.add_quota_failure_violation(subject, description);
    details.set_retry_info(Some(retry_after));
    let mut status = Status::with_error_details(code, error.to_string(), details);
    add_pushback(&mut status, retry_after);
    status
}

fn api_status(code: Code, api: &ApiError) -> Status {
    let kind = api.kind();
    // CAMS's text for a refused signature can describe the request; callers get the code only.
    let message = if kind == ApiErrorKind::GatewayMisconfigured {
        format!(
            "CAMS refused the gateway's credentials or signature ({}); the operator must fix the \
             gateway's configuration",
            api.code
        )
    } else {
        format!("CAMS {}: {}", api.code, api.message)
    };
    let mut metadata = HashMap::from([("httpStatus".to_owned(), api.http_status.to_string())]);
    if !api.request_id.is_empty() {
        metadata.insert("requestId".to_owned(), api.request_id.clone());
    }
    let mut details = ErrorDetails::new();
    details.set_error_info(&api.code, CAMS_DOMAIN, metadata);
    if kind == ApiErrorKind::Throttled {
        let wait = api.retry_after.unwrap_or(DEFAULT_THROTTLE_RETRY);
        details.set_retry_info(Some(wait));
        let mut status = Status::with_error_details(code, message, details);
        add_pushback(&mut status, wait);
        return status;
    }
    Status::with_error_details(code, message, details)
}

/// Adds `grpc-retry-pushback-ms`, which tonic sends as a trailer of the error response.
pub fn add_pushback(status: &mut Status, wait: Duration) {
    if let Ok(value) = ceil_millis(wait).to_string().parse() {
        status.metadata_mut().insert(RETRY_PUSHBACK_TRAILER, value);
    }
}

fn ceil_millis(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The canonical name of a status code (`PERMISSION_DENIED`), as gRPC documents and logs it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Whether the gateway refused the call itself (and why, as `ErrorInfo` names it), for
/// `cams_flows_rejections_total`; `None` for what CAMS answered and for internal errors.
pub fn rejection(error: &Error) -> Option<Rejection> {
    Some(match error {
        Error::InvalidArgument(_) => Rejection::InvalidArgument,
        Error::CallerRateLimited { .. } => Rejection::CallerRateLimited,
        Error::TenantRateLimited { .. } => Rejection::TenantRateLimited,
        Error::AccountRateLimited { .. } => Rejection::AccountRateLimited,
        Error::QuotaStoreUnavailable { .. } => Rejection::QuotaStoreUnavailable,
        Error::Unauthenticated(_) => Rejection::Unauthenticated,
        Error::TenantNotAllowed { .. } => Rejection::TenantNotAllowed,
        Error::Overloaded { .. } => Rejection::Overloaded,
        Error::DeadlineExceeded => Rejection::DeadlineExceeded,
        Error::ShuttingDown => Rejection::ShuttingDown,
        Error::Cams(CamsError::Credentials(_)) => Rejection::CredentialsUnavailable,
        Error::Cams(
            CamsError::Api(_)
            | CamsError::BadResponse { .. }
            | CamsError::BodyTooLarge { .. }
            | CamsError::Transport { .. }
            | CamsError::Timeout,
        )
        | Error::Internal(_) => return None,
        // The admin service's, whose calls are not the reads these count.
        Error::AdminRoleRequired { .. } | Error::SharedCacheUnavailable => return None,
    })
}
