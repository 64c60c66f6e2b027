//! One keyed rate limiter for every party that has a quota of its own (tenants, callers): a GCRA
//! per key, in process ([`GovernorKeyed`]) or shared by every replica through Redis
//! ([`RedisKeyed`]). Each kind of party uses it through its own seam (`tenant::TenantLimits`,
//! `caller::CallerLimits`) and has key names of its own in Redis ([`Kind`]), so a tenant and a
//! caller of the same name never share a state.

mod governor;
mod redis;

use std::{collections::HashMap, fmt, hash::Hash, num::NonZeroU32, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;

pub use governor::GovernorKeyed;
pub use redis::RedisKeyed;

use crate::domain::TenantId;

/// A party's allowance: a sustained rate and the burst it may spend at once.
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

/// A party over its quota: when it may call again.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub quota: Quota,
    pub retry_after: Duration,
    /// Until the whole burst is back.
    pub reset: Duration,
}

impl Rejection {
    /// Where the party stands: nothing left until `retry_after`.
    pub fn standing(&self) -> Standing {
        Standing {
            quota: self.quota,
            remaining: 0,
            reset: self.reset,
        }
    }
}

/// Where a party stands, as the decision on its last call left it (or as a look that spends
/// nothing finds it): the calls it may still make at once, and how long until its whole burst is
/// back. Read from the state the decision already holds, never asked of a store for itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub quota: Quota,
    /// Calls the party may still make at once.
    pub remaining: u32,
    /// Until the whole burst is back (zero: it is).
    pub reset: Duration,
}

impl Standing {
    /// A party that has spent nothing.
    pub fn full(quota: Quota) -> Self {
        Self {
            quota,
            remaining: quota.burst.get(),
            reset: Duration::ZERO,
        }
    }
}

/// The decision on one call: admitted (and where the party stands after it; `None` for a party
/// that is not limited), or refused.
pub type Verdict = Result<Option<Standing>, Rejection>;

/// A decision on one call: taken at once, or (for a shared store that has to be asked) to be
/// awaited. The cache-hit path of an in-process limiter never awaits, nor does a shared one's
/// while a batch taken from the store lasts.
pub enum Check<'a> {
    Decided(Verdict),
    Pending(BoxFuture<'a, Verdict>),
}

/// What names a party in a limiter.
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {
    /// The key's text, in its name in Redis.
    fn as_str(&self) -> &str;
}

impl Key for TenantId {
    fn as_str(&self) -> &str {
        TenantId::as_str(self)
    }
}

impl Key for Arc<str> {
    fn as_str(&self) -> &str {
        self
    }
}

/// Whose quotas a limiter keeps. Each kind has names of its own in Redis
/// (`<prefix>:<account tag>:<kind>:<key>`), so that two kinds never share a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tenant,
    Caller,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Caller => "caller",
        }
    }
}

/// Which quota each key has: its own, or else the default; a key with neither is not limited.
#[derive(Clone)]
pub struct Quotas<K> {
    /// For keys learned as they call (tenants), which are forgotten once idle.
    pub default: Option<Quota>,
    /// Keys with a quota of their own, known from the configuration and never forgotten.
    pub each: HashMap<K, Quota>,
}

impl<K> fmt::Debug for Quotas<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quotas")
            .field("default", &self.default)
            .field("each", &self.each.len())
            .finish()
    }
}
