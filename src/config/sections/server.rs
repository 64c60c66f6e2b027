//! `[server]`, and the top-level `listen`: where the gateway listens and how much it serves at
//! once.

use std::{net::SocketAddr, time::Duration};

use super::{bad, bounded, millis};
use crate::config::{ConfigError, keys::settings};

settings! {
    /// `[server]`: what the gateway's own server accepts.
    section struct ServerSettings in "server." {
        /// Calls (of every RPC) served at once; more are refused at once with UNAVAILABLE
        key(value_name = "N", alias = "max-in-flight")
        max_in_flight: usize = 1024,
        /// HTTP/2 streams one client connection may have open
        key(value_name = "N", alias = "max-concurrent-streams")
        max_concurrent_streams: u32 = 256,
        /// Client connections served at once; past it a new connection is closed at once
        key(value_name = "N")
        max_connections: usize = 4096,
        /// Time a new connection has to send the HTTP/2 preface (after TLS) before it is closed
        key(value_name = "MS")
        preface_timeout_ms: u64 = 10_000,
        /// Time a connection may stay open with no stream before it is told to go away (GOAWAY)
        key(value_name = "MS")
        idle_timeout_ms: u64 = 300_000,
        /// Age (±10 %) at which a connection is told to go away however busy, and closed once
        /// its calls have had their bound; 0: never
        key(value_name = "MS")
        max_connection_age_ms: u64 = 1_800_000,
        /// Send the RateLimit metadata (ratelimit-policy, ratelimit: the tenant's and the
        /// caller's limits, what is left, when it resets) on every FlowService answer
        key(value_name = "BOOL")
        #[serde(deserialize_with = "crate::config::settings::boolish")]
        ratelimit_metadata: bool = true,
    }
}

/// The validated `[server]` section; [`Config`](crate::config::Config) holds its fields.
pub(super) struct Server {
    pub(super) max_in_flight: usize,
    pub(super) max_concurrent_streams: u32,
    pub(super) max_connections: usize,
    pub(super) preface_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connection_age: Option<Duration>,
    pub(super) ratelimit_metadata: bool,
}

pub(super) fn listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|e| bad("listen", format!("{text:?} is not an address: {e}")))
}

impl ServerSettings {
    pub(super) fn validate(&self) -> Result<Server, ConfigError> {
        Ok(Server {
            max_in_flight: bounded("server.max_in_flight", self.max_in_flight, 1..=1_000_000)?,
            max_concurrent_streams: bounded(
                "server.max_concurrent_streams",
                self.max_concurrent_streams,
                1..=100_000,
            )?,
            max_connections: bounded(
                "server.max_connections",
                self.max_connections,
                1..=1_000_000,
            )?,
            preface_timeout: millis("server.preface_timeout_ms", self.preface_timeout_ms)?,
            idle_timeout: millis("server.idle_timeout_ms", self.idle_timeout_ms)?,
            max_connection_age: match self.max_connection_age_ms {
                0 => None,
                ms => Some(Duration::from_millis(bounded(
                    "server.max_connection_age_ms",
                    ms,
                    10_000..=86_400_000,
                )?)),
            },
            ratelimit_metadata: self.ratelimit_metadata,
        })
    }
}
