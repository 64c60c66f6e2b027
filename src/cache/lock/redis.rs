//! The fetch lock of the replicas that share a cache in Redis: `SET NX PX` on the entry's lock
//! key with a token of the holder's; released (by the holder only, checked by token) with a
//! message on one channel, so that the replicas waiting wake at once; a look every
//! [`POLL`] covers the times a message is lost (the subscription dropped). A holder that dies
//! loses the lock when it expires.
//!
//! The same channel carries the replicas' purge notices (`cache::purge`), which the subscription
//! hands to whoever asked for them ([`RedisLock::purge_notices`]).
//!
//! Redis failing never fails a call: a lock that cannot be asked for is a permit that
//! coordinates nothing (the replica fetches on its own, as a single one would), and a wait that
//! cannot look ends as released (the waiter asks again, then fetches).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use redis::{AsyncCommands, Script};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use super::{FetchLock, Held, Locked, Wait, Waited, Waiting, WritePermit};
use crate::{
    cache::{
        keys::SharedKeys,
        purge::{Heard, Notice},
    },
    domain::Read,
    store::Redis,
};

/// Purge notices heard but not yet applied, at most; a flood beyond is dropped, and the
/// replica's own tier with it once the queue has room (`Heard::Missed`).
const NOTICES_QUEUED: usize = 1024;

/// A waiting replica looks at Redis at least this often, whatever the messages do.
const POLL: Duration = Duration::from_millis(50);

/// How often a lost subscription is tried again.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// How often the subscription is asked whether it is alive: a subscribed connection only
/// receives, so a dead one would otherwise go unnoticed for good.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Lifts the lock if it is still the holder's, and tells the waiting replicas.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], KEYS[1])
return 1
";

/// The replicas' fetch lock; see the module docs.
#[derive(Clone)]
pub struct RedisLock {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    keys: SharedKeys,
    channel: String,
    release: Script,
    waiting: Waiters,
    /// Where purge notices go, once someone asked for them.
    purges: OnceLock<mpsc::Sender<Heard>>,
    /// A notice was dropped and `Heard::Missed` is not queued yet.
    missed: AtomicBool,
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

impl RedisLock {
    /// The lock of the account whose keys carry `account_tag` (`store::account_tag`).
    pub fn new(redis: Redis, account_tag: &str) -> Self {
        let keys = SharedKeys::new(&redis, account_tag);
        Self::with_keys(redis, keys)
    }

    pub(crate) fn with_keys(redis: Redis, keys: SharedKeys) -> Self {
        Self {
            inner: Arc::new(Inner {
                channel: keys.released_channel(),
                redis,
                keys,
                release: Script::new(RELEASE),
                waiting: Waiters::default(),
                purges: OnceLock::new(),
                missed: AtomicBool::new(false),
            }),
        }
    }

    /// The purge notices the subscription hears from now on, and each time it is made (asked
    /// for once; `None` after).
    pub(crate) fn purge_notices(&self) -> Option<mpsc::Receiver<Heard>> {
        let (sender, receiver) = mpsc::channel(NOTICES_QUEUED);
        self.inner.purges.set(sender).ok()?;
        Some(receiver)
    }

    /// Keeps the subscription to releases and wakes the waits on them. Runs until dropped;
    /// polling covers the times it is not subscribed. A subscription that does not answer a
    /// PING within `redis.timeout_ms` is given up and made again (to the primary as it is now).
    pub fn listen(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            loop {
                inner.subscribed().await;
                tokio::time::sleep(RESUBSCRIBE).await;
            }
        }
    }
}

impl Inner {
    /// One subscription, for as long as it is alive.
    async fn subscribed(&self) {
        let timeout = self.redis.timeout();
        let Ok(pubsub) = self.redis.pubsub().await else {
            return;
        };
        let (mut sink, mut messages) = pubsub.split();
        if !matches!(
            tokio::time::timeout(timeout, sink.subscribe(&self.channel)).await,
            Ok(Ok(()))
        ) {
            return;
        }
        self.tell(Heard::Subscribed);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        if let Ok(payload) = message.get_payload::<String>() {
                            match Notice::decode(&payload) {
                                Some(notice) => self.tell(Heard::Purge(notice)),
                                None => self.waiting.wake(&payload),
                            }
                        }
                    }
                    None => return,
                },
                _ = ping.tick() => {
                    // A drop with no notice after it is told here, within a tick.
                    self.tell_missed();
                    let alive = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::debug!("the subscription to fetch-lock releases does not answer; subscribing again");
                        return;
                    }
                }
            }
        }
    }
}

impl Inner {
    fn tell(&self, heard: Heard) {
        let Some(purges) = self.purges.get() else {
            return;
        };
        self.tell_missed();
        if purges.try_send(heard).is_err() {
            self.missed.store(true, Ordering::Release);
            tracing::warn!(
                "a purge notice from another replica was dropped (too many queued): this \
                 replica's own cache is dropped once the queue has room"
            );
        }
    }

    /// Queues `Heard::Missed` if a notice was dropped and it is not queued yet.
    fn tell_missed(&self) {
        let Some(purges) = self.purges.get() else {
            return;
        };
        if self.missed.load(Ordering::Acquire) && purges.try_send(Heard::Missed).is_ok() {
            self.missed.store(false, Ordering::Release);
        }
    }
}

#[async_trait::async_trait]
impl FetchLock for RedisLock {
    async fn lock(&self, key: &Read, hold: Duration) -> Locked {
        let inner = &self.inner;
        if inner.redis.down() {
            return Locked::Write(WritePermit::alone());
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lock_key = inner.keys.lock(key);
        let (lock, value) = (lock_key.clone(), token.clone());
        let won = inner
            .redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(lock)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX))
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match won {
            Ok(Some(_)) => Locked::Write(WritePermit::new(Box::new(RedisHeld {
                inner: Arc::clone(inner),
                lock_key,
                token,
            }))),
            Ok(None) => Locked::Read(Waiting::new(Box::new(RedisWait {
                inner: Arc::clone(inner),
                lock_key,
            }))),
            Err(_) => Locked::Write(WritePermit::alone()),
        }
    }
}

struct RedisHeld {
    inner: Arc<Inner>,
    lock_key: String,
    token: String,
}

impl Held for RedisHeld {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut invocation = inner.release.key(&self.lock_key);
            invocation.arg(&self.token).arg(&inner.channel);
            // Not released, the lock expires by itself.
            let _ = inner
                .redis
                .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
                .await;
        })
    }
}

struct RedisWait {
    inner: Arc<Inner>,
    lock_key: String,
}

impl Wait for RedisWait {
    fn until(self: Box<Self>, until: Instant) -> BoxFuture<'static, Waited> {
        Box::pin(async move {
            let inner = &self.inner;
            let registered = inner.waiting.register(&self.lock_key);
            loop {
                // Made before the look, so that a release between the two is not missed.
                let notified = registered.notify.notified();
                if inner.redis.down() {
                    return Waited::Released;
                }
                let lock = self.lock_key.clone();
                let held = inner
                    .redis
                    .run(|mut c| async move { c.exists::<_, bool>(lock).await })
                    .await;
                if !matches!(held, Ok(true)) {
                    return Waited::Released;
                }
                let next = Instant::now() + POLL;
                if next >= until {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(until) => return Waited::TimedOut,
                    }
                } else {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(next) => {}
                    }
                }
            }
        })
    }
}

/// The waits of this replica, by lock key, each key with the number of waits on it, so that a
/// key leaves the list with its last wait.
#[derive(Default)]
struct Waiters(Mutex<HashMap<String, (Arc<Notify>, usize)>>);

impl Waiters {
    fn map(&self) -> MutexGuard<'_, HashMap<String, (Arc<Notify>, usize)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, key: &str) -> Registered<'_> {
        let notify = {
            let mut map = self.map();
            let (notify, count) = map.entry(key.to_owned()).or_default();
            *count += 1;
            Arc::clone(notify)
        };
        Registered {
            waiters: self,
            key: key.to_owned(),
            notify,
        }
    }

    fn wake(&self, key: &str) {
        let notify = self.map().get(key).map(|(notify, _)| Arc::clone(notify));
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

/// One wait's place on the list, left when the wait ends.
struct Registered<'a> {
    waiters: &'a Waiters,
    key: String,
    notify: Arc<Notify>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.map();
        if let Some((_, count)) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_leaves_the_list_with_its_last_wait() {
        let waiters = Waiters::default();
        let first = waiters.register("k");
        let second = waiters.register("k");
        assert!(Arc::ptr_eq(&first.notify, &second.notify));
        // A wake in progress holds a clone of the key's Notify: that must not keep the key.
        let waking = waiters.map().get("k").map(|(n, _)| Arc::clone(n));
        drop(first);
        assert_eq!(waiters.len(), 1, "one wait left");
        drop(second);
        assert_eq!(waiters.len(), 0);
        drop(waking);
    }

    /// A notice dropped from a full queue is made up for by `Heard::Missed` once there is
    /// room, whether another notice comes (its turn) or none does (the next PING tick's).
    #[tokio::test]
    async fn a_dropped_notice_is_told_as_missed_once_there_is_room() {
        let redis = Redis::new(&crate::store::RedisConfig::standalone(
            "redis://127.0.0.1:1/",
            "t",
        ))
        .expect("a handle (it connects lazily: no Redis is needed)");
        let lock = RedisLock::new(redis, "acct");
        let mut heard = lock.purge_notices().expect("asked once");
        let notice = || {
            let scope = crate::cache::purge::Scope::tenant(
                crate::domain::TenantId::parse("t").expect("tenant"),
            );
            Heard::Purge(Notice::of(&scope, "other", "acct", 1))
        };
        for _ in 0..=NOTICES_QUEUED {
            lock.inner.tell(notice());
        }
        lock.inner.tell_missed();
        let mut purges = 0;
        while let Ok(next) = heard.try_recv() {
            assert!(matches!(next, Heard::Purge(_)), "no room for Missed yet");
            purges += 1;
        }
        assert_eq!(purges, NOTICES_QUEUED);

        lock.inner.tell_missed();
        assert!(matches!(heard.try_recv(), Ok(Heard::Missed)));
        lock.inner.tell_missed();
        assert!(heard.try_recv().is_err(), "told once");

        // With a notice to tell after the drop, Missed goes first.
        for _ in 0..=NOTICES_QUEUED {
            lock.inner.tell(notice());
        }
        let _ = heard.try_recv();
        let _ = heard.try_recv();
        lock.inner.tell(notice());
        let mut queued = Vec::new();
        while let Ok(next) = heard.try_recv() {
            queued.push(next);
        }
        assert!(matches!(
            queued.as_slice(),
            [.., Heard::Missed, Heard::Purge(_)]
        ));
        lock.inner.tell_missed();
        assert!(heard.try_recv().is_err(), "told once");
    }
}
