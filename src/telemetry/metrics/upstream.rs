//! The attempts at CAMS: how each ended (the Code CAMS answered, or the transport outcome), how
//! long it took, and the retries made or not made for want of budget.

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use super::{Labels, Metrics, UpstreamOutcome, histogram, labels};

/// OpenTelemetry's recommended boundaries for `http.client.request.duration`.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

pub(super) struct Upstream {
    attempts: Vec<Counter>,
    ok: Histogram,
    error: Histogram,
    retries: Counter,
    retry_budget_exhausted: Counter,
}

impl Upstream {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let attempts_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_upstream_attempts",
            "Attempts at CAMS, by the Code CAMS answered (others grouped as other) or the \
             transport outcome",
            attempts_family.clone(),
        );
        let attempts = labels::outcome_names()
            .map(|code| attempts_family.get_or_create_owned(&labels([("code", code)])))
            .collect();

        let duration_family =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&UPSTREAM_BUCKETS));
        registry.register(
            "cams_flows_upstream_attempt_duration_seconds",
            "Duration of one attempt at CAMS, in seconds, by result (ok: CAMS answered OK)",
            duration_family.clone(),
        );
        let ok = duration_family.get_or_create_owned(&labels([("result", "ok")]));
        let error = duration_family.get_or_create_owned(&labels([("result", "error")]));

        let retries = Counter::default();
        registry.register(
            "cams_flows_upstream_retries",
            "Attempts at CAMS that were retries of a failed one",
            retries.clone(),
        );
        let retry_budget_exhausted = Counter::default();
        registry.register(
            "cams_flows_upstream_retry_budget_exhausted",
            "Retries not made because the retry budget was spent",
            retry_budget_exhausted.clone(),
        );

        Self {
            attempts,
            ok,
            error,
            retries,
            retry_budget_exhausted,
        }
    }
}

impl Metrics {
    /// One attempt at CAMS ended.
    pub fn upstream_attempt(&self, outcome: UpstreamOutcome<'_>, elapsed: Duration) {
        if let Some(inner) = &self.0 {
            let upstream = &inner.upstream;
            if let Some(counter) = upstream.attempts.get(labels::outcome_index(outcome)) {
                counter.inc();
            }
            let histogram = if outcome == UpstreamOutcome::Code("OK") {
                &upstream.ok
            } else {
                &upstream.error
            };
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    pub fn retried(&self) {
        if let Some(inner) = &self.0 {
            inner.upstream.retries.inc();
        }
    }

    pub fn retry_budget_exhausted(&self) {
        if let Some(inner) = &self.0 {
            inner.upstream.retry_budget_exhausted.inc();
        }
    }
}
