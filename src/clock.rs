//! Where wall-clock time is read. Deadlines and rate limits run on Tokio's monotonic clock; the
//! wall clock is needed only where the time leaves the process or comes from outside it: the
//! signed `x-acs-date`, CAMS's `PreviewUrlExpires`, and cache entries shared with other
//! replicas. Reading it through one seam lets tests put the gateway's clock off by minutes.
//!
//! The cache reads a clock of its own: CAMS's, as this replica knows it from CAMS's `Date`
//! headers (`cams::CamsClock`), because the times it compares are CAMS's `PreviewUrlExpires` and
//! entries that other replicas, whose own clocks may disagree, must read the same way.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The host's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The host's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Another clock, run a fixed number of milliseconds ahead (negative: behind): what the
/// simulated CAMS reads when it is told to disagree with the host.
#[derive(Debug)]
pub struct Offset {
    base: SharedClock,
    ms: i64,
}

impl Clock for Offset {
    fn now(&self) -> SystemTime {
        shift(self.base.now(), self.ms)
    }
}

/// `base`, `ms` milliseconds ahead (negative: behind).
pub fn offset(base: SharedClock, ms: i64) -> SharedClock {
    if ms == 0 {
        return base;
    }
    Arc::new(Offset { base, ms })
}

/// `t` moved by `ms` milliseconds, either way; `t` itself where the result could not be
/// represented (no clock reading is that far out).
pub fn shift(t: SystemTime, ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let shifted = if ms >= 0 {
        t.checked_add(d)
    } else {
        t.checked_sub(d)
    };
    shifted.unwrap_or(t)
}

/// `a − b` in milliseconds, signed, saturating.
pub fn millis_between(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(SystemTime);

    impl Clock for Fixed {
        fn now(&self) -> SystemTime {
            self.0
        }
    }

    #[test]
    fn an_offset_clock_runs_ahead_or_behind_its_base() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let base: SharedClock = Arc::new(Fixed(at));
        let ahead = offset(Arc::clone(&base), 40_000);
        let behind = offset(Arc::clone(&base), -40_000);
        assert_eq!(ahead.now(), at + Duration::from_secs(40));
        assert_eq!(behind.now(), at - Duration::from_secs(40));
        assert_eq!(millis_between(ahead.now(), behind.now()), 80_000);
        assert_eq!(millis_between(behind.now(), ahead.now()), -80_000);
        assert_eq!(offset(base, 0).now(), at);
    }
}
