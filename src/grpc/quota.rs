//! `cams.flows.v1.QuotaService/GetQuota`: a tenant's and the caller's limits and where they
//! stand, and the account's budget of each CAMS action, read without spending anything. The
//! caller is authenticated and authorized like FlowService's, and the call passes the layers
//! that guard the server (drain, deadline, load shedding) inside one of its own ([`Counted`]):
//! the `grpc_server_*` series of `cams.flows.v1.QuotaService`, its refusals in
//! `cams_flows_rejections_total`, and the call's log line (at debug level when it is answered: a
//! poll is not news). It has no span: nothing it does is remote but
//! a read of Redis.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Level;

use super::{
    FlowApi,
    call::{Answered, Call, Exchange, Handle, Logged, Outcome, Reply, may_read},
    layers::{Bounded, Drained, Shed, Surroundings},
    status::{code_name, rejection, to_status},
};
use crate::{
    domain::{Action, CacheResult, TenantId, as_logged},
    error::{Error, FieldViolation},
    gateway::Gateway,
    limits::Standing,
    pb::{self, quota_service_server::QuotaService},
    telemetry::{CallRecord, ErrorChain, call_event, metrics::Metrics},
};

/// `cams.flows.v1.QuotaService/GetQuota`.
pub(crate) struct GetQuotaRpc;

impl Exchange for GetQuotaRpc {
    type Request = pb::GetQuotaRequest;
    type Response = pb::GetQuotaResponse;
}

impl Logged for pb::GetQuotaRequest {
    fn tenant(&self) -> &str {
        &self.cust_space_id
    }

    fn flow_id(&self) -> Option<&str> {
        None
    }
}

impl Answered for pb::GetQuotaResponse {
    fn request_id(&self) -> &str {
        ""
    }
}

pub(crate) struct GetQuota {
    pub gateway: Gateway,
}

impl Handle<GetQuotaRpc> for GetQuota {
    async fn handle(&self, call: &Call<pb::GetQuotaRequest>) -> Outcome<pb::GetQuotaResponse> {
        // Authenticated, but the caller's own limit is looked at, not spent.
        let caller = call
            .caller
            .as_ref()
            .map_err(|e| Error::Unauthenticated(*e))?;
        let tenant = TenantId::parse(call.message.cust_space_id.as_str()).map_err(|e| {
            Error::InvalidArgument(vec![FieldViolation {
                field: "cust_space_id",
                description: e.to_string(),
            }])
        })?;
        may_read(caller, &tenant)?;
        let shadow = self.gateway.shadow();
        let tenant_standing = self.gateway.tenants().peek(&tenant).await;
        let caller_limit = match &caller.limit {
            Some(limit) => limit
                .peek()
                .await
                .map(|standing| limit_pb("caller", standing, shadow.caller(limit.is_shadow()))),
            None => None,
        };
        let accounts = self.gateway.accounts();
        let actions = Action::ALL
            .iter()
            .map(|&action| {
                let account = accounts.of(action);
                pb::ActionBudget {
                    action: action.cams_name().to_owned(),
                    account_rps: account.rps(),
                    used_last_second: account.used_last_second(),
                    waiting: u32::try_from(account.queued()).unwrap_or(u32::MAX),
                }
            })
            .collect();
        Ok(Reply {
            message: pb::GetQuotaResponse {
                tenant: tenant_standing
                    .map(|standing| limit_pb("tenant", standing, shadow.tenant(&tenant))),
                caller: caller_limit,
                actions,
            },
            // Nothing was read from the cache or CAMS.
            source: CacheResult::Hit,
        })
    }
}

fn limit_pb(name: &str, standing: Standing, shadow: bool) -> pb::Limit {
    pb::Limit {
        name: name.to_owned(),
        rps: standing.quota.rps,
        burst: standing.quota.burst.get(),
        remaining: standing.remaining,
        reset: Some(prost_types::Duration {
            seconds: i64::try_from(standing.reset.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(standing.reset.subsec_nanos()).unwrap_or(0),
        }),
        shadow,
    }
}

/// The layers around GetQuota: its series and log line, then those that guard the server.
pub(crate) type QuotaStack = Counted<Drained<Bounded<Shed<GetQuota>>>>;

pub(crate) fn stack(gateway: Gateway, around: &Surroundings) -> QuotaStack {
    Counted {
        metrics: around.metrics.clone(),
        inner: Drained {
            expired: around.drain_expired.clone(),
            inner: Bounded {
                inner: Shed {
                    in_flight: Arc::clone(&around.in_flight),
                    max_in_flight: around.max_in_flight,
                    inner: GetQuota { gateway },
                },
            },
        },
    }
}

/// GetQuota in the metrics and the log: FlowService's layers for both are by CAMS action.
pub(crate) struct Counted<H> {
    metrics: Metrics,
    inner: H,
}

impl<H: Handle<GetQuotaRpc>> Handle<GetQuotaRpc> for Counted<H> {
    async fn handle(&self, call: &Call<pb::GetQuotaRequest>) -> Outcome<pb::GetQuotaResponse> {
        let mut handling = Handling {
            metrics: &self.metrics,
            started: call.budget.arrival(),
            done: false,
        };
        self.metrics.quota_call_started();
        let outcome = self.inner.handle(call).await;
        handling.done = true;
        let record = CallRecord {
            method: "GetQuota",
            tenant: as_logged(call.message.tenant()),
            flow_id: "",
            caller: call.caller.as_ref().ok().map(|c| &*c.name),
            latency_us: u64::try_from(handling.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            trace: None,
        };
        let code = match &outcome {
            Ok(_) => {
                call_event!(Level::DEBUG, record, grpc_code = "OK", "served");
                tonic::Code::Ok
            }
            Err(failure) => {
                if let Some(reason) = rejection(failure) {
                    self.metrics.rejected(reason, call.message.tenant());
                }
                let code = failure.disposition().code;
                let error = ErrorChain(&**failure);
                call_event!(Level::INFO, record, grpc_code = code_name(code), error = %error, "failed");
                code
            }
        };
        self.metrics
            .quota_call_handled(code, handling.started.elapsed());
        outcome
    }
}

/// Counts the call as `Canceled` if it is dropped before it is answered.
struct Handling<'a> {
    metrics: &'a Metrics,
    started: tokio::time::Instant,
    done: bool,
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .quota_call_handled(tonic::Code::Cancelled, self.started.elapsed());
        }
    }
}

/// `cams.flows.v1.QuotaService`, served beside FlowService and sharing its authentication,
/// its limits and its bound on calls in flight.
#[derive(Clone, Debug)]
pub struct QuotaApi {
    flows: FlowApi,
}

impl FlowApi {
    /// QuotaService over this FlowService's limits.
    pub fn quota_service(&self) -> QuotaApi {
        QuotaApi {
            flows: self.clone(),
        }
    }
}

#[tonic::async_trait]
impl QuotaService for QuotaApi {
    async fn get_quota(
        &self,
        request: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::GetQuotaResponse>, Status> {
        let call = self.flows.call(request);
        match self.flows.quota_stack().handle(&call).await {
            Ok(reply) => Ok(Response::new(reply.message)),
            Err(failure) => Err(to_status(&failure)),
        }
    }
}
