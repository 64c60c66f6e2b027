//! The in-process keyed limiter: one GCRA cell per call (governor). Keys under the default quota
//! share one map and are forgotten once idle; keys with a quota of their own each have their own
//! limiter, reached without a lock.

use std::{collections::HashMap, fmt, num::NonZeroU32, sync::Arc, time::Duration};

use arc_swap::ArcSwap;

use governor::{
    RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DashMapStateStore},
};

use super::{Key, Quota, Quotas, Rejection};

impl Quota {
    pub(crate) fn governor(self) -> governor::Quota {
        // Validated at startup: rps is finite and positive, so the period is too.
        let period = Duration::from_secs_f64(1.0 / self.rps).max(Duration::from_nanos(1));
        governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

type Learned<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters of one configuration, replaced whole when the quotas are reconfigured.
struct Table<K: Key, C: Clock> {
    /// Keys under the default quota.
    learned: Option<(Quota, Arc<Learned<K, C>>)>,
    /// Keys with a quota of their own.
    each: HashMap<K, (Quota, Arc<Direct<C>>)>,
}

pub struct GovernorKeyed<K: Key, C: Clock = DefaultClock> {
    table: ArcSwap<Table<K, C>>,
    clock: C,
}

impl<K: Key, C: Clock> fmt::Debug for GovernorKeyed<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        f.debug_struct("GovernorKeyed")
            .field("default", &table.learned.as_ref().map(|(quota, _)| quota))
            .field("each", &table.each.len())
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl<K: Key> GovernorKeyed<K, DefaultClock> {
    pub fn new(quotas: Quotas<K>) -> Self {
        Self::with_clock(quotas, DefaultClock::default())
    }
}

impl<K: Key, C: Clock + Clone> GovernorKeyed<K, C> {
    pub fn with_clock(quotas: Quotas<K>, clock: C) -> Self {
        let table = Self::table(quotas, None, &clock);
        Self {
            table: ArcSwap::from_pointee(table),
            clock,
        }
    }

    /// The limiters of `quotas`, keeping from `old` the state of every key whose quota is the
    /// same: a reload that leaves a quota alone leaves its callers' spending alone too.
    fn table(quotas: Quotas<K>, old: Option<&Table<K, C>>, clock: &C) -> Table<K, C> {
        let each = quotas
            .each
            .into_iter()
            .map(|(key, quota)| {
                let kept = old
                    .and_then(|old| old.each.get(&key))
                    .filter(|(was, _)| *was == quota)
                    .map(|(_, limiter)| Arc::clone(limiter));
                let limiter = kept.unwrap_or_else(|| {
                    Arc::new(RateLimiter::direct_with_clock(
                        quota.governor(),
                        clock.clone(),
                    ))
                });
                (key, (quota, limiter))
            })
            .collect();
        let learned = quotas.default.map(|quota| {
            let kept = old
                .and_then(|old| old.learned.as_ref())
                .filter(|(was, _)| *was == quota)
                .map(|(_, limiter)| Arc::clone(limiter));
            let limiter = kept.unwrap_or_else(|| {
                Arc::new(RateLimiter::dashmap_with_clock(
                    quota.governor(),
                    clock.clone(),
                ))
            });
            (quota, limiter)
        });
        Table { learned, each }
    }

    /// Replaces the quotas; calls deciding now finish under the old ones. A key whose quota
    /// changes starts afresh (a full burst) under the new one.
    pub fn reconfigure(&self, quotas: Quotas<K>) {
        let old = self.table.load();
        let table = Self::table(quotas, Some(&old), &self.clock);
        self.table.store(Arc::new(table));
    }

    /// Spends one call of `key`'s quota, or says how long until one is free; a key with no quota
    /// is not limited.
    pub fn decide(&self, key: &K) -> Result<(), Rejection> {
        let table = self.table.load();
        let (quota, outcome) = match (table.each.get(key), &table.learned) {
            (Some((quota, limiter)), _) => (*quota, limiter.check()),
            (None, Some((quota, limiter))) => (*quota, limiter.check_key(key)),
            (None, None) => return Ok(()),
        };
        outcome.map_err(|not_until| Rejection {
            quota,
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }
}

impl<K: Key, C: Clock> GovernorKeyed<K, C> {
    /// Forgets learned keys whose quota is full again, so that a flood of distinct keys cannot
    /// grow memory without bound. Keys with a quota of their own are configured, and stay.
    pub fn evict_idle(&self) {
        if let Some((_, learned)) = &self.table.load().learned {
            learned.retain_recent();
            learned.shrink_to_fit();
        }
    }

    /// Learned keys whose state is held now.
    pub fn tracked(&self) -> usize {
        self.table
            .load()
            .learned
            .as_ref()
            .map_or(0, |(_, learned)| learned.len())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::domain::TenantId;

    fn quota(rps: f64, burst: u32) -> Quota {
        Quota {
            rps,
            burst: NonZeroU32::new(burst).expect("non-zero"),
        }
    }

    /// Spends `key`'s burst, then asserts the next call is refused with `quota` and `wait`.
    fn spend_burst<K: Key>(limiter: &GovernorKeyed<K, FakeRelativeClock>, key: &K, q: Quota) {
        for _ in 0..q.burst.get() {
            limiter.decide(key).expect("within the burst");
        }
        let rejection = limiter.decide(key).expect_err("burst spent");
        assert_eq!(rejection.quota, q);
        assert_eq!(
            rejection.retry_after,
            Duration::from_secs_f64(1.0 / q.rps),
            "the wait until one call is free"
        );
    }

    /// The same limiter serves tenants (learned, under a default) and callers (each configured
    /// with its own quota, no default): each key has its own quota and its own state.
    #[test]
    fn tenants_and_callers_each_have_their_own_quota() {
        let clock = FakeRelativeClock::default();
        let vip = TenantId::parse("vip").expect("valid");
        let tenants = GovernorKeyed::with_clock(
            Quotas {
                default: Some(quota(2.0, 2)),
                each: HashMap::from([(vip.clone(), quota(10.0, 5))]),
            },
            clock.clone(),
        );
        let a = TenantId::parse("a").expect("valid");
        spend_burst(&tenants, &a, quota(2.0, 2));
        spend_burst(&tenants, &vip, quota(10.0, 5));
        tenants
            .decide(&TenantId::parse("b").expect("valid"))
            .expect("another tenant has its own state");
        assert_eq!(tenants.tracked(), 2, "a and b learned; vip configured");

        let (billing, ops): (Arc<str>, Arc<str>) = (Arc::from("billing"), Arc::from("ops"));
        let callers = GovernorKeyed::with_clock(
            Quotas {
                default: None,
                each: HashMap::from([
                    (Arc::clone(&billing), quota(4.0, 3)),
                    (Arc::clone(&ops), quota(1.0, 1)),
                ]),
            },
            clock.clone(),
        );
        spend_burst(&callers, &billing, quota(4.0, 3));
        spend_burst(&callers, &ops, quota(1.0, 1));
        for _ in 0..100 {
            callers
                .decide(&Arc::from("unlimited"))
                .expect("a caller with no quota is not limited");
        }
        assert_eq!(callers.tracked(), 0, "nothing learned");

        clock.advance(Duration::from_millis(250));
        callers.decide(&billing).expect("one call refilled");
        assert!(callers.decide(&ops).is_err(), "ops refills in a second");
    }

    #[test]
    fn learned_keys_are_forgotten_once_idle() {
        let clock = FakeRelativeClock::default();
        let limiter = GovernorKeyed::with_clock(
            Quotas {
                default: Some(quota(5.0, 5)),
                each: HashMap::new(),
            },
            clock.clone(),
        );
        for i in 0..100 {
            limiter
                .decide(&Arc::<str>::from(format!("k{i}")))
                .expect("fresh");
        }
        limiter.evict_idle();
        assert_eq!(limiter.tracked(), 100, "state still matters");
        clock.advance(Duration::from_secs(1));
        limiter.evict_idle();
        assert_eq!(limiter.tracked(), 0);
    }

    /// A reload keeps the state of every key whose quota is unchanged (a key that spent its
    /// burst stays refused), and starts a key whose quota changed afresh under the new one.
    #[test]
    fn reconfigured_quotas_keep_the_state_of_unchanged_keys() {
        let clock = FakeRelativeClock::default();
        let (vip, slow) = (
            TenantId::parse("vip").expect("valid"),
            TenantId::parse("slow").expect("valid"),
        );
        let quotas = |vip_quota| Quotas {
            default: Some(quota(2.0, 2)),
            each: HashMap::from([(vip.clone(), vip_quota), (slow.clone(), quota(1.0, 1))]),
        };
        let limiter = GovernorKeyed::with_clock(quotas(quota(10.0, 5)), clock.clone());
        let a = TenantId::parse("a").expect("valid");
        spend_burst(&limiter, &a, quota(2.0, 2));
        spend_burst(&limiter, &vip, quota(10.0, 5));
        spend_burst(&limiter, &slow, quota(1.0, 1));

        limiter.reconfigure(quotas(quota(1.0, 3)));
        assert!(limiter.decide(&a).is_err(), "the default is unchanged");
        assert!(limiter.decide(&slow).is_err(), "its quota is unchanged");
        spend_burst(&limiter, &vip, quota(1.0, 3));
    }
}
