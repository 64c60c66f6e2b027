//! Per-tenant rate limits: each CustSpaceId within its own quota, checked on every call (cache
//! hits included) before anything else is spent on it. The keyed limiter ([`super::keyed`]) keeps
//! them, under the default quota or a tenant's override.
//!
//! The check is synchronous when it can be: it runs on the cache-hit path, which must not wait on
//! anything. A backend shared by several replicas decides locally from a batch it took from the
//! shared state, and asks the store only when the batch is spent.

mod governor;
mod redis;

use std::{collections::HashMap, fmt};

use futures_util::future::BoxFuture;

pub use governor::GovernorTenantLimits;
pub use redis::RedisTenantLimits;

use super::keyed::{Check, Quota, Rejection, Standing};
use crate::domain::TenantId;

/// A tenant over its quota: when it may call again.
pub type TenantRejection = Rejection;

/// A decision on one call: taken at once, or (for a shared store that has to be asked) to be
/// awaited. The cache-hit path of an in-process limiter never awaits.
pub type TenantCheck<'a> = Check<'a>;

/// Where the tenants' quotas are kept.
pub trait TenantLimits: Send + Sync + fmt::Debug {
    /// Spends one call of the tenant's quota, or says how long until one is free.
    fn check<'a>(&'a self, tenant: &'a TenantId) -> TenantCheck<'a>;

    /// Where the tenant stands, spending nothing (`GetQuota`): at once in process, one read of
    /// the store when shared. (Every tenant is limited: `None` only for a backend without a
    /// default quota.)
    fn peek<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Option<Standing>>;

    /// Forgets tenants whose state no longer matters (their quota is full again), so that a
    /// flood of distinct ids cannot grow memory without bound. Called periodically.
    fn evict_idle(&self);

    /// Tenants whose state is held now.
    fn tracked(&self) -> usize;

    /// Replaces the default quota and the overrides (a configuration reload); calls being
    /// decided finish under the old ones. A tenant whose quota is unchanged keeps its state.
    fn reconfigure(&self, default: Quota, overrides: HashMap<TenantId, Quota>);
}
