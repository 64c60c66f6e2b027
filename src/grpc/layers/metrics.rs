//! The call in the metrics: `grpc_server_started_total` when it starts, `grpc_server_handled_total`
//! and `grpc_server_handling_seconds` when it ends, and how it was served or why the gateway
//! refused it. A call dropped before its answer (the caller cancelled, and tonic dropped the
//! handler) counts as `Canceled`, so that started minus handled is what is in flight.

use crate::{
    domain::Action,
    grpc::{
        call::{Call, Handle, Logged as _, Outcome, Rpc},
        status::rejection,
    },
    telemetry::metrics::Metrics,
};

pub(crate) struct Counted<H> {
    pub metrics: Metrics,
    pub inner: H,
}

impl<R: Rpc, H: Handle<R>> Handle<R> for Counted<H> {
    async fn handle(&self, call: &Call<R::Request>) -> Outcome<R::Response> {
        let started = call.budget.arrival();
        let mut handling = Handling {
            action: R::ACTION,
            metrics: &self.metrics,
            started,
            done: false,
        };
        self.metrics.call_started(R::ACTION);
        let outcome = self.inner.handle(call).await;
        let code = match &outcome {
            Ok(reply) => {
                self.metrics.served(R::ACTION, reply.source);
                tonic::Code::Ok
            }
            Err(failure) => {
                if let Some(reason) = rejection(failure) {
                    self.metrics.rejected(reason, call.message.tenant());
                }
                failure.disposition().code
            }
        };
        handling.done = true;
        self.metrics
            .call_handled(R::ACTION, code, started.elapsed());
        outcome
    }
}

/// Counts the call as `Canceled` if it is dropped before it is answered.
struct Handling<'a> {
    action: Action,
    metrics: &'a Metrics,
    started: tokio::time::Instant,
    done: bool,
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .call_handled(self.action, tonic::Code::Cancelled, self.started.elapsed());
        }
    }
}
