//! The gateway's own server: where it listens and how much it serves at once.

use std::net::SocketAddr;

use super::{bad, bounded};
use crate::config::{ConfigError, settings::ServerSettings};

pub(super) fn listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|e| bad("listen", format!("{text:?} is not an address: {e}")))
}

/// `(max_in_flight, max_concurrent_streams)`.
pub(super) fn server(s: &ServerSettings) -> Result<(usize, u32), ConfigError> {
    Ok((
        bounded("server.max_in_flight", s.max_in_flight, 1..=1_000_000)?,
        bounded(
            "server.max_concurrent_streams",
            s.max_concurrent_streams,
            1..=100_000,
        )?,
    ))
}
