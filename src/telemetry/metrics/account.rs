//! This replica's share of the account's CAMS quota: how long attempts waited for a slot, the
//! slots taken and held now, and the attempts the quota turned away.

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{Labels, Metrics, QuotaRefusal, histogram, labels};
use crate::domain::Action;

/// The account queue: from no wait at all to `limits.max_wait_ms` (at most 60 s).
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0,
];

/// One CAMS action's quota.
struct Quota {
    wait: Histogram,
    acquired: Counter,
    in_use: Gauge,
    refusals: [Counter; 3],
}

/// By [`Action::index`].
pub(super) struct Account([Quota; 4]);

impl Account {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let wait = Family::<Labels, Histogram>::new_with_constructor(|| histogram(&WAIT_BUCKETS));
        registry.register(
            "cams_flows_account_wait_seconds",
            "Time an attempt waited for a slot of the account's CAMS quota of its action, in \
             seconds",
            wait.clone(),
        );
        let acquired = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_account_slots_acquired",
            "Slots of the account's CAMS quota this replica took (one per attempt at CAMS), by \
             action",
            acquired.clone(),
        );
        let in_use = Family::<Labels, Gauge>::default();
        registry.register(
            "cams_flows_account_slots_in_use",
            "Slots of the account's CAMS quota this replica holds now (attempts under way), by \
             action",
            in_use.clone(),
        );
        let refusal_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_account_refusals",
            "Attempts the account quota turned away, by action and cause",
            refusal_family.clone(),
        );
        Self(Action::ALL.map(|action| {
            let by_action = labels([("action", action.cams_name())]);
            Quota {
                wait: wait.get_or_create_owned(&by_action),
                acquired: acquired.get_or_create_owned(&by_action),
                in_use: in_use.get_or_create_owned(&by_action),
                refusals: QuotaRefusal::ALL.map(|c| {
                    refusal_family.get_or_create_owned(&labels([
                        ("action", action.cams_name()),
                        ("cause", c.as_str()),
                    ]))
                }),
            }
        }))
    }
}

impl Metrics {
    /// A slot of `action`'s account quota was taken after `waited`; the returned guard counts
    /// it as in use until dropped.
    pub fn slot_taken(&self, action: Action, waited: Duration) -> SlotInUse {
        match &self.0 {
            Some(inner) => {
                let account = &inner.account.0[action.index()];
                account.wait.observe(waited.as_secs_f64());
                account.acquired.inc();
                account.in_use.inc();
                SlotInUse(Some(account.in_use.clone()))
            }
            None => SlotInUse(None),
        }
    }

    pub fn quota_refused(&self, action: Action, cause: QuotaRefusal) {
        if let Some(inner) = &self.0 {
            inner.account.0[action.index()].refusals[cause as usize].inc();
        }
    }
}

/// Counts one account slot as in use while it lives.
#[must_use]
pub struct SlotInUse(Option<Gauge>);

impl Drop for SlotInUse {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}
