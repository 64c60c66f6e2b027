//! The account's slots shared by every replica, in Redis, as a lease log: one sorted set per
//! account whose members are calls and whose scores are the instants until which each call
//! counts: its lease deadline while it is in flight, its completion plus one window once it has
//! completed. A call is admitted while fewer than `rps` members count, so the proof of the
//! in-process slots carries over without slot identity: the counting intervals form an interval
//! graph with cliques of at most `rps`, which can be coloured with `rps` slots, and two calls on
//! one slot reach CAMS at least a window apart.
//!
//! - Time is Redis's (`TIME`), never a replica's clock.
//! - A call given up mid-flight is never released: its lease runs out. The lease is longer than
//!   any attempt can take (`call_timeout`), plus the rest and a delivery margin.
//! - After Redis loses its state (a restart without persistence, a failover to a replica that
//!   missed the last writes: its replication id changes), nothing is admitted until every lease
//!   that might have been lost has ended.
//! - When Redis does not answer within `redis.timeout_ms`, nothing is admitted (fail closed).

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use redis::Script;
use tokio::time::Instant;

use super::{Busy, SlotLease, SlotStore};
use crate::store::{Redis, StoreError};

/// Time between a call's local bound and the end of its lease: covers a request still on its
/// way when the caller gave up, and the difference between the replica's and Redis's clocks'
/// rates over one call.
const DELIVERY_MARGIN: Duration = Duration::from_secs(2);

/// While calls wait, a replica asks Redis again this often at least: other replicas' releases
/// are not announced.
const POLL: Duration = Duration::from_millis(50);

/// A replica that claimed a turn and has not asked again for this long has stopped waiting (or
/// died): its claim lapses. Replicas with callers waiting ask at least every [`POLL`].
const TURN_LAPSE: Duration = Duration::from_millis(500);

/// Admits a call while fewer than `n - reserve` count; fenced for a quiet period whenever the
/// replication id changes (first use included). Returns `{1, 0}` admitted, `{0, ms}` refused
/// with the earliest a slot may free, `{-1, ms}` fenced for that long.
///
/// Turns: a replica whose callers have waited (`hungry` ms without a slot) claims a turn in
/// KEYS[3] (scored by since when, in Redis time; KEYS[4] says when it last asked). A free slot
/// goes to the replica that has gone without longest; the others, and calls that have not
/// waited, are refused for a moment. Losing these keys costs fairness for a moment, never the
/// bound.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, lease, rest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reserve = tonumber(ARGV[5])
local me, hungry, lapse = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)') or 'none'
if redis.call('HGET', KEYS[2], 'epoch') ~= replid then
  redis.call('HSET', KEYS[2], 'epoch', replid, 'quiet_until', now + lease + rest)
end
local quiet = tonumber(redis.call('HGET', KEYS[2], 'quiet_until'))
if now < quiet then return {-1, quiet - now} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return {1, 0} end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - lapse))) do
  redis.call('ZREM', KEYS[3], gone)
  redis.call('ZREM', KEYS[4], gone)
end
local since = now - hungry
if hungry > 0 then
  redis.call('ZADD', KEYS[3], since, me)
  redis.call('ZADD', KEYS[4], now, me)
  redis.call('PEXPIRE', KEYS[3], lapse * 4)
  redis.call('PEXPIRE', KEYS[4], lapse * 4)
end
local free = redis.call('ZCARD', KEYS[1]) < n - reserve
if free then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first == 0 or first[1] == me or tonumber(first[2]) >= since then
    redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
    if redis.call('PTTL', KEYS[1]) < lease + rest then
      redis.call('PEXPIRE', KEYS[1], lease + rest)
    end
    redis.call('ZREM', KEYS[3], me)
    redis.call('ZREM', KEYS[4], me)
    return {1, 0}
  end
  -- Not its turn: the replica that has waited longest asks again within a poll.
  return {0, 20}
end
-- A call in flight may complete at once and free its slot a window later.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.min(math.max(0, tonumber(first[2]) - now), rest)}
";

/// Completes a call: it counts for one window from now. A call whose lease already ran out is
/// left alone (reviving it could only under-count); 0 tells the caller so.
const RELEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) < now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// What a replica last learned of when slots free, to estimate waits without a round trip.
#[derive(Debug, Clone, Copy)]
struct Sighting {
    at: Instant,
    next_free: Instant,
}

struct Inner {
    redis: Redis,
    slots_key: String,
    meta_key: String,
    turns_key: String,
    seen_key: String,
    /// This replica's name in the turns.
    replica: String,
    /// Whether this replica may have a turn claimed in Redis.
    claimed: AtomicBool,
    capacity: u32,
    window: Duration,
    lease: Duration,
    acquire: Script,
    release: Script,
    sighting: Mutex<Option<Sighting>>,
    /// The end of the quiet period last reported.
    pause: Mutex<Option<Instant>>,
}

/// The shared slot store; see the module docs.
#[derive(Clone)]
pub struct RedisSlots {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlots")
            .field("key", &self.inner.slots_key)
            .field("capacity", &self.inner.capacity)
            .field("lease", &self.inner.lease)
            .finish()
    }
}

impl RedisSlots {
    /// `rps` slots of the account whose keys carry `account_tag` (`store::account_tag`), each
    /// call bounded by `call_bound` (its lease is longer).
    pub fn new(
        redis: Redis,
        account_tag: &str,
        rps: u32,
        window: Duration,
        call_bound: Duration,
    ) -> Self {
        let tag = account_tag;
        Self {
            inner: Arc::new(Inner {
                slots_key: redis.key(&format!("{tag}:slots")),
                meta_key: redis.key(&format!("{tag}:meta")),
                turns_key: redis.key(&format!("{tag}:turns")),
                seen_key: redis.key(&format!("{tag}:turns-seen")),
                replica: uuid::Uuid::new_v4().simple().to_string(),
                claimed: AtomicBool::new(false),
                redis,
                capacity: rps.max(1),
                window,
                lease: call_bound + window + DELIVERY_MARGIN,
                acquire: Script::new(ACQUIRE),
                release: Script::new(RELEASE),
                sighting: Mutex::new(None),
                pause: Mutex::new(None),
            }),
        }
    }

    /// How long an admitted call counts at most (its lease).
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// Replaces the margin between a call's bound and its lease's end (tests shorten it to keep
    /// the quiet periods short). Only before the store is shared.
    pub fn with_delivery_margin(self, call_bound: Duration, margin: Duration) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.lease = call_bound + inner.window + margin;
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
    }
}

impl Inner {
    /// Says once per quiet period why calls that need CAMS are refused for a while: otherwise
    /// they only read as a spent quota.
    fn paused(&self, until: Instant, wait_ms: u64) {
        let mut known = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
        if known.is_some_and(|end| end + Duration::from_secs(1) >= until) {
            return;
        }
        *known = Some(until);
        tracing::warn!(
            quiet_ms = wait_ms,
            "the account quota's state in Redis is new (first use, a restart without \
             persistence, or a failover): no CAMS call is admitted until every lease that might \
             have been lost has ended; calls that need CAMS meanwhile get ACCOUNT_RATE_LIMITED"
        );
    }

    fn see(&self, next_free: Instant) {
        *self.sighting.lock().unwrap_or_else(PoisonError::into_inner) = Some(Sighting {
            at: Instant::now(),
            next_free,
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct RedisLease {
    store: Arc<Inner>,
    id: String,
}

impl SlotLease for RedisLease {
    fn complete(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let store = &self.store;
            let mut connection = store.redis.connection();
            let mut invocation = store.release.key(&store.slots_key);
            invocation.arg(&self.id).arg(millis(store.window));
            let outcome = store
                .redis
                .run(invocation.invoke_async::<i64>(&mut connection))
                .await;
            match outcome {
                Ok(1) => {}
                // Its lease ran out before the answer came: the call was slower than its bound,
                // which the bound was meant to prevent. The slot is counted by its lease.
                Ok(_) => tracing::warn!("a CAMS call outlived its lease in the shared quota"),
                // The lease ends by itself; nothing over-counts.
                Err(error) => tracing::debug!(%error, "release not recorded; the lease runs out"),
            }
        })
    }

    /// The request may still be on its way: the lease runs out by itself.
    fn abandon(self: Box<Self>) {}

    /// Never used: the entry can go at once.
    fn give_back(self: Box<Self>) {
        tokio::spawn(async move {
            let store = &self.store;
            let mut connection = store.redis.connection();
            let key = store.slots_key.clone();
            let id = self.id.clone();
            let _ = store
                .redis
                .run(async move {
                    redis::cmd("ZREM")
                        .arg(key)
                        .arg(id)
                        .query_async::<i64>(&mut connection)
                        .await
                })
                .await;
        });
    }
}

#[async_trait::async_trait]
impl SlotStore for RedisSlots {
    async fn try_take(&self, reserve: u32, hungry: Duration) -> Result<Box<dyn SlotLease>, Busy> {
        let inner = &self.inner;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut connection = inner.redis.connection();
        let mut invocation = inner.acquire.key(&inner.slots_key);
        let hungry = millis(hungry);
        if hungry > 0 {
            inner.claimed.store(true, Ordering::Relaxed);
        }
        invocation
            .key(&inner.meta_key)
            .key(&inner.turns_key)
            .key(&inner.seen_key)
            .arg(inner.capacity)
            .arg(millis(inner.lease))
            .arg(millis(inner.window))
            .arg(&id)
            .arg(reserve)
            .arg(&inner.replica)
            .arg(hungry)
            .arg(millis(TURN_LAPSE));
        let sent = Instant::now();
        let reply = inner
            .redis
            .run(invocation.invoke_async::<(i64, u64)>(&mut connection))
            .await;
        match reply {
            Ok((1, _)) => Ok(Box::new(RedisLease {
                store: Arc::clone(inner),
                id,
            })),
            Ok((admitted, wait_ms)) => {
                // Measured from before the request: never later than Redis meant.
                let next_free = sent + Duration::from_millis(wait_ms);
                if admitted < 0 {
                    inner.paused(next_free, wait_ms);
                }
                inner.see(next_free);
                Err(Busy::Until(Some(next_free.min(Instant::now() + POLL))))
            }
            Err(StoreError::Timeout(_) | StoreError::Redis(_) | StoreError::Unexpected(_)) => {
                // Redis may have admitted the call after all (its reply came too late or was
                // lost): no call goes out with this id, so its lease is handed back rather than
                // left to hold a slot for its whole life.
                Box::new(RedisLease {
                    store: Arc::clone(inner),
                    id,
                })
                .give_back();
                Err(Busy::StoreUnavailable)
            }
        }
    }

    /// From the last refusal this replica saw: the earliest a slot frees, then a window per
    /// round of `capacity` calls. Without a recent sighting, now: a lower bound, so that the
    /// estimate only ever errs towards waiting.
    fn earliest_start(&self, ahead: usize, now: Instant) -> Instant {
        let inner = &self.inner;
        let sighting = *inner
            .sighting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first = match sighting {
            Some(s) if now.saturating_duration_since(s.at) < inner.window => s.next_free.max(now),
            _ => now,
        };
        let rounds = u32::try_from(ahead / inner.capacity as usize).unwrap_or(u32::MAX);
        first + inner.window.saturating_mul(rounds)
    }

    fn capacity(&self) -> u32 {
        self.inner.capacity
    }

    /// Gives up the turn at once rather than after [`TURN_LAPSE`], so that the other replicas
    /// do not hold a free slot for this one.
    fn withdraw(&self) {
        let inner = Arc::clone(&self.inner);
        if !inner.claimed.swap(false, Ordering::Relaxed) {
            return;
        }
        tokio::spawn(async move {
            let mut connection = inner.redis.connection();
            let (turns, seen, replica) = (
                inner.turns_key.clone(),
                inner.seen_key.clone(),
                inner.replica.clone(),
            );
            let _ = inner
                .redis
                .run(async move {
                    redis::pipe()
                        .zrem(turns, &replica)
                        .zrem(seen, &replica)
                        .query_async::<()>(&mut connection)
                        .await
                })
                .await;
        });
    }
}
