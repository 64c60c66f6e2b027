//! The attempts at CAMS: how each ended (the Code CAMS answered, or the transport outcome), how
//! long it took, and the retries made or not made for want of budget.

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use super::{Labels, Metrics, UpstreamOutcome, histogram, labels};
use crate::domain::Action;

/// OpenTelemetry's recommended boundaries for `http.client.request.duration`.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// One CAMS action's attempts.
struct Attempts {
    /// By [`labels::outcome_index`].
    ended: Vec<Counter>,
    ok: Histogram,
    error: Histogram,
}

pub(super) struct Upstream {
    /// By [`Action::index`].
    attempts: [Attempts; 4],
    retries: Counter,
    retry_budget_exhausted: Counter,
    /// By the [`Action::index`] of the action asked for.
    substitutions: [Counter; 4],
}

impl Upstream {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let attempts_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_upstream_attempts",
            "Attempts at CAMS, by action and by the Code CAMS answered (others grouped as other) \
             or the transport outcome",
            attempts_family.clone(),
        );

        let duration_family =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&UPSTREAM_BUCKETS));
        registry.register(
            "cams_flows_upstream_attempt_duration_seconds",
            "Duration of one attempt at CAMS, in seconds, by action and result (ok: CAMS \
             answered OK)",
            duration_family.clone(),
        );
        let attempts = Action::ALL.map(|action| {
            let action = action.cams_name();
            Attempts {
                ended: labels::outcome_names()
                    .map(|code| {
                        attempts_family
                            .get_or_create_owned(&labels([("action", action), ("code", code)]))
                    })
                    .collect(),
                ok: duration_family
                    .get_or_create_owned(&labels([("action", action), ("result", "ok")])),
                error: duration_family
                    .get_or_create_owned(&labels([("action", action), ("result", "error")])),
            }
        });

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

        let substitutions_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_upstream_substitutions",
            "Reads made through another CAMS action, whose budget had room when theirs had none \
             (a preview URL read through GetFlow), by the action asked for",
            substitutions_family.clone(),
        );
        let substitutions = Action::ALL.map(|action| {
            substitutions_family.get_or_create_owned(&labels([("action", action.cams_name())]))
        });

        Self {
            attempts,
            retries,
            retry_budget_exhausted,
            substitutions,
        }
    }
}

impl Metrics {
    /// A read of `asked` was made through another CAMS action.
    pub fn substituted(&self, asked: Action) {
        if let Some(inner) = &self.0 {
            inner.upstream.substitutions[asked.index()].inc();
        }
    }

    /// One attempt at CAMS's `action` ended.
    pub fn upstream_attempt(
        &self,
        action: Action,
        outcome: UpstreamOutcome<'_>,
        elapsed: Duration,
    ) {
        if let Some(inner) = &self.0 {
            let attempts = &inner.upstream.attempts[action.index()];
            if let Some(counter) = attempts.ended.get(labels::outcome_index(outcome)) {
                counter.inc();
            }
            let histogram = if outcome == UpstreamOutcome::Code("OK") {
                &attempts.ok
            } else {
                &attempts.error
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
