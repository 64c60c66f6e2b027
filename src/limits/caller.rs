//! Each authenticated caller's own rate limit, checked before its tenant's: a caller allowed many
//! tenants (or all of them) cannot multiply its share by spreading calls over tenant ids.
//!
//! The keyed limiter ([`super::keyed`]) keeps them, as it keeps the tenants': in process, or, with
//! several replicas, shared through Redis (one GCRA state per caller under
//! `<prefix>:<account tag>:caller:<name>`, taken in batches each replica spends locally), so that
//! over any span `T` the service admits at most `burst + rate × (T + 1 s)` of a caller's calls
//! however many replicas it calls. Callers are known from the configuration: each has its state
//! from the start, reached without a lock, and none is ever forgotten.

use std::{collections::HashMap, fmt, sync::Arc};

use futures_util::future::BoxFuture;

use super::keyed::{Check, GovernorKeyed, Kind, Quota, Quotas, RedisKeyed, Rejection, Standing};
use crate::store::Redis;

/// A caller over its quota: when it may call again.
pub type CallerRejection = Rejection;

/// A decision on one call: taken at once, or (for a shared store that has to be asked) to be
/// awaited.
pub type CallerCheck<'a> = Check<'a>;

/// Where the callers' quotas are kept.
pub trait CallerLimits: Send + Sync + fmt::Debug {
    /// Spends one call of the caller's quota, or says how long until one is free; a caller
    /// without a quota is not limited.
    fn check<'a>(&'a self, caller: &'a Arc<str>) -> CallerCheck<'a>;

    /// Where the caller stands, spending nothing (`GetQuota`); `None`: the caller is not limited.
    fn peek<'a>(&'a self, caller: &'a Arc<str>) -> BoxFuture<'a, Option<Standing>>;

    /// Replaces every caller's quota (a configuration reload); calls being decided finish under
    /// the old ones. A caller whose quota is unchanged keeps its state.
    fn reconfigure(&self, each: CallerQuotaMap);
}

/// Each caller's quota, by name (its key's name or its identity).
pub type CallerQuotaMap = HashMap<Arc<str>, Quota>;

fn quotas(each: CallerQuotaMap) -> Quotas<Arc<str>> {
    Quotas {
        default: None,
        each,
    }
}

/// The callers' limits in process: each replica on its own.
#[derive(Debug)]
pub struct GovernorCallerLimits(GovernorKeyed<Arc<str>>);

impl GovernorCallerLimits {
    pub fn new(each: CallerQuotaMap) -> Self {
        Self(GovernorKeyed::new(quotas(each)))
    }
}

impl CallerLimits for GovernorCallerLimits {
    fn check<'a>(&'a self, caller: &'a Arc<str>) -> CallerCheck<'a> {
        Check::Decided(self.0.decide(caller))
    }

    fn peek<'a>(&'a self, caller: &'a Arc<str>) -> BoxFuture<'a, Option<Standing>> {
        Box::pin(std::future::ready(self.0.peek(caller)))
    }

    fn reconfigure(&self, each: CallerQuotaMap) {
        self.0.reconfigure(quotas(each));
    }
}

/// The callers' limits shared by every replica through Redis.
#[derive(Debug)]
pub struct RedisCallerLimits(RedisKeyed<Arc<str>>);

impl RedisCallerLimits {
    /// `account_tag` keeps two accounts' callers apart in one Redis.
    pub fn new(redis: Redis, account_tag: &str, each: CallerQuotaMap) -> Self {
        Self(RedisKeyed::new(
            redis,
            account_tag,
            Kind::Caller,
            quotas(each),
        ))
    }
}

impl CallerLimits for RedisCallerLimits {
    fn check<'a>(&'a self, caller: &'a Arc<str>) -> CallerCheck<'a> {
        self.0.check(caller)
    }

    fn peek<'a>(&'a self, caller: &'a Arc<str>) -> BoxFuture<'a, Option<Standing>> {
        Box::pin(self.0.peek(caller))
    }

    fn reconfigure(&self, each: CallerQuotaMap) {
        self.0.reconfigure(quotas(each));
    }
}

/// One caller's limit, as the authenticated caller carries it.
#[derive(Clone)]
pub struct CallerLimit {
    name: Arc<str>,
    limits: Arc<dyn CallerLimits>,
    /// Whether the caller's own entry puts its limit in shadow (evaluated and counted, never
    /// refusing) or keeps it enforced; `None`: as `limits.shadow` says.
    shadow: Option<bool>,
}

impl fmt::Debug for CallerLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerLimit")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("shadow", &self.shadow)
            .finish()
    }
}

impl CallerLimit {
    pub fn new(name: Arc<str>, limits: Arc<dyn CallerLimits>) -> Self {
        Self {
            name,
            limits,
            shadow: None,
        }
    }

    /// Whether the caller's own entry puts its limit in shadow (evaluated and counted, never
    /// refusing) or keeps it enforced; `None`: as `limits.shadow` says.
    pub fn shadowed(mut self, shadow: Option<bool>) -> Self {
        self.shadow = shadow;
        self
    }

    pub fn is_shadow(&self) -> Option<bool> {
        self.shadow
    }

    /// Spends one call of the caller's quota, or says how long until one is free.
    pub fn check(&self) -> CallerCheck<'_> {
        self.limits.check(&self.name)
    }

    /// Where the caller stands, spending nothing.
    pub fn peek(&self) -> BoxFuture<'_, Option<Standing>> {
        self.limits.peek(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, time::Duration};

    use super::*;

    #[test]
    fn a_burst_then_a_truthful_wait() {
        let quota = Quota {
            rps: 2.0,
            burst: NonZeroU32::new(3).expect("non-zero"),
        };
        let name: Arc<str> = Arc::from("billing");
        let limits = Arc::new(GovernorCallerLimits::new(HashMap::from([(
            Arc::clone(&name),
            quota,
        )])));
        let limit = CallerLimit::new(name, limits);
        let decided = |check: CallerCheck<'_>| match check {
            Check::Decided(verdict) => verdict,
            Check::Pending(_) => panic!("the in-process limits decide at once"),
        };
        for _ in 0..3 {
            decided(limit.check()).expect("burst");
        }
        let rejection = decided(limit.check()).expect_err("spent");
        assert_eq!(rejection.quota, quota);
        assert!(
            rejection.retry_after > Duration::ZERO
                && rejection.retry_after <= Duration::from_millis(500),
            "{rejection:?}"
        );
    }
}
