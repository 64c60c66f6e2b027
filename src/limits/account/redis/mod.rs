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
//! - After Redis loses its state (a restart without persistence, a failover that lost writes,
//!   `FLUSHALL`, a key evicted or deleted), nothing is admitted until every lease that might
//!   have been lost has ended; a failover to a replica that holds every admission costs nothing,
//!   since an admission is used only once every connected replica has confirmed it (`WAIT`).
//!   The scripts and what they detect are in `scripts.rs`.
//! - When Redis does not answer within `redis.timeout_ms`, or its replicas do not confirm an
//!   admission in that time, nothing is admitted (fail closed).
//! - The slots `n` and the lease are published by every replica; the stricter of the replicas
//!   that asked lately hold, and a replica whose own settings differ says so once.

mod holding;
mod lease;
mod notices;
mod scripts;

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use redis::Script;
use tokio::time::Instant;

use super::{Busy, SlotLease, SlotStore};
use crate::store::Redis;
use holding::{Granted, Holding};
use scripts::{ACQUIRE, HEARTBEAT as HEARTBEAT_SCRIPT, RELEASE};

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

/// A replica's published settings count while it has asked within this long.
const SETTINGS_LAPSE: Duration = Duration::from_secs(60);

/// While this replica holds admissions that may still count, it checks this often that the state
/// still holds them.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// Added to a probation for what its parts do not cover: the heartbeat's own delay on a loaded
/// host.
const PROBATION_MARGIN: Duration = Duration::from_millis(300);

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
    settings_key: String,
    /// The field of `meta` that holds this log's latest score.
    live_field: String,
    /// Whether an admission waits for every connected replica's confirmation before it is
    /// used; without it a failover is always taken for a loss.
    confirm: bool,
    holding: Mutex<Holding>,
    /// How long a loss nobody reports is fenced: see `scripts.rs`.
    probation: Duration,
    heartbeat: Script,
    /// The last disagreement of settings reported, so that it is logged once.
    differed: AtomicBool,
    /// Whether replicas failing to confirm has been logged since the last confirmation.
    unconfirmed: AtomicBool,
    /// This replica's name in the turns.
    replica: String,
    /// Whether this replica may have a turn claimed in Redis.
    claimed: AtomicBool,
    /// The slots `n`, published with every acquire: a reload that changes it reaches the other
    /// replicas with this replica's next acquire.
    capacity: AtomicU32,
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
            .field("capacity", &self.inner.capacity())
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
        Self::for_log(redis, account_tag, "", rps, window, call_bound)
    }

    /// The slots of one of the account's logs (`log` empty: GetFlow's, whose keys keep the names
    /// of earlier releases). Every key of the account shares one hash tag: in a Redis Cluster
    /// one script can touch them all.
    pub fn for_log(
        redis: Redis,
        account_tag: &str,
        log: &str,
        rps: u32,
        window: Duration,
        call_bound: Duration,
    ) -> Self {
        let tag = account_tag;
        let (slots, live_field) = if log.is_empty() {
            (format!("{tag}:slots"), "live_until".to_owned())
        } else {
            (format!("{tag}:slots:{log}"), format!("live_until:{log}"))
        };
        Self {
            inner: Arc::new(Inner {
                slots_key: redis.key(&slots),
                meta_key: redis.key(&format!("{tag}:meta")),
                turns_key: redis.key(&format!("{tag}:turns{}", suffix(log))),
                seen_key: redis.key(&format!("{tag}:turns-seen{}", suffix(log))),
                settings_key: redis.key(&format!("{tag}:settings{}", suffix(log))),
                live_field,
                confirm: true,
                holding: Mutex::new(Holding::default()),
                probation: HEARTBEAT + redis.timeout() + window + PROBATION_MARGIN,
                heartbeat: Script::new(HEARTBEAT_SCRIPT),
                differed: AtomicBool::new(false),
                unconfirmed: AtomicBool::new(false),
                replica: uuid::Uuid::new_v4().simple().to_string(),
                claimed: AtomicBool::new(false),
                redis,
                capacity: AtomicU32::new(rps.max(1)),
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

    /// Checks now and then, while this replica holds admissions that may still count, that
    /// Redis's state still holds them, so that a loss is fenced for as long as they may count.
    /// Runs until dropped: the application's task owner runs it.
    pub fn heartbeat(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                inner.beat().await;
            }
        }
    }

    /// How long a loss nobody reports is fenced (first use among them).
    pub fn probation(&self) -> Duration {
        self.inner.probation
    }

    /// Whether admissions wait for the replicas' confirmation (`redis.wait_for_replicas`). Only
    /// before the store is shared.
    pub fn confirmed_by_replicas(self, confirm: bool) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.confirm = confirm;
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
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

/// What the acquire script answered, and the replicas' confirmation of an admission.
struct Acquired {
    status: i64,
    ms: u64,
    history: String,
    generation: String,
    seq: u64,
    replicas: u32,
    differ: bool,
    /// How many replicas confirmed the admission, when it had to be confirmed.
    confirmed: Option<u32>,
}

impl Inner {
    fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }

    fn holding(&self) -> std::sync::MutexGuard<'_, Holding> {
        self.holding.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks, while this replica holds admissions that may still count and no acquire has
    /// checked them lately, that the state still holds them.
    async fn beat(&self) {
        let now = Instant::now();
        let held = {
            let mut holding = self.holding();
            if holding
                .last_checked
                .is_some_and(|at| now.saturating_duration_since(at) < HEARTBEAT)
            {
                return;
            }
            let report = holding.report(now);
            if report.pending_ms == 0 {
                return;
            }
            holding.last_checked = Some(now);
            report
        };
        let mut invocation = self.heartbeat.key(&self.slots_key);
        invocation
            .key(&self.meta_key)
            .arg(millis(self.window))
            .arg(&held.generation)
            .arg(&held.history)
            .arg(held.seq)
            .arg(held.pending_ms)
            .arg(&self.live_field)
            .arg(millis(self.probation))
            .arg(if self.confirm { "1" } else { "0" })
            .arg(&held.id);
        let quiet = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<u64>(&mut c).await })
            .await;
        if let Ok(ms) = quiet
            && ms > 0
        {
            self.paused(Instant::now() + Duration::from_millis(ms), ms);
        }
    }

    fn see(&self, next_free: Instant) {
        *self.sighting.lock().unwrap_or_else(PoisonError::into_inner) = Some(Sighting {
            at: Instant::now(),
            next_free,
        });
    }
}

/// `:<log>` for an action's log, nothing for GetFlow's.
fn suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(":{log}")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait::async_trait]
impl SlotStore for RedisSlots {
    async fn try_take(&self, reserve: u32, hungry: Duration) -> Result<Box<dyn SlotLease>, Busy> {
        let inner = &self.inner;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let hungry = millis(hungry);
        if hungry > 0 {
            inner.claimed.store(true, Ordering::Relaxed);
        }
        let sent = Instant::now();
        let held = {
            let mut holding = inner.holding();
            holding.last_checked = Some(sent);
            holding.report(sent)
        };
        let mut invocation = inner.acquire.key(&inner.slots_key);
        invocation
            .key(&inner.meta_key)
            .key(&inner.turns_key)
            .key(&inner.seen_key)
            .key(&inner.settings_key)
            .arg(inner.capacity())
            .arg(millis(inner.lease))
            .arg(millis(inner.window))
            .arg(&id)
            .arg(reserve)
            .arg(&inner.replica)
            .arg(hungry)
            .arg(millis(TURN_LAPSE))
            .arg(millis(SETTINGS_LAPSE))
            .arg(&held.generation)
            .arg(&held.history)
            .arg(held.seq)
            .arg(held.pending_ms)
            .arg(if inner.confirm { "1" } else { "0" })
            .arg(&inner.live_field)
            .arg(millis(inner.probation))
            .arg(&held.id);
        let (slots_key, confirm) = (inner.slots_key.as_str(), inner.confirm);
        // Half the bound for the replicas' confirmation, so that a slow one fails the admission
        // rather than the whole exchange.
        let wait_ms = millis(inner.redis.timeout() / 2).max(1);
        let reply = inner
            .redis
            .run(|mut c| async move {
                let (status, ms, history, generation, seq, replicas, differ): (
                    i64,
                    u64,
                    String,
                    String,
                    u64,
                    u32,
                    i64,
                ) = invocation.invoke_async(&mut c).await?;
                // On the same connection, so to the server that took the admission.
                let confirmed = if status == 1 && confirm && replicas > 0 {
                    Some(c.wait_for_replicas(slots_key, replicas, wait_ms).await?)
                } else {
                    None
                };
                Ok(Acquired {
                    status,
                    ms,
                    history,
                    generation,
                    seq,
                    replicas,
                    differ: differ == 1,
                    confirmed,
                })
            })
            .await;
        let acquired = match reply {
            Ok(acquired) => acquired,
            Err(_) => {
                // Redis may have admitted the call after all (its reply came too late or was
                // lost): no call goes out with this id, so its lease is handed back rather than
                // left to hold a slot for its whole life.
                inner.lease(id).give_back();
                return Err(Busy::StoreUnavailable);
            }
        };
        inner.settings_differ(acquired.differ);
        match acquired.status {
            1 => {
                if let Some(acked) = acquired.confirmed
                    && acked < acquired.replicas
                {
                    inner.not_confirmed(acked, acquired.replicas);
                    inner.lease(id).give_back();
                    return Err(Busy::StoreUnavailable);
                }
                inner.confirmed();
                inner.holding().by_id.insert(
                    id.clone(),
                    Granted {
                        generation: acquired.generation,
                        history: acquired.history,
                        seq: acquired.seq,
                        counts_until: sent + inner.lease,
                    },
                );
                Ok(inner.lease(id))
            }
            status => {
                // Measured from before the request: never later than Redis meant.
                let next_free = sent + Duration::from_millis(acquired.ms);
                if status < 0 {
                    inner.paused(next_free, acquired.ms);
                }
                inner.see(next_free);
                Err(Busy::Until(Some(next_free.min(Instant::now() + POLL))))
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
        let rounds = u32::try_from(ahead / inner.capacity() as usize).unwrap_or(u32::MAX);
        first + inner.window.saturating_mul(rounds)
    }

    fn capacity(&self) -> u32 {
        self.inner.capacity()
    }

    /// The log counts calls, not slots: a lower `n` admits nothing until fewer than `n` count,
    /// so the new bound holds from the next acquire.
    fn set_capacity(&self, rps: u32) {
        self.inner.capacity.store(rps.max(1), Ordering::Relaxed);
    }

    /// Gives up the turn at once rather than after [`TURN_LAPSE`], so that the other replicas
    /// do not hold a free slot for this one.
    fn withdraw(&self) {
        let inner = Arc::clone(&self.inner);
        if !inner.claimed.swap(false, Ordering::Relaxed) {
            return;
        }
        tokio::spawn(async move {
            let (turns, seen, replica) = (
                inner.turns_key.clone(),
                inner.seen_key.clone(),
                inner.replica.clone(),
            );
            let _ = inner
                .redis
                .run(|mut c| async move {
                    redis::pipe()
                        .zrem(turns, &replica)
                        .zrem(seen, &replica)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        });
    }
}
