//! The cache tier shared by the replicas, in Redis: an entry is the answer plus its fetch time
//! and expiries, as JSON (`stored.rs`), under the name `cache::keys` gives it. The times are on
//! CAMS's clock as the writer knew it; each reader compares them with its own reading of CAMS's
//! clock. The key lives until the entry's `usable_until` (never past the flow's
//! `PreviewUrlExpires`), and the expiry is checked again on read. A value that does not decode is
//! a miss, logged, never served; so is an entry fetched in the reader's future.
//!
//! Each put also notes the entry in its tenant's index (a sorted set scored by when the entry
//! ends, pruned on every put, `keys.rs`), before the entry is written, so that a purge that runs
//! between the two finds the name; the hit path reads only the entry. Names leave the index only
//! when their entries end: a purge that took them out could race a put that had just added one.
//! A purge deletes the names the index and the scope give, one key per command (a tenant's
//! entries are in many slots of a Redis Cluster), and publishes a notice for the other replicas
//! (`cache::purge`).
//!
//! A fetch that began before a purge must not leave its answer here after it, whichever replica
//! made it and however its commands interleave with the purge's. Each purge moves the account's
//! purge counter on and notes the new value as its tenant's last purge (a key in the index's
//! slot) before it reads the index; a fetch reads the counter before it asks CAMS (its mark).
//! The put is refused when the tenant's last purge is past the mark, checked twice: in the
//! script that indexes the entry, and again after the entry is written, which then deletes it if
//! it is still the one written. The second check is what makes it safe: the first can pass just
//! before the purge; then either the second sees the purge, or it ran before the purge read the
//! index, so the entry was written (and indexed) before the purge deleted it. The check is a
//! round trip of its own, not part of the write: in a Redis Cluster a script may only touch keys
//! of one slot, and the entry's slot is not its tenant's.
//!
//! Redis failing never fails a call: while the last exchange failed the tier is skipped (no call
//! waits out `redis.timeout_ms` for it), and the gateway goes on as a single replica would. Who
//! fetches a flow is the fetch lock's to say (`cache::lock`).

mod stored;
#[cfg(test)]
mod tests;

use std::fmt;

use futures_util::{StreamExt, stream};
use redis::{AsyncCommands, Script};

use super::{
    CacheTier, CachedFlow, LivePolicy,
    keys::SharedKeys,
    purge::{Notice, PurgeCounter, Scope},
};
use crate::domain::{Data, TenantId, What};
use crate::{
    cams::CLOCK_MARGIN,
    clock::{SharedClock, millis_between},
    domain::Read,
    store::{Redis, StoreError},
};
use stored::Stored;

/// Notes an entry in its tenant's index until it ends (by Redis's clock: the index lives in
/// Redis alone), prunes the names of entries that have ended, and keeps the index as long as
/// its longest entry; unless the tenant was purged since the entry's fetch began (`ARGV[3]`, the
/// counter as it began), when it answers 0 and the entry is not written.
const INDEX: &str = r"
local purged = tonumber(redis.call('GET', KEYS[2]) or '0')
if purged > tonumber(ARGV[3]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + left, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < left then redis.call('PEXPIRE', KEYS[1], left) end
return 1
";

/// Notes a purge as its tenant's last (concurrent purges may note theirs out of order: the
/// highest stays), for `ARGV[2]` ms.
const PURGED: &str = r"
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > before then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
";

/// Deletes an entry if it is still the one written (a fetch begun after the purge may have
/// replaced it since).
const UNWRITE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A tenant's last purge is remembered at least this long, and as long as an entry may live:
/// longer than any fetch that began before it can take to put its answer.
const PURGED_FLOOR: std::time::Duration = std::time::Duration::from_secs(600);

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
    purged: Script,
    unwrite: Script,
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
            purged: Script::new(PURGED),
            unwrite: Script::new(UNWRITE),
            replica: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The name this replica signs its purge notices with.
    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    /// The names of the entries `scope` covers: from the tenant's index, and, for named flows,
    /// their entries by name too (an entry written by a release without the index is found so).
    async fn doomed(&self, scope: &Scope) -> Result<Vec<String>, StoreError> {
        let index = self.keys.index(&scope.tenant);
        let indexed: Vec<String> = self
            .redis
            .run(|mut c| async move { c.zrange(index, 0, -1).await })
            .await?;
        if scope.is_tenant_wide() {
            return Ok(indexed);
        }
        let mut names: Vec<String> = scope
            .flows
            .iter()
            .flat_map(|flow| self.keys.of_flow(&scope.tenant, flow))
            .collect();
        names.extend(indexed.into_iter().filter(|name| self.keys.is_list(name)));
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// The tenant's last purge, by number (0 when none is remembered).
    async fn last_purge(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let purged = self.keys.purged(tenant);
        let last: Option<u64> = self
            .redis
            .run(|mut c| async move { c.get(purged).await })
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// Notes purge `seq` as the last of `scope`'s tenant.
    async fn note_purge(&self, scope: &Scope, seq: u64) -> Result<(), StoreError> {
        let policy = self.policy.load();
        let keep = (policy.ttl + policy.stale_if_error).max(PURGED_FLOOR);
        let mut invocation = self.purged.key(self.keys.purged(&scope.tenant));
        invocation
            .arg(seq)
            .arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        self.redis
            .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await?;
        Ok(())
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

    async fn put(&self, key: Read, entry: CachedFlow, began: u64) {
        if self.redis.down() {
            return;
        }
        let Some(write) = self.write_of(&key, &entry, began) else {
            return;
        };
        // Indexed first: a purge between the two then finds the name.
        if self.indexed(&write).await && self.written(&write).await {
            self.taken_back_if_purged(write).await;
        }
    }

    async fn mark(&self) -> Option<u64> {
        if self.redis.down() {
            return None;
        }
        self.purges_so_far().await.ok()
    }

    /// Moves the purge counter on and notes it as the tenant's last purge (which refuses the
    /// puts of fetches begun before), deletes the entries, then tells the other replicas. Once
    /// the counter has moved, the notice is published whatever else failed (the other replicas
    /// drop their copies all the same), and the first failure is returned after.
    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let counter = self.keys.purges();
        let seq: u64 = self
            .redis
            .run(|mut c| async move { c.incr(counter, 1u64).await })
            .await?;
        let noted = self.note_purge(scope, seq).await;
        let deleted = match self.doomed(scope).await {
            Ok(names) => self.delete(names).await,
            Err(error) => Err(error),
        };
        let notice = Notice::of(scope, &self.replica, self.keys.account(), seq).encode();
        let channel = self.keys.released_channel();
        let published = self
            .redis
            .run(|mut c| async move { c.publish::<_, _, u64>(channel, notice).await })
            .await;
        noted?;
        let deleted = deleted?;
        published?;
        Ok(deleted)
    }
}

/// An entry on its way into the tier, through the steps of a put.
struct Write {
    tenant: TenantId,
    key: String,
    value: Vec<u8>,
    left_ms: u64,
    /// The purge counter as the entry's fetch began.
    began: u64,
}

impl RedisTier {
    fn write_of(&self, key: &Read, entry: &CachedFlow, began: u64) -> Option<Write> {
        let value = serde_json::to_vec(&Stored::of(entry)).ok()?;
        // The time left, not the time to end at: Redis would read an end on its own clock, and
        // the entry's times are CAMS's.
        let left = entry
            .usable_until
            .duration_since(self.clock.now())
            .unwrap_or_default();
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        (left_ms > 0).then(|| Write {
            tenant: key.tenant.clone(),
            key: self.keys.value(key),
            value,
            left_ms,
            began,
        })
    }

    /// Notes the entry in its tenant's index; false if that failed (a purge would not find
    /// it) or the tenant was purged since the fetch began: the entry is then not written.
    async fn indexed(&self, write: &Write) -> bool {
        let mut invocation = self.index.key(self.keys.index(&write.tenant));
        invocation
            .key(self.keys.purged(&write.tenant))
            .arg(&write.key)
            .arg(write.left_ms)
            .arg(write.began);
        let indexed = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await;
        matches!(indexed, Ok(1))
    }

    async fn written(&self, write: &Write) -> bool {
        let (key, value, left_ms) = (write.key.clone(), write.value.clone(), write.left_ms);
        self.redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(left_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
            .is_ok()
    }

    /// Deletes the entry just written if its tenant was purged since its fetch began (and it is
    /// still the one written); not knowing whether it was counts as purged.
    async fn taken_back_if_purged(&self, write: Write) {
        if matches!(self.last_purge(&write.tenant).await, Ok(last) if last <= write.began) {
            return;
        }
        let mut invocation = self.unwrite.key(&write.key);
        invocation.arg(write.value);
        let unwritten = self
            .redis
            .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await;
        if unwritten.is_err() {
            tracing::warn!(
                key = write.key,
                "an answer fetched before a purge could not be taken back from the shared \
                 cache; it may be served until its TTL ends"
            );
        }
    }
}

impl RedisTier {
    /// Deletes every name it can; the first failure, if any, after all were tried.
    async fn delete(&self, names: Vec<String>) -> Result<u64, StoreError> {
        let counts: Vec<Result<u64, StoreError>> = stream::iter(names)
            .map(|name| {
                self.redis
                    .run(|mut c| async move { c.del::<_, u64>(name).await })
            })
            .buffer_unordered(PURGE_CONCURRENCY)
            .collect()
            .await;
        let mut deleted = 0;
        for count in counts {
            deleted += count?;
        }
        Ok(deleted)
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
