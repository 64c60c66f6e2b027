//! The in-process tenant limits: one GCRA cell per call (governor), keyed by the validated
//! tenant, with per-tenant overrides that carry their own quota.

use std::{collections::HashMap, num::NonZeroU32, time::Duration};

use governor::{
    RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DashMapStateStore},
};

use super::{Quota, TenantCheck, TenantLimits, TenantRejection};
use crate::domain::TenantId;

impl Quota {
    pub(crate) fn governor(self) -> governor::Quota {
        // Validated at startup: rps is finite and positive, so the period is too.
        let period = Duration::from_secs_f64(1.0 / self.rps).max(Duration::from_nanos(1));
        governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

type Keyed<C> =
    RateLimiter<TenantId, DashMapStateStore<TenantId>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub struct GovernorTenantLimits<C: Clock = DefaultClock> {
    default: Quota,
    shared: Keyed<C>,
    overrides: HashMap<TenantId, (Quota, Direct<C>)>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for GovernorTenantLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernorTenantLimits")
            .field("default", &self.default)
            .field("overrides", &self.overrides.len())
            .field("tracked", &self.shared.len())
            .finish()
    }
}

impl GovernorTenantLimits<DefaultClock> {
    pub fn new(default: Quota, overrides: HashMap<TenantId, Quota>) -> Self {
        Self::with_clock(default, overrides, DefaultClock::default())
    }
}

impl<C: Clock + Clone> GovernorTenantLimits<C> {
    pub fn with_clock(default: Quota, overrides: HashMap<TenantId, Quota>, clock: C) -> Self {
        let overrides = overrides
            .into_iter()
            .map(|(tenant, quota)| {
                let limiter = RateLimiter::direct_with_clock(quota.governor(), clock.clone());
                (tenant, (quota, limiter))
            })
            .collect();
        Self {
            default,
            shared: RateLimiter::dashmap_with_clock(default.governor(), clock.clone()),
            overrides,
            clock,
        }
    }
}

impl<C: Clock + Clone> GovernorTenantLimits<C> {
    /// The decision, at once (in-process state only).
    pub fn decide(&self, tenant: &TenantId) -> Result<(), TenantRejection> {
        let (quota, outcome) = match self.overrides.get(tenant) {
            Some((quota, limiter)) => (*quota, limiter.check()),
            None => (self.default, self.shared.check_key(tenant)),
        };
        outcome.map_err(|not_until| TenantRejection {
            quota,
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
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

    /// Forgets tenants whose quota is full again, so that a flood of distinct ids cannot grow
    /// memory without bound. Overrides are configured, not learned, and stay.
    fn evict_idle(&self) {
        self.shared.retain_recent();
        self.shared.shrink_to_fit();
    }

    fn tracked(&self) -> usize {
        self.shared.len()
    }
}

#[cfg(test)]
mod tests {
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
