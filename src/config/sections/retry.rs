//! Retries of CAMS fetches and their budget.

use super::{bad, bounded, millis};
use crate::{
    config::{ConfigError, settings::RetrySettings},
    gateway::RetryConfig,
};

pub(super) fn retry(s: &RetrySettings) -> Result<RetryConfig, ConfigError> {
    let base_backoff = millis("retry.base_backoff_ms", s.base_backoff_ms)?;
    let max_backoff = millis("retry.max_backoff_ms", s.max_backoff_ms)?;
    if max_backoff < base_backoff {
        return Err(bad(
            "retry.max_backoff_ms",
            "must not be below retry.base_backoff_ms",
        ));
    }
    if !(0.0..=10.0).contains(&s.budget_ratio) {
        return Err(bad(
            "retry.budget_ratio",
            format!("{} must be between 0 and 10", s.budget_ratio),
        ));
    }
    Ok(RetryConfig {
        max_attempts: bounded("retry.max_attempts", s.max_attempts, 1..=10)?,
        base_backoff,
        max_backoff,
        budget_ratio: s.budget_ratio,
        budget_min_retries: bounded(
            "retry.budget_min_retries",
            s.budget_min_retries,
            0..=1_000_000,
        )?,
    })
}
