//! Refresh timing on Tokio's paused clock: the wall clock the provider reads is driven by it, so
//! hours pass in milliseconds and every instant is exact.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use futures_util::FutureExt as _;
use secrecy::SecretString;
use tokio::time::Instant;

use super::*;
use crate::{
    clock::{Clock, SharedClock},
    credentials::CredentialSource,
};

/// A wall clock that moves with Tokio's (paused) clock.
#[derive(Debug)]
struct TokioClock {
    base: SystemTime,
    start: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}

/// A fetcher that records when it was called and answers as told: keys of `lifetime`, or a
/// failure while `failing`.
#[derive(Debug)]
struct Scripted {
    clock: SharedClock,
    lifetime: Duration,
    failing: Arc<Mutex<bool>>,
    /// While set, the first keys again (a source that has not rotated them yet).
    repeating: Arc<Mutex<Option<SystemTime>>>,
    calls: Arc<Mutex<Vec<Duration>>>,
    start: Instant,
}

#[async_trait::async_trait]
impl Fetch for Scripted {
    fn source(&self) -> CredentialSource {
        CredentialSource::OidcRoleArn
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(self.start.elapsed());
            calls.len()
        };
        if *self.failing.lock().expect("lock") {
            return Err(CredentialsError::Timeout {
                service: "STS",
                after: Duration::from_secs(10),
            });
        }
        if let Some(expires_at) = *self.repeating.lock().expect("lock") {
            return Ok(keys(0, expires_at));
        }
        Ok(keys(n, self.clock.now() + self.lifetime))
    }
}

fn keys(n: usize, expires_at: SystemTime) -> Credentials {
    Credentials::new(
        format!("STS.key-{n}"),
        SecretString::from("secret".to_owned()),
        Some(SecretString::from("token".to_owned())),
    )
    .with_expiry(expires_at)
    .with_source(CredentialSource::OidcRoleArn)
}

struct Harness {
    provider: Arc<Refreshing>,
    failing: Arc<Mutex<bool>>,
    repeating: Arc<Mutex<Option<SystemTime>>>,
    calls: Arc<Mutex<Vec<Duration>>>,
    clock: SharedClock,
}

fn harness(lifetime: Duration, policy: RefreshPolicy) -> Harness {
    let start = Instant::now();
    let clock: SharedClock = Arc::new(TokioClock {
        base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        start,
    });
    let failing = Arc::new(Mutex::new(false));
    let repeating = Arc::new(Mutex::new(None));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let fetch = Scripted {
        clock: Arc::clone(&clock),
        lifetime,
        failing: Arc::clone(&failing),
        repeating: Arc::clone(&repeating),
        calls: Arc::clone(&calls),
        start,
    };
    let first = keys(0, clock.now() + lifetime);
    let provider = Arc::new(Refreshing::new(
        Box::new(fetch),
        first,
        Arc::clone(&clock),
        policy,
    ));
    let task = provider.refresh_task().expect("the loop, once");
    assert!(provider.refresh_task().is_none(), "handed out once only");
    tokio::spawn(task);
    Harness {
        provider,
        failing,
        repeating,
        calls,
        clock,
    }
}

impl Harness {
    fn calls(&self) -> Vec<Duration> {
        self.calls.lock().expect("lock").clone()
    }

    fn fail(&self, failing: bool) {
        *self.failing.lock().expect("lock") = failing;
    }

    /// What a call gets right now, without waiting for anything.
    fn now(&self) -> Result<Arc<Credentials>, CredentialsError> {
        self.provider
            .credentials()
            .now_or_never()
            .expect("a call never waits")
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test(start_paused = true)]
async fn an_hour_token_is_refreshed_fifteen_minutes_before_expiry_with_jitter() {
    let h = harness(Duration::from_secs(3600), RefreshPolicy::default());
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let calls = h.calls();
    // Each set lives an hour from its fetch; the next fetch comes 15 min (plus up to 30 s of
    // jitter) before it expires: every 44.5 to 45 minutes.
    assert!(calls.len() >= 3, "{calls:?}");
    let mut previous = Duration::ZERO;
    for at in &calls {
        let gap = *at - previous;
        assert!(
            gap >= secs(2670.0) && gap <= secs(2700.0),
            "gap {gap:?} in {calls:?}"
        );
        previous = *at;
    }
    assert!(h.now().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_short_token_is_refreshed_at_half_its_lifetime_not_on_every_call() {
    // 15 minutes, the shortest STS grants: a 15-minute margin would make every call refresh.
    let h = harness(Duration::from_secs(900), RefreshPolicy::default());
    for _ in 0..100 {
        assert!(h.now().is_ok());
    }
    tokio::time::sleep(Duration::from_secs(2000)).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    let mut previous = Duration::ZERO;
    for at in &calls {
        let gap = *at - previous;
        // Half the lifetime (450 s), minus up to a tenth of it (30 s cap) of jitter.
        assert!(
            gap >= secs(420.0) && gap <= secs(450.0),
            "gap {gap:?} in {calls:?}"
        );
        previous = *at;
    }
}

#[tokio::test(start_paused = true)]
async fn a_few_second_token_scales_every_margin_down() {
    let h = harness(Duration::from_secs(3), RefreshPolicy::default());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = h.calls();
    for (i, at) in calls.iter().enumerate() {
        let previous = if i == 0 { Duration::ZERO } else { calls[i - 1] };
        let gap = *at - previous;
        // 1.5 s before expiry, plus up to 0.3 s.
        assert!(
            gap >= secs(1.2) && gap <= secs(1.5),
            "gap {gap:?} in {calls:?}"
        );
    }
    assert!(calls.len() >= 6, "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_credentials_retries_with_backoff_then_fails_and_recovers() {
    let policy = RefreshPolicy::default();
    let h = harness(Duration::from_secs(3600), policy);
    h.fail(true);
    // The first refresh is due 44.5 to 45 minutes in; STS is down from then on.
    tokio::time::sleep(Duration::from_secs(2600)).await;
    assert!(h.calls().is_empty());
    tokio::time::sleep(Duration::from_secs(100)).await;
    let first = h.calls()[0];
    assert!(first >= secs(2670.0) && first <= secs(2700.0), "{first:?}");
    let held = h.now().expect("still valid");
    assert_eq!(held.access_key_id(), "STS.key-0");

    // Until a minute before expiry, calls get the old credentials; retries back off, doubling
    // from 1 s (each between half and all of the doubled wait) up to a minute.
    tokio::time::sleep(Duration::from_secs(800)).await;
    assert_eq!(h.now().expect("still valid").access_key_id(), "STS.key-0");
    let calls = h.calls();
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let full = Duration::from_secs(1u64 << i.min(16)).min(policy.max_backoff);
        assert!(
            *gap >= full / 2 && *gap <= full,
            "retry {i}: {gap:?} in {gaps:?}"
        );
    }
    assert!(
        gaps.iter().rev().take(3).all(|g| *g >= secs(30.0)),
        "capped: {gaps:?}"
    );

    // A minute before expiry they are no longer handed out, and the error says why.
    tokio::time::sleep_until(Instant::now() + secs(3545.0) - h.clock_elapsed()).await;
    let err = h.now().expect_err("expired");
    let text = err.to_string();
    assert!(
        text.contains("oidc_role_arn") && text.contains("STS did not answer within 10s"),
        "{text}"
    );

    // STS is back: the failing call woke the loop, which refreshes at once (after no more than
    // the base backoff), not at the end of its minute-long backoff.
    h.fail(false);
    let err_at = Instant::now();
    let _ = h.now();
    let fresh = loop {
        if let Ok(c) = h.now() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(Instant::now() - err_at <= policy.base_backoff + secs(0.05));
    assert_ne!(fresh.access_key_id(), "STS.key-0");
}

#[tokio::test(start_paused = true)]
async fn calls_do_not_wait_for_a_refresh_in_flight() {
    /// A fetcher that never answers.
    #[derive(Debug)]
    struct Stuck;
    #[async_trait::async_trait]
    impl Fetch for Stuck {
        fn source(&self) -> CredentialSource {
            CredentialSource::EcsRamRole
        }
        async fn fetch(&self) -> Result<Credentials, CredentialsError> {
            std::future::pending().await
        }
    }
    let clock: SharedClock = Arc::new(TokioClock {
        base: SystemTime::UNIX_EPOCH,
        start: Instant::now(),
    });
    let first = keys(0, clock.now() + Duration::from_secs(100));
    let provider = Refreshing::new(Box::new(Stuck), first, clock, RefreshPolicy::default());
    tokio::spawn(provider.refresh_task().expect("loop"));
    // The refresh starts at 40 to 50 s and never ends; calls are answered at once throughout.
    let mut answered = VecDeque::new();
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        answered.push_back(provider.credentials().now_or_never().is_some());
    }
    assert!(answered.iter().all(|a| *a));
    assert!(
        provider
            .credentials()
            .now_or_never()
            .expect("at once")
            .is_ok()
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Past the safety margin (10 s of a 100 s lifetime), still at once, but an error.
    assert!(
        provider
            .credentials()
            .now_or_never()
            .expect("at once")
            .is_err()
    );
}

impl Harness {
    fn clock_elapsed(&self) -> Duration {
        self.clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .unwrap_or_default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_that_hands_out_the_same_keys_is_asked_again_later_and_their_margin_holds() {
    let h = harness(Duration::from_secs(900), RefreshPolicy::default());
    let expires_at = h.clock.now() + Duration::from_secs(900);
    *h.repeating.lock().expect("lock") = Some(expires_at);
    // Until a minute before expiry (a tenth of 900 s is more): still handed out.
    tokio::time::sleep(Duration::from_secs(900 - 61)).await;
    assert_eq!(h.now().expect("usable").access_key_id(), "STS.key-0");
    let calls = h.calls();
    // The first ask at half the lifetime, then backing off (1 s doubling to 60 s), not halving
    // the time left at every ask.
    assert!(
        calls.len() >= 3 && calls.len() <= 16,
        "{} asks: {calls:?}",
        calls.len()
    );
    for pair in calls.windows(2).skip(6) {
        assert!(pair[1] - pair[0] >= secs(30.0), "{calls:?}");
    }
    // The margin counts from their first fetch: a minute before expiry they stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.now().is_err(), "not handed out in their last minute");
    // Rotated at last: served again.
    *h.repeating.lock().expect("lock") = None;
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(h.now().expect("new keys").access_key_id() != "STS.key-0");
}

#[tokio::test(start_paused = true)]
async fn reading_the_held_expiry_wakes_no_refresh() {
    let h = harness(Duration::from_secs(900), RefreshPolicy::default());
    h.fail(true);
    // Past their expiry, with every refresh failing: only the backoff schedules attempts.
    tokio::time::sleep(Duration::from_secs(900)).await;
    let before = h.calls().len();
    for _ in 0..120 {
        assert!(h.provider.held_expiry().is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // 60 s at a backoff doubling to 60 s: a handful of attempts, not one per read.
    let asked = h.calls().len() - before;
    assert!(asked <= 4, "{asked} attempts in 60 s");
}
