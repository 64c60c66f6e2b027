//! `load`: unary GetFlow calls through gRPC, with every response's status checked.

use std::{borrow::Cow, sync::Arc, time::Duration};

use anyhow::Context;
use cams_flows::{
    grpc::{CACHE_HEADER, status::code_name},
    pb::{GetFlowRequest, GetFlowResponse, flow_service_client::FlowServiceClient},
};
use tonic::{
    Response, Status,
    metadata::MetadataMap,
    transport::{Channel, Endpoint},
};

use crate::{
    cli::LoadArgs,
    drive::drive,
    keys::Keys,
    record::{Outcome, RunInfo},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let shape = &args.shape;
    let keys = Arc::new(Keys::from_shape(shape));
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
    let clients: Arc<[FlowServiceClient<Channel>]> = (0..args.connections as usize)
        .flat_map(|c| per_target.iter().map(move |channels| channels[c].clone()))
        .map(FlowServiceClient::new)
        .collect();
    let timeout = shape.timeout;
    let call = move |seq: u64| {
        let client = clients[(seq % clients.len() as u64) as usize].clone();
        let request = request(&keys, seq, timeout);
        async move { outcome(client, request).await }
    };
    // CAMS's count when the measured phase starts: before the first call without a warm-up,
    // else taken while the warm-up calls run.
    let stats = match args.cams_stats.as_deref() {
        Some(endpoint) if shape.warmup.is_zero() => {
            let before = cams_accepted(endpoint).await?;
            Some(tokio::spawn(async move { Ok(before) }))
        }
        Some(endpoint) => {
            let endpoint = endpoint.to_owned();
            let measure_from = tokio::time::Instant::now() + shape.warmup;
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(measure_from).await;
                cams_accepted(&endpoint).await
            }))
        }
        None => None,
    };
    let (tally, elapsed) = drive(shape, call).await?;
    let mut summary = tally.summarize(info, elapsed);
    if let (Some(before), Some(endpoint)) = (stats, &args.cams_stats) {
        let before = before.await.context("the statistics task")??;
        summary.with_cams_calls(cams_accepted(endpoint).await? - before);
    }
    summary.print(shape.json)
}

/// The calls the simulated CAMS at `endpoint` has accepted so far.
async fn cams_accepted(endpoint: &str) -> anyhow::Result<u64> {
    let url = format!("{}/_sandbox/stats", endpoint.trim_end_matches('/'));
    let body = reqwest::get(&url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .bytes()
        .await
        .with_context(|| format!("GET {url}"))?;
    let stats: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))?;
    stats["accepted"]
        .as_u64()
        .with_context(|| format!("GET {url}: no `accepted` count"))
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

fn request(keys: &Keys, seq: u64, timeout: Duration) -> tonic::Request<GetFlowRequest> {
    let (tenant, flow) = keys.pick(seq);
    let mut request = tonic::Request::new(GetFlowRequest {
        flow_id: keys.flows[flow].clone(),
        cust_space_id: keys.tenants[tenant].clone(),
    });
    request.set_timeout(timeout);
    request
}

async fn outcome(
    mut client: FlowServiceClient<Channel>,
    request: tonic::Request<GetFlowRequest>,
) -> Outcome {
    classify(client.get_flow(request).await)
}

/// tonic turns a non-OK `grpc-status`, in headers or trailers, into `Err`; an `Ok` without a flow
/// would still be a broken answer, so it counts as a failure too.
fn classify(result: Result<Response<GetFlowResponse>, Status>) -> Outcome {
    match result {
        Ok(response) if response.get_ref().flow.is_none() => Outcome::Failed {
            kind: Cow::Borrowed("OK_WITHOUT_FLOW"),
            detail: "status OK but the response carries no flow".to_owned(),
        },
        Ok(response) => Outcome::Ok {
            cache: cache_tag(response.metadata()),
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
    use cams_flows::pb::Flow;

    #[test]
    fn every_status_is_checked() {
        let failed = classify(Err(Status::resource_exhausted("tenant over its rate")));
        assert!(matches!(
            failed,
            Outcome::Failed { kind, .. } if kind == "RESOURCE_EXHAUSTED"
        ));
        let empty = classify(Ok(Response::new(GetFlowResponse::default())));
        assert!(matches!(empty, Outcome::Failed { kind, .. } if kind == "OK_WITHOUT_FLOW"));

        let mut response = Response::new(GetFlowResponse {
            flow: Some(Flow::default()),
            request_id: String::new(),
        });
        response.metadata_mut().insert(
            CACHE_HEADER,
            tonic::metadata::MetadataValue::from_static("hit"),
        );
        assert!(matches!(
            classify(Ok(response)),
            Outcome::Ok { cache: Some(tag) } if tag == "hit"
        ));
    }
}
