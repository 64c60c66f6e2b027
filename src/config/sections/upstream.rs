//! `[upstream]`, and the top-level `endpoint`: CAMS and the HTTP exchange with it.

use reqwest::Url;

use super::{bad, millis};
use crate::{
    cams::UpstreamConfig,
    config::{ConfigError, keys::settings},
};

settings! {
    /// `[upstream]`: the HTTP exchange with CAMS.
    section struct UpstreamSettings in "upstream." {
        /// Connect timeout towards CAMS
        key(value_name = "MS")
        connect_timeout_ms: u64 = 2_000,
        /// Bound on one HTTP exchange with CAMS
        key(value_name = "MS")
        request_timeout_ms: u64 = 10_000,
        /// Largest CAMS response body read; larger ones are refused unread
        key(value_name = "BYTES")
        max_body_bytes: usize = 256 * 1024,
    }
}

impl UpstreamSettings {
    /// `endpoint` is a top-level key but configures the upstream.
    pub(super) fn validate(&self, endpoint: &str) -> Result<UpstreamConfig, ConfigError> {
        let endpoint = Url::parse(endpoint)
            .map_err(|e| bad("endpoint", format!("{endpoint:?} is not a URL: {e}")))?;
        check_endpoint(&endpoint)?;
        millis("upstream.connect_timeout_ms", self.connect_timeout_ms)?;
        millis("upstream.request_timeout_ms", self.request_timeout_ms)?;
        if self.max_body_bytes < 1024 {
            return Err(bad(
                "upstream.max_body_bytes",
                format!(
                    "{} is below the 1024 bytes a CAMS error envelope can take",
                    self.max_body_bytes
                ),
            ));
        }
        Ok(self.build(endpoint))
    }

    fn build(&self, endpoint: Url) -> UpstreamConfig {
        UpstreamConfig {
            endpoint,
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms),
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl UpstreamConfig {
    /// The `[upstream]` defaults, in front of `endpoint` (taken as it is: the configuration's
    /// `endpoint` is checked by [`UpstreamSettings::validate`]).
    pub fn new(endpoint: Url) -> Self {
        UpstreamSettings::default().build(endpoint)
    }
}

/// CAMS serves at `/` of its host; anything else is a mistake that would sign the wrong URL.
fn check_endpoint(url: &Url) -> Result<(), ConfigError> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad(
            "endpoint",
            format!("{url}: scheme must be https (or http)"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("endpoint", format!("{url}: has no host")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "endpoint",
            format!("{url}: must be scheme://host[:port] with no path or query (CAMS serves at /)"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("endpoint", "must not carry user information"));
    }
    Ok(())
}
