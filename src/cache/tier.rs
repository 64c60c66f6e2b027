//! One tier of the cache, the seam: the in-process tier every gateway has ([`super::LocalTier`])
//! and the tier shared by the replicas ([`super::RedisTier`]). A tier only keeps entries; who
//! fetches a missing one is the fetch lock's to say ([`super::lock`]).

use crate::{domain::Read, store::StoreError};

use super::{CachedFlow, purge::Scope};

/// One tier of the cache. Each tier keeps an entry no longer than its `usable_until`.
#[async_trait::async_trait]
pub trait CacheTier: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &Read) -> Option<CachedFlow>;
    /// Keeps `entry`, unless a purge of its tenant began after `began` ([`Self::mark`] as the
    /// entry's fetch began): the entry may then be what the purge meant to drop.
    async fn put(&self, key: Read, entry: CachedFlow, began: u64);
    /// Where the purges that reach this tier stand now, for a fetch about to begin; `None` when
    /// that cannot be known (its answer is then not put).
    async fn mark(&self) -> Option<u64>;
    /// Drops the entries `scope` covers, and tells whoever else keeps copies of them; how many
    /// were dropped here.
    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError>;
}

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// This process's own cache.
    Local,
    /// The tier shared with other replicas.
    Shared,
}
