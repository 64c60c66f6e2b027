//! The in-process tier: moka, bounded by entry count, each entry dropped when it stops being
//! usable.

use std::time::{Duration, Instant};

use moka::{Expiry, future::Cache};

use super::{CacheTier, CachedFlow, purge::Scope};
use crate::{clock::SharedClock, domain::Read, store::StoreError};

/// Expires each entry at its `usable_until`, read against the wall clock once, at insertion.
struct UntilUsable {
    clock: SharedClock,
}

impl UntilUsable {
    fn left(&self, entry: &CachedFlow) -> Option<Duration> {
        Some(
            entry
                .usable_until
                .duration_since(self.clock.now())
                .unwrap_or_default(),
        )
    }
}

impl Expiry<Read, CachedFlow> for UntilUsable {
    fn expire_after_create(
        &self,
        _: &Read,
        entry: &CachedFlow,
        _created_at: Instant,
    ) -> Option<Duration> {
        self.left(entry)
    }

    /// A refreshed entry replaces a live one; moka's default would keep the old one's expiry.
    fn expire_after_update(
        &self,
        _: &Read,
        entry: &CachedFlow,
        _updated_at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.left(entry)
    }
}

#[derive(Clone)]
pub(crate) struct LocalTier {
    entries: Cache<Read, CachedFlow>,
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
    pub(crate) async fn lookup(&self, key: &Read) -> Option<CachedFlow> {
        self.entries.get(key).await
    }

    pub(crate) async fn insert(&self, key: Read, entry: CachedFlow) {
        self.entries.insert(key, entry).await;
    }

    /// Entries held now (moka's count, which lags by its pending work).
    pub(crate) fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Drops every entry; how many there were.
    pub(crate) async fn clear(&self) -> u64 {
        let keys: Vec<Read> = self
            .entries
            .iter()
            .map(|(key, _)| Read::clone(&key))
            .collect();
        let mut removed = 0;
        for key in keys {
            if self.entries.remove(&key).await.is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// Drops the entries `scope` covers; how many there were. A walk over every entry: purges
    /// are rare, and the tier is bounded by `cache.max_entries`.
    pub(crate) async fn remove(&self, scope: &Scope) -> u64 {
        let doomed: Vec<Read> = self
            .entries
            .iter()
            .filter(|(key, _)| scope.covers(key))
            .map(|(key, _)| Read::clone(&key))
            .collect();
        let mut removed = 0;
        for key in doomed {
            if self.entries.remove(&key).await.is_some() {
                removed += 1;
            }
        }
        removed
    }
}

#[async_trait::async_trait]
impl CacheTier for LocalTier {
    async fn get(&self, key: &Read) -> Option<CachedFlow> {
        self.lookup(key).await
    }

    /// A purge here is a removal under the same lock as the insert: nothing to compare.
    async fn put(&self, key: Read, entry: CachedFlow, _began: u64) {
        self.insert(key, entry).await;
    }

    async fn mark(&self) -> Option<u64> {
        Some(0)
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        Ok(self.remove(scope).await)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, SystemTime},
    };

    use super::*;
    use crate::{
        clock,
        domain::{Answer, Data},
        domain::{Flow, FlowId, TenantId},
    };

    fn entry(usable_for: Duration) -> CachedFlow {
        let now = SystemTime::now();
        CachedFlow {
            answer: Arc::new(Answer {
                data: Data::Flow(Flow {
                    flow_id: "f".into(),
                    flow_name: String::new(),
                    raw_status: String::new(),
                    raw_categories: Vec::new(),
                    json_version: String::new(),
                    data_api_version: String::new(),
                    preview_url: String::new(),
                    preview_url_expires: None,
                    endpoint_uri: String::new(),
                }),
                request_id: String::new(),
            }),
            fetched_at: now,
            fresh_until: now + usable_for,
            usable_until: now + usable_for,
            refresh_at: now + usable_for,
            demand: Arc::default(),
            began: None,
        }
    }

    /// A refresh replaces a live entry: the new one lives as long as it says, not as long as
    /// the one it replaced had left.
    #[tokio::test]
    async fn a_replaced_entry_takes_the_new_lifetime() {
        let tier = LocalTier::new(10, clock::system());
        let key = Read::flow(TenantId::own_space(), FlowId::parse("f").expect("id"));
        tier.insert(key.clone(), entry(Duration::from_millis(100)))
            .await;
        tier.insert(key.clone(), entry(Duration::from_secs(60)))
            .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(tier.lookup(&key).await.is_some(), "still there");
    }
}
