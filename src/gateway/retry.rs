//! When to try CAMS again: exponential backoff with full jitter, CAMS's `x-acs-retry-after`
//! honoured, and a budget that keeps retries to a fraction of recent calls so that an outage does
//! not multiply the load on CAMS.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use rand::Rng;
use tokio::time::Instant;

/// The validated `[retry]` section. Its `Default` is the section's defaults
/// (`config::sections::retry`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Attempts per load, the first included; 1 disables retries.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Retries allowed per recent call (0.1: one retry per ten calls).
    pub budget_ratio: f64,
    /// Retries always allowed per budget window, so that a quiet gateway can still retry.
    pub budget_min_retries: u32,
}

impl RetryConfig {
    /// Full jitter: uniform in `[0, min(max, base * 2^retry)]`, but never sooner than CAMS asked.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let jitter = rand::rng().random_range(Duration::ZERO..=ceiling);
        jitter.max(retry_after.unwrap_or_default())
    }
}

/// Length of the budget's memory.
const WINDOW: Duration = Duration::from_secs(10);
const BUCKETS: usize = 10;

/// Counts calls and retries over the last [`WINDOW`] in one-second buckets.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    min_retries: u32,
    buckets: Mutex<VecDeque<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    calls: u64,
    retries: u64,
}

impl RetryBudget {
    pub(crate) fn new(config: &RetryConfig) -> Self {
        Self {
            ratio: config.budget_ratio,
            min_retries: config.budget_min_retries,
            buckets: Mutex::new(VecDeque::with_capacity(BUCKETS + 1)),
        }
    }

    fn current(buckets: &mut VecDeque<Bucket>, now: Instant) -> &mut Bucket {
        let width = WINDOW / BUCKETS as u32;
        while buckets.front().is_some_and(|b| now - b.start >= WINDOW) {
            buckets.pop_front();
        }
        if buckets.back().is_none_or(|b| now - b.start >= width) {
            buckets.push_back(Bucket {
                start: now,
                calls: 0,
                retries: 0,
            });
        }
        // Just pushed or kept: there is always a last bucket here.
        let last = buckets.len() - 1;
        &mut buckets[last]
    }

    /// Records a first attempt.
    pub(crate) fn record_call(&self) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        Self::current(&mut buckets, Instant::now()).calls += 1;
    }

    /// Takes one retry from the budget, if the recent calls leave room for it.
    pub(crate) fn try_retry(&self) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        Self::current(&mut buckets, now);
        let (calls, retries) = buckets
            .iter()
            .fold((0u64, 0u64), |(c, r), b| (c + b.calls, r + b.retries));
        let allowed = (calls as f64 * self.ratio) as u64 + u64::from(self.min_retries);
        if retries >= allowed {
            return false;
        }
        Self::current(&mut buckets, now).retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let config = RetryConfig::default();
        for retry in 0..40 {
            let d = config.backoff(retry, None);
            assert!(d <= config.max_backoff, "{retry}: {d:?}");
            assert!(d <= config.base_backoff * 2u32.saturating_pow(retry.min(20)));
        }
        let d = config.backoff(0, Some(Duration::from_millis(1500)));
        assert_eq!(d, Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_is_a_fraction_of_recent_calls() {
        let budget = RetryBudget::new(&RetryConfig {
            budget_ratio: 0.1,
            budget_min_retries: 2,
            ..RetryConfig::default()
        });
        for _ in 0..100 {
            budget.record_call();
        }
        let granted = (0..100).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 12, "10 % of 100 calls plus the floor of 2");

        // The window forgets: after it passes, only the floor is left.
        tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
        let granted = (0..100).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 2);
    }
}
