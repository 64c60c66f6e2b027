//! The in-process tier: moka, bounded by entry count, each entry dropped when it stops being
//! usable.

use std::time::{Duration, Instant};

use moka::{Expiry, future::Cache};

use super::{CacheTier, CachedFlow};
use crate::{clock::SharedClock, domain::FlowQuery};

/// Expires each entry at its `usable_until`, read against the wall clock once, at insertion.
struct UntilUsable {
    clock: SharedClock,
}

impl Expiry<FlowQuery, CachedFlow> for UntilUsable {
    fn expire_after_create(
        &self,
        _: &FlowQuery,
        entry: &CachedFlow,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(
            entry
                .usable_until
                .duration_since(self.clock.now())
                .unwrap_or_default(),
        )
    }
}

#[derive(Clone)]
pub(crate) struct LocalTier {
    entries: Cache<FlowQuery, CachedFlow>,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl LocalTier {
    pub(crate) fn new(max_entries: u64, clock: SharedClock) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilUsable { clock })
                .build(),
        }
    }

    /// The hit path calls this directly rather than through the trait, which would box a future
    /// on every call.
    pub(crate) async fn lookup(&self, key: &FlowQuery) -> Option<CachedFlow> {
        self.entries.get(key).await
    }

    pub(crate) async fn insert(&self, key: FlowQuery, entry: CachedFlow) {
        self.entries.insert(key, entry).await;
    }
}

#[async_trait::async_trait]
impl CacheTier for LocalTier {
    async fn get(&self, key: &FlowQuery) -> Option<CachedFlow> {
        self.lookup(key).await
    }

    async fn put(&self, key: FlowQuery, entry: CachedFlow) {
        self.insert(key, entry).await;
    }
}
