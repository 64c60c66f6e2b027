use std::{sync::Arc, time::Duration};

use opentelemetry::context::FutureExt as _;
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Level;

use super::{
    CACHE_HEADER,
    status::{code_name, rejection, to_status},
};
use crate::{
    auth::{AuthError, Authenticator, Caller},
    cams::CamsError,
    domain::{CacheResult, FlowQuery, as_logged},
    error::{Error, Failure},
    gateway::{Gateway, Served},
    pb::{self, flow_service_server::FlowService},
    server::{Arrival, ConnInfo, grpc_timeout},
    telemetry::{
        CallRecord, ErrorChain, call_event,
        metrics::Metrics,
        trace::{CallSpan, CallTracer},
    },
};

/// Time kept back from the caller's deadline, so that the gateway's DEADLINE_EXCEEDED (with its
/// details) reaches the caller before the caller's own timer fires, and before the request
/// bound of the serving layer (`server::layers`, started at the stream's arrival) answers a
/// bare DEADLINE_EXCEEDED.
fn deadline_margin(timeout: Duration) -> Duration {
    (timeout / 5).clamp(Duration::from_millis(5), Duration::from_millis(200))
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
    /// Fires when the drain has run out; calls still running answer UNAVAILABLE then.
    drain_expired: CancellationToken,
    metrics: Metrics,
    tracer: CallTracer,
}

/// What the service reports besides its answers.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    pub metrics: Metrics,
    pub tracer: CallTracer,
}

impl FlowApi {
    pub fn new(
        gateway: Gateway,
        auth: Arc<Authenticator>,
        max_call: Duration,
        max_in_flight: usize,
        drain_expired: CancellationToken,
        observe: Observe,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let permits = Arc::downgrade(&in_flight);
        observe.metrics.probe(
            "cams_flows_calls_in_flight",
            "GetFlow calls being served now",
            None,
            Box::new(move || {
                let free = permits.upgrade()?.available_permits();
                Some(max_in_flight.saturating_sub(free) as f64)
            }),
        );
        observe.metrics.probe(
            "cams_flows_calls_max_in_flight",
            "GetFlow calls served at once at most (server.max_in_flight); more are refused",
            None,
            Box::new(move || Some(max_in_flight as f64)),
        );
        Self {
            gateway,
            auth,
            max_call,
            in_flight,
            max_in_flight,
            drain_expired,
            metrics: observe.metrics,
            tracer: observe.tracer,
        }
    }
}

impl FlowApi {
    /// The call from admission to its outcome; `message` stays with the caller for the log.
    async fn serve(
        &self,
        caller: &Result<Arc<Caller>, AuthError>,
        message: &pb::GetFlowRequest,
        deadline: Instant,
    ) -> Result<Served, Failure> {
        let Ok(_admitted) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return Err(Error::Overloaded {
                max_in_flight: self.max_in_flight,
            }
            .into());
        };
        let caller = caller.as_ref().map_err(|e| Error::Unauthenticated(*e))?;
        if let Some(limit) = &caller.limit {
            limit.check().map_err(|r| Error::CallerRateLimited {
                caller: caller.name.to_string(),
                quota: r.quota,
                retry_after: r.retry_after,
            })?;
        }
        let query = FlowQuery::try_from(message)?;
        if !caller.tenants.allows(&query.tenant) {
            return Err(Error::TenantNotAllowed {
                caller: caller.name.to_string(),
                tenant: query.tenant,
            }
            .into());
        }
        self.gateway.get_flow(&query, &caller.name, deadline).await
    }
}

#[tonic::async_trait]
impl FlowService for FlowApi {
    async fn get_flow(
        &self,
        request: Request<pb::GetFlowRequest>,
    ) -> Result<Response<pb::GetFlowResponse>, Status> {
        // The deadline runs from the stream's arrival, before its body was read.
        let started = request
            .extensions()
            .get::<Arrival>()
            .map_or_else(Instant::now, |arrival| arrival.0);
        let mut handling = Handling::start(&self.metrics, started);
        let budget = match grpc_timeout(request.metadata().as_ref()) {
            Some(t) => t.saturating_sub(deadline_margin(t)).min(self.max_call),
            None => self.max_call,
        };
        let deadline = started + budget;
        // Authenticated before anything else is looked at, so that unauthenticated floods cost
        // no validation, no limiter state and no cache lookups.
        let caller = self
            .auth
            .authenticate(request.metadata(), request.extensions().get::<ConnInfo>());
        // Only with tracing on: no span, no context, nothing extracted otherwise.
        let span = self.tracer.call(request.metadata());
        let message = request.into_inner();
        let serving = async {
            tokio::select! {
                biased;
                outcome = self.serve(&caller, &message, deadline) => outcome,
                // The drain has run out: the caller hears it from the gateway, not from a closed
                // connection.
                () = self.drain_expired.cancelled() => Err(Error::ShuttingDown.into()),
            }
        };
        let outcome = match &span {
            Some(span) => serving.with_context(span.context()).await,
            None => serving.await,
        };
        let elapsed = started.elapsed();
        let record = CallRecord {
            tenant: as_logged(&message.cust_space_id),
            flow_id: as_logged(&message.flow_id),
            caller: caller.as_ref().ok().map(|c| &*c.name),
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            trace: span.as_ref().and_then(CallSpan::ids),
        };
        match outcome {
            Ok(served) => {
                let id = served.answer.request_id.as_str();
                let cache = served.source.as_str();
                self.metrics.served(served.source);
                handling.done(tonic::Code::Ok, elapsed);
                if let Some(span) = span {
                    span.finish(tonic::Code::Ok, "OK", record.tenant, Some(cache));
                }
                // Cache hits are the high-volume path and touch no upstream: their line is
                // debug-level, so that an access log at info costs the hot path nothing.
                if served.source == CacheResult::Hit {
                    call_event!(
                        Level::DEBUG,
                        record,
                        cams_request_id = id,
                        grpc_code = "OK",
                        cache,
                        "served"
                    );
                } else {
                    call_event!(
                        Level::INFO,
                        record,
                        cams_request_id = id,
                        grpc_code = "OK",
                        cache,
                        "served"
                    );
                }
                let mut response = Response::new(pb::GetFlowResponse {
                    flow: Some(pb::Flow::from(&served.answer.flow)),
                    request_id: served.answer.request_id.clone(),
                });
                response.metadata_mut().insert(
                    CACHE_HEADER,
                    tonic::metadata::MetadataValue::from_static(cache),
                );
                Ok(response)
            }
            Err(error) => {
                let status = to_status(&error);
                let grpc_code = code_name(status.code());
                if let Some(reason) = rejection(&error) {
                    self.metrics.rejected(reason, &message.cust_space_id);
                }
                handling.done(status.code(), elapsed);
                if let Some(span) = span {
                    span.finish(status.code(), grpc_code, record.tenant, None);
                }
                let id = match &*error {
                    Error::Cams(CamsError::Api(api)) => Some(api.request_id.as_str()),
                    _ => None,
                };
                if status.code() == tonic::Code::Internal {
                    call_event!(Level::ERROR, record, cams_request_id = id, grpc_code, error = %ErrorChain(&*error), "failed: the gateway needs an operator");
                } else {
                    call_event!(Level::INFO, record, cams_request_id = id, grpc_code, error = %ErrorChain(&*error), "failed");
                }
                Err(status)
            }
        }
    }
}

/// A call as `grpc_server_started_total` and `grpc_server_handled_total` count it: one dropped
/// before its answer (the caller cancelled, and tonic dropped the handler) is counted as
/// `Canceled`, so that started minus handled is what is in flight.
struct Handling<'a> {
    metrics: &'a Metrics,
    started: Instant,
    done: bool,
}

impl<'a> Handling<'a> {
    fn start(metrics: &'a Metrics, started: Instant) -> Self {
        metrics.call_started();
        Self {
            metrics,
            started,
            done: false,
        }
    }

    fn done(&mut self, code: tonic::Code, elapsed: Duration) {
        self.done = true;
        self.metrics.call_handled(code, elapsed);
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .call_handled(tonic::Code::Cancelled, self.started.elapsed());
        }
    }
}
