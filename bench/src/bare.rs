//! `baseline-grpc`: the limit of the gRPC stack. A bare tonic FlowService that answers every
//! GetFlow with one constant response, as large as a real one because it is a real one: it is
//! fetched once, at start-up, from an in-process simulated CAMS through the gateway's own client
//! and converted the way the gateway converts.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use cams_flows::{
    cams::{CamsClient, UpstreamConfig},
    clock,
    credentials::{Credentials, StaticCredentials},
    domain::{Data, FlowId, Read, TenantId},
    grpc::CACHE_HEADER,
    pb::{
        self, GetFlowRequest, GetFlowResponse,
        flow_service_server::{FlowService, FlowServiceServer},
    },
    sandbox::{Sandbox, SandboxConfig},
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status,
    metadata::MetadataValue,
    transport::{Server, server::TcpIncoming},
};

use crate::cli::BareArgs;

/// The sandbox's fast sample flow, as the load generator's tenants would ask for it.
const SAMPLE_FLOW: &str = "100000000000002";
const SAMPLE_TENANT: &str = "tenant-0";

/// Answers every call with the same response and the `x-cams-cache: hit` header a cached answer
/// from the gateway carries, so that both send the same bytes.
#[derive(Debug, Clone)]
struct ConstantFlows {
    response: Arc<GetFlowResponse>,
}

#[tonic::async_trait]
impl FlowService for ConstantFlows {
    async fn get_flow(
        &self,
        _request: Request<GetFlowRequest>,
    ) -> Result<Response<GetFlowResponse>, Status> {
        let mut response = Response::new(GetFlowResponse::clone(&self.response));
        response
            .metadata_mut()
            .insert(CACHE_HEADER, MetadataValue::from_static("hit"));
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

/// The baselines measure GetFlow only; the other reads are not part of the comparison.
pub fn only_get_flow() -> Status {
    Status::unimplemented("the baseline serves GetFlow only")
}

pub async fn run(args: BareArgs) -> anyhow::Result<()> {
    let response = sample_response().await?;
    eprintln!(
        "baseline-grpc: constant GetFlowResponse of {} bytes encoded",
        response.encoded_len()
    );
    let service = ConstantFlows {
        response: Arc::new(response),
    };
    serve(args.listen, service, args.tcp_nodelay).await
}

/// Serves `service` as a bare tonic server: no layers, no reflection, no health.
pub async fn serve<S: FlowService>(
    listen: SocketAddr,
    service: S,
    tcp_nodelay: bool,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // The bench script waits for this exact line.
    println!("listening {}", listener.local_addr()?);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(tcp_nodelay));
    Server::builder()
        .add_service(FlowServiceServer::new(service))
        .serve_with_incoming(incoming)
        .await
        .context("gRPC server failed")
}

/// One real answer: a signed call to an in-process simulated CAMS, decoded and converted by the
/// library's own code.
async fn sample_response() -> anyhow::Result<GetFlowResponse> {
    let config = SandboxConfig::generated();
    let credentials = Credentials::new(
        config.access_key_id.clone(),
        config.access_key_secret.clone(),
        config.security_token.clone(),
    );
    let sandbox = Sandbox::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .context("cannot start the simulated CAMS")?;
    let endpoint = sandbox.endpoint().parse().context("sandbox endpoint")?;
    let _running = sandbox.spawn();
    let client = CamsClient::new(
        UpstreamConfig::new(endpoint),
        Arc::new(StaticCredentials::new(credentials)),
        clock::system(),
    )?;
    let tenant = TenantId::parse(SAMPLE_TENANT).context("sample tenant")?;
    let flow = FlowId::parse(SAMPLE_FLOW).context("sample flow")?;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.fetch(&Read::flow(tenant, flow)),
    )
    .await
    .context("the simulated CAMS did not answer")?
    .context("cannot fetch the sample flow from the simulated CAMS")?;
    let Data::Flow(flow) = &answer.data else {
        anyhow::bail!("the simulated CAMS answered GetFlow with something else");
    };
    Ok(GetFlowResponse {
        flow: Some(pb::Flow::from(flow)),
        request_id: answer.request_id,
    })
}
