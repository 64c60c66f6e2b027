//! Each authenticated caller's own rate limit, checked before its tenant's: a caller allowed many
//! tenants (or all of them) cannot multiply its share by spreading calls over tenant ids.

use std::{fmt, time::Duration};

use governor::{
    RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};

use super::Quota;

/// A caller over its quota: when it may call again.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerRejection {
    pub quota: Quota,
    pub retry_after: Duration,
}

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware>;

/// One caller's limiter. Callers are known from the configuration, so each has its own and none
/// is ever evicted.
pub struct CallerLimit {
    quota: Quota,
    limiter: Direct,
}

impl fmt::Debug for CallerLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerLimit")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl CallerLimit {
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            limiter: RateLimiter::direct(quota.governor()),
        }
    }

    /// Spends one call of the caller's quota, or says how long until one is free.
    pub fn check(&self) -> Result<(), CallerRejection> {
        self.limiter.check().map_err(|not_until| CallerRejection {
            quota: self.quota,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    #[test]
    fn a_burst_then_a_truthful_wait() {
        let limit = CallerLimit::new(Quota {
            rps: 2.0,
            burst: NonZeroU32::new(3).expect("non-zero"),
        });
        for _ in 0..3 {
            limit.check().expect("burst");
        }
        let rejection = limit.check().expect_err("spent");
        assert!(
            rejection.retry_after > Duration::ZERO
                && rejection.retry_after <= Duration::from_millis(500),
            "{rejection:?}"
        );
    }
}
