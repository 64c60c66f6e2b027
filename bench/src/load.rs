//! `load`: unary FlowService calls through gRPC (one read, or the four in turn), with every
//! response's status and content checked.

use std::{borrow::Cow, sync::Arc, time::Duration};

use anyhow::Context;
use cams_flows::{
    domain::Action,
    grpc::{CACHE_HEADER, status::code_name},
    pb::{
        GetFlowJsonAssetRequest, GetFlowJsonAssetResponse, GetFlowPreviewUrlRequest,
        GetFlowPreviewUrlResponse, GetFlowRequest, GetFlowResponse, ListFlowsRequest,
        ListFlowsResponse, flow_service_client::FlowServiceClient,
    },
    sandbox::SandboxStats,
};
use tonic::{
    Response, Status,
    metadata::MetadataMap,
    transport::{Channel, Endpoint},
};

use crate::{
    cli::{LoadArgs, RpcChoice},
    drive::drive,
    keys::Keys,
    record::{Outcome, RunInfo},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The flows in a ListFlows page whose request says 0 (docs/api.md).
const DEFAULT_PAGE_SIZE: i32 = 20;

/// What every call of a run shares.
struct Calls {
    clients: Vec<FlowServiceClient<Channel>>,
    keys: Keys,
    rpc: RpcChoice,
    page_size: i32,
    timeout: Duration,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let shape = &args.shape;
    let keys = Keys::from_shape(shape);
    let info = RunInfo::new(
        shape,
        &keys,
        "grpc",
        &args.target.join(","),
        Some(args.connections),
    );
    // Connections to the targets interleaved, so that consecutive calls go to different ones.
    let mut per_target = Vec::new();
    for target in &args.target {
        per_target.push(connect(target, args.connections).await?);
    }
    let clients = (0..args.connections as usize)
        .flat_map(|c| per_target.iter().map(move |channels| channels[c].clone()))
        .map(FlowServiceClient::new)
        .collect();
    let calls = Arc::new(Calls {
        clients,
        keys,
        rpc: args.rpc,
        page_size: args.page_size,
        timeout: shape.timeout,
    });
    let call = move |seq: u64| {
        let calls = Arc::clone(&calls);
        async move { calls.call(seq).await }
    };
    // CAMS's statistics when the measured phase starts: before the first call without a
    // warm-up, else taken while the warm-up calls run.
    let stats = match args.cams_stats.as_deref() {
        Some(endpoint) if shape.warmup.is_zero() => {
            let before = cams_stats(endpoint).await?;
            Some(tokio::spawn(async move { Ok(before) }))
        }
        Some(endpoint) => {
            let endpoint = endpoint.to_owned();
            let measure_from = tokio::time::Instant::now() + shape.warmup;
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(measure_from).await;
                cams_stats(&endpoint).await
            }))
        }
        None => None,
    };
    let (tally, elapsed) = drive(shape, call).await?;
    let mut summary = tally.summarize(info, elapsed);
    if let (Some(before), Some(endpoint)) = (stats, &args.cams_stats) {
        let before = before.await.context("the statistics task")??;
        summary.with_cams_stats(&before, &cams_stats(endpoint).await?);
    }
    summary.print(shape.json)
}

/// What the simulated CAMS at `endpoint` has counted so far.
async fn cams_stats(endpoint: &str) -> anyhow::Result<SandboxStats> {
    let url = format!("{}/_sandbox/stats", endpoint.trim_end_matches('/'));
    let body = reqwest::get(&url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .bytes()
        .await
        .with_context(|| format!("GET {url}"))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("GET {url}: not the simulated CAMS's statistics"))
}

/// One HTTP/2 connection per channel: tonic multiplexes all of a channel's calls over one.
async fn connect(target: &str, connections: u32) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(target.to_owned())
        .with_context(|| format!("bad target {target:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let mut channels = Vec::new();
    for _ in 0..connections {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {target}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

impl Calls {
    /// Call number `seq`: its read, on its key, over its connection; then its answer checked.
    async fn call(&self, seq: u64) -> (Action, Outcome) {
        let mut client = self.clients[(seq % self.clients.len() as u64) as usize].clone();
        let (read, key) = self.rpc.for_call(seq);
        let (tenant, flow) = self.keys.pick(key);
        let cust_space_id = self.keys.tenants[tenant].clone();
        let flow_id = self.keys.flows[flow].clone();
        let outcome = match read {
            Action::GetFlow => {
                let request = self.request(GetFlowRequest {
                    flow_id,
                    cust_space_id,
                });
                classify(client.get_flow(request).await, check_flow)
            }
            Action::ListFlow => {
                let request = self.request(ListFlowsRequest {
                    cust_space_id,
                    flow_name: String::new(),
                    page_size: self.page_size,
                    page_token: String::new(),
                });
                let page_size = self.page_size;
                classify(client.list_flows(request).await, |page| {
                    check_page(page, page_size)
                })
            }
            Action::GetFlowPreviewUrl => {
                let request = self.request(GetFlowPreviewUrlRequest {
                    flow_id,
                    cust_space_id,
                });
                classify(client.get_flow_preview_url(request).await, check_preview)
            }
            Action::GetFlowJsonAsset => {
                let request = self.request(GetFlowJsonAssetRequest {
                    flow_id,
                    cust_space_id,
                });
                classify(client.get_flow_json_asset(request).await, check_asset)
            }
        };
        (read, outcome)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }
}

/// What makes an OK answer broken: a failure kind and what was wrong.
type Broken = (&'static str, &'static str);

fn check_flow(answer: &GetFlowResponse) -> Result<(), Broken> {
    match answer.flow {
        Some(_) => Ok(()),
        None => Err((
            "OK_WITHOUT_FLOW",
            "status OK but the response carries no flow",
        )),
    }
}

/// A page holds at most its size, every flow has an id, and a full page has a next one.
fn check_page(page: &ListFlowsResponse, page_size: i32) -> Result<(), Broken> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => n,
    };
    let len = i32::try_from(page.flows.len()).unwrap_or(i32::MAX);
    if len > size {
        return Err(("OK_PAGE_TOO_LONG", "more flows than the page size"));
    }
    if page.flows.iter().any(|f| f.flow_id.is_empty()) {
        return Err(("OK_FLOW_WITHOUT_ID", "a listed flow has no flow_id"));
    }
    if len == size && page.next_page_token.is_empty() {
        return Err((
            "OK_FULL_PAGE_WITHOUT_TOKEN",
            "a full page without a next_page_token",
        ));
    }
    Ok(())
}

fn check_preview(answer: &GetFlowPreviewUrlResponse) -> Result<(), Broken> {
    if answer.preview_url.is_empty() {
        return Err(("OK_WITHOUT_PREVIEW_URL", "status OK but no preview_url"));
    }
    Ok(())
}

fn check_asset(answer: &GetFlowJsonAssetResponse) -> Result<(), Broken> {
    if answer.file_path.is_empty() {
        return Err(("OK_WITHOUT_FILE_PATH", "status OK but no file_path"));
    }
    Ok(())
}

/// tonic turns a non-OK `grpc-status`, in headers or trailers, into `Err`; an `Ok` whose message
/// `check` finds broken (a GetFlow answer without a flow, ...) counts as a failure too.
fn classify<T>(
    result: Result<Response<T>, Status>,
    check: impl FnOnce(&T) -> Result<(), Broken>,
) -> Outcome {
    match result {
        Ok(response) => match check(response.get_ref()) {
            Ok(()) => Outcome::Ok {
                cache: cache_tag(response.metadata()),
            },
            Err((kind, detail)) => Outcome::Failed {
                kind: Cow::Borrowed(kind),
                detail: detail.to_owned(),
            },
        },
        Err(status) => Outcome::Failed {
            kind: Cow::Borrowed(code_name(status.code())),
            detail: status.message().to_owned(),
        },
    }
}

/// The known values are borrowed, so counting them allocates nothing.
fn cache_tag(metadata: &MetadataMap) -> Option<Cow<'static, str>> {
    let value = metadata.get(CACHE_HEADER)?.to_str().unwrap_or("(not text)");
    Some(match value {
        "hit" => Cow::Borrowed("hit"),
        "shared" => Cow::Borrowed("shared"),
        "miss" => Cow::Borrowed("miss"),
        "coalesced" => Cow::Borrowed("coalesced"),
        "stale" => Cow::Borrowed("stale"),
        other => Cow::Owned(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cams_flows::pb::{Flow, FlowSummary};

    fn kind(outcome: &Outcome) -> Option<&str> {
        match outcome {
            Outcome::Failed { kind, .. } => Some(kind),
            Outcome::Ok { .. } => None,
        }
    }

    #[test]
    fn every_status_is_checked() {
        let failed = classify(
            Err(Status::resource_exhausted("tenant over its rate")),
            check_flow,
        );
        assert_eq!(kind(&failed), Some("RESOURCE_EXHAUSTED"));
        let empty = classify(Ok(Response::new(GetFlowResponse::default())), check_flow);
        assert_eq!(kind(&empty), Some("OK_WITHOUT_FLOW"));

        let mut response = Response::new(GetFlowResponse {
            flow: Some(Flow::default()),
            request_id: String::new(),
        });
        response.metadata_mut().insert(
            CACHE_HEADER,
            tonic::metadata::MetadataValue::from_static("hit"),
        );
        assert!(matches!(
            classify(Ok(response), check_flow),
            Outcome::Ok { cache: Some(tag) } if tag == "hit"
        ));
    }

    #[test]
    fn every_read_has_its_answer_checked() {
        let preview = GetFlowPreviewUrlResponse::default();
        let outcome = classify(Ok(Response::new(preview)), check_preview);
        assert_eq!(kind(&outcome), Some("OK_WITHOUT_PREVIEW_URL"));
        let preview = GetFlowPreviewUrlResponse {
            preview_url: "https://preview".into(),
            ..Default::default()
        };
        assert_eq!(
            kind(&classify(Ok(Response::new(preview)), check_preview)),
            None
        );

        let asset = GetFlowJsonAssetResponse::default();
        let outcome = classify(Ok(Response::new(asset)), check_asset);
        assert_eq!(kind(&outcome), Some("OK_WITHOUT_FILE_PATH"));
        let asset = GetFlowJsonAssetResponse {
            file_path: "https://bucket/1.json".into(),
            ..Default::default()
        };
        assert_eq!(kind(&classify(Ok(Response::new(asset)), check_asset)), None);
    }

    #[test]
    fn a_page_is_checked_against_its_size() {
        let page = |flows: usize, token: &str| ListFlowsResponse {
            flows: (0..flows)
                .map(|i| FlowSummary {
                    flow_id: format!("f{i}"),
                    ..Default::default()
                })
                .collect(),
            next_page_token: token.to_owned(),
            request_id: String::new(),
        };
        assert_eq!(check_page(&page(20, "next"), 0), Ok(()));
        assert_eq!(check_page(&page(7, ""), 0), Ok(()));
        assert_eq!(check_page(&page(0, ""), 5), Ok(()));
        assert_eq!(
            check_page(&page(20, ""), 0).map_err(|e| e.0),
            Err("OK_FULL_PAGE_WITHOUT_TOKEN")
        );
        assert_eq!(
            check_page(&page(6, "next"), 5).map_err(|e| e.0),
            Err("OK_PAGE_TOO_LONG")
        );
        let mut nameless = page(3, "");
        nameless.flows[1].flow_id.clear();
        assert_eq!(
            check_page(&nameless, 5).map_err(|e| e.0),
            Err("OK_FLOW_WITHOUT_ID")
        );
    }
}
