//! Per-tenant rate limits: each CustSpaceId within its own quota, checked on every call (cache
//! hits included) before anything else is spent on it.
//!
//! The check is synchronous on purpose: it runs on the cache-hit path, which must not wait on
//! anything. A backend shared by several replicas keeps its shared state up to date in the
//! background and decides locally.

mod governor;
mod redis;

use std::{fmt, num::NonZeroU32, time::Duration};

use futures_util::future::BoxFuture;

pub use governor::GovernorTenantLimits;
pub use redis::RedisTenantLimits;

use crate::domain::TenantId;

/// A tenant's allowance: a sustained rate and the burst it may spend at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub rps: f64,
    pub burst: NonZeroU32,
}

impl Quota {
    /// How the quota reads in errors and logs, e.g. `5 calls/s, burst 10`.
    pub fn describe(self) -> String {
        format!("{} calls/s, burst {}", self.rps, self.burst)
    }
}

/// A tenant over its quota: when it may call again.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRejection {
    pub quota: Quota,
    pub retry_after: Duration,
}

/// A decision on one call: taken at once, or (for a shared store that has to be asked) to be
/// awaited. The cache-hit path of an in-process limiter never awaits.
pub enum TenantCheck<'a> {
    Decided(Result<(), TenantRejection>),
    Pending(BoxFuture<'a, Result<(), TenantRejection>>),
}

/// Where the tenants' quotas are kept.
pub trait TenantLimits: Send + Sync + fmt::Debug {
    /// Spends one call of the tenant's quota, or says how long until one is free.
    fn check<'a>(&'a self, tenant: &'a TenantId) -> TenantCheck<'a>;

    /// Forgets tenants whose state no longer matters (their quota is full again), so that a
    /// flood of distinct ids cannot grow memory without bound. Called periodically.
    fn evict_idle(&self);

    /// Tenants whose state is held now.
    fn tracked(&self) -> usize;
}
