//! The one error type of the request path. The gRPC edge turns it into a status in one match
//! (`grpc::status`).

use std::time::Duration;

use crate::{cams::CamsError, domain::TenantId, limits::TenantQuota};

/// A field of the request that failed validation, named as in the proto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: &'static str,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("tenant {tenant} is over its quota of {}", quota.describe())]
    TenantRateLimited {
        tenant: TenantId,
        quota: TenantQuota,
        retry_after: Duration,
    },
    #[error(
        "the account's CAMS quota of {account_rps} calls per second is spent{}",
        if *queue_full { " and the wait queue is full" } else { "" }
    )]
    AccountRateLimited {
        tenant: TenantId,
        account_rps: u32,
        retry_after: Duration,
        queue_full: bool,
    },
    #[error(transparent)]
    Cams(#[from] CamsError),
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] crate::auth::AuthError),
    #[error("{caller} may not read tenant {tenant}")]
    TenantNotAllowed { caller: String, tenant: TenantId },
    #[error("the gateway is at its limit of {max_in_flight} calls in flight")]
    Overloaded { max_in_flight: usize },
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// CAMS failing or throttling, or the account quota spent: when a stale answer may stand in.
    pub fn is_upstream_trouble(&self) -> bool {
        match self {
            Self::Cams(e) => e.is_retryable(),
            Self::AccountRateLimited { .. } => true,
            _ => false,
        }
    }
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}
