//! `cams.flows.v1.QuotaService/GetQuota`: a tenant's and the caller's limits and where they
//! stand, and the account's budget of each CAMS action, read without spending anything. The
//! caller is authenticated and authorized like FlowService's, and the call passes the layers
//! that guard the server (drain, deadline, load shedding); it is not counted in FlowService's
//! series, which are by CAMS action.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    FlowApi,
    call::{Answered, Call, Exchange, Handle, Logged, Outcome, Reply, may_read},
    layers::{Bounded, Drained, Shed, Surroundings},
    status::to_status,
};
use crate::{
    domain::{Action, CacheResult, TenantId},
    error::{Error, FieldViolation},
    gateway::Gateway,
    limits::Standing,
    pb::{self, quota_service_server::QuotaService},
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
                tenant: Some(limit_pb("tenant", tenant_standing, shadow.tenant(&tenant))),
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

/// The layers around GetQuota: those that guard the server.
pub(crate) type QuotaStack = Drained<Bounded<Shed<GetQuota>>>;

pub(crate) fn stack(gateway: Gateway, around: &Surroundings) -> QuotaStack {
    Drained {
        expired: around.drain_expired.clone(),
        inner: Bounded {
            inner: Shed {
                in_flight: Arc::clone(&around.in_flight),
                max_in_flight: around.max_in_flight,
                inner: GetQuota { gateway },
            },
        },
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
