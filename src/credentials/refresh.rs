//! Temporary credentials kept fresh in the background. Calls read what is held (one atomic load)
//! and never wait for a refresh; a loop, run by the application's task owner, fetches new ones at
//! T − min(15 min, ½ lifetime) − jitter. A failed refresh keeps the current credentials and is
//! retried with backoff; only once they are (nearly) expired do calls fail, and then each failing
//! call wakes the loop so that the first refresh that can succeed happens at once, not at the end
//! of a long backoff.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::{sync::Notify, time::Instant};

use super::{
    Credentials, CredentialsError, CredentialsProvider, Fetch, RefreshTask, format_timestamp,
};
use crate::clock::SharedClock;

/// When to refresh and how to retry. The margins scale down with short lifetimes so that a
/// 15-minute token is not refreshed on every call (a 15-minute margin on it would be the whole
/// lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh this long before expiry, at most half the lifetime.
    pub max_margin: Duration,
    /// Up to this much earlier still (uniformly drawn, at most a tenth of the lifetime), so that
    /// replicas started together do not call STS together.
    pub max_jitter: Duration,
    /// Credentials this close to expiry (at most a tenth of the lifetime) are no longer handed
    /// out: a signed call must reach CAMS before they lapse.
    pub max_safety: Duration,
    /// First retry after a failed refresh; doubles (with jitter) up to `max_backoff`. Also the
    /// least time between two attempts when failing calls wake the loop.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            max_margin: Duration::from_secs(15 * 60),
            max_jitter: Duration::from_secs(30),
            max_safety: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RefreshPolicy {
    fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .base_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        // Between half and all of it: spread out, never zero.
        doubled
            .min(self.max_backoff)
            .mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// A provider whose credentials expire, refreshed in the background.
pub(crate) struct Refreshing {
    inner: Arc<Inner>,
    task: Mutex<Option<RefreshTask>>,
}

impl std::fmt::Debug for Refreshing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshing")
            .field("provider", &self.inner.fetch.source())
            .field(
                "expires_at",
                &self.inner.held.load().credentials.expires_at(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    fetch: Box<dyn Fetch>,
    clock: SharedClock,
    policy: RefreshPolicy,
    held: ArcSwap<Held>,
    wake: Notify,
}

#[derive(Debug)]
struct Held {
    credentials: Arc<Credentials>,
    /// The gateway's clock when they arrived: the lifetime the margins scale with.
    fetched_at: SystemTime,
    last_error: Option<Arc<CredentialsError>>,
}

impl Held {
    fn lifetime(&self) -> Option<Duration> {
        let expires_at = self.credentials.expires_at()?;
        Some(
            expires_at
                .duration_since(self.fetched_at)
                .unwrap_or_default(),
        )
    }

    /// When they stop being handed out; `None` if they never expire.
    fn usable_until(&self, policy: &RefreshPolicy) -> Option<SystemTime> {
        let expires_at = self.credentials.expires_at()?;
        let safety = policy.max_safety.min(self.lifetime()? / 10);
        Some(expires_at.checked_sub(safety).unwrap_or(expires_at))
    }

    fn usable_at(&self, now: SystemTime, policy: &RefreshPolicy) -> bool {
        self.usable_until(policy).is_none_or(|until| now < until)
    }

    /// When to fetch the next ones, jitter drawn once per set of credentials.
    fn refresh_at(&self, policy: &RefreshPolicy) -> Option<SystemTime> {
        let expires_at = self.credentials.expires_at()?;
        let lifetime = self.lifetime()?;
        let margin = policy.max_margin.min(lifetime / 2);
        let jitter = policy
            .max_jitter
            .min(lifetime / 10)
            .mul_f64(rand::random::<f64>());
        Some(
            expires_at
                .checked_sub(margin + jitter)
                .unwrap_or(self.fetched_at),
        )
    }
}

impl Refreshing {
    /// Starts from `first`, fetched just now by `fetch`; the loop is handed out by
    /// [`CredentialsProvider::refresh_task`].
    pub(crate) fn new(
        fetch: Box<dyn Fetch>,
        first: Credentials,
        clock: SharedClock,
        policy: RefreshPolicy,
    ) -> Self {
        let held = Held {
            credentials: Arc::new(first),
            fetched_at: clock.now(),
            last_error: None,
        };
        let inner = Arc::new(Inner {
            fetch,
            clock,
            policy,
            held: ArcSwap::from_pointee(held),
            wake: Notify::new(),
        });
        let task: RefreshTask = Box::pin(run(Arc::clone(&inner)));
        Self {
            inner,
            task: Mutex::new(Some(task)),
        }
    }
}

#[async_trait::async_trait]
impl CredentialsProvider for Refreshing {
    async fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError> {
        let held = self.inner.held.load();
        if held.usable_at(self.inner.clock.now(), &self.inner.policy) {
            return Ok(Arc::clone(&held.credentials));
        }
        self.inner.wake.notify_one();
        Err(CredentialsError::Expired {
            provider: self.inner.fetch.source(),
            at: held.credentials.expires_at().unwrap_or(held.fetched_at),
            last_error: held.last_error.clone(),
        })
    }

    fn held_expiry(&self) -> Option<SystemTime> {
        self.inner.held.load().credentials.expires_at()
    }

    fn refresh_task(&self) -> Option<RefreshTask> {
        self.task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Wall-clock waits are taken in slices of at most this, so that a clock that jumps (NTP, a
/// suspended VM) moves the refresh with it.
const SLICE: Duration = Duration::from_secs(60);

async fn run(inner: Arc<Inner>) {
    let mut failures: u32 = 0;
    // Fetches in a row that handed back the credentials already held.
    let mut repeats: u32 = 0;
    let mut next = inner.held.load().refresh_at(&inner.policy);
    let mut last_attempt = Instant::now();
    loop {
        let Some(at) = next else {
            // Credentials that never expire need no refresh.
            return;
        };
        inner.wait_until(at, last_attempt).await;
        last_attempt = Instant::now();
        let provider = inner.fetch.source();
        let before = inner.held.load_full();
        let was_usable = before.usable_at(inner.clock.now(), &inner.policy);
        match inner.fetch.fetch().await {
            Ok(credentials)
                if credentials.access_key_id() == before.credentials.access_key_id()
                    && credentials.expires_at() == before.credentials.expires_at() =>
            {
                // The source has not rotated them yet (a metadata service or a credentials URI
                // hands out the same keys until close to their expiry). Their lifetime still
                // counts from their first fetch, so that the margins do not shrink with every
                // ask; the next ask backs off like a failure.
                repeats += 1;
                failures = 0;
                next = Some(inner.clock.now() + inner.policy.backoff(repeats));
                tracing::debug!(
                    provider = provider.as_str(),
                    repeats,
                    "the source handed out the credentials already held; asking again later"
                );
            }
            Ok(credentials) => {
                repeats = 0;
                let held = Held {
                    credentials: Arc::new(credentials),
                    fetched_at: inner.clock.now(),
                    last_error: None,
                };
                next = held.refresh_at(&inner.policy);
                let expires_at = held.credentials.expires_at().map(format_timestamp);
                tracing::debug!(
                    provider = provider.as_str(),
                    access_key_id = held.credentials.access_key_id(),
                    "new credentials"
                );
                if was_usable {
                    tracing::info!(
                        provider = provider.as_str(),
                        expires_at,
                        "credentials refreshed"
                    );
                } else {
                    tracing::info!(
                        provider = provider.as_str(),
                        expires_at,
                        failures,
                        "credentials refreshed after they had expired; calls are served again"
                    );
                }
                inner.held.store(Arc::new(held));
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                let retry_in = inner.policy.backoff(failures);
                next = Some(inner.clock.now() + retry_in);
                let expires_at = before.credentials.expires_at().map(format_timestamp);
                let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                if inner
                    .held
                    .load()
                    .usable_at(inner.clock.now(), &inner.policy)
                {
                    tracing::warn!(
                        provider = provider.as_str(),
                        %error,
                        expires_at,
                        retry_in_ms,
                        failures,
                        "refreshing the credentials failed; the current ones stay in use"
                    );
                } else {
                    tracing::error!(
                        provider = provider.as_str(),
                        %error,
                        expires_at,
                        retry_in_ms,
                        failures,
                        "the credentials expired and refreshing them failed: calls fail with \
                         CREDENTIALS_UNAVAILABLE until a refresh succeeds"
                    );
                }
                inner.held.store(Arc::new(Held {
                    credentials: Arc::clone(&before.credentials),
                    fetched_at: before.fetched_at,
                    last_error: Some(Arc::new(error)),
                }));
            }
        }
    }
}

impl Inner {
    /// Until `at` on the wall clock, or until a call found no usable credentials (then no
    /// sooner than one base backoff after the last attempt).
    async fn wait_until(&self, at: SystemTime, last_attempt: Instant) {
        loop {
            let Ok(left) = at.duration_since(self.clock.now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(SLICE)) => {}
                () = self.wake.notified() => {
                    if self.held.load().usable_at(self.clock.now(), &self.policy) {
                        continue;
                    }
                    tokio::time::sleep_until(last_attempt + self.policy.base_backoff).await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;
