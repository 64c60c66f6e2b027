//! `baseline-proxy`: the least a gRPC hop in front of CAMS can cost. A bare tonic FlowService
//! that validates each GetFlow as the gateway does, makes it one call of the gateway's own
//! `CamsClient` (signing included) and converts the answer the way the gateway does, with
//! nothing else: no authentication, limits, cache, coalescing, retries or log line. The gap
//! between this and the gateway's cache-miss path is what the gateway's own features cost; the
//! gap between this and `baseline-http` is the gRPC hop itself.

use std::time::Duration;

use cams_flows::{
    cams::CamsClient,
    domain::{Data, Read},
    error::Error,
    grpc::{CACHE_HEADER, status::to_status},
    pb::{self, GetFlowRequest, GetFlowResponse, flow_service_server::FlowService},
};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{bare, cli::ProxyArgs, direct};

/// Bound on each forwarded call; the load generator's own deadline is shorter.
const CALL_BOUND: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Forward {
    client: CamsClient,
}

#[tonic::async_trait]
impl FlowService for Forward {
    async fn get_flow(
        &self,
        request: Request<GetFlowRequest>,
    ) -> Result<Response<GetFlowResponse>, Status> {
        let read = Read::try_from(request.get_ref()).map_err(|e| to_status(&e))?;
        let answer = tokio::time::timeout(CALL_BOUND, self.client.fetch(&read))
            .await
            .map_err(|_| to_status(&Error::DeadlineExceeded))?
            .map_err(|e| to_status(&e.into()))?;
        let Data::Flow(flow) = &answer.data else {
            return Err(Status::internal(
                "CAMS answered GetFlow with something else",
            ));
        };
        // The header the gateway sends on a miss, so that both send the same bytes.
        let mut response = Response::new(GetFlowResponse {
            flow: Some(pb::Flow::from(flow)),
            request_id: answer.request_id,
        });
        response
            .metadata_mut()
            .insert(CACHE_HEADER, MetadataValue::from_static("miss"));
        Ok(response)
    }

    async fn list_flows(
        &self,
        _request: Request<pb::ListFlowsRequest>,
    ) -> Result<Response<pb::ListFlowsResponse>, Status> {
        Err(only_get_flow())
    }

    async fn get_flow_preview_url(
        &self,
        _request: Request<pb::GetFlowPreviewUrlRequest>,
    ) -> Result<Response<pb::GetFlowPreviewUrlResponse>, Status> {
        Err(only_get_flow())
    }

    async fn get_flow_json_asset(
        &self,
        _request: Request<pb::GetFlowJsonAssetRequest>,
    ) -> Result<Response<pb::GetFlowJsonAssetResponse>, Status> {
        Err(only_get_flow())
    }
}

/// The proxy is measured on GetFlow only, against `baseline-http`'s GetFlow calls.
fn only_get_flow() -> Status {
    Status::unimplemented("the baseline serves GetFlow only")
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let client = direct::client(&args.upstream)?;
    bare::serve(args.listen, Forward { client }, true).await
}
