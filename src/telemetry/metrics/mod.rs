//! The gateway's Prometheus metrics: one [`Metrics`] handle, made by the wiring and cloned into
//! each layer that records something. Every series is created at start with a closed set of
//! label values (see [`labels`]) and recorded through a handle resolved then, so that a call
//! costs a few atomic adds and no label lookup. Gauges that mirror state some owner already
//! keeps are read at scrape time instead ([`probes`]).
//!
//! Each concern's series, and the methods of [`Metrics`] that record them, have a file of their
//! own: [`grpc`] (the server's calls), [`cache`], [`rejections`] (calls the gateway refused
//! itself), [`upstream`] (attempts at CAMS), [`account`] (the account's quota), [`redis`],
//! [`reloads`] (of the configuration file).
//!
//! A disabled handle (no admin listener, so nobody could read them) records nothing: every
//! method is one branch then.

mod account;
mod cache;
mod grpc;
mod labels;
mod probes;
mod redis;
mod rejections;
mod reloads;
mod upstream;

use std::sync::Arc;

use prometheus_client::{
    encoding::{prometheus_text, text},
    metrics::{family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

pub use account::SlotInUse;
pub use labels::{CacheResult, QuotaRefusal, RefreshResult, Rejection, UpstreamOutcome};
pub use probes::Read;
pub use redis::{RedisFailure, RedisMetrics};

use crate::domain::TenantId;

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
    calls: grpc::Calls,
    cache_results: cache::Results,
    rejections: rejections::Rejections,
    upstream: upstream::Upstream,
    account: account::Account,
    refreshes: cache::Refreshes,
    redis: redis::Families,
    reloads: reloads::Reloads,
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
        // The order of registration is the order of the exposition.
        let calls = grpc::Calls::register(&mut registry);
        let cache_results = cache::Results::register(&mut registry);
        let rejections = rejections::Rejections::register(&mut registry, tenants);
        let upstream = upstream::Upstream::register(&mut registry);
        let account = account::Account::register(&mut registry);
        let refreshes = cache::Refreshes::register(&mut registry);
        let redis = redis::Families::register(&mut registry);
        let reloads = reloads::Reloads::register(&mut registry);

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
            calls,
            cache_results,
            rejections,
            upstream,
            account,
            refreshes,
            redis,
            reloads,
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        metrics.call_started(crate::domain::Action::GetFlow);
        metrics.rejected(Rejection::Overloaded, "x");
        drop(metrics.slot_taken(crate::domain::Action::ListFlow, Duration::from_millis(1)));
        assert!(metrics.encode(Format::Prometheus).is_empty());
    }
}
