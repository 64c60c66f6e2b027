//! The one error type of the request path, and the one place that decides what each failure
//! means: its gRPC code, whether another attempt at CAMS may help, and whether a stale answer
//! may stand in. Every match below names every variant, so a new failure does not compile until
//! it is decided. The gRPC edge (`grpc::status`) adds the details; it does not decide the code.

use std::{sync::Arc, time::Duration};

use tonic::Code;

use crate::{
    auth::AuthError,
    cams::{ApiErrorKind, CamsError},
    domain::{Action, TenantId},
    limits::Quota,
};

/// A field of the request that failed validation, named as in the proto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: &'static str,
    pub description: String,
}

/// Why a call failed. Not `Clone`: a failure shared by coalesced callers travels as
/// `Arc<Error>`, so causes keep their `source()` chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("caller {caller} is over its quota of {}", quota.describe())]
    CallerRateLimited {
        caller: String,
        quota: Quota,
        retry_after: Duration,
    },
    #[error("tenant {tenant} is over its quota of {}", quota.describe())]
    TenantRateLimited {
        tenant: TenantId,
        quota: Quota,
        retry_after: Duration,
    },
    #[error(
        "the account's CAMS {action} quota of {account_rps} calls per second is spent{}",
        if *queue_full { " and the wait queue is full" } else { "" }
    )]
    AccountRateLimited {
        tenant: TenantId,
        /// The CAMS action whose budget is spent.
        action: Action,
        account_rps: u32,
        retry_after: Duration,
        queue_full: bool,
    },
    #[error("the shared store of the account's quota (Redis) does not answer")]
    QuotaStoreUnavailable { retry_after: Duration },
    #[error(transparent)]
    Cams(#[from] CamsError),
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] AuthError),
    #[error("{caller} may not read tenant {tenant}")]
    TenantNotAllowed { caller: String, tenant: TenantId },
    #[error("{caller} has no admin role")]
    AdminRoleRequired { caller: String },
    #[error(
        "the cache the replicas share (Redis) does not answer: this replica's entries are dropped, \
         the shared cache's and the other replicas' may not be; call again"
    )]
    SharedCacheUnavailable,
    #[error("the gateway is at its limit of {max_in_flight} calls in flight")]
    Overloaded { max_in_flight: usize },
    #[error("the call's deadline passed before CAMS answered")]
    DeadlineExceeded,
    #[error("the gateway is shutting down and its drain ran out before this call was answered")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A failed call: its own error, or one it shares with every caller of the same coalesced load.
/// Either way it reads as an [`Error`]; sharing costs no allocation for the failures that are a
/// call's own (validation, limits), which are also the most frequent.
#[derive(Debug)]
pub enum Failure {
    Own(Error),
    Shared(Arc<Error>),
}

impl std::ops::Deref for Failure {
    type Target = Error;

    fn deref(&self) -> &Error {
        match self {
            Self::Own(error) => error,
            Self::Shared(error) => error,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Own(error)
    }
}

impl From<Arc<Error>> for Failure {
    fn from(error: Arc<Error>) -> Self {
        Self::Shared(error)
    }
}

/// What a failure means, decided in [`Error::disposition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disposition {
    /// The gRPC code the caller gets.
    pub code: Code,
    /// Whether the gateway tries CAMS again (within the retry budget and the deadline).
    pub retry: bool,
    /// Whether a cached answer past its TTL may be served instead (`cache.stale_if_error_ms`).
    pub stale_may_serve: bool,
}

impl Disposition {
    const fn new(code: Code, retry: bool, stale_may_serve: bool) -> Self {
        Self {
            code,
            retry,
            stale_may_serve,
        }
    }

    /// Refused by the gateway before CAMS was asked: nothing to retry, nothing stale to serve.
    const fn refused(code: Code) -> Self {
        Self::new(code, false, false)
    }

    /// CAMS is failing or throttling: another attempt may help, and a stale answer is better
    /// than none. The caller is told to come back later (UNAVAILABLE or RESOURCE_EXHAUSTED),
    /// which is exactly what the gateway itself does.
    const fn upstream_trouble(code: Code) -> Self {
        Self::new(code, true, true)
    }
}

impl Error {
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::InvalidArgument(_) => Disposition::refused(Code::InvalidArgument),
            Self::CallerRateLimited { .. } | Self::TenantRateLimited { .. } => {
                Disposition::refused(Code::ResourceExhausted)
            }
            // The quota is the gateway's own; CAMS was not asked, so there is nothing to retry,
            // but CAMS's capacity is spent and a stale answer serves the caller better.
            Self::AccountRateLimited { .. } => {
                Disposition::new(Code::ResourceExhausted, false, true)
            }
            // Without the store no call may go to CAMS (the quota fails closed); an answer past
            // its TTL serves the caller better than nothing.
            Self::QuotaStoreUnavailable { .. } => Disposition::new(Code::Unavailable, false, true),
            Self::Unauthenticated(_) => Disposition::refused(Code::Unauthenticated),
            Self::TenantNotAllowed { .. } | Self::AdminRoleRequired { .. } => {
                Disposition::refused(Code::PermissionDenied)
            }
            Self::SharedCacheUnavailable => Disposition::refused(Code::Unavailable),
            Self::Overloaded { .. } => Disposition::refused(Code::Unavailable),
            Self::DeadlineExceeded => Disposition::refused(Code::DeadlineExceeded),
            Self::ShuttingDown => Disposition::refused(Code::Unavailable),
            Self::Internal(_) => Disposition::refused(Code::Internal),
            Self::Cams(cams) => cams_disposition(cams),
        }
    }
}

fn cams_disposition(error: &CamsError) -> Disposition {
    match error {
        CamsError::Api(api) => match api.kind() {
            ApiErrorKind::Throttled => Disposition::upstream_trouble(Code::ResourceExhausted),
            ApiErrorKind::Unavailable => Disposition::upstream_trouble(Code::Unavailable),
            ApiErrorKind::InvalidArgument => Disposition::refused(Code::InvalidArgument),
            ApiErrorKind::PermissionDenied => Disposition::refused(Code::PermissionDenied),
            ApiErrorKind::FailedPrecondition => Disposition::refused(Code::FailedPrecondition),
            ApiErrorKind::NotFound => Disposition::refused(Code::NotFound),
            ApiErrorKind::GatewayMisconfigured => Disposition::refused(Code::Internal),
            ApiErrorKind::Unknown => Disposition::refused(Code::Unknown),
        },
        // Something between the gateway and CAMS (a proxy, a load balancer) answered instead of
        // CAMS, or the connection broke: transient as far as anyone can tell.
        CamsError::BadResponse { .. }
        | CamsError::BodyTooLarge { .. }
        | CamsError::Transport { .. }
        | CamsError::Timeout => Disposition::upstream_trouble(Code::Unavailable),
        // The gateway's own credentials are missing or expired and could not be refreshed: CAMS
        // was not asked, so there is nothing to retry, but the gateway comes back once its
        // credential source does, and a stale answer serves the caller better meanwhile.
        CamsError::Credentials(_) => Disposition::new(Code::Unavailable, false, true),
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cams::ApiError;

    fn api(code: &str, http_status: u16) -> Error {
        Error::Cams(CamsError::Api(ApiError {
            code: code.to_owned(),
            message: String::new(),
            request_id: String::new(),
            http_status,
            retry_after: None,
            recommend: None,
        }))
    }

    /// Whatever the gateway retries it reports as "come back later", and the other way round:
    /// the caller and the gateway never disagree about whether trying again can help.
    #[test]
    fn retried_failures_are_the_ones_callers_may_retry() {
        let cases = [
            api("Throttling.User", 400),
            api("ServiceUnavailable", 503),
            api("Something.New", 502),
            api("Flow.NotExist", 404),
            api("Ram.PermissionDeny", 400),
            api("SignatureDoesNotMatch", 400),
            api("Something.New", 400),
            Error::Cams(CamsError::BadResponse {
                http_status: 404,
                detail: "html".into(),
            }),
            Error::Cams(CamsError::BadResponse {
                http_status: 502,
                detail: "html".into(),
            }),
            Error::Cams(CamsError::BodyTooLarge {
                http_status: 200,
                limit: 1,
            }),
            Error::Cams(CamsError::Timeout),
            Error::DeadlineExceeded,
            Error::Overloaded { max_in_flight: 1 },
        ];
        for error in cases {
            let d = error.disposition();
            let later = matches!(d.code, Code::Unavailable | Code::ResourceExhausted);
            let from_cams = matches!(error, Error::Cams(_));
            assert_eq!(d.retry, later && from_cams, "{error}: {d:?}");
            if d.retry {
                assert!(d.stale_may_serve, "{error}");
            }
        }
    }

    /// No usable credentials: come back later (the gateway recovers with its credential source),
    /// nothing to retry at CAMS, and a stale answer may stand in.
    #[test]
    fn credentials_unavailable_is_unavailable() {
        let error = Error::Cams(CamsError::Credentials(
            crate::credentials::CredentialsError::NoProvider { tried: Vec::new() },
        ));
        assert_eq!(
            error.disposition(),
            Disposition::new(Code::Unavailable, false, true)
        );
    }

    #[test]
    fn the_callers_deadline_is_not_a_cams_failure() {
        let d = Error::DeadlineExceeded.disposition();
        assert_eq!(d, Disposition::refused(Code::DeadlineExceeded));
    }
}
