//! The call's SERVER span, only with tracing on: no span, no context, nothing extracted
//! otherwise. The call's work runs in the span's context, so that its attempts at CAMS become
//! its children.

use opentelemetry::context::FutureExt as _;

use crate::{
    domain::as_logged,
    grpc::{
        call::{Call, Handle, Logged as _, Outcome, Rpc},
        status::code_name,
    },
    telemetry::trace::CallTracer,
};

pub(crate) struct Traced<H> {
    pub tracer: CallTracer,
    pub inner: H,
}

impl<R: Rpc, H: Handle<R>> Handle<R> for Traced<H> {
    async fn handle(&self, call: &Call<R::Request>) -> Outcome<R::Response> {
        let Some(span) = self.tracer.call(R::ACTION, &call.metadata) else {
            return self.inner.handle(call).await;
        };
        if let Some(ids) = span.ids() {
            let _ = call.trace.set(ids);
        }
        let outcome = self.inner.handle(call).with_context(span.context()).await;
        let tenant = as_logged(call.message.tenant());
        match &outcome {
            Ok(reply) => span.finish(tonic::Code::Ok, "OK", tenant, Some(reply.source.as_str())),
            Err(failure) => {
                let code = failure.disposition().code;
                span.finish(code, code_name(code), tenant, None);
            }
        }
        outcome
    }
}
