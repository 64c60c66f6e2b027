//! `cams.flows.v1.FlowService`: each RPC is its handler inside the same stack of layers
//! (`layers`); this file only turns tonic's request into a [`Call`] and the outcome into tonic's
//! response.

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    CACHE_HEADER,
    call::{Call, Exchange, Handle},
    get_flow::{GetFlow, GetFlowRpc},
    json_asset::{GetFlowJsonAsset, GetFlowJsonAssetRpc},
    layers::{Stack, Surroundings, stack},
    list_flows::{ListFlows, ListFlowsRpc},
    preview_url::{GetFlowPreviewUrl, GetFlowPreviewUrlRpc},
    quota::{self, QuotaStack},
    ratelimit,
    status::to_status,
};
use crate::{
    auth::Authenticator,
    gateway::Gateway,
    pb::{self, flow_service_server::FlowService},
    telemetry::{metrics::Metrics, trace::CallTracer},
};

/// `cams.flows.v1.FlowService`.
#[derive(Clone)]
pub struct FlowApi {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Arc<Authenticator>,
    /// Bound on every call, for a request that did not come through the server's layers.
    max_call: Duration,
    /// The RateLimit metadata on every answer (`server.ratelimit_metadata`).
    ratelimit_metadata: bool,
    get_flow: Stack<GetFlow>,
    list_flows: Stack<ListFlows>,
    preview_url: Stack<GetFlowPreviewUrl>,
    json_asset: Stack<GetFlowJsonAsset>,
    quota: QuotaStack,
}

impl std::fmt::Debug for FlowApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowApi").finish_non_exhaustive()
    }
}

/// What the service reports besides its answers.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    pub metrics: Metrics,
    pub tracer: CallTracer,
}

impl FlowApi {
    pub fn new(
        gateway: Gateway,
        auth: Arc<Authenticator>,
        max_call: Duration,
        max_in_flight: usize,
        drain_expired: CancellationToken,
        observe: Observe,
        ratelimit_metadata: bool,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        let permits = Arc::downgrade(&in_flight);
        observe.metrics.probe(
            "cams_flows_calls_in_flight",
            "Calls being served now",
            None,
            Box::new(move || {
                let free = permits.upgrade()?.available_permits();
                Some(max_in_flight.saturating_sub(free) as f64)
            }),
        );
        observe.metrics.probe(
            "cams_flows_calls_max_in_flight",
            "Calls served at once at most (server.max_in_flight); more are refused",
            None,
            Box::new(move || Some(max_in_flight as f64)),
        );
        let around = Surroundings {
            metrics: observe.metrics,
            tracer: observe.tracer,
            drain_expired,
            in_flight,
            max_in_flight,
        };
        Self {
            inner: Arc::new(Inner {
                auth,
                max_call,
                ratelimit_metadata,
                get_flow: stack(
                    GetFlow {
                        gateway: gateway.clone(),
                    },
                    &around,
                ),
                list_flows: stack(
                    ListFlows {
                        gateway: gateway.clone(),
                    },
                    &around,
                ),
                preview_url: stack(
                    GetFlowPreviewUrl {
                        gateway: gateway.clone(),
                    },
                    &around,
                ),
                quota: quota::stack(gateway.clone(), &around),
                json_asset: stack(GetFlowJsonAsset { gateway }, &around),
            }),
        }
    }

    /// The call as the layers see it: its budget (made by the server's layers when the stream
    /// arrived), and its caller, authenticated before anything else is looked at.
    pub(super) fn call<M>(&self, request: Request<M>) -> Call<M> {
        Call::arrived(request, &self.inner.auth, self.inner.max_call)
    }
}

impl FlowApi {
    pub(super) fn quota_stack(&self) -> &QuotaStack {
        &self.inner.quota
    }
}

/// Runs `call` through `stack` and answers as tonic expects, naming in `x-cams-cache` how the
/// answer was served, and with `ratelimit_metadata` where the limits leave the caller and the
/// tenant: in the response headers of a success, in the trailers of a failure (a failure is a
/// trailers-only response).
async fn answer<R: Exchange, H: Handle<R>>(
    stack: &H,
    call: Call<R::Request>,
    ratelimit_metadata: bool,
) -> Result<Response<R::Response>, Status> {
    match stack.handle(&call).await {
        Ok(reply) => {
            let mut response = Response::new(reply.message);
            response.metadata_mut().insert(
                CACHE_HEADER,
                tonic::metadata::MetadataValue::from_static(reply.source.as_str()),
            );
            if ratelimit_metadata {
                ratelimit::insert(&call.noted, response.metadata_mut());
            }
            Ok(response)
        }
        Err(failure) => {
            let mut status = to_status(&failure);
            if ratelimit_metadata {
                ratelimit::insert(&call.noted, status.metadata_mut());
            }
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl FlowService for FlowApi {
    async fn get_flow(
        &self,
        request: Request<pb::GetFlowRequest>,
    ) -> Result<Response<pb::GetFlowResponse>, Status> {
        let call = self.call(request);
        answer::<GetFlowRpc, _>(&self.inner.get_flow, call, self.inner.ratelimit_metadata).await
    }

    async fn list_flows(
        &self,
        request: Request<pb::ListFlowsRequest>,
    ) -> Result<Response<pb::ListFlowsResponse>, Status> {
        let call = self.call(request);
        answer::<ListFlowsRpc, _>(&self.inner.list_flows, call, self.inner.ratelimit_metadata).await
    }

    async fn get_flow_preview_url(
        &self,
        request: Request<pb::GetFlowPreviewUrlRequest>,
    ) -> Result<Response<pb::GetFlowPreviewUrlResponse>, Status> {
        let call = self.call(request);
        answer::<GetFlowPreviewUrlRpc, _>(
            &self.inner.preview_url,
            call,
            self.inner.ratelimit_metadata,
        )
        .await
    }

    async fn get_flow_json_asset(
        &self,
        request: Request<pb::GetFlowJsonAssetRequest>,
    ) -> Result<Response<pb::GetFlowJsonAssetResponse>, Status> {
        let call = self.call(request);
        answer::<GetFlowJsonAssetRpc, _>(
            &self.inner.json_asset,
            call,
            self.inner.ratelimit_metadata,
        )
        .await
    }
}
