//! `GetFlowJsonAsset`'s business (CAMS's `GetFlowJSONAssest`).

use super::{
    call::{Answered, Call, Exchange, Handle, Logged, Outcome, Reply, Rpc, may_read},
    convert::flow_read,
    unexpected,
};
use crate::{
    domain::{Action, Data, What},
    gateway::Gateway,
    pb,
};

/// `cams.flows.v1.FlowService/GetFlowJsonAsset`.
pub(crate) struct GetFlowJsonAssetRpc;

impl Exchange for GetFlowJsonAssetRpc {
    type Request = pb::GetFlowJsonAssetRequest;
    type Response = pb::GetFlowJsonAssetResponse;
}

impl Rpc for GetFlowJsonAssetRpc {
    const ACTION: Action = Action::GetFlowJsonAsset;
}

impl Logged for pb::GetFlowJsonAssetRequest {
    fn tenant(&self) -> &str {
        &self.cust_space_id
    }

    fn flow_id(&self) -> Option<&str> {
        Some(&self.flow_id)
    }
}

impl Answered for pb::GetFlowJsonAssetResponse {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

pub(crate) struct GetFlowJsonAsset {
    pub gateway: Gateway,
}

impl Handle<GetFlowJsonAssetRpc> for GetFlowJsonAsset {
    async fn handle(
        &self,
        call: &Call<pb::GetFlowJsonAssetRequest>,
    ) -> Outcome<pb::GetFlowJsonAssetResponse> {
        let caller = call.admitted_caller(self.gateway.shadow()).await?;
        let request = &call.message;
        let query = flow_read(&request.flow_id, &request.cust_space_id, What::JsonAsset)?;
        may_read(caller, &query.tenant)?;
        let served = self
            .gateway
            .read(&query, &caller.name, call.budget.answer_by(), &call.noted)
            .await?;
        let Data::JsonAsset(asset) = &served.answer.data else {
            return Err(unexpected().into());
        };
        Ok(Reply {
            message: pb::GetFlowJsonAssetResponse {
                flow_id: asset.flow_id.clone(),
                file_path: asset.file_path.clone(),
                request_id: served.answer.request_id.clone(),
            },
            source: served.source,
        })
    }
}
