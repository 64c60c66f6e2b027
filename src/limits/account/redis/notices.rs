//! What the shared quota says in the log, each once per episode: settings that differ between
//! replicas, replicas that do not confirm admissions, and a quiet period after a loss.

use std::{
    sync::{PoisonError, atomic::Ordering},
    time::Duration,
};

use tokio::time::Instant;

use super::{Inner, millis};

impl Inner {
    /// Says once (and once when it ends) that this replica's settings are not the fleet's.
    pub(super) fn settings_differ(&self, differ: bool) {
        if self.differed.swap(differ, Ordering::Relaxed) == differ {
            return;
        }
        if differ {
            tracing::error!(
                rps = self.capacity(),
                lease_ms = millis(self.lease),
                "this replica's account quota settings differ from another replica's (the quota, \
                 call_timeout_ms): the stricter ones hold for every replica (the fewest slots, \
                 the longest lease) until the replicas agree"
            );
        } else {
            tracing::info!("the replicas' account quota settings agree again");
        }
    }

    pub(super) fn not_confirmed(&self, acked: u32, replicas: u32) {
        if !self.unconfirmed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                acked,
                replicas,
                "Redis's replicas did not confirm an admission in time: it is not used, so that \
                 a failover cannot lose it; calls that need CAMS fail with \
                 QUOTA_STORE_UNAVAILABLE until they confirm again"
            );
        }
    }

    pub(super) fn confirmed(&self) {
        if self.unconfirmed.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis's replicas confirm admissions again");
        }
    }

    /// Says once per quiet period why calls that need CAMS are refused for a while: otherwise
    /// they only read as a spent quota.
    pub(super) fn paused(&self, until: Instant, wait_ms: u64) {
        let mut known = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
        if known.is_some_and(|end| end + Duration::from_secs(1) >= until) {
            return;
        }
        *known = Some(until);
        tracing::warn!(
            quiet_ms = wait_ms,
            "the account quota's state in Redis is new or was lost (first use, a restart \
             without persistence, a failover that lost admissions, FLUSHALL, or a key of the \
             quota deleted or evicted): no CAMS call is admitted until every lease that might \
             have been lost has ended; calls that need CAMS meanwhile get ACCOUNT_RATE_LIMITED"
        );
    }
}
