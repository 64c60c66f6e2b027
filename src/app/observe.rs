//! What the wiring hands to the metrics besides the handles the call path records with: the
//! gauges read at scrape time from the parts' own state, and the one loop that watches the
//! credentials' expiry.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    cams::CamsClient, credentials::CredentialsProvider, domain::Action, limits::AccountQuota,
    store::Redis, telemetry::metrics::Metrics,
};

use super::tasks::Tasks;

/// How often the credentials' expiry is read again: a refresh shows within this much.
const CREDENTIALS_EVERY: Duration = Duration::from_secs(5);

/// No expiry known (fixed keys, or none read yet).
const NO_EXPIRY: i64 = i64::MIN;

/// The metrics `config` calls for: on with the admin listener (their only reader), else off.
pub(super) fn metrics(config: &crate::config::Config) -> Metrics {
    if config.admin_listen.is_some() {
        Metrics::new(
            config
                .limits
                .tenants
                .keys()
                .chain(config.limits.weights.keys())
                .chain(config.limits.shadow.tenants.keys()),
        )
    } else {
        Metrics::disabled()
    }
}

pub(super) fn account(metrics: &Metrics, action: Action, account: &Arc<dyn AccountQuota>) {
    let rps = f64::from(account.rps());
    let label = Some(("action", action.cams_name()));
    metrics.probe(
        "cams_flows_account_quota_rps",
        "The account's CAMS quota of each action, calls per sliding second (limits.account_rps \
         for GetFlow, limits.actions.<Action>.account_rps for the others)",
        label,
        Box::new(move || Some(rps)),
    );
    let queue = Arc::downgrade(account);
    metrics.probe(
        "cams_flows_account_calls_waiting",
        "Calls (and refreshes) waiting for a slot of the account's CAMS quota of each action",
        label,
        Box::new(move || Some(queue.upgrade()?.queued() as f64)),
    );
}

pub(super) fn client(metrics: &Metrics, client: &CamsClient) {
    let client = client.clone();
    metrics.probe(
        "cams_flows_upstream_clock_skew_seconds",
        "CAMS's clock minus the gateway's, from the Date of CAMS's last answer, in seconds",
        None,
        Box::new(move || client.measured_skew_ms().map(|ms| ms as f64 / 1000.0)),
    );
}

/// `store` names the connection's role: `state` (quota, limits) or `cache`.
pub(super) fn redis(metrics: &Metrics, redis: &Redis, store: &'static str) {
    let redis = redis.clone();
    metrics.probe(
        "cams_flows_redis_up",
        "Whether the last exchange with Redis succeeded (1) or failed (0)",
        Some(("store", store)),
        // Absent until the first exchange has said either way.
        Box::new(move || {
            if redis.reachable() {
                Some(1.0)
            } else {
                redis.down().then_some(0.0)
            }
        }),
    );
}

/// The credentials' remaining lifetime, for temporary ones; absent for keys that never expire.
/// The expiry is read every [`CREDENTIALS_EVERY`] by a loop the task owner runs, since reading
/// credentials is asynchronous and a scrape is not.
pub(super) fn credentials(
    metrics: &Metrics,
    provider: &Arc<dyn CredentialsProvider>,
    tasks: &mut Tasks,
) {
    if !metrics.enabled() {
        return;
    }
    let expiry = Arc::new(AtomicI64::new(NO_EXPIRY));
    let seen = Arc::clone(&expiry);
    metrics.probe(
        "cams_flows_credentials_remaining_seconds",
        "Time until the CAMS credentials in use expire, in seconds (temporary credentials only)",
        None,
        Box::new(move || {
            let at = seen.load(Ordering::Relaxed);
            (at != NO_EXPIRY).then(|| (at - unix_millis(SystemTime::now())) as f64 / 1000.0)
        }),
    );
    let provider = Arc::clone(provider);
    tasks.spawn("credentials expiry", async move {
        let mut tick = tokio::time::interval(CREDENTIALS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // The credentials held, usable or not: past a failed refresh the gauge runs down to
            // their expiry, which is the warning an operator needs.
            let at = provider.held_expiry().map_or(NO_EXPIRY, unix_millis);
            expiry.store(at, Ordering::Relaxed);
        }
    });
}

fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
