//! The spans of one call: the SERVER span of a call of the gateway and the CLIENT span of each attempt
//! at CAMS, with attributes after the OpenTelemetry RPC and HTTP conventions (`rpc.*`,
//! `http.*`, `error.type`) and the gateway's own (`cams_flows.*`).

use std::{sync::Arc, time::Duration};

use opentelemetry::{
    Context, KeyValue,
    trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, Tracer as _},
};
use tonic::{Code, metadata::MetadataMap};

use super::{Shared, propagation};
use crate::domain::Action;

/// The full name of the gateway's RPC serving `action`, as the span of a call is named.
fn rpc_method(action: Action) -> &'static str {
    match action {
        Action::GetFlow => "cams.flows.v1.FlowService/GetFlow",
        Action::ListFlow => "cams.flows.v1.FlowService/ListFlows",
        Action::GetFlowPreviewUrl => "cams.flows.v1.FlowService/GetFlowPreviewUrl",
        Action::GetFlowJsonAsset => "cams.flows.v1.FlowService/GetFlowJsonAsset",
    }
}

/// CAMS's operation as the span of an attempt names it.
fn cams_method(action: Action) -> &'static str {
    match action {
        Action::GetFlow => "cams/GetFlow",
        Action::ListFlow => "cams/ListFlow",
        Action::GetFlowPreviewUrl => "cams/GetFlowPreviewUrl",
        Action::GetFlowJsonAsset => "cams/GetFlowJSONAssest",
    }
}

/// Creates the spans of calls; `None` inside when tracing is off, so that a call costs one
/// branch. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CallTracer(Option<Arc<Shared>>);

impl CallTracer {
    pub(super) fn new(
        tracer: opentelemetry_sdk::trace::SdkTracer,
        propagate_upstream: bool,
    ) -> Self {
        Self(Some(Arc::new(Shared {
            tracer,
            propagate_upstream,
        })))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The SERVER span of a call (of the RPC serving `action`) whose caller sent `metadata`: a
    /// child of the caller's `traceparent` when there is one (and sampled as the caller
    /// decided), else a root.
    pub fn call(&self, action: Action, metadata: &MetadataMap) -> Option<CallSpan> {
        let shared = self.0.as_ref()?;
        let parent = propagation::extract(metadata);
        let method = rpc_method(action);
        let span = shared
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.method", method),
            ])
            .start_with_context(&shared.tracer, &parent);
        Some(CallSpan {
            cx: parent.with_span(span),
        })
    }

    /// The CLIENT span of attempt `attempt` (1 for the first) at CAMS's `action`, a child of
    /// the current context (the call's span, carried into the load's task).
    pub fn attempt(&self, action: Action, attempt: u32, host: &str) -> Option<AttemptSpan> {
        let shared = self.0.as_ref()?;
        let parent = Context::current();
        let mut attributes = vec![
            KeyValue::new("rpc.system.name", "alibaba_cloud_pop"),
            KeyValue::new("rpc.method", cams_method(action)),
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("server.address", host.to_owned()),
            KeyValue::new("cams_flows.attempt", i64::from(attempt)),
        ];
        if attempt > 1 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt - 1),
            ));
        }
        let span = shared
            .tracer
            .span_builder(format!("CAMS {}", action.cams_name()))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&shared.tracer, &parent);
        Some(AttemptSpan {
            cx: parent.with_span(span),
            propagate: shared.propagate_upstream,
        })
    }
}

/// The span of one call, ended by [`CallSpan::finish`].
#[derive(Debug)]
pub struct CallSpan {
    cx: Context,
}

impl CallSpan {
    /// The context the call's work runs in, so that its attempts become children of this span.
    pub fn context(&self) -> Context {
        self.cx.clone()
    }

    /// The trace and span ids, for the call's log line; `None` for an invalid context.
    pub fn ids(&self) -> Option<(TraceId, SpanId)> {
        let span = self.cx.span();
        let context = span.span_context();
        context
            .is_valid()
            .then(|| (context.trace_id(), context.span_id()))
    }

    /// Ends the span with the call's outcome: its status code (`code_name` as gRPC spells it,
    /// `RESOURCE_EXHAUSTED`), the tenant it was for, and how a success was served.
    pub fn finish(
        self,
        code: Code,
        code_name: &'static str,
        tenant: &str,
        cache: Option<&'static str>,
    ) {
        let span = self.cx.span();
        if !span.is_recording() {
            span.end();
            return;
        }
        span.set_attribute(KeyValue::new("rpc.status_code", code_name));
        span.set_attribute(KeyValue::new("cams_flows.tenant", tenant.to_owned()));
        if let Some(cache) = cache {
            span.set_attribute(KeyValue::new("cams_flows.cache.result", cache));
        }
        // The codes the gRPC semantic conventions count as server errors; limits
        // (RESOURCE_EXHAUSTED) and caller mistakes are answers, not failures.
        if matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ) {
            span.set_attribute(KeyValue::new("error.type", code_name));
            span.set_status(Status::error(code_name));
        }
        span.end();
    }
}

/// Notes on the current call's span how long the account quota kept an attempt waiting.
pub fn note_queue_wait(waited: Duration) {
    let cx = Context::current();
    let span = cx.span();
    if span.is_recording() {
        span.set_attribute(KeyValue::new(
            "cams_flows.account.wait_ms",
            waited.as_secs_f64() * 1000.0,
        ));
    }
}

/// The span of one attempt at CAMS, ended by [`AttemptSpan::finish`].
#[derive(Debug)]
pub struct AttemptSpan {
    cx: Context,
    propagate: bool,
}

/// What CAMS answered to one attempt, for its span.
#[derive(Debug, Clone, Copy)]
pub struct AttemptOutcome<'a> {
    /// CAMS's `Code` (`OK`), or the transport outcome (`timeout`, `transport`, ...).
    pub code: &'a str,
    pub request_id: Option<&'a str>,
    pub http_status: Option<u16>,
    pub error: bool,
}

impl AttemptSpan {
    /// The context to send to CAMS, when `tracing.propagate_upstream` allows it.
    pub fn propagated(&self) -> Option<&Context> {
        self.propagate.then_some(&self.cx)
    }

    pub fn waited(&self, waited: Duration) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "cams_flows.account.wait_ms",
            waited.as_secs_f64() * 1000.0,
        ));
    }

    pub fn finish(self, outcome: AttemptOutcome<'_>) {
        let span = self.cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new("cams.code", outcome.code.to_owned()));
            if let Some(id) = outcome.request_id.filter(|id| !id.is_empty()) {
                span.set_attribute(KeyValue::new("cams.request_id", id.trim().to_owned()));
            }
            if let Some(status) = outcome.http_status {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if outcome.error {
                span.set_attribute(KeyValue::new("error.type", outcome.code.to_owned()));
                span.set_status(Status::error(outcome.code.to_owned()));
            }
        }
        span.end();
    }
}
