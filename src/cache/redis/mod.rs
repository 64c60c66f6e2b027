//! The cache tier shared by the replicas, in Redis: an entry is the answer plus its fetch time
//! and expiries, as JSON (`stored.rs`), under the name `cache::keys` gives it. The times are on
//! CAMS's clock as the writer knew it; each reader compares them with its own reading of CAMS's
//! clock. The key lives until the entry's `usable_until` (never past the flow's
//! `PreviewUrlExpires`), and the expiry is checked again on read. A value that does not decode is
//! a miss, logged, never served; so is an entry fetched in the reader's future.
//!
//! Redis failing never fails a call: while the last exchange failed the tier is skipped (no call
//! waits out `redis.timeout_ms` for it), and the gateway goes on as a single replica would. Who
//! fetches a flow is the fetch lock's to say (`cache::lock`).

mod stored;

use std::fmt;

use redis::AsyncCommands;

use super::{CacheTier, CachedFlow, LivePolicy, keys::SharedKeys};
use crate::domain::{Data, What};
use crate::{
    cams::CLOCK_MARGIN,
    clock::{SharedClock, millis_between},
    domain::Read,
    store::Redis,
};
use stored::Stored;

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
        }
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
