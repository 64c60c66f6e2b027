//! `GetFlow`'s business: who may read what, the request checked once into the domain's
//! `Read`, then the gateway.

use crate::{
    domain::{Action, Data, Read},
    gateway::Gateway,
    pb,
};

use super::{
    call::{Answered, Call, Exchange, Handle, Logged, Outcome, Reply, Rpc, may_read},
    unexpected,
};

/// `cams.flows.v1.FlowService/GetFlow`.
pub(crate) struct GetFlowRpc;

impl Exchange for GetFlowRpc {
    type Request = pb::GetFlowRequest;
    type Response = pb::GetFlowResponse;
}

impl Rpc for GetFlowRpc {
    const ACTION: Action = Action::GetFlow;
}

impl Logged for pb::GetFlowRequest {
    fn tenant(&self) -> &str {
        &self.cust_space_id
    }

    fn flow_id(&self) -> Option<&str> {
        Some(&self.flow_id)
    }
}

impl Answered for pb::GetFlowResponse {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

pub(crate) struct GetFlow {
    pub gateway: Gateway,
}

impl Handle<GetFlowRpc> for GetFlow {
    async fn handle(&self, call: &Call<pb::GetFlowRequest>) -> Outcome<pb::GetFlowResponse> {
        let caller = call.admitted_caller(self.gateway.shadow()).await?;
        let query = Read::try_from(&call.message)?;
        may_read(caller, &query.tenant)?;
        let served = self
            .gateway
            .read(&query, &caller.name, call.budget.answer_by(), &call.noted)
            .await?;
        let Data::Flow(flow) = &served.answer.data else {
            return Err(unexpected().into());
        };
        Ok(Reply {
            message: pb::GetFlowResponse {
                flow: Some(pb::Flow::from(flow)),
                request_id: served.answer.request_id.clone(),
            },
            source: served.source,
        })
    }
}
