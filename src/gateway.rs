//! What happens to a validated call between the gRPC edge and the CAMS client.

use std::sync::Arc;

use tokio::time::Instant;

use crate::{
    cams::{CamsClient, FlowAnswer},
    domain::{FlowId, TenantId},
    error::Error,
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
}

impl Gateway {
    pub fn new(client: CamsClient) -> Self {
        Self { client }
    }

    pub async fn get_flow(&self, query: &FlowQuery, deadline: Instant) -> Result<Served, Error> {
        let answer = self
            .client
            .get_flow(&query.tenant, &query.flow_id, deadline)
            .await?;
        Ok(Served {
            answer: Arc::new(answer),
            source: Source::Miss,
        })
    }
}
