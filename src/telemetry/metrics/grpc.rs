//! The server's own series, named and labelled as go-grpc-middleware's, so that stock gRPC
//! dashboards and alerts read them: calls started, calls answered by code, and how long each took.

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use super::{
    Labels, Metrics, histogram, labels,
    labels::{GRPC_CODES, grpc_code_index},
};
use crate::domain::Action;

/// The service's methods, labelled as go-grpc-middleware labels them: one per CAMS action.
const GRPC_SERVICE: &str = "cams.flows.v1.FlowService";
/// QuotaService, and its one method, beside FlowService's.
const QUOTA_SERVICE: &str = "cams.flows.v1.QuotaService";
const QUOTA_METHOD: &str = "GetQuota";
const GRPC_TYPE: &str = "unary";

/// A cache hit is answered in a fraction of a millisecond; the finer buckets tell hits apart from
/// misses (tens of milliseconds) and queued calls (up to `limits.max_wait_ms`).
const CALL_BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One method's series.
struct Method {
    started: Counter,
    handled: [Counter; 17],
    handling: Histogram,
}

/// FlowService's methods, indexed by [`Action::index`], and QuotaService's GetQuota.
pub(super) struct Calls([Method; 4], Method);

impl Calls {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let started_family = Family::<Labels, Counter>::default();
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started_family.clone(),
        );

        let handled_family = Family::<Labels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure",
            handled_family.clone(),
        );

        let handling_family =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&CALL_BUCKETS));
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a call's arrival to its answer, in seconds",
            handling_family.clone(),
        );
        let method = |service: &str, method: &str| {
            let grpc = labels([
                ("grpc_type", GRPC_TYPE),
                ("grpc_service", service),
                ("grpc_method", method),
            ]);
            Method {
                started: started_family.get_or_create_owned(&grpc),
                handled: GRPC_CODES.map(|code| {
                    let mut l = grpc.clone();
                    l.push(("grpc_code", code.to_owned()));
                    handled_family.get_or_create_owned(&l)
                }),
                handling: handling_family.get_or_create_owned(&grpc),
            }
        };
        Self(
            Action::ALL.map(|action| method(GRPC_SERVICE, action.grpc_method())),
            method(QUOTA_SERVICE, QUOTA_METHOD),
        )
    }
}

impl Metrics {
    /// A GetQuota call has arrived.
    pub fn quota_call_started(&self) {
        if let Some(inner) = &self.0 {
            inner.calls.1.started.inc();
        }
    }

    /// A GetQuota call has been answered with `code` after `elapsed`.
    pub fn quota_call_handled(&self, code: tonic::Code, elapsed: Duration) {
        if let Some(inner) = &self.0 {
            let method = &inner.calls.1;
            method.handled[grpc_code_index(code)].inc();
            method.handling.observe(elapsed.as_secs_f64());
        }
    }

    /// A call of the RPC serving `action` has arrived.
    pub fn call_started(&self, action: Action) {
        if let Some(inner) = &self.0 {
            inner.calls.0[action.index()].started.inc();
        }
    }

    /// A call of the RPC serving `action` has been answered with `code` after `elapsed`.
    pub fn call_handled(&self, action: Action, code: tonic::Code, elapsed: Duration) {
        if let Some(inner) = &self.0 {
            let method = &inner.calls.0[action.index()];
            method.handled[grpc_code_index(code)].inc();
            method.handling.observe(elapsed.as_secs_f64());
        }
    }
}
