//! The cache tier shared by the replicas, in Redis, and the coordination that makes one replica
//! fetch a flow that several want at once.
//!
//! - An entry is the answer plus its fetch time and expiries, as JSON, under a versioned key that
//!   names the account, the tenant and the flow id, so tenants never share an entry. The key
//!   expires at the entry's `usable_until` (never past the flow's `PreviewUrlExpires`), and the
//!   expiry is checked again on read. A value that does not decode is a miss, logged, never
//!   served.
//! - A replica that misses takes a short lock (`SET NX PX`) before it asks CAMS; the others wait
//!   for its answer: a notification on one channel, with polling as the fallback (a notification
//!   is lost when the subscription drops). If the fetching replica dies, its lock expires and
//!   another takes over. Refresh-ahead takes the same lock, so a hot entry read through three
//!   replicas is refreshed once.
//! - Redis failing never fails a call: the tier is skipped (within `redis.timeout_ms`), and the
//!   gateway goes on as a single replica would.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use tokio::{sync::Notify, time::Instant};

use super::{CacheTier, CachedFlow, Demand, FetchRole};
use crate::{
    cams::FlowAnswer,
    clock::SharedClock,
    domain::{Flow, FlowQuery},
    store::Redis,
};

/// Bump when the encoding changes: replicas of two versions then use different keys.
const VERSION: &str = "v1";

/// A waiting replica looks at Redis at least this often, whatever the notifications do.
const POLL: Duration = Duration::from_millis(50);

/// How often a lost subscription is tried again.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Stores the value and its expiry, lifts the lock if it is still ours, and announces the fill.
const FILL: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], KEYS[1])
return 1
";

/// Lifts the lock if it is still ours (the fetch failed: another replica may try).
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The stored form of an entry.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    fetched_at_ms: u64,
    fresh_until_ms: u64,
    usable_until_ms: u64,
    request_id: String,
    flow: StoredFlow,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFlow {
    flow_id: String,
    flow_name: String,
    raw_status: String,
    raw_categories: Vec<String>,
    json_version: String,
    data_api_version: String,
    preview_url: String,
    preview_url_expires_ms: Option<i64>,
    endpoint_uri: String,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn signed_unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

impl Stored {
    fn of(entry: &CachedFlow) -> Self {
        let flow = &entry.answer.flow;
        Self {
            fetched_at_ms: unix_ms(entry.fetched_at),
            fresh_until_ms: unix_ms(entry.fresh_until),
            usable_until_ms: unix_ms(entry.usable_until),
            request_id: entry.answer.request_id.clone(),
            flow: StoredFlow {
                flow_id: flow.flow_id.clone(),
                flow_name: flow.flow_name.clone(),
                raw_status: flow.raw_status.clone(),
                raw_categories: flow.raw_categories.clone(),
                json_version: flow.json_version.clone(),
                data_api_version: flow.data_api_version.clone(),
                preview_url: flow.preview_url.clone(),
                preview_url_expires_ms: flow.preview_url_expires.map(signed_unix_ms),
                endpoint_uri: flow.endpoint_uri.clone(),
            },
        }
    }

    /// Back into an entry. Refresh-ahead starts its window where this process would have:
    /// `refresh_window` before the end of the entry's freshness.
    fn into_entry(self, refresh_window: Duration) -> CachedFlow {
        let fresh_until = from_unix_ms(self.fresh_until_ms);
        let fetched_at = from_unix_ms(self.fetched_at_ms);
        let f = self.flow;
        CachedFlow {
            answer: Arc::new(FlowAnswer {
                flow: Flow {
                    flow_id: f.flow_id,
                    flow_name: f.flow_name,
                    raw_status: f.raw_status,
                    raw_categories: f.raw_categories,
                    json_version: f.json_version,
                    data_api_version: f.data_api_version,
                    preview_url: f.preview_url,
                    preview_url_expires: f
                        .preview_url_expires_ms
                        .and_then(Flow::expiry_from_unix_millis),
                    endpoint_uri: f.endpoint_uri,
                },
                request_id: self.request_id,
            }),
            fetched_at,
            fresh_until,
            usable_until: from_unix_ms(self.usable_until_ms),
            refresh_at: if refresh_window.is_zero() {
                fresh_until
            } else {
                fresh_until
                    .checked_sub(refresh_window)
                    .map_or(fetched_at, |at| at.max(fetched_at))
            },
            demand: Arc::new(Demand::default()),
        }
    }
}

/// Replicas waiting for a fill, by value key.
type Waiting = Mutex<HashMap<String, Arc<Notify>>>;

pub(crate) struct RedisTier {
    redis: Redis,
    /// `<prefix>:v1:` then `flow:` / `lock:` and the entry's name.
    base: String,
    account_tag: String,
    channel: String,
    refresh_window: Duration,
    clock: SharedClock,
    fill: Script,
    unlock: Script,
    waiting: Arc<Waiting>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("base", &self.base)
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    pub(crate) fn new(
        redis: Redis,
        account_tag: &str,
        refresh_window: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            base: redis.key(&format!("{VERSION}:")),
            channel: redis.key(&format!("{VERSION}:filled")),
            account_tag: account_tag.to_owned(),
            redis,
            refresh_window,
            clock,
            fill: Script::new(FILL),
            unlock: Script::new(UNLOCK),
            waiting: Arc::default(),
        }
    }

    /// `{<account>:<tenant length>:<tenant>:<flow>}`: unambiguous whatever the ids contain, and
    /// one hash tag for the value and its lock (one script touches both).
    fn name(&self, key: &FlowQuery) -> String {
        let tenant = key.tenant.as_str();
        format!(
            "{{{}:{}:{tenant}:{}}}",
            self.account_tag.trim_matches(|c| c == '{' || c == '}'),
            tenant.len(),
            key.flow_id.as_str()
        )
    }

    /// While the last exchange with Redis failed, the tier is skipped: each call would only wait
    /// out `redis.timeout_ms`. The store's probe (once a second) finds Redis again.
    fn skipped(&self) -> bool {
        self.redis.down()
    }

    fn value_key(&self, key: &FlowQuery) -> String {
        format!("{}flow:{}", self.base, self.name(key))
    }

    fn lock_key(&self, key: &FlowQuery) -> String {
        format!("{}lock:{}", self.base, self.name(key))
    }

    /// Reads and checks one entry; what cannot be used is a miss.
    async fn read(&self, value_key: &str) -> Option<CachedFlow> {
        if self.skipped() {
            return None;
        }
        let mut connection = self.redis.connection();
        let key = value_key.to_owned();
        let bytes: Option<Vec<u8>> = self
            .redis
            .run(async move { connection.get(key).await })
            .await
            .ok()?;
        let bytes = bytes?;
        match serde_json::from_slice::<Stored>(&bytes) {
            Ok(stored) => {
                let entry = stored.into_entry(self.refresh_window);
                (entry.usable_until > self.clock.now()).then_some(entry)
            }
            Err(error) => {
                tracing::warn!(
                    key = value_key,
                    %error,
                    "a shared cache entry does not decode; treated as a miss"
                );
                None
            }
        }
    }

    /// Keeps the subscription to fills and wakes the replicas waiting for them. Runs until
    /// dropped; polling covers the times it is not subscribed.
    pub(crate) fn listen(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (redis, channel, waiting) = (
            self.redis.clone(),
            self.channel.clone(),
            Arc::clone(&self.waiting),
        );
        async move {
            loop {
                if let Ok(mut pubsub) = redis.pubsub().await
                    && pubsub.subscribe(&channel).await.is_ok()
                {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(key) = message.get_payload::<String>() else {
                            continue;
                        };
                        let notify = waiting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&key)
                            .cloned();
                        if let Some(notify) = notify {
                            notify.notify_waiters();
                        }
                    }
                }
                tokio::time::sleep(RESUBSCRIBE).await;
            }
        }
    }
}

/// A place on the waiting list for one key, left when the wait ends: the key's entry goes with
/// its last waiter.
struct Registered<'a> {
    waiting: &'a Waiting,
    key: String,
    notify: Arc<Notify>,
}

impl<'a> Registered<'a> {
    fn new(waiting: &'a Waiting, key: String) -> Self {
        let notify = Arc::clone(
            waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default(),
        );
        Self {
            waiting,
            key,
            notify,
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        // Two handles left, the map's and this waiter's: no other waiter holds the key (they
        // register under the same lock).
        if let Some(notify) = waiting.get(&self.key)
            && Arc::strong_count(notify) <= 2
        {
            waiting.remove(&self.key);
        }
    }
}

#[async_trait::async_trait]
impl CacheTier for RedisTier {
    async fn get(&self, key: &FlowQuery) -> Option<CachedFlow> {
        self.read(&self.value_key(key)).await
    }

    async fn put(&self, key: FlowQuery, entry: CachedFlow) {
        self.fill(&key, entry, None).await;
    }

    async fn claim(&self, key: &FlowQuery, hold: Duration) -> FetchRole {
        if self.skipped() {
            return FetchRole::Unknown;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut connection = self.redis.connection();
        let lock = self.lock_key(key);
        let value = token.clone();
        let won = self
            .redis
            .run(async move {
                redis::cmd("SET")
                    .arg(lock)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX))
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await;
        match won {
            Ok(Some(_)) => FetchRole::Fetcher(token),
            Ok(None) => FetchRole::Waiter,
            Err(_) => FetchRole::Unknown,
        }
    }

    async fn fill(&self, key: &FlowQuery, entry: CachedFlow, token: Option<String>) {
        if self.skipped() {
            return;
        }
        let Ok(value) = serde_json::to_vec(&Stored::of(&entry)) else {
            return;
        };
        let mut connection = self.redis.connection();
        let mut invocation = self.fill.key(self.value_key(key));
        invocation
            .key(self.lock_key(key))
            .arg(value)
            .arg(unix_ms(entry.usable_until))
            .arg(token.unwrap_or_default())
            .arg(&self.channel);
        let _ = self
            .redis
            .run(invocation.invoke_async::<i64>(&mut connection))
            .await;
    }

    async fn release(&self, key: &FlowQuery, token: String) {
        if self.skipped() {
            return;
        }
        let mut connection = self.redis.connection();
        let mut invocation = self.unlock.key(self.lock_key(key));
        invocation.arg(token);
        let _ = self
            .redis
            .run(invocation.invoke_async::<i64>(&mut connection))
            .await;
    }

    /// Waits for the replica holding the lock to fill the entry: `None` when its lock goes
    /// without a value (its fetch failed or it died), or `until` comes. The value already
    /// there while the lock is held is the one being replaced (due for a refresh, or past its
    /// TTL and kept only as a fallback), never the answer waited for.
    async fn wait_for(&self, key: &FlowQuery, until: Instant) -> Option<CachedFlow> {
        let value_key = self.value_key(key);
        let lock_key = self.lock_key(key);
        let registered = Registered::new(&self.waiting, value_key.clone());
        loop {
            if self.skipped() {
                return None;
            }
            let notified = registered.notify.notified();
            if let Some(entry) = self.read(&value_key).await
                && self.clock.now() < entry.refresh_at
            {
                return Some(entry);
            }
            let mut connection = self.redis.connection();
            let lock = lock_key.clone();
            let locked = self
                .redis
                .run(async move { connection.exists::<_, bool>(lock).await })
                .await
                .ok()?;
            if !locked {
                // One last look: the fill and the unlock are one step, so a value written just
                // now is there.
                return self
                    .read(&value_key)
                    .await
                    .filter(|entry| self.clock.now() < entry.fresh_until);
            }
            let next = (Instant::now() + POLL).min(until);
            if next >= until {
                return None;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FlowId, TenantId};

    #[test]
    fn a_key_leaves_the_waiting_list_with_its_last_waiter() {
        let waiting = Waiting::default();
        let first = Registered::new(&waiting, "k".into());
        let second = Registered::new(&waiting, "k".into());
        assert!(Arc::ptr_eq(&first.notify, &second.notify));
        drop(first);
        assert!(
            waiting.lock().expect("lock").contains_key("k"),
            "one waiter left"
        );
        drop(second);
        assert!(waiting.lock().expect("lock").is_empty());
    }

    #[test]
    fn entries_of_different_tenants_never_share_a_name() {
        let tier_name = |tenant: &str, flow: &str| {
            let key = FlowQuery {
                tenant: TenantId::parse(tenant).expect("tenant"),
                flow_id: FlowId::parse(flow).expect("flow"),
            };
            let tenant = key.tenant.as_str();
            format!("{}:{tenant}:{}", tenant.len(), key.flow_id.as_str())
        };
        assert_ne!(tier_name("a:b", "c"), tier_name("a", "b:c"));
    }

    #[test]
    fn an_entry_survives_its_encoding() {
        let now = SystemTime::now();
        let entry = CachedFlow {
            answer: Arc::new(FlowAnswer {
                flow: Flow {
                    flow_id: "f".into(),
                    flow_name: "n".into(),
                    raw_status: "DRAFT".into(),
                    raw_categories: vec!["SIGN_UP".into()],
                    json_version: "2.1".into(),
                    data_api_version: "3.0".into(),
                    preview_url: "https://p".into(),
                    preview_url_expires: Flow::expiry_from_unix_millis(1_700_617_436_633),
                    endpoint_uri: "https://e".into(),
                },
                request_id: "R".into(),
            }),
            fetched_at: now,
            fresh_until: now + Duration::from_secs(30),
            usable_until: now + Duration::from_secs(60),
            refresh_at: now + Duration::from_secs(24),
            demand: Arc::default(),
        };
        let bytes = serde_json::to_vec(&Stored::of(&entry)).expect("encode");
        let back: Stored = serde_json::from_slice(&bytes).expect("decode");
        let back = back.into_entry(Duration::from_secs(6));
        assert_eq!(back.answer, entry.answer);
        assert_eq!(unix_ms(back.fresh_until), unix_ms(entry.fresh_until));
        assert_eq!(unix_ms(back.refresh_at), unix_ms(entry.refresh_at));
    }
}
