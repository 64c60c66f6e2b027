//! What happens to a validated call between the gRPC edge and the CAMS client.

use std::sync::Arc;

use tokio::time::Instant;

use crate::{
    cams::{CamsClient, FlowAnswer},
    domain::{FlowId, TenantId},
    error::Error,
    limits::{Limits, RejectionCause},
};

/// A validated GetFlow call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowQuery {
    pub tenant: TenantId,
    pub flow_id: FlowId,
}

/// How an answer was obtained; reported to callers in the `x-cams-cache` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched from CAMS for this call.
    Miss,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Miss => "miss",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Served {
    pub answer: Arc<FlowAnswer>,
    pub source: Source,
}

/// The request path behind the gRPC service.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: CamsClient,
    limits: Arc<Limits>,
}

impl Gateway {
    pub fn new(client: CamsClient, limits: Arc<Limits>) -> Self {
        Self { client, limits }
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    pub async fn get_flow(&self, query: &FlowQuery, deadline: Instant) -> Result<Served, Error> {
        let tenant = &query.tenant;
        self.limits
            .tenants
            .check(tenant)
            .map_err(|r| Error::TenantRateLimited {
                tenant: tenant.clone(),
                quota: r.quota,
                retry_after: r.retry_after,
            })?;
        let permit = self
            .limits
            .account
            .acquire(tenant, deadline)
            .await
            .map_err(|r| Error::AccountRateLimited {
                tenant: tenant.clone(),
                account_rps: self.limits.account.rps(),
                retry_after: r.retry_after,
                queue_full: r.cause == RejectionCause::QueueFull,
            })?;
        let answer = self.client.get_flow(tenant, &query.flow_id, deadline).await;
        drop(permit);
        let answer = answer?;
        Ok(Served {
            answer: Arc::new(answer),
            source: Source::Miss,
        })
    }
}
