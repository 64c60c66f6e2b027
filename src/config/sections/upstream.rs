//! The CAMS endpoint and the HTTP exchange with it.

use reqwest::Url;

use super::{bad, millis};
use crate::{
    cams::UpstreamConfig,
    config::{ConfigError, settings::UpstreamSettings},
};

/// `endpoint` is a top-level key but configures the upstream.
pub(super) fn upstream(
    endpoint: &str,
    s: &UpstreamSettings,
) -> Result<UpstreamConfig, ConfigError> {
    let endpoint = Url::parse(endpoint)
        .map_err(|e| bad("endpoint", format!("{endpoint:?} is not a URL: {e}")))?;
    check_endpoint(&endpoint)?;
    let mut upstream = UpstreamConfig::new(endpoint);
    upstream.connect_timeout = millis("upstream.connect_timeout_ms", s.connect_timeout_ms)?;
    upstream.request_timeout = millis("upstream.request_timeout_ms", s.request_timeout_ms)?;
    if s.max_body_bytes < 1024 {
        return Err(bad(
            "upstream.max_body_bytes",
            format!(
                "{} is below the 1024 bytes a CAMS error envelope can take",
                s.max_body_bytes
            ),
        ));
    }
    upstream.max_body_bytes = s.max_body_bytes;
    Ok(upstream)
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
