//! Tenant limits shared by every replica, without a Redis round trip on every call: each tenant
//! has one GCRA state in Redis (its theoretical arrival time, on Redis's clock), and a replica
//! takes calls from it in small batches (a tenth of a second's worth, at most its burst), which
//! it then spends locally. A batch not spent within [`LEASE_LIFE`] is dropped.
//!
//! The bound: every call a replica admits was taken from the shared state, so over any span `T`
//! the whole service admits at most `burst + rate × (T + LEASE_LIFE)`: for `T` = 10 s and a
//! lease life of 1 s, within 10 % plus one burst of the configured rate, however the load
//! balancer spreads the tenant's calls. Batches dropped unspent make the service admit fewer,
//! never more.
//!
//! While Redis does not answer, each replica falls back to enforcing the tenant's quota on its
//! own (so N replicas admit up to N times the quota for those calls): cache hits go on, and a
//! call that needs CAMS cannot pass the account quota anyway, which fails closed.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use redis::Script;

use super::{GovernorTenantLimits, Quota, TenantCheck, TenantLimits, TenantRejection};
use crate::{domain::TenantId, store::Redis};

/// How long a batch of calls taken from Redis may be spent.
pub(super) const LEASE_LIFE: Duration = Duration::from_secs(1);

/// The share of a second's worth of calls taken at once.
const BATCH_OF_A_SECOND: f64 = 0.1;

/// Takes up to `want` calls from the tenant's GCRA (period `T` µs, tolerance `tau` µs): returns
/// `{got, 0}`, or `{0, µs until one is free}`. Lua numbers are doubles: microseconds since the
/// epoch stay exact (below 2^53).
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period, tau, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + tau - tat) / period)
if room < 1 then return {0, math.ceil(tat + period - tau - now)} end
local got = math.min(room, want)
tat = tat + got * period
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {got, 0}
";

/// What this replica holds of a tenant's shared state. Atomics, read under the map's shared
/// lock: every cache hit spends from here, and concurrent hits must not queue on a write lock.
#[derive(Debug, Default)]
struct Held {
    /// Calls taken from Redis and not spent yet.
    left: AtomicU32,
    /// Until when they may be spent, in nanoseconds from the limiter's epoch (0: never).
    until: AtomicU64,
    /// Until when Redis refused the tenant, likewise: callers are refused here without asking
    /// again.
    refused_until: AtomicU64,
    /// One take from Redis at a time per tenant: callers who find the batch spent while a take
    /// is under way wait for it instead of each asking Redis (and each dropping the batch the
    /// one before took).
    taking: Arc<tokio::sync::Mutex<()>>,
}

pub struct RedisTenantLimits {
    redis: Redis,
    key_prefix: String,
    default: Quota,
    overrides: HashMap<TenantId, Quota>,
    held: DashMap<TenantId, Held>,
    /// The instant `Held`'s times count from.
    epoch: Instant,
    take: Script,
    /// Used while Redis does not answer.
    fallback: GovernorTenantLimits,
}

impl fmt::Debug for RedisTenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTenantLimits")
            .field("key_prefix", &self.key_prefix)
            .field("default", &self.default)
            .field("tenants", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl RedisTenantLimits {
    /// `account_tag` keeps two accounts' tenants apart in one Redis.
    pub fn new(
        redis: Redis,
        account_tag: &str,
        default: Quota,
        overrides: HashMap<TenantId, Quota>,
    ) -> Self {
        Self {
            key_prefix: redis.key(&format!("{account_tag}:tenant:")),
            redis,
            default,
            fallback: GovernorTenantLimits::new(default, overrides.clone()),
            overrides,
            held: DashMap::new(),
            epoch: Instant::now(),
            take: Script::new(TAKE),
        }
    }

    fn quota(&self, tenant: &TenantId) -> Quota {
        self.overrides.get(tenant).copied().unwrap_or(self.default)
    }

    /// `t` in nanoseconds from the epoch; never 0, which stands for "never".
    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Decides from what this replica holds, if it can: a call of a batch still good, or the
    /// refusal Redis gave while it lasts.
    fn decide_local(&self, tenant: &TenantId, now: Instant) -> Option<Result<(), TenantRejection>> {
        let held = self.held.get(tenant)?;
        let at = self.ns(now);
        if held.until.load(Ordering::Acquire) > at
            && held
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        {
            return Some(Ok(()));
        }
        let refused_until = held.refused_until.load(Ordering::Acquire);
        (refused_until > at).then(|| {
            Err(TenantRejection {
                quota: self.quota(tenant),
                retry_after: Duration::from_nanos(refused_until - at),
            })
        })
    }

    async fn take_batch(&self, tenant: &TenantId) -> Result<(), TenantRejection> {
        let taking = Arc::clone(&self.held.entry(tenant.clone()).or_default().taking);
        let _turn = taking.lock().await;
        // The take this call waited for may have left calls, or a refusal.
        if let Some(decided) = self.decide_local(tenant, Instant::now()) {
            return decided;
        }
        // The take this call waited for may have found Redis down: no round trip that would only
        // time out, one waiter after another.
        if self.redis.down() {
            return self.fallback.decide(tenant);
        }
        let quota = self.quota(tenant);
        let period_us = 1e6 / quota.rps;
        let tau_us = period_us * f64::from(quota.burst.get());
        let want = ((quota.rps * BATCH_OF_A_SECOND).ceil() as u32).clamp(1, quota.burst.get());
        let key = format!("{}{}", self.key_prefix, tenant.as_str());
        let mut invocation = self.take.key(key);
        invocation.arg(period_us).arg(tau_us).arg(want);
        // A batch lives from before Redis granted it, so that its reply's latency never stretches
        // the error bound; a refusal lasts from after, which only errs towards refusing.
        let sent = Instant::now();
        let taken = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<(u32, u64)>(&mut c).await })
            .await;
        let now = Instant::now();
        match taken {
            Ok((0, wait_us)) => {
                let retry_after = Duration::from_micros(wait_us);
                if let Some(held) = self.held.get(tenant) {
                    held.refused_until
                        .store(self.ns(now + retry_after), Ordering::Release);
                }
                Err(TenantRejection { quota, retry_after })
            }
            Ok((got, _)) => {
                if let Some(held) = self.held.get(tenant) {
                    // The count first: a reader that sees the new lifetime sees these calls.
                    held.left.store(got - 1, Ordering::Release);
                    held.until
                        .store(self.ns(sent + LEASE_LIFE), Ordering::Release);
                    held.refused_until.store(0, Ordering::Release);
                }
                Ok(())
            }
            Err(_) => self.fallback.decide(tenant),
        }
    }
}

impl TenantLimits for RedisTenantLimits {
    fn check<'a>(&'a self, tenant: &'a TenantId) -> TenantCheck<'a> {
        if let Some(decided) = self.decide_local(tenant, Instant::now()) {
            return TenantCheck::Decided(decided);
        }
        // Known to be down: no round trip that would only time out.
        if self.redis.down() {
            return TenantCheck::Decided(self.fallback.decide(tenant));
        }
        TenantCheck::Pending(Box::pin(self.take_batch(tenant)))
    }

    fn evict_idle(&self) {
        let now = Instant::now();
        let at = self.ns(now);
        self.held.retain(|_, held| {
            held.until.load(Ordering::Acquire) > at
                || held.refused_until.load(Ordering::Acquire) > at
                || Arc::strong_count(&held.taking) > 1
        });
        self.held.shrink_to_fit();
        self.fallback.evict_idle();
    }

    fn tracked(&self) -> usize {
        self.held.len() + self.fallback.tracked()
    }
}
