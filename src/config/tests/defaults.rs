//! The runtime types' defaults, which tests and embedders use as "the product's", are the
//! defaults `serve` runs with: each is its section's, validated, not a copy of it.

use super::load;
use crate::{
    cams::UpstreamConfig,
    config::{CacheConfig, Config, RetryConfig},
    credentials::CredentialsConfig,
    limits::LimitsConfig,
};

#[test]
fn the_runtime_defaults_are_what_serve_loads_with_nothing_set() {
    let loaded = load(&["--auth-mode", "none"], &[]).expect("the defaults are valid");
    assert_eq!(loaded.limits, LimitsConfig::default());
    assert_eq!(loaded.cache, CacheConfig::default());
    assert_eq!(loaded.retry, RetryConfig::default());
    assert_eq!(loaded.credentials, CredentialsConfig::default());
    assert_eq!(
        loaded.upstream,
        UpstreamConfig::new(loaded.upstream.endpoint.clone())
    );

    let new = Config::new(loaded.listen, loaded.upstream.endpoint.clone());
    assert_eq!(
        format!("{new:?}"),
        format!("{loaded:?}"),
        "Config::new is the loaded defaults"
    );
}
