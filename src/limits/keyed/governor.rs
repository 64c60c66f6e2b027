//! The in-process keyed limiter: one GCRA cell per key (an atomic theoretical arrival time, the
//! algorithm governor uses, on governor's clocks). Keys under the default quota share one map and
//! are forgotten once idle; keys with a quota of their own each have their own cell, reached
//! without a lock. The cell is kept here rather than in a governor limiter so that a decision can
//! say where the party stands (calls left, time until the burst is whole) and so that the state
//! can be read without spending it (`GetQuota`).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};

use super::{Key, Quota, Quotas, Rejection, Standing, Verdict};

impl Quota {
    /// The spacing of calls at the sustained rate. Validated at startup: rps is finite and
    /// positive, so the period is too.
    pub(crate) fn period(self) -> Duration {
        // Validation bounds rps from below; saturating keeps a rate that slipped past it from
        // panicking on a request's path.
        Duration::try_from_secs_f64(1.0 / self.rps)
            .unwrap_or(Duration::MAX)
            .max(Duration::from_nanos(1))
    }
}

/// The GCRA of one quota, in nanoseconds: `t` per call, `tau` the tolerance (a burst of
/// `burst` calls is `t + tau`), as governor counts them.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    quota: Quota,
    t: u64,
    tau: u64,
}

impl Gcra {
    fn new(quota: Quota) -> Self {
        let t = u64::try_from(quota.period().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            quota,
            t,
            tau: t.saturating_mul(u64::from(quota.burst.get() - 1)),
        }
    }

    /// Spends one call of the cell at `now`, or refuses it.
    fn decide(&self, cell: &AtomicU64, now: u64) -> Result<Standing, Rejection> {
        let mut current = cell.load(Ordering::Acquire);
        loop {
            // A cell idle long enough is as good as fresh.
            let tat = current.max(now);
            if now.saturating_add(self.tau) < tat {
                return Err(Rejection {
                    quota: self.quota,
                    retry_after: Duration::from_nanos(tat - self.tau - now),
                    reset: Duration::from_nanos(tat - now),
                });
            }
            let next = tat.saturating_add(self.t);
            match cell.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(self.standing(next, now)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Where a cell whose theoretical arrival time is `tat` stands at `now`.
    fn standing(&self, tat: u64, now: u64) -> Standing {
        let whole = self.tau.saturating_add(self.t);
        let room = now.saturating_add(whole).saturating_sub(tat).min(whole);
        Standing {
            quota: self.quota,
            remaining: u32::try_from(room / self.t).unwrap_or(u32::MAX),
            reset: Duration::from_nanos(tat.saturating_sub(now)),
        }
    }
}

/// The cells of one configuration, replaced whole when the quotas are reconfigured.
struct Table<K: Key> {
    /// Keys under the default quota.
    learned: Option<(Gcra, Arc<DashMap<K, AtomicU64>>)>,
    /// Keys with a quota of their own.
    each: HashMap<K, (Gcra, Arc<AtomicU64>)>,
}

pub struct GovernorKeyed<K: Key, C: Clock = DefaultClock> {
    table: ArcSwap<Table<K>>,
    clock: C,
    /// The instant the cells' times count from.
    start: C::Instant,
}

impl<K: Key, C: Clock> fmt::Debug for GovernorKeyed<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        f.debug_struct("GovernorKeyed")
            .field(
                "default",
                &table.learned.as_ref().map(|(gcra, _)| gcra.quota),
            )
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

impl<K: Key, C: Clock> GovernorKeyed<K, C> {
    pub fn with_clock(quotas: Quotas<K>, clock: C) -> Self {
        Self {
            table: ArcSwap::from_pointee(Self::table(quotas, None)),
            start: clock.now(),
            clock,
        }
    }

    /// The cells of `quotas`, keeping from `old` the state of every key whose quota is the same:
    /// a reload that leaves a quota alone leaves its callers' spending alone too.
    fn table(quotas: Quotas<K>, old: Option<&Table<K>>) -> Table<K> {
        let each = quotas
            .each
            .into_iter()
            .map(|(key, quota)| {
                let cell = old
                    .and_then(|old| old.each.get(&key))
                    .filter(|(was, _)| was.quota == quota)
                    .map_or_else(|| Arc::new(AtomicU64::new(0)), |(_, cell)| Arc::clone(cell));
                (key, (Gcra::new(quota), cell))
            })
            .collect();
        let learned = quotas.default.map(|quota| {
            let cells = old
                .and_then(|old| old.learned.as_ref())
                .filter(|(was, _)| was.quota == quota)
                .map_or_else(|| Arc::new(DashMap::new()), |(_, cells)| Arc::clone(cells));
            (Gcra::new(quota), cells)
        });
        Table { learned, each }
    }

    /// Replaces the quotas; calls deciding now finish under the old ones. A key whose quota
    /// changes starts afresh (a full burst) under the new one.
    pub fn reconfigure(&self, quotas: Quotas<K>) {
        let old = self.table.load();
        let table = Self::table(quotas, Some(&old));
        self.table.store(Arc::new(table));
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// Spends one call of `key`'s quota, or says how long until one is free; a key with no quota
    /// is not limited (and stands nowhere: `Ok(None)`).
    pub fn decide(&self, key: &K) -> Verdict {
        let now = self.now();
        let table = self.table.load();
        match (table.each.get(key), &table.learned) {
            (Some((gcra, cell)), _) => gcra.decide(cell, now).map(Some),
            (None, Some((gcra, learned))) => {
                if let Some(cell) = learned.get(key) {
                    return gcra.decide(&cell, now).map(Some);
                }
                let cell = learned.entry(key.clone()).or_default();
                gcra.decide(&cell, now).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Where `key` stands now, spending nothing; `None`: the key is not limited.
    pub fn peek(&self, key: &K) -> Option<Standing> {
        let now = self.now();
        let table = self.table.load();
        match (table.each.get(key), &table.learned) {
            (Some((gcra, cell)), _) => Some(gcra.standing(cell.load(Ordering::Acquire), now)),
            (None, Some((gcra, learned))) => Some(match learned.get(key) {
                Some(cell) => gcra.standing(cell.load(Ordering::Acquire), now),
                None => Standing::full(gcra.quota),
            }),
            (None, None) => None,
        }
    }

    /// Forgets learned keys whose quota is full again, so that a flood of distinct keys cannot
    /// grow memory without bound. Keys with a quota of their own are configured, and stay.
    pub fn evict_idle(&self) {
        if let Some((_, learned)) = &self.table.load().learned {
            let now = self.now();
            learned.retain(|_, cell| cell.load(Ordering::Acquire) > now);
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
    use std::num::NonZeroU32;

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

    /// Each decision says what is left and when the burst is whole; a look spends nothing.
    #[test]
    fn a_decision_says_where_the_key_stands_and_a_look_spends_nothing() {
        let clock = FakeRelativeClock::default();
        let limiter = GovernorKeyed::with_clock(
            Quotas {
                default: Some(quota(2.0, 3)),
                each: HashMap::new(),
            },
            clock.clone(),
        );
        let a = TenantId::parse("a").expect("valid");
        let full = limiter.peek(&a).expect("limited");
        assert_eq!((full.remaining, full.reset), (3, Duration::ZERO));
        assert_eq!(limiter.tracked(), 0, "a look learns nothing");
        let left: Vec<_> = (0..3)
            .map(|_| {
                let standing = limiter.decide(&a).expect("burst").expect("limited");
                (standing.remaining, standing.reset)
            })
            .collect();
        assert_eq!(
            left,
            [
                (2, Duration::from_millis(500)),
                (1, Duration::from_millis(1000)),
                (0, Duration::from_millis(1500)),
            ]
        );
        for _ in 0..100 {
            let look = limiter.peek(&a).expect("limited");
            assert_eq!(
                (look.remaining, look.reset),
                (0, Duration::from_millis(1500))
            );
        }
        let refused = limiter.decide(&a).expect_err("spent");
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(refused.reset, Duration::from_millis(1500));
        assert_eq!(refused.standing().remaining, 0);
        clock.advance(Duration::from_millis(600));
        let look = limiter.peek(&a).expect("limited");
        assert_eq!(
            (look.remaining, look.reset),
            (1, Duration::from_millis(900))
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.peek(&a).expect("limited").remaining, 3);
        assert_eq!(
            limiter.peek(&TenantId::parse("never").expect("valid")),
            Some(Standing::full(quota(2.0, 3)))
        );
        let unlimited = GovernorKeyed::<Arc<str>, _>::with_clock(
            Quotas {
                default: None,
                each: HashMap::new(),
            },
            clock,
        );
        assert_eq!(unlimited.peek(&Arc::from("x")), None);
        assert_eq!(unlimited.decide(&Arc::from("x")), Ok(None));
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
