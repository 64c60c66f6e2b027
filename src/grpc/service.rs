use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::{Instrument, field};

use super::{
    CACHE_HEADER,
    deadline::grpc_timeout,
    status::{code_name, to_status},
};
use crate::{
    gateway::{FlowQuery, Gateway},
    pb::{self, flow_service_server::FlowService},
};

/// Time kept back from the caller's deadline, so that the gateway's DEADLINE_EXCEEDED (with its
/// details) reaches the caller before the caller's own timer fires, and before tonic's server
/// timer (started a little earlier) would answer CANCELLED.
fn deadline_margin(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(2), Duration::from_millis(100))
}

/// `cams.flows.v1.FlowService`.
#[derive(Debug, Clone)]
pub struct FlowApi {
    gateway: Gateway,
    /// Bound on every call, and the deadline of one whose caller set none.
    max_call: Duration,
}

impl FlowApi {
    pub fn new(gateway: Gateway, max_call: Duration) -> Self {
        Self { gateway, max_call }
    }
}

#[tonic::async_trait]
impl FlowService for FlowApi {
    async fn get_flow(
        &self,
        request: Request<pb::GetFlowRequest>,
    ) -> Result<Response<pb::GetFlowResponse>, Status> {
        let started = Instant::now();
        let budget = match grpc_timeout(request.metadata()) {
            Some(t) => t.saturating_sub(deadline_margin(t)).min(self.max_call),
            None => self.max_call,
        };
        let deadline = started + budget;
        let message = request.into_inner();
        let span = tracing::info_span!(
            "GetFlow",
            tenant = %message.cust_space_id.escape_debug(),
            flow_id = %message.flow_id.escape_debug(),
            cams_request_id = field::Empty,
            grpc_code = field::Empty,
            cache = field::Empty,
            latency_us = field::Empty,
        );
        async move {
            let outcome = match FlowQuery::try_from(message) {
                Ok(query) => self.gateway.get_flow(&query, deadline).await,
                Err(e) => Err(e),
            };
            let span = tracing::Span::current();
            span.record("latency_us", started.elapsed().as_micros() as u64);
            match outcome {
                Ok(served) => {
                    span.record("cams_request_id", served.answer.request_id.as_str());
                    span.record("grpc_code", "OK");
                    span.record("cache", served.source.as_str());
                    tracing::info!("served");
                    let mut response = Response::new(pb::GetFlowResponse {
                        flow: Some(pb::Flow::from(&served.answer.flow)),
                        request_id: served.answer.request_id.clone(),
                    });
                    response.metadata_mut().insert(
                        CACHE_HEADER,
                        tonic::metadata::MetadataValue::from_static(served.source.as_str()),
                    );
                    Ok(response)
                }
                Err(error) => {
                    let status = to_status(&error);
                    span.record("grpc_code", code_name(status.code()));
                    if let crate::error::Error::Cams(crate::cams::CamsError::Api(api)) = &error {
                        span.record("cams_request_id", api.request_id.as_str());
                    }
                    if status.code() == tonic::Code::Internal {
                        tracing::error!(error = %error, "failed: the gateway needs an operator");
                    } else {
                        tracing::info!(error = %error, "failed");
                    }
                    Err(status)
                }
            }
        }
        .instrument(span)
        .await
    }
}
