//! The Redis exchanges of each store (its `store` label): how long each took and how many failed,
//! by kind. Each connection resolves its handles once ([`Metrics::redis`]).

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use super::{Labels, Metrics, histogram, labels};

/// A Redis round trip on a healthy network is well under a millisecond; `redis.timeout_ms` caps it.
const REDIS_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 10.0,
];

pub(super) struct Families {
    errors: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
}

impl Families {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "cams_flows_redis_errors",
            "Redis commands that failed, by store and kind (timeout or error)",
            errors.clone(),
        );
        let duration =
            Family::<Labels, Histogram>::new_with_constructor(|| histogram(&REDIS_BUCKETS));
        registry.register(
            "cams_flows_redis_command_duration_seconds",
            "Duration of one Redis exchange, in seconds, by store",
            duration.clone(),
        );
        Self { errors, duration }
    }
}

impl Metrics {
    /// The handles of one Redis connection, whose series carry `store`.
    pub fn redis(&self, store: &'static str) -> RedisMetrics {
        RedisMetrics(self.0.as_ref().map(|inner| {
            let store_label = labels([("store", store)]);
            let kind = |kind| labels([("store", store), ("kind", kind)]);
            Arc::new(RedisHandles {
                timeout: inner.redis.errors.get_or_create_owned(&kind("timeout")),
                error: inner.redis.errors.get_or_create_owned(&kind("error")),
                duration: inner.redis.duration.get_or_create_owned(&store_label),
            })
        }))
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
