//! The gateway's Prometheus metrics: one [`Metrics`] handle, made by the wiring and cloned into
//! each layer that records something. Every series is created at start with a closed set of
//! label values (see [`labels`]) and recorded through a handle resolved then, so that a call
//! costs a few atomic adds and no label lookup. Gauges that mirror state some owner already
//! keeps are read at scrape time instead ([`probes`]).
//!
//! A disabled handle (no admin listener, so nobody could read them) records nothing: every
//! method is one branch then.

mod labels;
mod probes;

use std::{collections::HashMap, sync::Arc, time::Duration};

use prometheus_client::{
    encoding::{prometheus_text, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

pub use labels::{CacheResult, QuotaRefusal, RefreshResult, Rejection, UpstreamOutcome};
pub use probes::Read;

use crate::domain::TenantId;
use labels::{GRPC_CODES, OTHER_TENANT, OWN_SPACE};

/// The one method this service has, labelled as go-grpc-middleware labels it.
const GRPC_SERVICE: &str = "cams.flows.v1.FlowService";
const GRPC_METHOD: &str = "GetFlow";
const GRPC_TYPE: &str = "unary";

/// A cache hit is answered in a fraction of a millisecond; the finer buckets tell hits apart from
/// misses (tens of milliseconds) and queued calls (up to `limits.max_wait_ms`).
const CALL_BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// OpenTelemetry's recommended boundaries for `http.client.request.duration`.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The account queue: from no wait at all to `limits.max_wait_ms` (at most 60 s).
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0,
];

/// A Redis round trip on a healthy network is well under a millisecond; `redis.timeout_ms` caps it.
const REDIS_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 10.0,
];

/// Labels as `(name, value)` pairs; every value is one of a closed set.
type Labels = Vec<(&'static str, String)>;

/// What the exposition is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4, what every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0, when the scraper's `Accept` asks for it.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The gateway's metrics, or nothing when disabled. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&self.0.is_some()).finish()
    }
}

struct Inner {
    registry: Registry,
    probes: probes::Probes,
    started: Counter,
    handled: [Counter; 17],
    handling: Histogram,
    cache_results: [Counter; 5],
    /// `tenant index × reason`; index 0 is `_other`.
    rejections: Vec<[Counter; 11]>,
    /// Named tenants by their `CustSpaceId`, to their row in `rejections`.
    tenants: HashMap<String, usize>,
    upstream_attempts: Vec<Counter>,
    upstream_ok: Histogram,
    upstream_error: Histogram,
    retries: Counter,
    retry_budget_exhausted: Counter,
    account_wait: Histogram,
    account_acquired: Counter,
    account_in_use: Gauge,
    quota_refusals: [Counter; 3],
    refreshes: [Counter; 3],
    redis: Family<Labels, Counter>,
    redis_duration: Family<Labels, Histogram>,
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

impl Metrics {
    /// Records nothing.
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Every series, created now. `tenants` are the tenants named in `[limits.tenants]`: the only
    /// ones with a `tenant` label value of their own.
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a TenantId>) -> Self {
        let mut registry = Registry::default();
        let grpc = labels([
            ("grpc_type", GRPC_TYPE),
            ("grpc_service", GRPC_SERVICE),
            ("grpc_method", GRPC_METHOD),
        ]);

        let started_family = Family::<Labels, Counter>::default();
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started_family.clone(),
        );
        let started = started_family.get_or_create_owned(&grpc);

        let handled_family = Family::<Labels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure",
            handled_family.clone(),
        );
        let handled = GRPC_CODES.map(|code| {
            let mut l = grpc.clone();
            l.push(("grpc_code", code.to_owned()));
            handled_family.get_or_create_owned(&l)
        });

        let handling_family =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&CALL_BUCKETS));
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a call's arrival to its answer, in seconds",
            handling_family.clone(),
        );
        let handling = handling_family.get_or_create_owned(&grpc);

        let cache_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_results",
            "Answers served, by how they were obtained (the x-cams-cache header)",
            cache_family.clone(),
        );
        let cache_results = CacheResult::ALL
            .map(|r| cache_family.get_or_create_owned(&labels([("result", r.as_str())])));

        let rejection_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_rejections",
            "Calls the gateway refused itself, by reason (the ErrorInfo reason) and tenant (named \
             tenants only, the rest as _other)",
            rejection_family.clone(),
        );
        let mut tenant_index = HashMap::new();
        let mut tenant_names = vec![OTHER_TENANT.to_owned()];
        for tenant in tenants {
            if tenant_index.contains_key(tenant.as_str()) {
                continue;
            }
            tenant_index.insert(tenant.as_str().to_owned(), tenant_names.len());
            tenant_names.push(match tenant.as_str() {
                "" => OWN_SPACE.to_owned(),
                name => name.to_owned(),
            });
        }
        let rejections = tenant_names
            .iter()
            .map(|tenant| {
                Rejection::ALL.map(|reason| {
                    rejection_family.get_or_create_owned(&labels([
                        ("reason", reason.as_str()),
                        ("tenant", tenant),
                    ]))
                })
            })
            .collect();

        let attempts_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_upstream_attempts",
            "Attempts at CAMS, by the Code CAMS answered (others grouped as other) or the \
             transport outcome",
            attempts_family.clone(),
        );
        let upstream_attempts = labels::outcome_names()
            .map(|code| attempts_family.get_or_create_owned(&labels([("code", code)])))
            .collect();

        let upstream_family =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&UPSTREAM_BUCKETS));
        registry.register(
            "cams_flows_upstream_attempt_duration_seconds",
            "Duration of one attempt at CAMS, in seconds, by result (ok: CAMS answered OK)",
            upstream_family.clone(),
        );
        let upstream_ok = upstream_family.get_or_create_owned(&labels([("result", "ok")]));
        let upstream_error = upstream_family.get_or_create_owned(&labels([("result", "error")]));

        let retries = Counter::default();
        registry.register(
            "cams_flows_upstream_retries",
            "Attempts at CAMS that were retries of a failed one",
            retries.clone(),
        );
        let retry_budget_exhausted = Counter::default();
        registry.register(
            "cams_flows_upstream_retry_budget_exhausted",
            "Retries not made because the retry budget was spent",
            retry_budget_exhausted.clone(),
        );

        let account_wait = histogram(&WAIT_BUCKETS);
        registry.register(
            "cams_flows_account_wait_seconds",
            "Time an attempt waited for a slot of the account's CAMS quota, in seconds",
            account_wait.clone(),
        );
        let account_acquired = Counter::default();
        registry.register(
            "cams_flows_account_slots_acquired",
            "Slots of the account's CAMS quota this replica took (one per attempt at CAMS)",
            account_acquired.clone(),
        );
        let account_in_use = Gauge::default();
        registry.register(
            "cams_flows_account_slots_in_use",
            "Slots of the account's CAMS quota this replica holds now (attempts under way)",
            account_in_use.clone(),
        );
        let refusal_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_account_refusals",
            "Attempts the account quota turned away, by cause",
            refusal_family.clone(),
        );
        let quota_refusals = QuotaRefusal::ALL
            .map(|c| refusal_family.get_or_create_owned(&labels([("cause", c.as_str())])));

        let refresh_family = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_cache_refreshes",
            "Refresh-ahead fetches, by result",
            refresh_family.clone(),
        );
        let refreshes = RefreshResult::ALL
            .map(|r| refresh_family.get_or_create_owned(&labels([("result", r.as_str())])));

        let redis = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_redis_errors",
            "Redis commands that failed, by store and kind (timeout or error)",
            redis.clone(),
        );
        let redis_duration =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&REDIS_BUCKETS));
        registry.register(
            "cams_flows_redis_command_duration_seconds",
            "Duration of one Redis exchange, in seconds, by store",
            redis_duration.clone(),
        );

        let build = Family::<Labels, Gauge>::default();
        registry.register(
            "cams_flows_build_info",
            "The gateway's version; always 1",
            build.clone(),
        );
        build
            .get_or_create(&labels([("version", env!("CARGO_PKG_VERSION"))]))
            .set(1);

        let probes = probes::Probes::default();
        registry.register_collector(Box::new(probes.clone()));

        Self(Some(Arc::new(Inner {
            registry,
            probes,
            started,
            handled,
            handling,
            cache_results,
            rejections,
            tenants: tenant_index,
            upstream_attempts,
            upstream_ok,
            upstream_error,
            retries,
            retry_budget_exhausted,
            account_wait,
            account_acquired,
            account_in_use,
            quota_refusals,
            refreshes,
            redis,
            redis_duration,
        })))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The exposition of every series; empty when disabled.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        if let Some(inner) = &self.0 {
            // Writing into a String cannot fail; an error would leave a truncated page, which
            // the scraper reports.
            let _ = match format {
                Format::Prometheus => prometheus_text::encode(&mut out, &inner.registry),
                Format::OpenMetrics => text::encode(&mut out, &inner.registry),
            };
        }
        out
    }

    /// A gauge read at scrape time, e.g. from a semaphore or a store's state.
    pub fn probe(
        &self,
        name: &'static str,
        help: &'static str,
        label: Option<(&'static str, &'static str)>,
        read: Read,
    ) {
        if let Some(inner) = &self.0 {
            inner.probes.add(name, help, label, read);
        }
    }

    /// A GetFlow call has arrived.
    pub fn call_started(&self) {
        if let Some(inner) = &self.0 {
            inner.started.inc();
        }
    }

    /// A GetFlow call has been answered with `code` after `elapsed`.
    pub fn call_handled(&self, code: tonic::Code, elapsed: Duration) {
        if let Some(inner) = &self.0 {
            inner.handled[labels::grpc_code_index(code)].inc();
            inner.handling.observe(elapsed.as_secs_f64());
        }
    }

    pub fn served(&self, result: CacheResult) {
        if let Some(inner) = &self.0 {
            inner.cache_results[result as usize].inc();
        }
    }

    /// The gateway refused a call for `tenant` (the raw `CustSpaceId`, which may not even be
    /// valid): labelled with the tenant only if it is named in the configuration.
    pub fn rejected(&self, reason: Rejection, tenant: &str) {
        if let Some(inner) = &self.0 {
            let index = inner.tenants.get(tenant).copied().unwrap_or(0);
            if let Some(row) = inner.rejections.get(index) {
                row[reason as usize].inc();
            }
        }
    }

    /// One attempt at CAMS ended.
    pub fn upstream_attempt(&self, outcome: UpstreamOutcome<'_>, elapsed: Duration) {
        if let Some(inner) = &self.0 {
            if let Some(counter) = inner.upstream_attempts.get(labels::outcome_index(outcome)) {
                counter.inc();
            }
            let histogram = if outcome == UpstreamOutcome::Code("OK") {
                &inner.upstream_ok
            } else {
                &inner.upstream_error
            };
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    pub fn retried(&self) {
        if let Some(inner) = &self.0 {
            inner.retries.inc();
        }
    }

    pub fn retry_budget_exhausted(&self) {
        if let Some(inner) = &self.0 {
            inner.retry_budget_exhausted.inc();
        }
    }

    /// A slot of the account quota was taken after `waited`; the returned guard counts it as in
    /// use until dropped.
    pub fn slot_taken(&self, waited: Duration) -> SlotInUse {
        match &self.0 {
            Some(inner) => {
                inner.account_wait.observe(waited.as_secs_f64());
                inner.account_acquired.inc();
                inner.account_in_use.inc();
                SlotInUse(Some(inner.account_in_use.clone()))
            }
            None => SlotInUse(None),
        }
    }

    pub fn quota_refused(&self, cause: QuotaRefusal) {
        if let Some(inner) = &self.0 {
            inner.quota_refusals[cause as usize].inc();
        }
    }

    pub fn refreshed(&self, result: RefreshResult) {
        if let Some(inner) = &self.0 {
            inner.refreshes[result as usize].inc();
        }
    }

    /// The handles of one Redis connection, whose series carry `store`.
    pub fn redis(&self, store: &'static str) -> RedisMetrics {
        RedisMetrics(self.0.as_ref().map(|inner| {
            let store_label = labels([("store", store)]);
            let kind = |kind| labels([("store", store), ("kind", kind)]);
            Arc::new(RedisHandles {
                timeout: inner.redis.get_or_create_owned(&kind("timeout")),
                error: inner.redis.get_or_create_owned(&kind("error")),
                duration: inner.redis_duration.get_or_create_owned(&store_label),
            })
        }))
    }
}

/// Counts one account slot as in use while it lives.
#[must_use]
pub struct SlotInUse(Option<Gauge>);

impl Drop for SlotInUse {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

struct RedisHandles {
    timeout: Counter,
    error: Counter,
    duration: Histogram,
}

/// The metrics of one Redis connection; records nothing when metrics are off.
#[derive(Clone, Default)]
pub struct RedisMetrics(Option<Arc<RedisHandles>>);

impl std::fmt::Debug for RedisMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisMetrics").finish_non_exhaustive()
    }
}

impl RedisMetrics {
    /// One exchange ended after `elapsed`; `timed_out` and `failed` say how it went wrong.
    pub fn exchange(&self, elapsed: Duration, failure: Option<RedisFailure>) {
        if let Some(handles) = &self.0 {
            handles.duration.observe(elapsed.as_secs_f64());
            match failure {
                Some(RedisFailure::Timeout) => {
                    handles.timeout.inc();
                }
                Some(RedisFailure::Error) => {
                    handles.error.inc();
                }
                None => {}
            }
        }
    }
}

/// How a Redis exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    Timeout,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(text: &str, prefix: &str) -> usize {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
            .count()
    }

    #[test]
    fn unnamed_tenants_share_one_series() {
        let named = TenantId::parse("cams-kei1").expect("tenant");
        let metrics = Metrics::new([&named]);
        let before = metrics.encode(Format::Prometheus);
        for i in 0..1000 {
            metrics.rejected(Rejection::TenantRateLimited, &format!("space-{i}"));
        }
        metrics.rejected(Rejection::TenantRateLimited, "cams-kei1");
        let after = metrics.encode(Format::Prometheus);
        assert_eq!(
            series(&before, "cams_flows_rejections_total"),
            series(&after, "cams_flows_rejections_total")
        );
        assert!(after.contains(
            "cams_flows_rejections_total{reason=\"TENANT_RATE_LIMITED\",tenant=\"_other\"} 1000"
        ));
        assert!(after.contains(
            "cams_flows_rejections_total{reason=\"TENANT_RATE_LIMITED\",tenant=\"cams-kei1\"} 1"
        ));
    }

    #[test]
    fn probes_are_read_at_scrape_time_and_may_be_absent() {
        let metrics = Metrics::new([]);
        metrics.probe("cams_flows_x", "x", None, Box::new(|| Some(2.5)));
        metrics.probe(
            "cams_flows_y",
            "y",
            Some(("store", "state")),
            Box::new(|| Some(1.0)),
        );
        metrics.probe("cams_flows_z", "z", None, Box::new(|| None));
        let text = metrics.encode(Format::Prometheus);
        assert!(text.contains("\ncams_flows_x 2.5\n"), "{text}");
        assert!(text.contains("\ncams_flows_y{store=\"state\"} 1"), "{text}");
        assert!(!text.contains("cams_flows_z"), "{text}");
        let open = metrics.encode(Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn disabled_records_and_shows_nothing() {
        let metrics = Metrics::disabled();
        metrics.call_started();
        metrics.rejected(Rejection::Overloaded, "x");
        drop(metrics.slot_taken(Duration::from_millis(1)));
        assert!(metrics.encode(Format::Prometheus).is_empty());
    }
}
