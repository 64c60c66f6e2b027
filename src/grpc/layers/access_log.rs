//! The call's one log line, written here and nowhere else: `served` or `failed`, with every
//! field at the top level. Cache hits log at debug level: they are the high-volume path and
//! touch nothing upstream, and an event filtered out costs the call nothing.

use tracing::Level;

use crate::{
    cams::CamsError,
    domain::{CacheResult, as_logged},
    error::Error,
    grpc::{
        call::{Answered as _, Call, Handle, Logged as _, Outcome, Rpc},
        status::code_name,
    },
    telemetry::{CallRecord, ErrorChain, call_event},
};

pub(crate) struct Logged<H> {
    pub inner: H,
}

impl<R: Rpc, H: Handle<R>> Handle<R> for Logged<H> {
    async fn handle(&self, call: &Call<R::Request>) -> Outcome<R::Response> {
        let outcome = self.inner.handle(call).await;
        let record = CallRecord {
            method: R::ACTION.grpc_method(),
            tenant: as_logged(call.message.tenant()),
            flow_id: as_logged(call.message.flow_id().unwrap_or_default()),
            caller: call.caller.as_ref().ok().map(|c| &*c.name),
            latency_us: u64::try_from(call.budget.arrival().elapsed().as_micros())
                .unwrap_or(u64::MAX),
            trace: call.trace.get().copied(),
        };
        match &outcome {
            Ok(reply) => {
                let id = reply.message.request_id();
                let cache = reply.source.as_str();
                if reply.source == CacheResult::Hit {
                    call_event!(
                        Level::DEBUG,
                        record,
                        cams_request_id = id,
                        grpc_code = "OK",
                        cache,
                        "served"
                    );
                } else {
                    call_event!(
                        Level::INFO,
                        record,
                        cams_request_id = id,
                        grpc_code = "OK",
                        cache,
                        "served"
                    );
                }
            }
            Err(failure) => {
                let code = failure.disposition().code;
                let grpc_code = code_name(code);
                let id = match &**failure {
                    Error::Cams(CamsError::Api(api)) => Some(api.request_id.as_str()),
                    _ => None,
                };
                let error = ErrorChain(&**failure);
                if code == tonic::Code::Internal {
                    call_event!(Level::ERROR, record, cams_request_id = id, grpc_code, error = %error, "failed: the gateway needs an operator");
                } else {
                    call_event!(Level::INFO, record, cams_request_id = id, grpc_code, error = %error, "failed");
                }
            }
        }
        outcome
    }
}
