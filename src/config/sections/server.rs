//! The gateway's own server: where it listens and how much it serves at once.

use std::{net::SocketAddr, time::Duration};

use super::{bad, bounded, millis};
use crate::config::{Config, ConfigError, settings::ServerSettings};

pub(super) fn listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|e| bad("listen", format!("{text:?} is not an address: {e}")))
}

/// The `[server]` section, into `config`.
pub(super) fn server(s: &ServerSettings, config: &mut Config) -> Result<(), ConfigError> {
    config.max_in_flight = bounded("server.max_in_flight", s.max_in_flight, 1..=1_000_000)?;
    config.max_concurrent_streams = bounded(
        "server.max_concurrent_streams",
        s.max_concurrent_streams,
        1..=100_000,
    )?;
    config.max_connections = bounded("server.max_connections", s.max_connections, 1..=1_000_000)?;
    config.preface_timeout = millis("server.preface_timeout_ms", s.preface_timeout_ms)?;
    config.idle_timeout = millis("server.idle_timeout_ms", s.idle_timeout_ms)?;
    config.max_connection_age = match s.max_connection_age_ms {
        0 => None,
        ms => Some(Duration::from_millis(bounded(
            "server.max_connection_age_ms",
            ms,
            10_000..=86_400_000,
        )?)),
    };
    Ok(())
}
