//! Reloading the configuration file while the gateway runs: on SIGHUP and when the file changes
//! (the watcher in [`crate::reload`]), the whole configuration is read and validated again with
//! the same layering as at start. A configuration that does not validate changes nothing: the
//! running settings stay, and the error is logged with its key. One that does replaces each
//! reloadable part whole (calls in flight finish under the settings they started with):
//!
//! - `[limits]`: the tenants' default and own quotas, the weights, the account's budget of each
//!   CAMS action, `max_wait_ms` and `max_queue`, and which limits are in shadow;
//! - `[auth]`: the keys and identities, their tenants, quotas, weights and `shadow`, the
//!   callers' default quota (not the mode);
//! - `[cache]`: the TTL, its jitter, the stale and refresh windows (entries kept already keep
//!   their times).
//!
//! Anything else that differs from the running configuration is logged as needing a restart,
//! and otherwise ignored.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{
    auth::Authenticator,
    cache::LivePolicy,
    config::{Config, ConfigSource},
    domain::Action,
    gateway::Shadow,
    limits::{AccountQuotas, TenantLimits},
    reload::{Cause, FileStamp, Reload},
    telemetry::metrics::Metrics,
};

/// The parts of a running gateway that a reload changes.
pub(crate) struct Live {
    pub(super) tenants: Arc<dyn TenantLimits>,
    /// Which tenant and caller limits are in shadow.
    pub(super) shadow: Arc<Shadow>,
    pub(super) accounts: AccountQuotas,
    pub(super) auth: Arc<Authenticator>,
    /// The cache's times; `None` when the gateway started without a cache.
    pub(super) cache: Option<LivePolicy>,
    pub(super) metrics: Metrics,
}

/// The configuration file as a target of the reload watcher.
pub(crate) struct ConfigReload {
    source: ConfigSource,
    live: Live,
    /// The configuration in force: the one the gateway started with, with each reload's
    /// reloadable parts.
    running: Mutex<Config>,
}

impl ConfigReload {
    pub(crate) fn new(source: ConfigSource, live: Live, running: Config) -> Self {
        Self {
            source,
            live,
            running: Mutex::new(running),
        }
    }

    /// Applies the reloadable parts of `new`, and says which other settings differ.
    fn apply(&self, mut new: Config, cause: Cause) {
        // One reload at a time: a SIGHUP and a file change at once apply in turn.
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.sandbox && new.sandbox {
            // The simulated CAMS's endpoint was chosen at start, not configured.
            new.upstream.endpoint = running.upstream.endpoint.clone();
        }
        let mut restart = needs_restart(&running, &new);
        let live = &self.live;

        live.tenants
            .reconfigure(new.limits.tenant, new.limits.tenants.clone());
        live.shadow.reconfigure(new.limits.shadow.clone());
        let weights = new.limits.weights();
        for action in Action::ALL {
            live.accounts
                .of(action)
                .reconfigure(new.limits.account(action), weights.clone());
        }

        let mut auth = new.auth;
        auth.mode = running.auth.mode;
        // Whether the anonymous caller is an admin follows the running process (the sandbox is
        // chosen at start), never a file that claims to be the sandbox's.
        auth.anonymous_admin = running.auth.anonymous_admin;
        live.auth.reconfigure(auth.clone());

        let mut cache = new.cache;
        cache.max_entries = running.cache.max_entries;
        match &live.cache {
            Some(policy) => policy.store(Arc::new(cache)),
            // The cache is made at start, or not at all.
            None if !cache.ttl.is_zero() || !cache.stale_if_error.is_zero() => {
                restart.push("cache.ttl_ms");
            }
            None => {}
        }

        for key in &restart {
            tracing::warn!(
                key,
                "this setting changed in the configuration but needs a restart to take effect; \
                 until then the running value stays"
            );
        }
        running.limits = new.limits;
        running.auth = auth;
        if live.cache.is_some() {
            running.cache = cache;
        }
        live.metrics.config_reloaded(true);
        tracing::info!(
            cause = cause.as_str(),
            file = self.source.file().map(|f| f.display().to_string()),
            needs_restart = restart.len(),
            "configuration reloaded: limits, keys and identities, cache times"
        );
    }
}

impl Reload for ConfigReload {
    fn what(&self) -> &'static str {
        "configuration"
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.source.files()
    }

    fn loaded(&self) -> Vec<Option<FileStamp>> {
        self.source.loaded()
    }

    fn reload(&self, cause: Cause) {
        match self.source.load() {
            Ok(config) => {
                let mode = self
                    .running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .auth
                    .mode;
                if config.auth.mode != mode {
                    // The keys and identities were validated for the new mode: applied under
                    // the running one they would refuse every caller (api_key with no keys,
                    // mtls with no identities). The mode needs a restart, so the file does.
                    self.live.metrics.config_reloaded(false);
                    tracing::error!(
                        cause = cause.as_str(),
                        key = "auth.mode",
                        running = mode.as_str(),
                        file = config.auth.mode.as_str(),
                        "configuration reload refused: auth.mode changed, which needs a restart; \
                         the running settings stay"
                    );
                    return;
                }
                self.apply(config, cause)
            }
            Err(error) => {
                self.live.metrics.config_reloaded(false);
                tracing::error!(
                    cause = cause.as_str(),
                    key = error.key,
                    error = %error,
                    "configuration reload refused; the running settings stay"
                );
            }
        }
    }
}

/// The settings that differ between `running` and `new` and are read only at start, by the
/// name of their key or section.
fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut differ = Vec::new();
    let mut check = |key: &'static str, changed: bool| {
        if changed {
            differ.push(key);
        }
    };
    check("listen", running.listen != new.listen);
    check("log_format", running.log_format != new.log_format);
    check("sandbox", running.sandbox != new.sandbox);
    check(
        "drain_timeout_ms",
        running.drain_timeout != new.drain_timeout,
    );
    check("call_timeout_ms", running.call_timeout != new.call_timeout);
    check("[upstream]", running.upstream != new.upstream);
    check("[retry]", running.retry != new.retry);
    check(
        "[server]",
        (
            running.max_in_flight,
            running.max_concurrent_streams,
            running.max_connections,
            running.preface_timeout,
            running.idle_timeout,
            running.max_connection_age,
            running.ratelimit_metadata,
        ) != (
            new.max_in_flight,
            new.max_concurrent_streams,
            new.max_connections,
            new.preface_timeout,
            new.idle_timeout,
            new.max_connection_age,
            new.ratelimit_metadata,
        ),
    );
    check("auth.mode", running.auth.mode != new.auth.mode);
    check("[tls]", running.tls != new.tls);
    check("[redis]", running.redis != new.redis);
    check(
        "cache.shared, cache.redis_url",
        running.cache_redis != new.cache_redis,
    );
    check(
        "cache.max_entries",
        running.cache.max_entries != new.cache.max_entries,
    );
    check("[credentials]", running.credentials != new.credentials);
    check("[admin]", running.admin_listen != new.admin_listen);
    check("[tracing]", running.tracing != new.tracing);
    differ
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> Config {
        Config::new(
            "127.0.0.1:50051".parse().expect("address"),
            "https://cams.example".parse().expect("url"),
        )
    }

    /// What reloads live is not reported; what is read only at start is, by its key.
    #[test]
    fn only_settings_read_at_start_need_a_restart() {
        let running = config();
        let mut new = config();
        new.limits.account_rps = 3;
        new.limits.tenant.rps = 1.0;
        new.cache.ttl = Duration::from_secs(1);
        new.auth.keys.clear();
        assert!(needs_restart(&running, &new).is_empty());

        new.listen = "127.0.0.1:50052".parse().expect("address");
        new.call_timeout = Duration::from_secs(1);
        new.cache.max_entries += 1;
        new.auth.mode = crate::auth::AuthMode::ApiKey;
        assert_eq!(
            needs_restart(&running, &new),
            [
                "listen",
                "call_timeout_ms",
                "auth.mode",
                "cache.max_entries"
            ]
        );
    }
}
