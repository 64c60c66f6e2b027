//! Keyed limits shared by every replica, without a Redis round trip on every call: each key has
//! one GCRA state in Redis (its theoretical arrival time, on Redis's clock), and a replica takes
//! calls from it in small batches (a tenth of a second's worth, at most its burst), which it then
//! spends locally. A batch not spent within [`LEASE_LIFE`] is dropped.
//!
//! The bound: every call a replica admits was taken from the shared state, so over any span `T`
//! the whole service admits at most `burst + rate × (T + LEASE_LIFE)` of one key's calls: for
//! `T` = 10 s and a lease life of 1 s, within 10 % plus one burst of the configured rate, however
//! the load balancer spreads the calls. Batches dropped unspent make the service admit fewer,
//! never more.
//!
//! While Redis does not answer, each replica falls back to enforcing each key's quota on its own
//! (so N replicas admit up to N times the quota for those calls): cache hits go on, and a call
//! that needs CAMS cannot pass the account quota anyway, which fails closed.

use std::{
    collections::HashMap,
    fmt,
    ops::Deref,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use dashmap::{DashMap, mapref::one::Ref};
use redis::Script;

use super::{Check, GovernorKeyed, Key, Kind, Quota, Quotas, Rejection, Standing, Verdict};
use crate::store::Redis;

/// How long a batch of calls taken from Redis may be spent.
pub(crate) const LEASE_LIFE: Duration = Duration::from_secs(1);

/// The share of a second's worth of calls taken at once.
const BATCH_OF_A_SECOND: f64 = 0.1;

/// Takes up to `want` calls from the key's GCRA (period `T` µs, tolerance `tau` µs): returns
/// `{got, 0, ahead}`, or `{0, µs until one is free, ahead}`, where `ahead` is how far (µs) the
/// key's state runs ahead of now after the take: from it the caller knows the calls left and when
/// the burst is whole, without asking again. Lua numbers are doubles: microseconds since the epoch
/// stay exact (below 2^53).
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period, tau, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
-- Never more than one tolerance ahead: a state left by a stricter quota (before a reload raised
-- it) counts as a spent burst of this one. Under one quota the state is never further ahead.
if tat > now + tau then
  tat = now + tau
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil(tau / 1000) + 1)
end
local room = math.floor((now + tau - tat) / period)
if room < 1 then return {0, math.ceil(tat + period - tau - now), math.ceil(tat - now)} end
local got = math.min(room, want)
tat = tat + got * period
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {got, 0, math.ceil(tat - now)}
";

/// How far (µs) the key's state runs ahead of now, read without spending anything.
const PEEK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then return 0 end
return math.ceil(tat - now)
";

/// What this replica holds of a key's shared state. Atomics, read without a write lock: every
/// cache hit spends from here, and concurrent hits must not queue on a lock.
#[derive(Debug, Default)]
struct Held {
    /// Calls taken from Redis and not spent yet.
    left: AtomicU32,
    /// Until when they may be spent, in nanoseconds from the limiter's epoch (0: never).
    until: AtomicU64,
    /// Until when Redis refused the key, likewise: calls are refused here without asking again.
    refused_until: AtomicU64,
    /// When the key's shared state, as Redis last told it, is whole again (likewise): what the
    /// calls' rate-limit metadata is derived from, without a round trip of its own.
    whole_at: AtomicU64,
    /// One take from Redis at a time per key: calls that find the batch spent while a take is
    /// under way wait for it instead of each asking Redis (and each dropping the batch the one
    /// before took).
    taking: Arc<tokio::sync::Mutex<()>>,
}

/// A key's held state: a configured key's, reached without a lock, or a learned key's, under the
/// map's shared lock.
enum HeldRef<'a, K: Key> {
    Own(&'a Arc<Held>),
    Learned(Ref<'a, K, Held>),
}

impl<K: Key> Deref for HeldRef<'_, K> {
    type Target = Held;

    fn deref(&self) -> &Held {
        match self {
            Self::Own(held) => held,
            Self::Learned(held) => held,
        }
    }
}

/// The quotas of one configuration and what this replica holds under them, replaced whole when
/// the quotas are reconfigured.
struct Table<K: Key> {
    /// The quota of keys learned as they call; none: only configured keys are limited.
    default: Option<Quota>,
    /// Learned keys' states, forgotten once idle.
    learned: Arc<DashMap<K, Held>>,
    /// Configured keys: their quota and state, held from the start.
    each: HashMap<K, (Quota, Arc<Held>)>,
}

impl<K: Key> Table<K> {
    /// The table of `quotas`, keeping from `old` what this replica holds of every key whose
    /// quota is the same. The state in Redis stays whatever the quota: a key's spending carries
    /// over to its new quota.
    fn new(quotas: &Quotas<K>, old: Option<&Self>) -> Self {
        let learned = old
            .filter(|old| old.default == quotas.default)
            .map_or_else(Arc::default, |old| Arc::clone(&old.learned));
        let each = quotas
            .each
            .iter()
            .map(|(key, quota)| {
                let held = old
                    .and_then(|old| old.each.get(key))
                    .filter(|(was, _)| was == quota)
                    .map_or_else(Arc::default, |(_, held)| Arc::clone(held));
                (key.clone(), (*quota, held))
            })
            .collect();
        Self {
            default: quotas.default,
            learned,
            each,
        }
    }

    /// `key`'s quota, and what this replica holds of its state if anything; `None`: the key is
    /// not limited.
    fn held(&self, key: &K) -> Option<(Quota, Option<HeldRef<'_, K>>)> {
        match self.each.get(key) {
            Some((quota, held)) => Some((*quota, Some(HeldRef::Own(held)))),
            None => Some((self.default?, self.learned.get(key).map(HeldRef::Learned))),
        }
    }
}

pub struct RedisKeyed<K: Key> {
    redis: Redis,
    kind: Kind,
    /// `<prefix>:<account tag>:<kind>:`, which the key's text completes.
    key_prefix: String,
    table: ArcSwap<Table<K>>,
    /// The instant `Held`'s times count from.
    epoch: Instant,
    take: Script,
    peek: Script,
    /// Used while Redis does not answer.
    fallback: GovernorKeyed<K>,
}

impl<K: Key> fmt::Debug for RedisKeyed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        f.debug_struct("RedisKeyed")
            .field("kind", &self.kind)
            .field("key_prefix", &self.key_prefix)
            .field("default", &table.default)
            .field("each", &table.each.len())
            .field("learned", &table.learned.len())
            .finish_non_exhaustive()
    }
}

impl<K: Key> RedisKeyed<K> {
    /// `account_tag` keeps two accounts' keys apart in one Redis, and `kind` two kinds of party.
    pub fn new(redis: Redis, account_tag: &str, kind: Kind, quotas: Quotas<K>) -> Self {
        Self {
            key_prefix: redis.key(&format!("{account_tag}:{}:", kind.as_str())),
            redis,
            kind,
            table: ArcSwap::from_pointee(Table::new(&quotas, None)),
            epoch: Instant::now(),
            take: Script::new(TAKE),
            peek: Script::new(PEEK),
            fallback: GovernorKeyed::new(quotas),
        }
    }

    /// Replaces the quotas; calls deciding now finish under the old ones. What this replica
    /// holds of a key whose quota changes is dropped (calls taken at the old rate, at most a
    /// tenth of a second's worth), so the new quota holds from the next take.
    pub fn reconfigure(&self, quotas: Quotas<K>) {
        let table = Table::new(&quotas, Some(&self.table.load()));
        self.table.store(Arc::new(table));
        self.fallback.reconfigure(quotas);
    }

    /// `t` in nanoseconds from the epoch; never 0, which stands for "never".
    fn ns(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Where the key stands at `at` for this replica: the calls it holds, and those the shared
    /// state could still give (as of Redis's last answer, refilled since at the quota's rate).
    fn standing(quota: Quota, whole_at: u64, left: u32, at: u64) -> Standing {
        let period = u64::try_from(quota.period().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let whole = period.saturating_mul(u64::from(quota.burst.get()));
        // A state left by a stricter quota (before a reload raised it) counts as a spent burst.
        let ahead = whole_at.saturating_sub(at).min(whole);
        let room = u32::try_from(whole.saturating_sub(ahead) / period).unwrap_or(u32::MAX);
        Standing {
            quota,
            remaining: left.saturating_add(room).min(quota.burst.get()),
            reset: Duration::from_nanos(ahead),
        }
    }

    /// Decides from what this replica holds, if it can: a call of a batch still good, or the
    /// refusal Redis gave while it lasts.
    fn decide_local(&self, quota: Quota, held: &Held, now: Instant) -> Option<Verdict> {
        let at = self.ns(now);
        if held.until.load(Ordering::Acquire) > at
            && let Ok(before) =
                held.left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                        left.checked_sub(1)
                    })
        {
            return Some(Ok(Some(Self::standing(
                quota,
                held.whole_at.load(Ordering::Acquire),
                before - 1,
                at,
            ))));
        }
        let refused_until = held.refused_until.load(Ordering::Acquire);
        (refused_until > at).then(|| {
            Err(Rejection {
                quota,
                retry_after: Duration::from_nanos(refused_until - at),
                reset: Duration::from_nanos(
                    held.whole_at.load(Ordering::Acquire).saturating_sub(at),
                ),
            })
        })
    }

    /// Spends one call of `key`'s quota, or says how long until one is free: at once while this
    /// replica holds a batch of the key's calls (or a refusal), or while Redis is known to be
    /// down; otherwise once a batch is taken from Redis.
    pub fn check<'a>(&'a self, key: &'a K) -> Check<'a> {
        let table = self.table.load();
        let Some((quota, held)) = table.held(key) else {
            return Check::Decided(Ok(None));
        };
        if let Some(decided) = held.and_then(|held| self.decide_local(quota, &held, Instant::now()))
        {
            return Check::Decided(decided);
        }
        // Known to be down: no round trip that would only time out.
        if self.redis.down() {
            return Check::Decided(self.fallback.decide(key));
        }
        Check::Pending(Box::pin(self.take_batch(key, quota)))
    }

    /// Where `key` stands, spending nothing: the shared state as Redis has it now, plus the calls
    /// this replica holds; `None`: the key is not limited. One read of Redis (none while it is
    /// known to be down: then the fallback's view).
    pub async fn peek(&self, key: &K) -> Option<Standing> {
        let (quota, _) = self.table.load().held(key)?;
        if self.redis.down() {
            return self.fallback.peek(key);
        }
        let invocation = self
            .peek
            .key(format!("{}{}", self.key_prefix, key.as_str()));
        let ahead = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<u64>(&mut c).await })
            .await;
        let Ok(ahead_us) = ahead else {
            return self.fallback.peek(key);
        };
        let at = self.ns(Instant::now());
        let whole_at = at.saturating_add(ahead_us.saturating_mul(1_000));
        let table = self.table.load();
        let left = table
            .held(key)
            .filter(|(now_quota, _)| *now_quota == quota)
            .and_then(|(_, held)| held)
            .map_or(0, |held| {
                if held.until.load(Ordering::Acquire) > at {
                    held.left.load(Ordering::Acquire)
                } else {
                    0
                }
            });
        Some(Self::standing(quota, whole_at, left, at))
    }

    async fn take_batch(&self, key: &K, quota: Quota) -> Verdict {
        let taking = {
            let table = self.table.load();
            match table.each.get(key) {
                Some((_, held)) => Arc::clone(&held.taking),
                None => Arc::clone(&table.learned.entry(key.clone()).or_default().taking),
            }
        };
        let _turn = taking.lock().await;
        // The take this call waited for may have left calls, or a refusal.
        if let Some((_, Some(held))) = self.table.load().held(key)
            && let Some(decided) = self.decide_local(quota, &held, Instant::now())
        {
            return decided;
        }
        // The take this call waited for may have found Redis down: no round trip that would only
        // time out, one waiter after another.
        if self.redis.down() {
            return self.fallback.decide(key);
        }
        let period_us = 1e6 / quota.rps;
        let tau_us = period_us * f64::from(quota.burst.get());
        let want = ((quota.rps * BATCH_OF_A_SECOND).ceil() as u32).clamp(1, quota.burst.get());
        let mut invocation = self
            .take
            .key(format!("{}{}", self.key_prefix, key.as_str()));
        invocation.arg(period_us).arg(tau_us).arg(want);
        // A batch lives from before Redis granted it, so that its reply's latency never stretches
        // the error bound; a refusal lasts from after, which only errs towards refusing.
        let sent = Instant::now();
        let taken = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<(u32, u64, u64)>(&mut c).await })
            .await;
        let now = Instant::now();
        let table = self.table.load();
        // Held only under the quota it was taken for: a reconfigured key starts afresh.
        let held = table
            .held(key)
            .filter(|(now_quota, _)| *now_quota == quota)
            .and_then(|(_, held)| held);
        match taken {
            Ok((0, wait_us, ahead_us)) => {
                let retry_after = Duration::from_micros(wait_us);
                let reset = Duration::from_micros(ahead_us);
                if let Some(held) = held {
                    held.whole_at.store(self.ns(now + reset), Ordering::Release);
                    held.refused_until
                        .store(self.ns(now + retry_after), Ordering::Release);
                }
                Err(Rejection {
                    quota,
                    retry_after,
                    reset,
                })
            }
            Ok((got, _, ahead_us)) => {
                let at = self.ns(now);
                let whole_at = self.ns(now + Duration::from_micros(ahead_us));
                let standing = Self::standing(quota, whole_at, got - 1, at);
                let Some(held) = held else {
                    return Ok(Some(standing));
                };
                held.whole_at.store(whole_at, Ordering::Release);
                // The count first: a reader that sees the new lifetime sees these calls.
                held.left.store(got - 1, Ordering::Release);
                held.until
                    .store(self.ns(sent + LEASE_LIFE), Ordering::Release);
                held.refused_until.store(0, Ordering::Release);
                Ok(Some(standing))
            }
            Err(_) => self.fallback.decide(key),
        }
    }

    /// Forgets learned keys whose batch and refusal have ended (a key being taken for stays).
    /// Configured keys stay.
    pub fn evict_idle(&self) {
        let at = self.ns(Instant::now());
        let table = self.table.load();
        table.learned.retain(|_, held| {
            held.until.load(Ordering::Acquire) > at
                || held.refused_until.load(Ordering::Acquire) > at
                || Arc::strong_count(&held.taking) > 1
        });
        table.learned.shrink_to_fit();
        self.fallback.evict_idle();
    }

    /// Learned keys whose state is held now, here and in the fallback.
    pub fn tracked(&self) -> usize {
        self.table.load().learned.len() + self.fallback.tracked()
    }
}
