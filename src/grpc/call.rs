//! A call as every layer of the gRPC edge sees it ([`Call`]), what a handler answers
//! ([`Reply`]), and the one trait the layers and the handlers implement ([`Handle`]).
//!
//! The layers are plain generic wrappers, statically dispatched, rather than `tower` services:
//! a tower service takes `&mut self` and a boxed future per layer, which the cache-hit path
//! would pay on every call; here a stack of layers compiles to one future with no allocation.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use opentelemetry::trace::{SpanId, TraceId};
use tokio::time::Instant;
use tonic::{Request, metadata::MetadataMap};

use crate::{
    auth::{AuthError, Authenticator, Caller},
    deadline::{Budget, grpc_timeout},
    domain::{Action, CacheResult, TenantId},
    error::{Error, Failure},
    gateway::{Noted, Shadow},
    limits::CallerCheck,
    server::ConnInfo,
    telemetry::metrics::Rejection,
};

/// One RPC of the server: its messages.
pub(crate) trait Exchange: 'static {
    type Request: Logged + Send + Sync + 'static;
    type Response: Answered + Send + 'static;
}

/// One RPC of FlowService, and its name in metrics, spans and logs.
pub(crate) trait Rpc: Exchange {
    /// The CAMS action that answers it, which names it in metrics, spans and logs
    /// ([`Action::grpc_method`]).
    const ACTION: Action;
}

/// What the call's log line, span and metrics say of a request, valid or not.
pub(crate) trait Logged {
    /// The `CustSpaceId` as sent.
    fn tenant(&self) -> &str;
    /// The flow the call is about, as sent, when it is about one.
    fn flow_id(&self) -> Option<&str>;
}

/// What the call's log line says of an answer.
pub(crate) trait Answered {
    /// CAMS's `RequestId` of the answer served.
    fn request_id(&self) -> &str;
}

/// One call: the request, its deadline, who is calling, and what the layers note on the way.
pub(crate) struct Call<Req> {
    pub message: Req,
    pub budget: Budget,
    /// Authenticated at the edge, before anything else is looked at, so that an
    /// unauthenticated flood costs no validation, no limiter state and no cache lookup; a
    /// failure is the handler's to report, after load shedding.
    pub caller: Result<Arc<Caller>, AuthError>,
    pub metadata: MetadataMap,
    /// The call's trace and span ids, once a span is made for it.
    pub trace: OnceLock<(TraceId, SpanId)>,
    /// Where the call's limits left its caller and its tenant.
    pub noted: Noted,
}

impl<Req> Call<Req> {
    /// The call as it arrived: its budget (made by the server's layers when the stream arrived,
    /// or from its `grpc-timeout` and `max_call` where no layer made one), and its caller,
    /// authenticated before anything else is looked at.
    pub(crate) fn arrived(request: Request<Req>, auth: &Authenticator, max_call: Duration) -> Self {
        let budget = request
            .extensions()
            .get::<Budget>()
            .copied()
            .unwrap_or_else(|| {
                Budget::new(
                    Instant::now(),
                    grpc_timeout(request.metadata().as_ref()),
                    max_call,
                )
            });
        let caller = auth.authenticate(request.metadata(), request.extensions().get::<ConnInfo>());
        let (metadata, _, message) = request.into_parts();
        Self::new(message, budget, caller, metadata)
    }

    pub(crate) fn new(
        message: Req,
        budget: Budget,
        caller: Result<Arc<Caller>, AuthError>,
        metadata: MetadataMap,
    ) -> Self {
        Self {
            message,
            budget,
            caller,
            metadata,
            trace: OnceLock::new(),
            noted: Noted::default(),
        }
    }

    /// The caller, authenticated and within its own rate (or its limit in shadow): the first
    /// thing every handler asks. Decided at once, without waiting, unless the callers' limits
    /// are shared and this replica must take a new batch of the caller's calls from the shared
    /// state. Where the limit leaves the caller is noted for the answer's metadata.
    pub(crate) async fn admitted_caller(&self, shadow: &Shadow) -> Result<&Arc<Caller>, Error>
    where
        Req: Logged,
    {
        let caller = self
            .caller
            .as_ref()
            .map_err(|e| Error::Unauthenticated(*e))?;
        if let Some(limit) = &caller.limit {
            let verdict = match limit.check() {
                CallerCheck::Decided(verdict) => verdict,
                CallerCheck::Pending(verdict) => verdict.await,
            };
            match verdict {
                Ok(standing) => {
                    if let Some(standing) = standing {
                        let _ = self.noted.caller.set(standing);
                    }
                }
                Err(r) => {
                    let _ = self.noted.caller.set(r.standing());
                    if !shadow.caller(limit.is_shadow()) {
                        return Err(Error::CallerRateLimited {
                            caller: caller.name.to_string(),
                            quota: r.quota,
                            retry_after: r.retry_after,
                        });
                    }
                    shadow.refused(
                        &self.noted,
                        Rejection::CallerRateLimited,
                        self.message.tenant(),
                        &caller.name,
                        r.quota,
                        r.retry_after,
                    );
                }
            }
        }
        Ok(caller)
    }
}

/// Whether `caller` may read `tenant`; a call for another tenant never reaches the cache, the
/// limiters or CAMS.
pub(crate) fn may_read(caller: &Caller, tenant: &TenantId) -> Result<(), Error> {
    if caller.tenants.allows(tenant) {
        Ok(())
    } else {
        Err(Error::TenantNotAllowed {
            caller: caller.name.to_string(),
            tenant: tenant.clone(),
        })
    }
}

/// A handler's answer, and how it was served.
pub(crate) struct Reply<Resp> {
    pub message: Resp,
    /// Told to the caller in `x-cams-cache`, and counted.
    pub source: CacheResult,
}

/// The outcome of a call, as the layers pass it outwards.
pub(crate) type Outcome<Resp> = Result<Reply<Resp>, Failure>;

/// A layer around a call, or the handler at its centre.
pub(crate) trait Handle<R: Exchange>: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        call: &'a Call<R::Request>,
    ) -> impl Future<Output = Outcome<R::Response>> + Send + 'a;
}
