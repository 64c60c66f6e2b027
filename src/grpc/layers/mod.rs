//! Everything around a call that is not its business, one concern per layer, outermost first:
//!
//! ```text
//! Counted     grpc_server_* and the refusal counters (metrics.rs)
//! Logged      the call's one log line (access_log.rs)
//! Traced      the call's SERVER span (span.rs)
//! Drained     UNAVAILABLE/SHUTTING_DOWN once the drain has run out (drain.rs)
//! Bounded     DEADLINE_EXCEEDED at the budget's answer time (deadline.rs)
//! Shed        UNAVAILABLE/OVERLOADED past server.max_in_flight (shed.rs)
//! handler     the RPC's business (grpc/get_flow.rs)
//! ```
//!
//! [`stack`] builds it around a handler; every RPC gets the same one.

mod access_log;
mod deadline;
mod drain;
mod metrics;
mod shed;
mod span;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub(crate) use self::{
    access_log::Logged, deadline::Bounded, drain::Drained, metrics::Counted, shed::Shed,
    span::Traced,
};
use crate::telemetry::{metrics::Metrics, trace::CallTracer};

/// What the layers share across every RPC of the server.
#[derive(Debug, Clone)]
pub(crate) struct Surroundings {
    pub metrics: Metrics,
    pub tracer: CallTracer,
    /// Fires when the drain has run out.
    pub drain_expired: CancellationToken,
    /// Calls being served, across RPCs; past `max_in_flight` new ones are shed.
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: usize,
}

/// The layers around `handler`.
pub(crate) type Stack<H> = Counted<Logged<Traced<Drained<Bounded<Shed<H>>>>>>;

pub(crate) fn stack<H>(handler: H, around: &Surroundings) -> Stack<H> {
    Counted {
        metrics: around.metrics.clone(),
        inner: Logged {
            inner: Traced {
                tracer: around.tracer.clone(),
                inner: Drained {
                    expired: around.drain_expired.clone(),
                    inner: Bounded {
                        inner: Shed {
                            in_flight: Arc::clone(&around.in_flight),
                            max_in_flight: around.max_in_flight,
                            inner: handler,
                        },
                    },
                },
            },
        },
    }
}
