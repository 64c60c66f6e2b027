//! What a call's limits noted on the way ([`Noted`]: where the caller and the tenant stand, for
//! the answer's rate-limit metadata), and the limits in shadow ([`Shadow`]): evaluated, a
//! would-be refusal counted and logged, the call let through.
//!
//! A limit in shadow spends exactly what it would spend enforced: a refusal spends nothing of
//! the limit that refuses, and a call refused in shadow is not charged to the later limits in
//! shadow either, as an enforced refusal would never have reached them. So a shadow run's
//! would-be refusals are the refusals of the same load enforced. A limit that is enforced still
//! checks every call that goes on, including one another limit would have refused in shadow.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::{
    domain::TenantId,
    limits::{Quota, ShadowLimits, Standing},
    telemetry::metrics::{Metrics, Rejection},
};

/// Where a call's checks left its caller and its tenant.
#[derive(Debug, Default)]
pub(crate) struct Noted {
    pub caller: OnceLock<Standing>,
    pub tenant: OnceLock<Standing>,
    /// A limit in shadow would have refused the call.
    shadow_refused: AtomicBool,
}

impl Noted {
    pub(crate) fn shadow_refused(&self) -> bool {
        self.shadow_refused.load(Ordering::Relaxed)
    }
}

/// A tenant's would-be refusals are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Tenants remembered for the log's pace; past it, the ones logged over a minute ago are
/// forgotten, and while it is still full a would-be refusal is counted but not logged, so that
/// ids a caller invents cannot grow memory.
const LOGGED_TENANTS: usize = 4096;

/// The limits in shadow, and where their would-be refusals go.
#[derive(Debug)]
pub(crate) struct Shadow {
    /// Replaced whole by a configuration reload.
    limits: ArcSwap<ShadowLimits>,
    metrics: Metrics,
    /// When each tenant's last would-be refusal was logged. Sharded: would-be refusals of
    /// different tenants do not wait on one lock.
    logged: DashMap<String, Instant>,
}

impl Shadow {
    pub(crate) fn new(limits: ShadowLimits, metrics: Metrics) -> Self {
        Self {
            limits: ArcSwap::from_pointee(limits),
            metrics,
            logged: DashMap::new(),
        }
    }

    /// Replaces which limits are in shadow (a configuration reload); the next call follows.
    pub(crate) fn reconfigure(&self, limits: ShadowLimits) {
        self.limits.store(std::sync::Arc::new(limits));
    }

    /// Whether `tenant`'s limit is in shadow.
    pub(crate) fn tenant(&self, tenant: &TenantId) -> bool {
        self.limits.load().tenant(tenant)
    }

    /// Whether a caller's limit is in shadow: as its own entry says, else as every limit is.
    pub(crate) fn caller(&self, own: Option<bool>) -> bool {
        own.unwrap_or(self.limits.load().all)
    }

    /// A limit in shadow would have refused a call of `caller` for `tenant` (as sent): counted,
    /// logged at most once a minute per tenant, and noted, so that the later limits in shadow
    /// are not charged.
    pub(crate) fn refused(
        &self,
        noted: &Noted,
        reason: Rejection,
        tenant: &str,
        caller: &str,
        quota: Quota,
        retry_after: Duration,
    ) {
        noted.shadow_refused.store(true, Ordering::Relaxed);
        self.metrics.shadow_rejected(reason, tenant);
        if self.due(tenant) {
            tracing::warn!(
                reason = reason.as_str(),
                tenant,
                caller,
                quota = %quota.describe(),
                retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                "a limit in shadow would have refused this call; it goes on (logged at most once \
                 a minute per tenant; cams_flows_shadow_rejections_total counts every one)"
            );
        }
    }

    /// Whether `tenant`'s would-be refusal is due to be logged, and if so notes it.
    fn due(&self, tenant: &str) -> bool {
        let now = Instant::now();
        if let Some(mut at) = self.logged.get_mut(tenant) {
            if now.duration_since(*at) < LOG_EVERY {
                return false;
            }
            *at = now;
            return true;
        }
        if self.logged.len() >= LOGGED_TENANTS {
            self.logged
                .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
            if self.logged.len() >= LOGGED_TENANTS {
                return false;
            }
        }
        match self.logged.entry(tenant.to_owned()) {
            // Another first refusal of the tenant, at the same moment, was logged.
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn quota() -> Quota {
        Quota {
            rps: 1.0,
            burst: NonZeroU32::MIN,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_is_logged_at_most_once_a_minute_and_counted_every_time() {
        let metrics = Metrics::new([]);
        let shadow = Shadow::new(
            ShadowLimits {
                all: true,
                ..ShadowLimits::default()
            },
            metrics.clone(),
        );
        assert!(shadow.due("a"), "the first is logged");
        assert!(!shadow.due("a"), "not again within the minute");
        assert!(shadow.due("b"), "another tenant has its own pace");
        tokio::time::advance(LOG_EVERY).await;
        assert!(shadow.due("a"), "a minute later, again");

        let noted = Noted::default();
        for _ in 0..3 {
            shadow.refused(
                &noted,
                Rejection::TenantRateLimited,
                "a",
                "billing",
                quota(),
                Duration::from_secs(1),
            );
        }
        assert!(noted.shadow_refused());
        assert!(
            metrics.encode(crate::telemetry::metrics::Format::Prometheus).contains(
                "cams_flows_shadow_rejections_total{reason=\"TENANT_RATE_LIMITED\",tenant=\"_other\"} 3"
            ),
            "every would-be refusal is counted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invented_tenants_cannot_grow_the_log_pace() {
        let shadow = Shadow::new(ShadowLimits::default(), Metrics::disabled());
        for i in 0..LOGGED_TENANTS {
            assert!(shadow.due(&format!("t{i}")));
        }
        assert!(!shadow.due("one-more"), "full: counted, not logged");
        tokio::time::advance(LOG_EVERY).await;
        assert!(shadow.due("one-more"), "the old ones are forgotten");
        assert!(shadow.logged.len() <= LOGGED_TENANTS);
    }

    #[test]
    fn which_limits_are_in_shadow() {
        let vip = TenantId::parse("vip").expect("valid");
        let other = TenantId::parse("other").expect("valid");
        let some = Shadow::new(
            ShadowLimits {
                all: false,
                tenants: [(vip.clone(), true)].into(),
            },
            Metrics::disabled(),
        );
        assert!(some.tenant(&vip) && !some.tenant(&other));
        assert!(some.caller(Some(true)) && !some.caller(Some(false)) && !some.caller(None));
        // Under limits.shadow, an entry's explicit false keeps its limit enforced.
        let all = Shadow::new(
            ShadowLimits {
                all: true,
                tenants: [(vip.clone(), false)].into(),
            },
            Metrics::disabled(),
        );
        assert!(all.tenant(&other) && all.caller(None));
        assert!(!all.tenant(&vip), "the tenant's own shadow = false");
        assert!(!all.caller(Some(false)), "the key's own shadow = false");
        all.reconfigure(ShadowLimits::default());
        assert!(
            !all.tenant(&other) && !all.caller(None),
            "a reload lifts them"
        );
    }
}
