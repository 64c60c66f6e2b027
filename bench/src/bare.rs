//! `baseline-grpc`: the limit of the gRPC stack. A bare tonic FlowService that answers every call
//! of each RPC with one constant response, as large as a real one because it is a real one: each is
//! fetched once, at start-up, from an in-process simulated CAMS through the gateway's own client
//! and converted the way the gateway converts.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use cams_flows::{
    cams::{CamsClient, UpstreamConfig},
    clock,
    credentials::{Credentials, StaticCredentials},
    domain::{Answer, Data, FlowId, ListPage, Read, TenantId, What},
    grpc::CACHE_HEADER,
    pb::{
        self, GetFlowJsonAssetRequest, GetFlowJsonAssetResponse, GetFlowPreviewUrlRequest,
        GetFlowPreviewUrlResponse, GetFlowRequest, GetFlowResponse, ListFlowsRequest,
        ListFlowsResponse,
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
/// A space of 100 flows at the simulated CAMS: its first page is full at any page size.
const SAMPLE_SPACE: &str = "sim:catalogue:100";
/// The gateway's page tokens are 17 bytes in unpadded base64url: a full page carries one this
/// long (the bare server cannot mint a real one, and needs no real one: nobody follows it).
const PAGE_TOKEN: &str = "AQAAAAK-bench-page-toke";

/// The four constant answers.
#[derive(Debug)]
struct Answers {
    flow: GetFlowResponse,
    page: ListFlowsResponse,
    preview: GetFlowPreviewUrlResponse,
    asset: GetFlowJsonAssetResponse,
}

/// Answers every call with its RPC's constant response and the `x-cams-cache: hit` header a
/// cached answer from the gateway carries, so that both send the same bytes.
#[derive(Debug, Clone)]
struct ConstantFlows {
    answers: Arc<Answers>,
}

fn hit<T>(message: T) -> Result<Response<T>, Status> {
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert(CACHE_HEADER, MetadataValue::from_static("hit"));
    Ok(response)
}

#[tonic::async_trait]
impl FlowService for ConstantFlows {
    async fn get_flow(
        &self,
        _request: Request<GetFlowRequest>,
    ) -> Result<Response<GetFlowResponse>, Status> {
        hit(self.answers.flow.clone())
    }

    async fn list_flows(
        &self,
        _request: Request<ListFlowsRequest>,
    ) -> Result<Response<ListFlowsResponse>, Status> {
        hit(self.answers.page.clone())
    }

    async fn get_flow_preview_url(
        &self,
        _request: Request<GetFlowPreviewUrlRequest>,
    ) -> Result<Response<GetFlowPreviewUrlResponse>, Status> {
        hit(self.answers.preview.clone())
    }

    async fn get_flow_json_asset(
        &self,
        _request: Request<GetFlowJsonAssetRequest>,
    ) -> Result<Response<GetFlowJsonAssetResponse>, Status> {
        hit(self.answers.asset.clone())
    }
}

pub async fn run(args: BareArgs) -> anyhow::Result<()> {
    let answers = sample_answers(args.page_size).await?;
    eprintln!(
        "baseline-grpc: constant answers of {} (GetFlow), {} (ListFlows, {} flows), {} \
         (GetFlowPreviewUrl) and {} (GetFlowJsonAsset) bytes encoded",
        answers.flow.encoded_len(),
        answers.page.encoded_len(),
        answers.page.flows.len(),
        answers.preview.encoded_len(),
        answers.asset.encoded_len(),
    );
    let service = ConstantFlows {
        answers: Arc::new(answers),
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

/// The real answers: signed calls to an in-process simulated CAMS, decoded and converted by the
/// library's own code as the gateway converts them.
async fn sample_answers(page_size: u32) -> anyhow::Result<Answers> {
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
    let flow_id = FlowId::parse(SAMPLE_FLOW).context("sample flow")?;
    let space = TenantId::parse(SAMPLE_SPACE).context("sample space")?;
    let fetch = |tenant: &TenantId, what: What| {
        let read = Read {
            tenant: tenant.clone(),
            what,
        };
        let client = client.clone();
        async move {
            let name = read.action();
            tokio::time::timeout(Duration::from_secs(10), client.fetch(&read))
                .await
                .with_context(|| format!("the simulated CAMS did not answer {name}"))?
                .with_context(|| format!("cannot fetch the sample {name} from the simulated CAMS"))
        }
    };

    let answer = fetch(&tenant, What::Flow(flow_id.clone())).await?;
    let Data::Flow(flow) = &answer.data else {
        return Err(wrong(&answer, "GetFlow"));
    };
    let flow = GetFlowResponse {
        flow: Some(pb::Flow::from(flow)),
        request_id: answer.request_id,
    };

    let list = ListPage {
        flow_name: String::new(),
        index: 1,
        size: page_size,
    };
    let answer = fetch(&space, What::List(list)).await?;
    let Data::List(flows) = &answer.data else {
        return Err(wrong(&answer, "ListFlow"));
    };
    // As the gateway answers: a full page has a next page's token.
    let full = flows.len() >= page_size as usize;
    let page = ListFlowsResponse {
        flows: flows.iter().map(pb::FlowSummary::from).collect(),
        next_page_token: if full { PAGE_TOKEN } else { "" }.to_owned(),
        request_id: answer.request_id,
    };

    let answer = fetch(&tenant, What::PreviewUrl(flow_id.clone())).await?;
    let Data::PreviewUrl(preview) = &answer.data else {
        return Err(wrong(&answer, "GetFlowPreviewUrl"));
    };
    let preview = GetFlowPreviewUrlResponse {
        flow_id: preview.flow_id.clone(),
        preview_url: preview.preview_url.clone(),
        preview_url_expire_time: preview
            .preview_url_expires
            .map(prost_types::Timestamp::from),
        request_id: answer.request_id,
    };

    let answer = fetch(&tenant, What::JsonAsset(flow_id)).await?;
    let Data::JsonAsset(asset) = &answer.data else {
        return Err(wrong(&answer, "GetFlowJSONAssest"));
    };
    let asset = GetFlowJsonAssetResponse {
        flow_id: asset.flow_id.clone(),
        file_path: asset.file_path.clone(),
        request_id: answer.request_id,
    };
    Ok(Answers {
        flow,
        page,
        preview,
        asset,
    })
}

fn wrong(answer: &Answer, action: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the simulated CAMS answered {action} with something else: {:?}",
        answer.data
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stand-in token is as long as the gateway's: a version byte, the page index (4 bytes)
    /// and a 12-byte digest, in unpadded base64url.
    #[test]
    fn the_page_token_is_as_long_as_the_gateways() {
        assert_eq!(PAGE_TOKEN.len(), (17 * 4_usize).div_ceil(3));
    }
}
