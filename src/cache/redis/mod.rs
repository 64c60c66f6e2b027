//! The cache tier shared by the replicas, in Redis: an entry is the answer plus its fetch time
//! and expiries, as JSON (`stored.rs`), under the name `cache::keys` gives it. The key expires
//! at the entry's `usable_until` (never past the flow's `PreviewUrlExpires`), and the expiry is
//! checked again on read. A value that does not decode is a miss, logged, never served.
//!
//! Redis failing never fails a call: while the last exchange failed the tier is skipped (no call
//! waits out `redis.timeout_ms` for it), and the gateway goes on as a single replica would. Who
//! fetches a flow is the fetch lock's to say (`cache::lock`).

mod stored;

use std::{fmt, time::Duration};

use redis::AsyncCommands;

use super::{CacheTier, CachedFlow, keys::SharedKeys};
use crate::{clock::SharedClock, domain::FlowQuery, store::Redis};
use stored::{Stored, unix_ms};

pub(crate) struct RedisTier {
    redis: Redis,
    keys: SharedKeys,
    refresh_window: Duration,
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
        refresh_window: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            redis,
            keys,
            refresh_window,
            clock,
        }
    }
}

#[async_trait::async_trait]
impl CacheTier for RedisTier {
    async fn get(&self, key: &FlowQuery) -> Option<CachedFlow> {
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
        match serde_json::from_slice::<Stored>(&bytes?) {
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

    async fn put(&self, key: FlowQuery, entry: CachedFlow) {
        if self.redis.down() {
            return;
        }
        let Ok(value) = serde_json::to_vec(&Stored::of(&entry)) else {
            return;
        };
        let value_key = self.keys.value(&key);
        let until = unix_ms(entry.usable_until);
        let _ = self
            .redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(value_key)
                    .arg(value)
                    .arg("PXAT")
                    .arg(until)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }
}
