use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, time::Instant};
use tonic::{Request, Response, Status};
use tracing::{Instrument, field};

use super::{
    CACHE_HEADER,
    deadline::grpc_timeout,
    status::{code_name, to_status},
};
use crate::{
    auth::Authenticator,
    error::Error,
    gateway::{FlowQuery, Gateway, Source},
    pb::{self, flow_service_server::FlowService},
    tls::ConnInfo,
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
    auth: Arc<Authenticator>,
    /// Bound on every call, and the deadline of one whose caller set none.
    max_call: Duration,
    /// Calls being served; past `max_in_flight` new ones are shed at once, so that a flood costs
    /// a bounded amount of memory and the calls already admitted keep their latency.
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl FlowApi {
    pub fn new(
        gateway: Gateway,
        auth: Arc<Authenticator>,
        max_call: Duration,
        max_in_flight: usize,
    ) -> Self {
        Self {
            gateway,
            auth,
            max_call,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
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
        // Authenticated before anything else is looked at, so that unauthenticated floods cost
        // no validation, no limiter state and no cache lookups.
        let caller = self
            .auth
            .authenticate(request.metadata(), request.extensions().get::<ConnInfo>());
        let message = request.into_inner();
        let span = tracing::info_span!(
            "GetFlow",
            tenant = %message.cust_space_id.escape_debug(),
            flow_id = %message.flow_id.escape_debug(),
            caller = field::Empty,
            cams_request_id = field::Empty,
            grpc_code = field::Empty,
            cache = field::Empty,
            latency_us = field::Empty,
        );
        async move {
            let admitted = Arc::clone(&self.in_flight).try_acquire_owned();
            let outcome = match (admitted, caller) {
                (Err(_), _) => Err(Error::Overloaded {
                    max_in_flight: self.max_in_flight,
                }),
                (_, Err(e)) => Err(Error::Unauthenticated(e)),
                (Ok(_admitted), Ok(caller)) => {
                    tracing::Span::current().record("caller", caller.name.as_str());
                    match FlowQuery::try_from(message) {
                        Err(e) => Err(e),
                        Ok(query) if !caller.tenants.allows(&query.tenant) => {
                            Err(Error::TenantNotAllowed {
                                caller: caller.name.clone(),
                                tenant: query.tenant,
                            })
                        }
                        Ok(query) => self.gateway.get_flow(&query, deadline).await,
                    }
                }
            };
            let span = tracing::Span::current();
            span.record("latency_us", started.elapsed().as_micros() as u64);
            match outcome {
                Ok(served) => {
                    span.record("cams_request_id", served.answer.request_id.as_str());
                    span.record("grpc_code", "OK");
                    span.record("cache", served.source.as_str());
                    // Cache hits are the high-volume path and touch no upstream: their line is
                    // debug-level, so that an access log at info costs the hot path nothing.
                    if served.source == Source::Hit {
                        tracing::debug!("served");
                    } else {
                        tracing::info!("served");
                    }
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
                    if let Error::Cams(crate::cams::CamsError::Api(api)) = &error {
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
