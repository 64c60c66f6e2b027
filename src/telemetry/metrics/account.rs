//! This replica's share of the account's CAMS quota: how long attempts waited for a slot, the
//! slots taken and held now, and the attempts the quota turned away.

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{Labels, Metrics, QuotaRefusal, histogram, labels};

/// The account queue: from no wait at all to `limits.max_wait_ms` (at most 60 s).
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0,
];

pub(super) struct Account {
    wait: Histogram,
    acquired: Counter,
    in_use: Gauge,
    refusals: [Counter; 3],
}

impl Account {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let wait = histogram(&WAIT_BUCKETS);
        registry.register(
            "cams_flows_account_wait_seconds",
            "Time an attempt waited for a slot of the account's CAMS quota, in seconds",
            wait.clone(),
        );
        let acquired = Counter::default();
        registry.register(
            "cams_flows_account_slots_acquired",
            "Slots of the account's CAMS quota this replica took (one per attempt at CAMS)",
            acquired.clone(),
        );
        let in_use = Gauge::default();
        registry.register(
            "cams_flows_account_slots_in_use",
            "Slots of the account's CAMS quota this replica holds now (attempts under way)",
            in_use.clone(),
        );
        let refusal_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_account_refusals",
            "Attempts the account quota turned away, by cause",
            refusal_family.clone(),
        );
        let refusals = QuotaRefusal::ALL
            .map(|c| refusal_family.get_or_create_owned(&labels([("cause", c.as_str())])));

        Self {
            wait,
            acquired,
            in_use,
            refusals,
        }
    }
}

impl Metrics {
    /// A slot of the account quota was taken after `waited`; the returned guard counts it as in
    /// use until dropped.
    pub fn slot_taken(&self, waited: Duration) -> SlotInUse {
        match &self.0 {
            Some(inner) => {
                let account = &inner.account;
                account.wait.observe(waited.as_secs_f64());
                account.acquired.inc();
                account.in_use.inc();
                SlotInUse(Some(account.in_use.clone()))
            }
            None => SlotInUse(None),
        }
    }

    pub fn quota_refused(&self, cause: QuotaRefusal) {
        if let Some(inner) = &self.0 {
            inner.account.refusals[cause as usize].inc();
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
