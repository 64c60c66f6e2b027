//! The in-process tenant limits: the keyed limiter in process
//! ([`GovernorKeyed`](crate::limits::keyed::GovernorKeyed)), one GCRA cell per call keyed by the
//! validated tenant, with per-tenant overrides that carry their own quota.

use std::{collections::HashMap, fmt};

use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};

use super::{TenantCheck, TenantLimits};
use crate::{
    domain::TenantId,
    limits::keyed::{GovernorKeyed, Quota, Quotas, Standing, Verdict},
};

pub struct GovernorTenantLimits<C: Clock = DefaultClock> {
    keyed: GovernorKeyed<TenantId, C>,
}

impl<C: Clock> fmt::Debug for GovernorTenantLimits<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GovernorTenantLimits")
            .field(&self.keyed)
            .finish()
    }
}

impl GovernorTenantLimits<DefaultClock> {
    pub fn new(default: Quota, overrides: HashMap<TenantId, Quota>) -> Self {
        Self::with_clock(default, overrides, DefaultClock::default())
    }
}

impl<C: Clock> GovernorTenantLimits<C> {
    pub fn with_clock(default: Quota, overrides: HashMap<TenantId, Quota>, clock: C) -> Self {
        let quotas = Quotas {
            default: Some(default),
            each: overrides,
        };
        Self {
            keyed: GovernorKeyed::with_clock(quotas, clock),
        }
    }

    /// The decision, at once (in-process state only), and where the tenant stands after it.
    pub fn decide(&self, tenant: &TenantId) -> Verdict {
        self.keyed.decide(tenant)
    }
}

impl<C> TenantLimits for GovernorTenantLimits<C>
where
    C: Clock + Clone + Send + Sync,
    C::Instant: Send + Sync,
{
    fn check<'a>(&'a self, tenant: &'a TenantId) -> TenantCheck<'a> {
        TenantCheck::Decided(self.decide(tenant))
    }

    fn peek<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Option<Standing>> {
        Box::pin(std::future::ready(self.keyed.peek(tenant)))
    }

    /// Forgets tenants whose quota is full again, so that a flood of distinct ids cannot grow
    /// memory without bound. Overrides are configured, not learned, and stay.
    fn evict_idle(&self) {
        self.keyed.evict_idle();
    }

    fn tracked(&self) -> usize {
        self.keyed.tracked()
    }

    fn reconfigure(&self, default: Quota, overrides: HashMap<TenantId, Quota>) {
        self.keyed.reconfigure(Quotas {
            default: Some(default),
            each: overrides,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, time::Duration};

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn quota(rps: f64, burst: u32) -> Quota {
        Quota {
            rps,
            burst: NonZeroU32::new(burst).expect("non-zero"),
        }
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).expect("valid")
    }

    #[test]
    fn burst_then_rate_with_exact_retry_after() {
        let clock = FakeRelativeClock::default();
        let limiter =
            GovernorTenantLimits::with_clock(quota(2.0, 3), HashMap::new(), clock.clone());
        let a = tenant("a");
        for _ in 0..3 {
            limiter.decide(&a).expect("burst");
        }
        let rejection = limiter.decide(&a).expect_err("burst spent");
        assert_eq!(rejection.retry_after, Duration::from_millis(500));
        clock.advance(Duration::from_millis(499));
        assert!(limiter.decide(&a).is_err());
        clock.advance(Duration::from_millis(1));
        limiter.decide(&a).expect("one cell refilled");
        assert!(limiter.decide(&a).is_err());
        // Another tenant has its own bucket.
        limiter.decide(&tenant("b")).expect("independent");
    }

    #[test]
    fn overrides_raise_and_lower() {
        let clock = FakeRelativeClock::default();
        let overrides = HashMap::from([
            (tenant("vip"), quota(10.0, 20)),
            (tenant("slow"), quota(1.0, 1)),
        ]);
        let limiter = GovernorTenantLimits::with_clock(quota(2.0, 2), overrides, clock.clone());
        for _ in 0..20 {
            limiter.decide(&tenant("vip")).expect("raised");
        }
        let rejection = limiter.decide(&tenant("vip")).expect_err("spent");
        assert_eq!(rejection.quota, quota(10.0, 20));
        assert_eq!(rejection.retry_after, Duration::from_millis(100));
        limiter.decide(&tenant("slow")).expect("one");
        let rejection = limiter.decide(&tenant("slow")).expect_err("lowered");
        assert_eq!(rejection.retry_after, Duration::from_secs(1));
        // Overrides never enter the shared map.
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn idle_tenants_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let limiter =
            GovernorTenantLimits::with_clock(quota(5.0, 5), HashMap::new(), clock.clone());
        for i in 0..1000 {
            limiter.decide(&tenant(&format!("t{i}"))).expect("fresh");
        }
        assert_eq!(limiter.tracked(), 1000);
        limiter.evict_idle();
        assert_eq!(
            limiter.tracked(),
            1000,
            "state still matters right after the calls"
        );
        clock.advance(Duration::from_secs(1));
        limiter.evict_idle();
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn fractional_rates() {
        let clock = FakeRelativeClock::default();
        let limiter =
            GovernorTenantLimits::with_clock(quota(0.5, 1), HashMap::new(), clock.clone());
        limiter.decide(&tenant("a")).expect("first");
        assert_eq!(
            limiter
                .decide(&tenant("a"))
                .expect_err("second")
                .retry_after,
            Duration::from_secs(2)
        );
    }
}
