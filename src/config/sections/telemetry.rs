//! `[admin]` and `[tracing]`: what operators see of the gateway.

use std::net::SocketAddr;

use super::bad;
use crate::config::{ConfigError, keys::settings};

settings! {
    /// `[admin]`: the operators' listener.
    section struct AdminSettings in "admin." {
        /// Address of the admin listener (plain HTTP: GET /metrics for Prometheus); off to turn
        /// it off
        key(value_name = "ADDR", default = "off; the container image sets 0.0.0.0:9464")
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    }
}

settings! {
    /// `[tracing]`: what the gateway does with trace context. Whether spans are exported is the
    /// standard `OTEL_*` environment's to say.
    section struct TracingSettings in "tracing." {
        /// Send the call's W3C trace context (traceparent, tracestate) on to CAMS, a third
        /// party. Traces are exported when OTEL_EXPORTER_OTLP_ENDPOINT (or
        /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set
        key(value_name = "BOOL")
        #[serde(deserialize_with = "crate::config::settings::boolish")]
        propagate_upstream: bool = false,
    }
}

impl AdminSettings {
    /// `None` when left out, empty, or `off` (which turns off a listener the image's environment
    /// sets).
    pub(super) fn validate(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.listen.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(off) if off.eq_ignore_ascii_case("off") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|e| {
                bad(
                    "admin.listen",
                    format!("{text:?} is not an address (IP:port, or off): {e}"),
                )
            }),
        }
    }
}
