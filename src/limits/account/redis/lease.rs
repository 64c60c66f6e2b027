//! A slot taken in the shared log, as the account gate holds it: completed, it counts one window
//! from its answer; abandoned, its lease runs out; never used, it goes at once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{Inner, millis};
use crate::limits::account::SlotLease;

impl Inner {
    pub(super) fn lease(self: &Arc<Self>, id: String) -> Box<RedisLease> {
        Box::new(RedisLease {
            store: Arc::clone(self),
            id,
        })
    }
}

pub(super) struct RedisLease {
    store: Arc<Inner>,
    id: String,
}

impl SlotLease for RedisLease {
    fn complete(self: Box<Self>) -> BoxFuture<'static, ()> {
        // The answer is read: the call counts one window from now, here as in Redis.
        if let Some(granted) = self.store.holding().by_id.get_mut(&self.id) {
            granted.counts_until = granted.counts_until.min(Instant::now() + self.store.window);
        }
        Box::pin(async move {
            let store = &self.store;
            let mut invocation = store.release.key(&store.slots_key);
            invocation
                .key(&store.meta_key)
                .arg(&self.id)
                .arg(millis(store.window))
                .arg(&store.live_field);
            let outcome = store
                .redis
                .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
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
        self.store.holding().by_id.remove(&self.id);
        tokio::spawn(async move {
            let store = &self.store;
            let (key, id) = (store.slots_key.clone(), self.id.clone());
            let _ = store
                .redis
                .run(|mut c| async move {
                    redis::cmd("ZREM")
                        .arg(key)
                        .arg(id)
                        .query_async::<i64>(&mut c)
                        .await
                })
                .await;
        });
    }
}
