//! `GetFlowPreviewUrl`'s business. The answer may come from GetFlow's (it carries the same URL).

use super::{
    call::{Answered, Call, Exchange, Handle, Logged, Outcome, Reply, Rpc, may_read},
    convert::{flow_read, timestamp},
    unexpected,
};
use crate::{
    domain::{Action, What},
    gateway::Gateway,
    pb,
};

/// `cams.flows.v1.FlowService/GetFlowPreviewUrl`.
pub(crate) struct GetFlowPreviewUrlRpc;

impl Exchange for GetFlowPreviewUrlRpc {
    type Request = pb::GetFlowPreviewUrlRequest;
    type Response = pb::GetFlowPreviewUrlResponse;
}

impl Rpc for GetFlowPreviewUrlRpc {
    const ACTION: Action = Action::GetFlowPreviewUrl;
}

impl Logged for pb::GetFlowPreviewUrlRequest {
    fn tenant(&self) -> &str {
        &self.cust_space_id
    }

    fn flow_id(&self) -> Option<&str> {
        Some(&self.flow_id)
    }
}

impl Answered for pb::GetFlowPreviewUrlResponse {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

pub(crate) struct GetFlowPreviewUrl {
    pub gateway: Gateway,
}

impl Handle<GetFlowPreviewUrlRpc> for GetFlowPreviewUrl {
    async fn handle(
        &self,
        call: &Call<pb::GetFlowPreviewUrlRequest>,
    ) -> Outcome<pb::GetFlowPreviewUrlResponse> {
        let caller = call.admitted_caller(self.gateway.shadow()).await?;
        let request = &call.message;
        let query = flow_read(&request.flow_id, &request.cust_space_id, What::PreviewUrl)?;
        may_read(caller, &query.tenant)?;
        let served = self
            .gateway
            .read(&query, &caller.name, call.budget.answer_by(), &call.noted)
            .await?;
        let Some(preview) = served.answer.preview_url() else {
            return Err(unexpected().into());
        };
        Ok(Reply {
            message: pb::GetFlowPreviewUrlResponse {
                flow_id: preview.flow_id,
                preview_url: preview.preview_url,
                preview_url_expire_time: preview.preview_url_expires.map(timestamp),
                request_id: served.answer.request_id.clone(),
            },
            source: served.source,
        })
    }
}
