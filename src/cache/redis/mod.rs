//! The cache tier shared by the replicas, in Redis: an entry is the answer plus its fetch time
//! and expiries, as JSON (`stored.rs`), under the name `cache::keys` gives it. The times are on
//! CAMS's clock as the writer knew it; each reader compares them with its own reading of CAMS's
//! clock. The key lives until the entry's `usable_until` (never past the flow's
//! `PreviewUrlExpires`), and the expiry is checked again on read. A value that does not decode is
//! a miss, logged, never served; so is an entry fetched in the reader's future.
//!
//! Each put also notes the entry in its tenant's index (a sorted set scored by when the entry
//! ends, pruned on every put, `keys.rs`), before the entry is written, so that a purge that runs
//! between the two finds the name; the hit path reads only the entry. A purge deletes the names
//! the index and the scope give, one key per command (a tenant's entries are in many slots of a
//! Redis Cluster), and publishes a notice for the other replicas (`cache::purge`).
//!
//! Redis failing never fails a call: while the last exchange failed the tier is skipped (no call
//! waits out `redis.timeout_ms` for it), and the gateway goes on as a single replica would. Who
//! fetches a flow is the fetch lock's to say (`cache::lock`).

mod stored;

use std::fmt;

use futures_util::{StreamExt, TryStreamExt, stream};
use redis::{AsyncCommands, Script};

use super::{
    CacheTier, CachedFlow, LivePolicy,
    keys::SharedKeys,
    purge::{Notice, PurgeCounter, Scope},
};
use crate::domain::{Data, What};
use crate::{
    cams::CLOCK_MARGIN,
    clock::{SharedClock, millis_between},
    domain::Read,
    store::{Redis, StoreError},
};
use stored::Stored;

/// Notes an entry in its tenant's index until it ends (by Redis's clock: the index lives in
/// Redis alone), prunes the names of entries that have ended, and keeps the index as long as
/// its longest entry.
const INDEX: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + left, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < left then redis.call('PEXPIRE', KEYS[1], left) end
return 1
";

/// Deletions a purge has in flight at once.
const PURGE_CONCURRENCY: usize = 32;

/// How far in a reader's future an entry's `fetched_at` may be and still be trusted. The writer's
/// reading of CAMS's clock and the reader's may each be off by the margin, so an honest entry
/// read at once can look up to two margins late; later than that, one of the two clocks is not
/// CAMS's (a writer that had not heard from CAMS yet, whose host clock runs ahead), and the
/// entry's TTL would run from a moment still to come.
const FUTURE_TOLERANCE: std::time::Duration = CLOCK_MARGIN.saturating_mul(2);

pub(crate) struct RedisTier {
    redis: Redis,
    keys: SharedKeys,
    /// Read for the refresh window, which a reload may change.
    policy: LivePolicy,
    clock: SharedClock,
    index: Script,
    /// This replica, in the purge notices it sends.
    replica: String,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("keys", &self.keys)
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    pub(crate) fn new(
        redis: Redis,
        keys: SharedKeys,
        policy: LivePolicy,
        clock: SharedClock,
    ) -> Self {
        Self {
            redis,
            keys,
            policy,
            clock,
            index: Script::new(INDEX),
            replica: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The name this replica signs its purge notices with.
    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    /// The names of the entries `scope` covers: from the tenant's index, and, for named flows,
    /// their entries by name too (an entry written by a release without the index is found so).
    /// With the index's names that are among them.
    async fn doomed(&self, scope: &Scope) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let index = self.keys.index(&scope.tenant);
        let indexed: Vec<String> = self
            .redis
            .run(|mut c| async move { c.zrange(index, 0, -1).await })
            .await?;
        if scope.is_tenant_wide() {
            return Ok((indexed.clone(), indexed));
        }
        let mut names: Vec<String> = scope
            .flows
            .iter()
            .flat_map(|flow| self.keys.of_flow(&scope.tenant, flow))
            .collect();
        names.sort_unstable();
        names.dedup();
        let lists = indexed.iter().filter(|name| self.keys.is_list(name));
        names.extend(lists.cloned());
        let from_index = indexed
            .into_iter()
            .filter(|name| names.binary_search(name).is_ok() || self.keys.is_list(name))
            .collect();
        Ok((names, from_index))
    }
}

#[async_trait::async_trait]
impl CacheTier for RedisTier {
    async fn get(&self, key: &Read) -> Option<CachedFlow> {
        if self.redis.down() {
            return None;
        }
        let value_key = self.keys.value(key);
        let read = value_key.clone();
        let bytes: Option<Vec<u8>> = self
            .redis
            .run(|mut c| async move { c.get(read).await })
            .await
            .ok()?;
        let stored = serde_json::from_slice::<Stored>(&bytes?)
            .map_err(|e| e.to_string())
            .and_then(|stored| {
                stored
                    .into_entry(self.policy.load().refresh_window)
                    .filter(|entry| answers(&key.what, &entry.answer.data))
                    .ok_or_else(|| "it holds no answer to this read".to_owned())
            });
        match stored {
            Ok(entry) => {
                let now = self.clock.now();
                if entry.fetched_at > now + FUTURE_TOLERANCE {
                    tracing::debug!(
                        key = value_key,
                        ahead_ms = millis_between(entry.fetched_at, now),
                        "a shared cache entry fetched later than now by this replica's reading \
                         of CAMS's clock is not trusted; treated as a miss"
                    );
                    return None;
                }
                (entry.usable_until > now).then_some(entry)
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

    async fn put(&self, key: Read, entry: CachedFlow) {
        if self.redis.down() {
            return;
        }
        let Ok(value) = serde_json::to_vec(&Stored::of(&entry)) else {
            return;
        };
        // The time left, not the time to end at: Redis would read an end on its own clock, and
        // the entry's times are CAMS's.
        let left = entry
            .usable_until
            .duration_since(self.clock.now())
            .unwrap_or_default();
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        if left_ms == 0 {
            return;
        }
        let value_key = self.keys.value(&key);
        // Indexed first: a purge between the two then finds the name.
        let mut invocation = self.index.key(self.keys.index(&key.tenant));
        invocation.arg(&value_key).arg(left_ms);
        let indexed = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await;
        if indexed.is_err() {
            // Not indexed, a purge would not find it: not kept.
            return;
        }
        let _ = self
            .redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(value_key)
                    .arg(value)
                    .arg("PX")
                    .arg(left_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    /// Deletes the entries, then their names from the index (not the index itself: a put
    /// under way may have just added a name), then tells the other replicas.
    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let (names, indexed) = self.doomed(scope).await?;
        let deleted = self.delete(names).await?;
        if !indexed.is_empty() {
            let index = self.keys.index(&scope.tenant);
            self.redis
                .run(|mut c| async move { c.zrem::<_, _, u64>(index, indexed).await })
                .await?;
        }
        let counter = self.keys.purges();
        let seq: u64 = self
            .redis
            .run(|mut c| async move { c.incr(counter, 1u64).await })
            .await?;
        let notice = Notice::of(scope, &self.replica, self.keys.account(), seq).encode();
        let channel = self.keys.released_channel();
        self.redis
            .run(|mut c| async move { c.publish::<_, _, u64>(channel, notice).await })
            .await?;
        Ok(deleted)
    }
}

impl RedisTier {
    async fn delete(&self, names: Vec<String>) -> Result<u64, StoreError> {
        let counts: Vec<u64> = stream::iter(names)
            .map(|name| {
                self.redis
                    .run(|mut c| async move { c.del::<_, u64>(name).await })
            })
            .buffer_unordered(PURGE_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(counts.into_iter().sum())
    }
}

#[async_trait::async_trait]
impl PurgeCounter for RedisTier {
    async fn purges_so_far(&self) -> Result<u64, StoreError> {
        let counter = self.keys.purges();
        let seq: Option<u64> = self
            .redis
            .run(|mut c| async move { c.get(counter).await })
            .await?;
        Ok(seq.unwrap_or(0))
    }
}

/// Whether `data` answers a read of `what` (an entry under another's key is not its answer).
fn answers(what: &What, data: &Data) -> bool {
    matches!(
        (what, data),
        (What::Flow(_), Data::Flow(_))
            | (What::List(_), Data::List(_))
            | (What::PreviewUrl(_), Data::PreviewUrl(_))
            | (What::JsonAsset(_), Data::JsonAsset(_))
    )
}
