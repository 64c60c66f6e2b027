//! `[retry]`: retries of CAMS fetches and their budget.

use std::time::Duration;

use super::{bad, bounded, millis, valid_defaults};
use crate::{
    config::{ConfigError, keys::settings},
    gateway::RetryConfig,
};

settings! {
    /// `[retry]`: when a failed CAMS fetch is tried again.
    section struct RetrySettings in "retry." {
        /// Attempts per CAMS fetch, the first included; 1 disables retries
        key(value_name = "N")
        max_attempts: u32 = 3,
        /// First backoff between attempts (full jitter, doubling up to retry.max_backoff_ms)
        key(value_name = "MS")
        base_backoff_ms: u64 = 50,
        /// Longest backoff between attempts
        key(value_name = "MS")
        max_backoff_ms: u64 = 1_000,
        /// Retries allowed as a fraction of recent fetches
        key(value_name = "RATIO")
        budget_ratio: f64 = 0.1,
        /// Retries always allowed per 10 s, so that a quiet gateway can retry
        key(value_name = "N")
        budget_min_retries: u32 = 10,
    }
}

impl RetrySettings {
    pub(super) fn validate(&self) -> Result<RetryConfig, ConfigError> {
        let base_backoff: Duration = millis("retry.base_backoff_ms", self.base_backoff_ms)?;
        let max_backoff = millis("retry.max_backoff_ms", self.max_backoff_ms)?;
        if max_backoff < base_backoff {
            return Err(bad(
                "retry.max_backoff_ms",
                "must not be below retry.base_backoff_ms",
            ));
        }
        if !(0.0..=10.0).contains(&self.budget_ratio) {
            return Err(bad(
                "retry.budget_ratio",
                format!("{} must be between 0 and 10", self.budget_ratio),
            ));
        }
        Ok(RetryConfig {
            max_attempts: bounded("retry.max_attempts", self.max_attempts, 1..=10)?,
            base_backoff,
            max_backoff,
            budget_ratio: self.budget_ratio,
            budget_min_retries: bounded(
                "retry.budget_min_retries",
                self.budget_min_retries,
                0..=1_000_000,
            )?,
        })
    }
}

/// The product's retries: the `[retry]` defaults.
impl Default for RetryConfig {
    fn default() -> Self {
        valid_defaults("retry", RetrySettings::default().validate())
    }
}
